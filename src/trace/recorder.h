// The recorder's private parts, shared by its recording side (recorder.cc), the trace-event
// writer (trace_json.cc) and the HTML report (report.cc).
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/trace.h"
#include "mm/lock_order.h"

namespace mirrormm::trace {

// Latency histograms: bucket i counts spans of [2^i, 2^(i+1)) clock ticks (bucket 0: below 2);
// Merged::ns_per_tick turns the bounds into nanoseconds.
struct Histogram {
  static constexpr int kBuckets = 40;
  std::array<uint64_t, kBuckets> counts{};
  void add(uint64_t ns) {
    const int b = ns < 2 ? 0 : 63 - __builtin_clzll(ns);
    counts[b < kBuckets ? b : kBuckets - 1]++;
  }
  void merge(const Histogram& o) {
    for (int i = 0; i < kBuckets; i++) counts[i] += o.counts[i];
  }
};

// The latencies every buffer keeps, whether or not its events fit.
struct Latencies {
  Histogram cpu_fault, device_fault, invalidate, shootdown;
  void merge(const Latencies& o) {
    cpu_fault.merge(o.cpu_fault);
    device_fault.merge(o.device_fault);
    invalidate.merge(o.invalidate);
    shootdown.merge(o.shootdown);
  }
};

// One thread's events. Appended to by its thread only; read by the merge. The lock is
// therefore uncontended while recording (a leaf: hooks run under any VM lock). Records live
// in chunks that never move, so that a growing buffer copies nothing and returns no memory
// to the host while the run goes on.
struct Buffer {
  static constexpr size_t kChunk = 4096;  // records per chunk (224 KiB)
  explicit Buffer(int index) : index(index) {}
  const int index;  // registration order: the thread's track number when it runs as no CPU
  SpinLock lock{lock_class::kTraceBuffer};
  std::vector<std::unique_ptr<Record[]>> chunks GUARDED_BY(lock);
  size_t count GUARDED_BY(lock) = 0;  // records in the chunks
  void push_locked(const Record& r) REQUIRES(lock) {
    if (count % kChunk == 0) chunks.push_back(std::make_unique_for_overwrite<Record[]>(kChunk));
    chunks[count / kChunk][count % kChunk] = r;
    count++;
  }
  const Record& at_locked(size_t i) const REQUIRES(lock) { return chunks[i / kChunk][i % kChunk]; }
  std::vector<std::string> names GUARDED_BY(lock);  // subscriber names (Record::name)
  uint64_t dropped GUARDED_BY(lock) = 0;
  Latencies latencies GUARDED_BY(lock);
};

// One memory sample (sample_memory), in pages.
struct MemorySample {
  uint64_t t = 0;  // ticks since start (nanoseconds once merged)
  uint64_t free = 0, anon = 0, file = 0, swap_used = 0;
};

// A span of the merged recording, on its final track.
struct Placed {
  Record rec{};
  int pid = 0, tid = 0;
  int identity = -1;  // device spans: index into Merged::subscribers
};

// Everything the writers need, built once by stop().
struct Merged {
  struct Track {
    int pid = 0, tid = 0;
    std::string name;
  };
  std::vector<Track> tracks;        // every (pid, tid) that has spans, named
  std::vector<Placed> spans;        // sorted by start time
  std::vector<std::string> subscribers;  // the names of the device tracks (before lanes)
  std::vector<MemorySample> samples;
  std::vector<AddressSpace> address_spaces;
  Latencies latencies;
  uint64_t events = 0, dropped = 0;
  uint64_t duration_ns = 0;  // the last event's end or sample
  double ns_per_tick = 1;
};

struct Recorder::Impl {
  enum class State { kIdle, kRecording, kStopped };
  // Written by the controlling thread (start, stop, the writers), which is the only one
  // that reads it.
  State state = State::kIdle;
  const uint64_t id;      // unique over the process's recorders (the threads' buffer caches)
  const size_t max_events;
  // The clocks at construction (written once, before start() publishes the recorder), and
  // the nanoseconds per tick that stop() measures.
  const std::chrono::steady_clock::time_point t0;
  const uint64_t tick0;
  double ns_per_tick = 1;

  Mutex threads_lock{lock_class::kTraceThreads};
  std::vector<std::unique_ptr<Buffer>> buffers GUARDED_BY(threads_lock);
  std::vector<MemorySample> samples GUARDED_BY(threads_lock);
  std::vector<AddressSpace> address_spaces GUARDED_BY(threads_lock);

  // Built by stop(); then read-only (by the controlling thread's writers).
  Merged merged;

  Impl(uint64_t id, size_t max_events);
  Buffer* buffer_of_this_thread();
  uint64_t ns(uint64_t ticks) const { return static_cast<uint64_t>(static_cast<double>(ticks) * ns_per_tick); }
  void merge() EXCLUDES(threads_lock);
};

// Names used by both writers.
const char* kind_name(Kind k);
std::string invalidate_event_name(uint32_t c);
std::string fault_result(uint32_t vm_fault);
std::string json_escape(const std::string& s);

}  // namespace mirrormm::trace
