// DeviceMirror: a ready-made secondary MMU over one process, built only on the public
// notifier API (mmu_notifier.h), for tests, the stress tool, `.mms` scripts (`dev …`) and as
// a worked example of the two protocols a driver can follow:
//
//   Mode::kInterval  an HMM device mirror (Linux's test_hmm dmirror): one interval notifier
//                    over the mirrored span; a fault is one hmm_range_fault of the whole
//                    range in the read_begin / hmm_range_fault / lock(update) / read_retry
//                    loop (mirrormm/hmm.h); invalidate() drops the overlap under the update
//                    lock and calls mmu_interval_set_seq.
//   Mode::kClassic   a KVM-style shadow MMU: a classic subscription with
//                    invalidate_range_start/end and release; faults snapshot an invalidation
//                    sequence, resolve each pfn unlocked (mm_get_pfn, as KVM's hva_to_pfn),
//                    and retry when an invalidation is in progress or completed meanwhile
//                    (mmu_invalidate_retry).
//
// The update lock is a DriverLock ("DeviceMirror::lock_"), so the driver lock checker
// (base/driver_lock.h) watches it against the invalidation callbacks and reclaim.
//
// The device page table maps page addresses to (pfn, writable). Every mapping is declared to
// the coherence checker. Every notification is recorded (take_events) for inspection.
//
// Thread safety: all methods may be called concurrently with each other and with any
// activity of the mirrored process, including its exit. Destroying the mirror detaches it.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/base/driver_lock.h"
#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm {

class DeviceMirror {
 public:
  enum class Mode { kInterval, kClassic };
  // What the mirror was told: one line per notification.
  struct Event {
    MmuNotifyEvent event = MmuNotifyEvent::kUnmap;
    uint64_t start = 0, end = 0;  // end exclusive; a classic release is [0, ~0)
    bool blockable = true;
    bool release = false;  // classic release() (event is then kRelease)
  };
  // The number of MmuNotifyEvent values (the size of Stats::by_event).
  static constexpr int kEvents = static_cast<int>(MmuNotifyEvent::kExclusive) + 1;
  struct Stats {
    uint64_t faults = 0;         // fault() rounds that installed entries
    uint64_t retries = 0;        // collisions with an invalidation (read_retry said so)
    uint64_t invalidations = 0;  // notifications received
    uint64_t pages_dropped = 0;  // device entries removed by notifications
    // invalidations by the range's MmuNotifyEvent (a classic release() counts as kRelease)
    std::array<uint64_t, kEvents> by_event{};
  };

  // The x86-64 user address space, [0, TASK_SIZE) rounded up to the page.
  static constexpr uint64_t kUserSpaceEnd = 1ull << 47;

  // Attaches to p's address space, mirroring [start, start+length) (interval mode; the
  // defaults cover the whole user address space) or everything (classic mode, which ignores
  // start and length). Errors: -ESRCH when p has exited, -EOVERFLOW for an empty or wrapping
  // interval (as mmu_interval_notifier_insert), the registration's errno otherwise.
  static Result<std::unique_ptr<DeviceMirror>> attach(Process* p, Mode mode, uint64_t start = 0,
                                                      uint64_t length = kUserSpaceEnd);
  ~DeviceMirror();
  DeviceMirror(const DeviceMirror&) = delete;
  DeviceMirror& operator=(const DeviceMirror&) = delete;

  // hmm_range_fault + program the device: mirrors every page of [addr, addr+len), faulting
  // it in on the CPU side as needed (for writing when write). Returns the number of pages
  // mirrored, or -EFAULT (no VMA, no read access, outside the mirrored span, a failed fault),
  // -EPERM (write to a VMA without VM_WRITE), -EBUSY (too many collisions); classic mode
  // also -ENOMEM (its per-page lookup, mm_get_pfn, tells a fault that ran out of memory apart).
  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write);
  // Device DMA through the device page table (device_access_pfn): false at the first page
  // not mirrored (writable, for a write) or whose access was refused (reported: a frame that
  // is not user data, or with the coherence checker on a stale mapping; a refused read
  // yields zeros); earlier pages were transferred.
  bool read(uint64_t addr, uint64_t len, std::vector<uint8_t>* out);
  bool write(uint64_t addr, uint64_t len, const uint8_t* data);
  // The name the coherence checker's messages give this device (mmu_checker_name). attach
  // names it "DeviceMirror MODE pid N".
  void set_name(const std::string& name);
  // One character per page of [addr, addr+len): '-' not mirrored, 'r' read-only, 'w' writable.
  std::string show(uint64_t addr, uint64_t len);
  uint64_t pages_mirrored();
  std::vector<Event> take_events();
  Stats stats();
  Mode mode() const { return mode_; }
  // Drops the subscription (interval remove / classic unregister) and every device entry.
  // Idempotent; the destructor calls it.
  void detach();

  // The interval-mode fault loop's steps, one call each, so that a scenario can interleave
  // them with other threads one by one (SecondaryMmu::fault_begin and the rest, which
  // document them). One stepped fault at a time per device; classic mode answers -EOPNOTSUPP.
  Result<uint64_t> fault_begin(uint64_t addr, uint64_t len, bool write);
  Result<uint64_t> fault_walk();
  Result<bool> fault_retry();
  Result<uint64_t> fault_map(bool check_retry);

 private:
  struct Entry {
    uint64_t pfn;
    bool writable;
  };
  struct IntervalSub : MmuIntervalNotifier {
    DeviceMirror* owner;
  };
  struct ClassicSub : MmuNotifier {
    DeviceMirror* owner;
  };

  DeviceMirror(Mode mode, Mm* mm, uint64_t start, uint64_t last);
  static bool interval_invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq);
  static int classic_start(MmuNotifier* sub, const MmuNotifierRange* range);
  static void classic_end(MmuNotifier* sub, const MmuNotifierRange* range);
  static void classic_release(MmuNotifier* sub, Mm* mm);
  // fault() of [first, end) in each mode, with detach_lock_ held shared.
  Result<uint64_t> fault_interval(uint64_t first, uint64_t end, bool write) REQUIRES_SHARED(detach_lock_);
  Result<uint64_t> fault_classic(uint64_t first, uint64_t end, bool write) REQUIRES_SHARED(detach_lock_);
  // Removes entries of [start, end).
  void drop_locked(uint64_t start, uint64_t end) REQUIRES(lock_);
  void record_locked(const MmuNotifierRange* range, bool release) REQUIRES(lock_);
  // The subscription's address: the key of this device's track in a trace (trace.h).
  const void* trace_key() const;

  const Mode mode_;
  Mm* const mm_;  // kept alive by the subscription's mm reference
  const uint64_t start_, last_;  // the mirrored span (inclusive)
  IntervalSub interval_;
  ClassicSub classic_;
  // Held shared by fault() (which uses the subscription and the mm) and exclusively by
  // detach(), after which the mm may be gone.
  // Lock classes (src/mm/lock_order.h) are set by the constructor.
  RwSem detach_lock_;
  bool attached_ GUARDED_BY(detach_lock_) = false;

  // The "update" lock: the device page table, the event log, the classic sequence.
  DriverLock lock_{"DeviceMirror::lock_"};
  std::map<uint64_t, Entry> table_ GUARDED_BY(lock_);
  std::vector<Event> events_ GUARDED_BY(lock_);
  Stats stats_ GUARDED_BY(lock_);
  uint64_t invalidate_seq_ GUARDED_BY(lock_) = 0;          // classic: completed invalidations
  uint64_t invalidate_in_progress_ GUARDED_BY(lock_) = 0;  // classic: started, not yet ended
  bool released_ GUARDED_BY(lock_) = false;
  // The stepped fault: its range and access, the sequence fault_begin read, and the
  // translations fault_walk found (empty until then).
  struct Stepped {
    bool begun = false;
    uint64_t start = 0, end = 0;
    bool write = false;
    uint64_t seq = 0;
    std::vector<uint64_t> pfns;  // hmm_pfns of the walk
  };
  Stepped stepped_ GUARDED_BY(lock_);
};

}  // namespace mirrormm
