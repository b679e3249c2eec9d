// The flusher (fs/fs-writeback.c's per-device writeback thread, with mm/page-writeback.c's
// background threshold): a thread of the machine that writes regular files back to the model
// disk on its own, so that dirty pages do not stay dirty forever and reclaim finds clean
// pages to drop.
//
// It starts with the first page dirtied through a mapping (balance_dirty_pages_ratelimited),
// as kswapd starts with its first wakeup, and then wakes every dirty_writeback interval, or
// earlier when woken (by reclaim meeting dirty file pages, or every kDirtyRatelimit pages
// dirtied). Each pass scans the named regular files: a file seen dirty is remembered with
// the time it was first seen so (the inode's dirtied_when), and written back whole once it
// has been dirty for the expire interval; when the dirty pages of all files pass the
// background ratio of memory, every dirty file is written back at once.
//
// Locking: lock_ (kFlusher, a leaf) guards the thread's state and wakeups only; a pass runs
// without it, holding inode references.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <thread>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"

namespace mirrormm {

class ShmemInode;
class System;

class Flusher {
 public:
  explicit Flusher(System* sys);
  ~Flusher();
  Flusher(const Flusher&) = delete;
  Flusher& operator=(const Flusher&) = delete;

  // Pages dirtied through mappings between two wakeups of the flusher.
  static constexpr uint64_t kDirtyRatelimit = 32;

  // A page was dirtied: starts the thread on first use; wakes it every kDirtyRatelimit.
  void note_dirtied() EXCLUDES(lock_);
  // wakeup_flusher_threads: a pass now (starting the thread if needed).
  void wakeup() EXCLUDES(lock_);
  // Checkers' quiescent points: the current pass finishes and no other starts until resumed.
  void pause() EXCLUDES(lock_);
  void resume() EXCLUDES(lock_);
  void stop() EXCLUDES(lock_);
  uint64_t passes() const { return passes_.load(std::memory_order_relaxed); }
  uint64_t pages_written() const { return written_.load(std::memory_order_relaxed); }

  // One pass (wb_do_writeback): writes back the expired files, or every file above the
  // background threshold. Called by the thread; public for tests that want a pass now.
  uint64_t writeback_pass();

 private:
  void start_locked() REQUIRES(lock_);
  void run() EXCLUDES(lock_);

  using Clock = std::chrono::steady_clock;
  System* const sys_;
  std::atomic<uint64_t> dirtied_{0};
  std::atomic<bool> woken_{false};
  std::atomic<uint64_t> passes_{0};
  std::atomic<uint64_t> written_{0};
  Mutex lock_{lock_class::kFlusher};
  std::condition_variable_any wq_;
  bool stopping_ GUARDED_BY(lock_) = false;
  bool running_ GUARDED_BY(lock_) = false;
  int paused_ GUARDED_BY(lock_) = 0;
  std::thread thread_;  // started under lock_ by the first wakeup; joined by stop()
  // The dirty files seen so far, each holding an inode reference, with the time they were
  // first seen dirty. Used by passes only, which run one at a time (pass_lock_).
  Mutex pass_lock_{lock_class::kFlusherPass};
  std::map<ShmemInode*, Clock::time_point> dirtied_when_ GUARDED_BY(pass_lock_);
};

}  // namespace mirrormm
