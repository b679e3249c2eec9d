// The scheduling points of the interleaving explorer (mirrormm/explore.h), as the model's
// synchronization primitives see them.
//
// While an exploration runs, the scenario's threads are real OS threads of which exactly one
// runs at a time: it holds the baton. Every synchronization point of the model (lock acquires
// and releases, the notifier protocols' steps, callback entries and exits, the race-widening
// points, wait loops, RCU read sides and grace periods) calls a hook here, and the hook hands
// the baton to the thread the schedule chooses. Outside an exploration the hooks cost one
// relaxed load of a global flag and a not-taken branch; a build with
// -DMIRRORMM_EXPLORE_HOOKS=OFF compiles them out entirely (the baseline of
// bench/explore_bench.cc).
//
// A thread that cannot proceed under exploration (a lock another scenario thread holds, a
// condition another thread must make true) never blocks its OS thread: it marks itself blocked
// (on the lock, or until another thread makes progress) and passes the baton on. Threads that
// are not scenario threads (the main thread during setup, library threads) see the hooks as
// no-ops and block as usual.
#pragma once

#include <atomic>
#include <cstdint>
#include <thread>

#include "mirrormm/base/thread_annotations.h"

namespace mirrormm::explore_hook {

// What a scheduling point is, for the explorer's trace.
enum class Point : uint8_t {
  kLock,          // before a blocking acquire
  kTryLock,       // before a trylock
  kNotifier,      // a step of the notifier protocols (invalidate_seq, deferred list)
  kCallback,      // a notifier callback's entry or exit, a secondary MMU's invalidate
  kRaceWindow,    // a race-widening point (System::debug_race_pause)
  kRcu,           // synchronize_rcu, call_rcu
  kDriver,        // a driver step (read_begin, fault, read_retry, map)
  kUser,          // a point a scenario asks for (explore::point)
  kCount
};
const char* point_name(Point p);

#if defined(MIRRORMM_NO_EXPLORE_HOOKS)
inline constexpr bool exploring() { return false; }
#else
// Set while an exploration runs (by the explorer, between runs' setups and checks).
extern std::atomic<bool> active;
inline bool exploring() { return active.load(std::memory_order_relaxed); }
#endif

// The slow paths, called only when exploring() is true. Each does nothing for a thread that is
// not a scenario thread.

// A scheduling point: the schedule may switch to another thread here (a preemption).
[[gnu::cold]] void point(Point p, const void* obj);
// A blocking acquire of `lock` of lock class `rank` (LockClass's value, 0 for none):
// try_lock(arg) is called with the baton held until it succeeds; between failures the thread
// is blocked on `lock` until released(lock). A thread that is not a scenario thread spins on
// try_lock (yielding its CPU). The allocators' and the checkers' own leaf locks (their
// classes are listed in src/explore/scheduler.cc) are no scheduling points: no switch can
// happen while one is held, and whether a run takes them depends on caches that outlive it.
[[gnu::cold]] void acquire(const void* lock, uint8_t rank, bool (*try_lock)(void*), void* arg);
// A trylock's scheduling point (none for the quiet classes above).
[[gnu::cold]] void trylock_point(const void* lock, uint8_t rank);
// `lock` (of class `rank`) was released: threads blocked on it may run again.
[[gnu::cold]] void released(const void* lock, uint8_t rank);
// A wait loop's turn: blocked until another scenario thread makes progress (the loop then
// checks its condition again). Returns false for a thread that is not a scenario thread,
// which then waits as it would without the explorer.
[[gnu::cold]] bool wait_for_progress();
// Whether the calling thread is a scenario thread of the running exploration.
bool scenario_thread();

// The two grace-period domains: the VM's RCU (base/rcu.h) and the notifiers' SRCU
// (base/srcu.h).
enum class RcuDomain : uint8_t { kRcu, kSrcu };
// The read side of a scenario thread (its depth counted per domain).
[[gnu::cold]] void rcu_read_lock(RcuDomain d);
[[gnu::cold]] void rcu_read_unlock(RcuDomain d);
// synchronize_rcu under exploration: waits, by yielding, until no other scenario thread is
// inside a read-side section of the domain that began before it. Returns false for a thread
// that is not a scenario thread (which then waits for a real grace period).
[[gnu::cold]] bool rcu_synchronize(RcuDomain d);
// call_rcu under exploration: queues fn to run deterministically when the run's threads have
// finished (or at an explored barrier). Returns false, having queued nothing, for a thread
// that is not a scenario thread.
[[gnu::cold]] bool rcu_defer(void (*fn)(void*), void* arg);
// rcu_barrier under exploration: a grace period, then every deferred callback runs here.
[[gnu::cold]] bool rcu_barrier(RcuDomain d);

// The pause of a wait loop (a page lock, a refcount draining): under exploration the thread is
// blocked until another scenario thread makes progress; otherwise the CPU is yielded.
inline void wait_yield() {
  if (exploring()) [[unlikely]]
    if (wait_for_progress()) return;
  std::this_thread::yield();
}

// A retry loop's turn (a device fault that met an invalidation and tries again): under
// exploration the thread gives way until another scenario thread makes progress, so that the
// retry sees something new; when no other thread can run, it retries at once (what it met may
// already be over). Nothing outside an exploration.
[[gnu::cold]] void yield_for_retry();
inline void retry_wait() {
  if (exploring()) [[unlikely]]
    yield_for_retry();
}

// A condition wait (cv.wait(l) inside a loop that checks its condition): under exploration the
// lock is dropped, the thread blocked until another scenario thread makes progress, and the
// lock taken again, so that no scenario thread ever sleeps on the OS.
template <class Cv, class L>
void cond_wait(Cv& cv, L& l) REQUIRES(l) {
  if (exploring() && scenario_thread()) [[unlikely]] {
    l.unlock();
    wait_for_progress();
    l.lock();
    return;
  }
  cv.wait(l);
}

}  // namespace mirrormm::explore_hook

// A trylock's scheduling point.
#if defined(MIRRORMM_NO_EXPLORE_HOOKS)
#define MM_EXPLORE_TRYLOCK(obj, rank) ((void)0)
#else
#define MM_EXPLORE_TRYLOCK(obj, rank)                                                    \
  do {                                                                                   \
    if (::mirrormm::explore_hook::exploring()) [[unlikely]]                              \
      ::mirrormm::explore_hook::trylock_point((obj), (rank));                            \
  } while (0)
#endif

// A scheduling point of kind `p` (an explore_hook::Point enumerator name) at `obj`.
#if defined(MIRRORMM_NO_EXPLORE_HOOKS)
#define MM_EXPLORE_POINT(p, obj) ((void)0)
#else
#define MM_EXPLORE_POINT(p, obj)                                                         \
  do {                                                                                   \
    if (::mirrormm::explore_hook::exploring()) [[unlikely]]                              \
      ::mirrormm::explore_hook::point(::mirrormm::explore_hook::Point::p, (obj));       \
  } while (0)
#endif
