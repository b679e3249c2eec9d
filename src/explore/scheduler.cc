// The baton scheduler (scheduler.h) and the slow paths of the scheduling hooks
// (mirrormm/base/explore_hook.h).
#include "explore/scheduler.h"

#include <fmt/format.h>

#include <algorithm>
#include <bitset>
#include <thread>

#include "mm/lock_order.h"

namespace mirrormm {

namespace explore {

struct Scheduler::Thread {
  enum class State { kRunnable, kBlocked, kFinished };
  int id = 0;
  Scheduler* sched = nullptr;
  std::binary_semaphore baton{0};
  State state = State::kRunnable;
  const void* blocked_on = nullptr;  // the lock, or &kProgress; meaningful while kBlocked
  int rcu_depth[2] = {0, 0};         // read-side nesting per explore_hook::RcuDomain
  // Whether another thread made progress since this one last came back from a wait: a wait
  // loop checked its condition after that, so the change it waits for may already have
  // come (between its check and its wait), and blocking would miss it.
  bool others_progressed = false;
  const std::function<void()>* fn = nullptr;
};

namespace {
// The calling thread's scheduler thread: set for a scenario thread's whole life, null for
// every other thread.
thread_local Scheduler::Thread* tls_thread = nullptr;
// What a thread blocked "until another thread makes progress" is blocked on.
const char kProgress = 0;

// Parks a thread of a run that was stopped (deadlock, livelock, divergence) for good: nobody
// releases its baton again.
[[noreturn]] void park_forever(Scheduler::Thread* t) {
  for (;;) t->baton.acquire();
}
}  // namespace

Scheduler::Scheduler(std::vector<int> prefix, uint64_t max_steps, bool trace)
    : prefix_(std::move(prefix)), max_steps_(max_steps), tracing_(trace) {}

Scheduler::~Scheduler() = default;

std::vector<int> Scheduler::choices() const {
  std::vector<int> c;
  c.reserve(decisions_.size());
  for (const Decision& d : decisions_) c.push_back(d.order[d.chosen_index]);
  return c;
}

bool Scheduler::run(const std::vector<std::function<void()>>& fns) {
  std::vector<std::thread> os;
  for (size_t i = 0; i < fns.size(); i++) {
    auto t = std::make_unique<Thread>();
    t->id = static_cast<int>(i);
    t->sched = this;
    t->fn = &fns[i];
    threads_.push_back(std::move(t));
  }
  unfinished_ = static_cast<int>(fns.size());
  for (auto& t : threads_) {
    Thread* th = t.get();
    os.emplace_back([th] {
      tls_thread = th;
      th->baton.acquire();
      (*th->fn)();
      th->sched->finish(th);
      tls_thread = nullptr;
    });
  }
  if (unfinished_ == 0) done_.release();
  else schedule(nullptr, "start");
  done_.acquire();
  if (stopped_) {
    // The stopped run's threads stay parked inside the model: they cannot be joined.
    for (std::thread& o : os) o.detach();
    return false;
  }
  for (std::thread& o : os) o.join();
  return true;
}

void Scheduler::fail(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
  stopped_ = true;
  done_.release();
}

void Scheduler::schedule(Thread* t, const char* kind) {
  const size_t step = decisions_.size();
  Decision d;
  d.prev = t ? t->id : -1;
  d.prev_runnable = t && t->state == Thread::State::kRunnable;
  d.preemptions_before = preemptions_;
  if (d.prev_runnable) d.order.push_back(t->id);
  for (const auto& u : threads_)
    if (u->state == Thread::State::kRunnable && u.get() != t) d.order.push_back(u->id);
  if (d.order.empty()) {
    if (unfinished_ == 0) {
      done_.release();
      return;
    }
    std::string who;
    for (const auto& u : threads_)
      if (u->state == Thread::State::kBlocked)
        who += fmt::format("{}thread {} {}", who.empty() ? "" : ", ", u->id,
                           u->blocked_on == &kProgress ? "waiting for another thread" : "blocked on a lock");
    fail(fmt::format("deadlock after {} points: {}", step, who));
    park_forever(t);
  }
  if (step >= max_steps_) {
    fail(fmt::format("livelock: no end after {} scheduling points", step));
    park_forever(t);
  }
  if (step < prefix_.size()) {
    auto it = std::find(d.order.begin(), d.order.end(), prefix_[step]);
    if (it == d.order.end()) {
      diverged_ = true;
      fail(fmt::format("the schedule diverged at point {}: thread {} is not runnable there", step, prefix_[step]));
      if (t) park_forever(t);
      return;
    }
    d.chosen_index = static_cast<int>(it - d.order.begin());
  }
  const int c = d.order[d.chosen_index];
  if (d.prev_runnable && c != t->id) preemptions_++;
  if (tracing_) trace_.push_back(Step{d.prev, kind, c});
  decisions_.push_back(std::move(d));
  if (t && c == t->id) return;
  // Read before the hand-off: from then on the chosen thread owns the scheduler's state.
  const bool wait = t && t->state != Thread::State::kFinished;
  threads_[c]->baton.release();
  if (wait) {
    t->baton.acquire();
    if (stopped_) park_forever(t);
  }
}

void Scheduler::progress(Thread* t) {
  for (const auto& u : threads_) {
    if (u.get() == t) continue;
    u->others_progressed = true;
    if (u->state == Thread::State::kBlocked && u->blocked_on == &kProgress) u->state = Thread::State::kRunnable;
  }
}

void Scheduler::finish(Thread* t) {
  t->state = Thread::State::kFinished;
  unfinished_--;
  progress(t);
  schedule(t, "exit");
}

bool Scheduler::quiet(uint8_t rank) {
  // The allocators' caches (their state outlives a run, so whether a run refills one differs
  // between runs of one schedule), the checkers' and the registries' bookkeeping: leaf locks
  // under which no scheduling point lies, so that no switch can meet one held.
  static const std::bitset<256> q = [] {
    std::bitset<256> b;
    using namespace lock_class;
    for (LockClass c : {kPcp, kFreeList, kSlabCpu, kSlabNode, kSlabReport, kGatherRegistry, kCheckerRanges,
                        kCheckerMmShard, kCheckerFrameShard, kCheckerNames, kCheckerLastReport, kViolations,
                        kDriverLockGraph, kSecondaryMmuKinds, kTraceThreads, kTraceBuffer})
      b.set(static_cast<uint8_t>(c));
    return b;
  }();
  return q.test(rank);
}

void Scheduler::point(Thread* t, explore_hook::Point p) {
  progress(t);
  schedule(t, explore_hook::point_name(p));
}

void Scheduler::acquire(Thread* t, const void* lock, bool (*try_lock)(void*), void* arg) {
  point(t, explore_hook::Point::kLock);
  while (!try_lock(arg)) {
    t->state = Thread::State::kBlocked;
    t->blocked_on = lock;
    schedule(t, "blocked");
  }
}

void Scheduler::released(Thread* t, const void* lock) {
  for (const auto& u : threads_)
    if (u->state == Thread::State::kBlocked && u->blocked_on == lock) u->state = Thread::State::kRunnable;
  progress(t);
}

// A wait loop's turn: "until another thread makes progress" counts from the loop's last
// look at its condition, which came after its previous wait. If another thread progressed
// since then (say it ran while this one was switched out between its check and this call),
// the loop looks again at once; otherwise the thread blocks until one does.
void Scheduler::wait_for_progress(Thread* t) {
  if (t->others_progressed) {
    t->others_progressed = false;
    return;
  }
  t->state = Thread::State::kBlocked;
  t->blocked_on = &kProgress;
  schedule(t, "wait");
  t->others_progressed = false;
}

void Scheduler::yield_for_retry(Thread* t) {
  for (const auto& u : threads_)
    if (u.get() != t && u->state == Thread::State::kRunnable) return wait_for_progress(t);
  point(t, explore_hook::Point::kDriver);
}

void Scheduler::rcu_read_lock(Thread* t, explore_hook::RcuDomain d) { t->rcu_depth[static_cast<int>(d)]++; }

void Scheduler::rcu_read_unlock(Thread* t, explore_hook::RcuDomain d) {
  if (--t->rcu_depth[static_cast<int>(d)] == 0) progress(t);
}

void Scheduler::rcu_synchronize(Thread* t, explore_hook::RcuDomain d) {
  point(t, explore_hook::Point::kRcu);
  auto reader_left = [&] {
    for (const auto& u : threads_)
      if (u.get() != t && u->state != Thread::State::kFinished && u->rcu_depth[static_cast<int>(d)] > 0) return true;
    return false;
  };
  while (reader_left()) wait_for_progress(t);
}

void Scheduler::run_deferred() {
  while (!deferred_.empty()) {
    auto batch = std::move(deferred_);
    deferred_.clear();
    for (auto& [fn, arg] : batch) fn(arg);
  }
}

}  // namespace explore

namespace explore_hook {

using explore::tls_thread;

#if !defined(MIRRORMM_NO_EXPLORE_HOOKS)
std::atomic<bool> active{false};
#endif

const char* point_name(Point p) {
  switch (p) {
    case Point::kLock: return "lock";
    case Point::kTryLock: return "trylock";
    case Point::kNotifier: return "notifier";
    case Point::kCallback: return "callback";
    case Point::kRaceWindow: return "race-window";
    case Point::kRcu: return "rcu";
    case Point::kDriver: return "driver";
    case Point::kUser: return "user";
    case Point::kCount: break;
  }
  return "?";
}

bool scenario_thread() { return tls_thread != nullptr; }

void point(Point p, const void*) {
  if (auto* t = tls_thread) t->sched->point(t, p);
}

void acquire(const void* lock, uint8_t rank, bool (*try_lock)(void*), void* arg) {
  auto* t = tls_thread;
  if (t && !explore::Scheduler::quiet(rank)) return t->sched->acquire(t, lock, try_lock, arg);
  while (!try_lock(arg)) std::this_thread::yield();
}

void trylock_point(const void* lock, uint8_t rank) {
  if (!explore::Scheduler::quiet(rank)) point(Point::kTryLock, lock);
}

void released(const void* lock, uint8_t rank) {
  auto* t = tls_thread;
  if (t && !explore::Scheduler::quiet(rank)) t->sched->released(t, lock);
}

bool wait_for_progress() {
  auto* t = tls_thread;
  if (!t) return false;
  t->sched->wait_for_progress(t);
  return true;
}

void yield_for_retry() {
  if (auto* t = tls_thread) t->sched->yield_for_retry(t);
}

void rcu_read_lock(RcuDomain d) {
  if (auto* t = tls_thread) t->sched->rcu_read_lock(t, d);
}

void rcu_read_unlock(RcuDomain d) {
  if (auto* t = tls_thread) t->sched->rcu_read_unlock(t, d);
}

bool rcu_synchronize(RcuDomain d) {
  auto* t = tls_thread;
  if (!t) return false;
  t->sched->rcu_synchronize(t, d);
  return true;
}

bool rcu_defer(void (*fn)(void*), void* arg) {
  auto* t = tls_thread;
  if (!t) return false;
  t->sched->rcu_defer(fn, arg);
  return true;
}

bool rcu_barrier(RcuDomain d) {
  auto* t = tls_thread;
  if (!t) return false;
  t->sched->rcu_synchronize(t, d);
  t->sched->run_deferred();
  return true;
}

}  // namespace explore_hook

}  // namespace mirrormm
