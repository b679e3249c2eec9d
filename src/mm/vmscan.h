// Page reclaim (mm/vmscan.c and include/linux/swap.h's reclaim declarations): the scanner,
// try_to_unmap, and kswapd. See vmscan.cc for the policy and its locking.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <thread>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"
#include "mm/oom_kill.h"
#include "mm/pgtable.h"
#include "mm/physmem.h"

namespace mirrormm {

class Process;
class System;

inline constexpr uint64_t kSwapClusterMax = 32;  // SWAP_CLUSTER_MAX: pages per reclaim batch

// struct scan_control: one reclaim run.
struct ScanControl {
  enum class Who { kKswapd, kDirect, kProactive };
  Who who = Who::kDirect;
  uint64_t nr_to_reclaim = kSwapClusterMax;
  uint64_t nr_reclaimed = 0;
  int priority = 0;
  bool may_swap = true;            // anonymous and shmem pages may go to swap
  bool ignore_references = false;  // madvise(MADV_PAGEOUT): reclaim even recently used pages
};

// set_current_oom_origin / clear_current_oom_origin: while one is in scope, the calling
// thread's allocations reclaim but never invoke the OOM killer; when reclaim cannot help they
// fail (Linux makes the swapoff task the first OOM victim, so its allocation is the one that
// fails and swapoff answers -ENOMEM).
class ScopedOomOrigin {
 public:
  ScopedOomOrigin();
  ~ScopedOomOrigin();
  ScopedOomOrigin(const ScopedOomOrigin&) = delete;
  ScopedOomOrigin& operator=(const ScopedOomOrigin&) = delete;

 private:
  bool was_;
};
bool current_is_oom_origin();

// The process the calling thread is running (System::access sets it for the duration of an
// access), or nullptr: an allocation of a process the OOM killer has just killed fails
// instead of waiting for memory (the killed task's fault never returns to user space).
// Inline: System::access sets it around every access, faults included.
inline thread_local Process* tls_current = nullptr;
class ScopedCurrent {
 public:
  explicit ScopedCurrent(Process* p) : was_(tls_current) { tls_current = p; }
  ~ScopedCurrent() { tls_current = was_; }
  ScopedCurrent(const ScopedCurrent&) = delete;
  ScopedCurrent& operator=(const ScopedCurrent&) = delete;

 private:
  Process* was_;
};
inline Process* current_process() { return tls_current; }

// Whether some swap device that is on (not being switched off) has a free slot: anonymous
// and dirty shmem pages can be reclaimed.
bool swap_has_room(System* sys);
// Whether the device of a swap entry is on and takes writes (not being switched off).
bool swap_entry_writable(System* sys, pteval_t entry);

// try_to_unmap: removes every mapping of a locked page through the reverse map (each one
// bracketed by invalidate_range_start/end, MMU_NOTIFY_CLEAR). An anonymous page must be in
// the swap cache. Returns whether the page is no longer mapped.
// lent: see try_to_unmap_one (a re-injected bug's reclaim only).
bool try_to_unmap(System* sys, Page* page, unsigned flags, bool* lent = nullptr);

// shrink_folio_list: tries to free each page of `folios` (isolated from the LRU by the
// caller, each with the isolation reference). Freed pages are gone; the others are appended
// to *keep, still isolated, for the caller to put back. Returns the number freed.
uint64_t shrink_folio_list(System* sys, std::vector<Page*>& folios, ScanControl& sc, std::vector<Page*>* keep);

// do_try_to_free_pages: scans the LRU lists at decreasing priorities until sc.nr_to_reclaim
// pages were freed or every list was scanned whole. Returns the pages freed.
uint64_t do_try_to_free_pages(System* sys, ScanControl& sc);
// Direct reclaim for an allocation that found no frame (ALLOCSTALL).
uint64_t try_to_free_pages(System* sys, uint64_t nr_pages);
// reclaim_pages (MADV_PAGEOUT): frees the isolated pages regardless of their references;
// puts back what stays. Returns the pages freed.
uint64_t reclaim_pages(System* sys, std::vector<Page*>& isolated);

// kswapd: the machine's background reclaimer. Woken by the allocator when the free frames
// fall below the low watermark; reclaims until they are above the high one. The thread starts
// on the first wakeup and stops with the System.
//
// Locking: lock_ guards the thread's state; it is a leaf taken by the allocator (wakeup, with
// fault-path locks held: it only sets a flag and notifies) and never held across reclaim.
class Kswapd {
 public:
  explicit Kswapd(System* sys);
  ~Kswapd();
  Kswapd(const Kswapd&) = delete;
  Kswapd& operator=(const Kswapd&) = delete;

  // wakeup_kswapd: callable from any context (one atomic exchange when already woken).
  void wakeup() EXCLUDES(lock_);
  // Stops kswapd at its next batch and waits until it is idle; resume lets it run again.
  // Nested pairs are allowed (quiescent points of the checkers).
  void pause() EXCLUDES(lock_);
  void resume() EXCLUDES(lock_);
  // Waits for the reclaim pass kswapd is running, if any, to end; says whether there was one.
  bool wait_pass() EXCLUDES(lock_);
  void stop() EXCLUDES(lock_);
  uint64_t runs() const { return runs_.load(std::memory_order_relaxed); }
  // kswapd_failures: after kMaxReclaimRetries passes that freed nothing in a row, wakeups
  // are ignored (nothing kswapd can do) until a reclaim elsewhere succeeds again.
  void reset_failures() { failures_.store(0, std::memory_order_relaxed); }

 private:
  void run() EXCLUDES(lock_);

  System* const sys_;
  std::atomic<bool> woken_{false};
  std::atomic<uint64_t> runs_{0};
  std::atomic<int> failures_{0};
  static constexpr int kMaxReclaimRetries = 16;  // MAX_RECLAIM_RETRIES
  Mutex lock_{lock_class::kKswapd};
  std::condition_variable_any wq_;
  bool stopping_ GUARDED_BY(lock_) = false;
  bool running_ GUARDED_BY(lock_) = false;
  int paused_ GUARDED_BY(lock_) = 0;
  std::thread thread_;  // started under lock_ by the first wakeup; joined by stop()
};

// One machine's reclaim: kswapd, the OOM killer, and the allocator's slow path that uses them
// (PhysMem::Pressure). Owned by the System, which stops it first when it goes.
class MachineReclaim final : public PhysMem::Pressure {
 public:
  explicit MachineReclaim(System* sys);
  ~MachineReclaim();
  MachineReclaim(const MachineReclaim&) = delete;
  MachineReclaim& operator=(const MachineReclaim&) = delete;

  void wakeup_kswapd() override;
  // __alloc_pages_slowpath: direct reclaim; without progress the OOM killer, then waiting
  // (a millisecond a try) while its victim's memory comes back. Bounded: gives up after
  // kMaxProgressRetries tries that made progress or kMaxOomWaits waits for a victim.
  bool alloc_slowpath(int attempt) override;

  Kswapd& kswapd() { return kswapd_; }
  OomKiller& oom() { return oom_; }
  // Quiescent points: kswapd and the OOM reaper finish their step and wait for resume.
  void pause();
  void resume();
  // The System's teardown: both threads stop and the pool forgets this object.
  void stop();

 private:
  static constexpr int kMaxProgressRetries = 1000;
  static constexpr int kMaxOomWaits = 5000;
  System* const sys_;
  Kswapd kswapd_;
  OomKiller oom_;
};

}  // namespace mirrormm
