// Tracing: a timeline of what the modeled system did, for people to look at.
//
// A Recorder, while it is the process's active recorder, collects
//   - CPU page faults (do_user_addr_fault, on the track of the software CPU that faulted),
//   - secondary-MMU faults (DeviceMirror::fault, on the device's track),
//   - invalidations (each subscriber's invalidate / invalidate_range_start callback, on the
//     subscriber's track, with the range, the MmuNotifyEvent and the subscriber's name),
//   - TLB shootdowns (flush_tlb_range / flush_tlb_mm, on the track of the CPU that flushes),
//   - memory counters (free frames, pages on the LRU lists, swap slots used) sampled by the
//     caller (sample_memory), and the address spaces at the end of a run with how much of
//     each VMA every secondary MMU mirrors (add_address_space),
// and writes them as a Chrome/Perfetto trace-event file (write_json, docs/tracing.md) and as a
// self-contained HTML report with plots (write_report).
//
// The hooks cost one load of a global pointer when no recorder is active. When one is, each
// thread appends to a buffer of its own, so no lock is shared on the hot path; the buffers
// are merged when the recording is written.
//
// Lifecycle: a Recorder is kIdle when built, kRecording between start() and stop(), kStopped
// after. At most one recorder records at a time. stop() may only be called once every thread
// that may run a hook of this recorder is done with the library (for a System: once it is
// destroyed), since hooks that already saw the recorder keep using it.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"

namespace mirrormm {

class SecondaryMmu;

namespace trace {

class Recorder;

namespace detail {
// The active recorder (nullptr: tracing is off).
//
// Memory ordering: start() publishes a fully built recorder with a release store, and hooks
// load it with acquire (a plain load on x86-64), so a hook that sees the pointer sees the
// recorder's fields. stop() stores nullptr; a hook that loaded the pointer before keeps
// using the recorder, which the lifecycle rule above keeps alive.
inline std::atomic<Recorder*> active{nullptr};
}  // namespace detail

// The recorder hooks report to, or nullptr.
inline Recorder* active() { return detail::active.load(std::memory_order_acquire); }

// What a recorded span is.
enum class Kind : uint8_t {
  kCpuFault,       // a = address, b = 1 for a write; c = the fault's VM_FAULT_* bits
  kDeviceFault,    // a = address, b = length; c = 1 for a write
  kInvalidate,     // a = start, b = end (exclusive); c = MmuNotifyEvent, 0x100 when blockable
  kShootdown,      // a = start, b = end (exclusive); c = the CPUs flushed
  kSubscriberName, // names the subscriber from t0 on (see name_subscriber); no span
};

// One entry of a thread's buffer: a span [t0, t1] in clock ticks since the recorder started
// (now_ticks); the merge turns them into nanoseconds. No default values: buffers allocate
// records without touching them, and a Span fills its record only when it records.
struct Record {
  uint64_t t0, t1;
  uint64_t a, b;
  const void* key;  // the subscriber (device spans and names), else nullptr
  uint32_t c;
  uint32_t name;  // kSubscriberName: the index into the buffer's names
  int16_t cpu;    // the software CPU the recording thread ran as, or -1
  Kind kind;
};

// Ticks since the recorder started: the time-stamp counter on x86-64 (invariant and the
// clock source of the kernel's own steady clock there, and a quarter of its cost to read),
// nanoseconds of the steady clock elsewhere. stop() measures the counter's rate against the
// steady clock over the whole recording.
uint64_t now_ticks(const Recorder& r);
void record(Recorder& r, const Record& rec);
void record_name(Recorder& r, const void* key, const std::string& name);

// A span on the stack: measures from construction to destruction and records it if a
// recorder was active at construction. The hooks in the VM are one line each:
//   trace::Span span(trace::Kind::kShootdown, nullptr, start, end);
class Span {
 public:
  // A span without a cpu is on the track of the CPU the calling thread runs as, if any.
  Span(Kind kind, const void* key, uint64_t a, uint64_t b, uint32_t c = 0) : r_(active()) {
    if (__builtin_expect(r_ != nullptr, 0)) begin(kind, key, a, b, c);
  }
  ~Span() {
    if (__builtin_expect(r_ != nullptr, 0)) end();
  }
  Span(const Span&) = delete;
  Span& operator=(const Span&) = delete;
  // Sets the span's third argument (a result known only at its end).
  void set_c(uint32_t c) {
    if (r_) rec_.c = c;
  }
  // Whether the span is being recorded: an argument that costs something to compute is
  // computed only then (`if (span.recording()) span.set_c(...)`).
  bool recording() const { return r_ != nullptr; }

 private:
  void begin(Kind kind, const void* key, uint64_t a, uint64_t b, uint32_t c);
  void end();
  Recorder* const r_;
  Record rec_;  // filled by begin(), only when recording
};

// The third argument of an invalidation span: the range's event, and 0x100 when blockable.
inline uint32_t invalidate_arg(const MmuNotifierRange* range) {
  return static_cast<uint32_t>(range->event) | (mmu_notifier_range_blockable(range) ? 0x100u : 0u);
}

// Names a subscriber's track from now on (the empty name forgets it: its address may name
// another subscriber next). Cheap when tracing is off.
inline void name_subscriber(const void* key, const std::string& name) {
  if (Recorder* r = active()) record_name(*r, key, name);
}

// The address space of one process at one moment, with what each device mirrors of it.
struct AddressSpace {
  struct Device {
    std::string name;
    std::vector<uint64_t> pages;  // per VMA (same order as vmas): pages the device mirrors
  };
  uint64_t pid = 0;
  std::vector<MapsEntry> vmas;
  std::vector<Device> devices;
};

// Builds p's address space (proc_maps) with the residency of each secondary MMU of it
// (SecondaryMmu::show over each VMA). An exited process has no VMAs.
AddressSpace address_space(System& sys, Process* p, const std::vector<std::pair<std::string, SecondaryMmu*>>& devices);

// What the report says about the run that produced the recording.
struct ReportInfo {
  std::string title;    // "mirrormm run", "mirrormm replay FILE", ...
  std::string command;  // the command line that runs it again
  std::vector<std::pair<std::string, std::string>> summary;  // label, value
};

class Recorder {
 public:
  // Events a thread keeps before it counts the rest as dropped (the histograms and the
  // invalidation counts still include them).
  static constexpr size_t kDefaultMaxEventsPerThread = 1 << 20;

  explicit Recorder(size_t max_events_per_thread = kDefaultMaxEventsPerThread);
  ~Recorder();
  Recorder(const Recorder&) = delete;
  Recorder& operator=(const Recorder&) = delete;

  // Makes this the active recorder. Aborts if another one is active.
  void start();
  // Stops recording (see the lifecycle rule above). Idempotent.
  void stop();

  // Samples the memory counters now (the caller's thread; not under any VM lock).
  void sample_memory(System& sys);
  // Adds an address space to the report's map (usually at the end of the run).
  void add_address_space(AddressSpace as);

  // After stop(): the trace-event JSON (docs/tracing.md) and the HTML report.
  void write_json(std::ostream& out) const;
  void write_report(std::ostream& out, const ReportInfo& info) const;

  // After stop(): events recorded and dropped (over the per-thread limit).
  uint64_t events() const;
  uint64_t dropped() const;

  struct Impl;

 private:
  friend uint64_t now_ticks(const Recorder& r);
  friend void record(Recorder& r, const Record& rec);
  friend void record_name(Recorder& r, const void* key, const std::string& name);
  std::unique_ptr<Impl> impl_;
};

// The HTML report's plotting library, embedded at build time (src/trace/report.cc).
const char* chart_js_source();
const char* chart_js_version();

}  // namespace trace
}  // namespace mirrormm
