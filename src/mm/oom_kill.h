// The OOM killer and reaper (mm/oom_kill.c). See oom_kill.cc.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <thread>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"
#include "mm/mm_types.h"

namespace mirrormm {

class Process;
class System;

// __oom_reap_task_mm: unmaps mm's private memory, each VMA under a non-blockable
// invalidation; false when the mmap_lock was busy or a subscriber answered -EAGAIN (the
// caller retries later).
bool oom_reap_task_mm(Mm* mm);

// One machine's OOM killer and its reaper thread.
class OomKiller {
 public:
  explicit OomKiller(System* sys);
  ~OomKiller();
  OomKiller(const OomKiller&) = delete;
  OomKiller& operator=(const OomKiller&) = delete;

  // out_of_memory: kills the process with the largest memory (or waits for the victim
  // already being reaped). Returns whether memory is on its way back (retry the allocation).
  // Callable from the allocator's slow path.
  bool out_of_memory() EXCLUDES(lock_);
  void stop() EXCLUDES(lock_);
  // Quiescent points: the reaper finishes the victim it is on and waits for resume.
  void pause() EXCLUDES(lock_);
  void resume() EXCLUDES(lock_);
  // -EAGAIN answers the reaper met (each one a retry).
  uint64_t reap_retries() const { return reap_retries_.load(std::memory_order_relaxed); }

 private:
  void reaper() EXCLUDES(lock_);
  // oom_badness over the live processes that are not killed yet: the largest, or nullptr.
  Process* select_bad_process();
  void reap_and_exit(Process* victim);

  System* const sys_;
  std::atomic<uint64_t> reap_retries_{0};
  Mutex lock_{lock_class::kOomReaper};
  std::condition_variable_any wq_;
  bool kill_requested_ GUARDED_BY(lock_) = false;  // out_of_memory asked for a victim
  bool reaping_ GUARDED_BY(lock_) = false;
  int paused_ GUARDED_BY(lock_) = 0;
  bool stopping_ GUARDED_BY(lock_) = false;
  std::thread reaper_;  // started under lock_ by the first kill; joined by stop()
};

}  // namespace mirrormm
