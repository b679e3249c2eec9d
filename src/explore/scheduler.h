// The baton scheduler under the interleaving explorer (mirrormm/explore.h): one run of one
// schedule. Private to src/explore/.
//
// Each scenario thread is an OS thread with a semaphore of its own; a thread runs only while
// it holds the baton, and hands it on by releasing the chosen thread's semaphore and waiting
// on its own. All scheduler state is therefore touched by one thread at a time (the baton
// holder, or the controller before the first hand-off and after the last): the semaphores'
// release/acquire pairs order every access, and no lock guards it.
//
// States of a thread: kRunnable (may be chosen), kBlocked (on a lock until its release, or on
// kProgress until another thread makes progress), kFinished.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <semaphore>
#include <string>
#include <vector>

#include "mirrormm/base/explore_hook.h"
#include "mirrormm/explore.h"

namespace mirrormm::explore {

class Scheduler {
 public:
  // prefix: the choices to follow first (then the default policy); bound: the preemption
  // bound, only recorded for the explorer's backtracking; trace: record every step.
  Scheduler(std::vector<int> prefix, uint64_t max_steps, bool trace);
  ~Scheduler();

  // Runs fns as scenario threads to completion (or deadlock, livelock, divergence). Returns
  // false when the run could not finish (its threads are then left parked for good: the
  // caller must leak what they reference).
  bool run(const std::vector<std::function<void()>>& fns);

  // One decision: where it was, who was runnable, who was chosen.
  struct Decision {
    std::vector<int> order;  // the runnable threads, the default choice first
    int chosen_index = 0;    // into order
    int prev = -1;           // the thread that reached the point (-1: run start)
    bool prev_runnable = false;
    int preemptions_before = 0;
  };
  const std::vector<Decision>& decisions() const { return decisions_; }
  const std::vector<Step>& trace() const { return trace_; }
  std::vector<int> choices() const;
  int preemptions() const { return preemptions_; }
  const std::string& failure() const { return failure_; }
  bool diverged() const { return diverged_; }

  // The hooks' entry points (scheduler.cc binds them to the calling thread's scheduler).
  struct Thread;
  void point(Thread* t, explore_hook::Point p);
  void acquire(Thread* t, const void* lock, bool (*try_lock)(void*), void* arg);
  // Whether locks of this class are no scheduling points (explore_hook::acquire).
  static bool quiet(uint8_t rank);
  void released(Thread* t, const void* lock);
  void wait_for_progress(Thread* t);
  void yield_for_retry(Thread* t);
  void rcu_read_lock(Thread* t, explore_hook::RcuDomain d);
  void rcu_read_unlock(Thread* t, explore_hook::RcuDomain d);
  void rcu_synchronize(Thread* t, explore_hook::RcuDomain d);
  void rcu_defer(void (*fn)(void*), void* arg) { deferred_.emplace_back(fn, arg); }
  void run_deferred();

 private:
  // Chooses the next thread at a point reached by t (null at the start) and hands it the
  // baton; returns when t holds it again.
  void schedule(Thread* t, const char* kind);
  void finish(Thread* t);
  void progress(Thread* t);
  void fail(std::string why);

  std::vector<std::unique_ptr<Thread>> threads_;
  std::vector<int> prefix_;
  uint64_t max_steps_;
  bool tracing_;
  std::vector<Decision> decisions_;
  std::vector<Step> trace_;
  int preemptions_ = 0;
  int unfinished_ = 0;
  bool stopped_ = false;  // deadlock, livelock or divergence: nobody runs on
  bool diverged_ = false;
  std::string failure_;
  std::vector<std::pair<void (*)(void*), void*>> deferred_;
  std::binary_semaphore done_{0};
};

}  // namespace mirrormm::explore
