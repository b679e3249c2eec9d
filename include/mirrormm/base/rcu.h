// RCU from liburcu (the membarrier flavour), wrapped in small RAII guards.
//
// Readers: RcuReadGuard around every read-side critical section; any thread may use it (the
// first use registers the thread with liburcu, and the registration is dropped when the
// thread exits). Writers publish with std::atomic release stores and retire old objects with
// rcu_call() (after a grace period, on liburcu's call_rcu thread) or wait with
// rcu_synchronize(). rcu_barrier() waits for every pending rcu_call() callback.
//
// Memory ordering: liburcu's read lock is a thread-local counter update and a compiler
// barrier; the writer side's sys_membarrier makes every reader's critical section either
// visible before synchronize_rcu returns or started after it. ThreadSanitizer cannot see
// that ordering, so in TSan builds the guards add explicit happens-before edges (a reader's
// unlock releases, a grace period's end acquires).
#pragma once

#include <functional>

namespace mirrormm {

namespace rcu_internal {
void register_thread();
void read_lock();
void read_unlock();
extern thread_local bool registered;
}  // namespace rcu_internal

class RcuReadGuard {
 public:
  RcuReadGuard() {
    if (!rcu_internal::registered) rcu_internal::register_thread();
    rcu_internal::read_lock();
  }
  ~RcuReadGuard() { rcu_internal::read_unlock(); }
  RcuReadGuard(const RcuReadGuard&) = delete;
  RcuReadGuard& operator=(const RcuReadGuard&) = delete;
};

// Waits for a grace period: every read-side critical section that began before the call has
// ended when it returns. Must not be called inside a read-side critical section.
void rcu_synchronize();
// Runs fn after a grace period, on liburcu's callback thread.
void rcu_call(std::function<void()> fn);
// Waits until every callback queued by rcu_call() or rcu_free_later() so far has run.
void rcu_barrier();

// Runs fn(p) after a grace period. Cheaper than rcu_call for many small frees: requests are
// batched per thread (one call_rcu per batch); a batch is submitted when full, when the thread
// exits, and by rcu_barrier().
void rcu_free_later(void (*fn)(void*), void* p);
template <class T>
void rcu_delete_later(T* p) {
  rcu_free_later([](void* q) { delete static_cast<T*>(q); }, p);
}

}  // namespace mirrormm
