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
//
// The read side is liburcu's memb protocol, inlined here so that a guard costs a few
// instructions and no call: each registered thread has a reader counter (its urcu_reader's
// ctr) whose low half counts nesting. The outermost lock copies the global grace-period
// counter into it (which also sets the nesting count to 1), inner ones increment it and
// unlocks decrement it; the outermost unlock then wakes a writer that sleeps waiting for
// readers (gp futex -1). Without sys_membarrier (old kernels) each outermost transition is
// fenced, as liburcu's urcu_memb_smp_mb_slave does. rcu.cc binds the library's variables and
// checks the constants against liburcu's header.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>

#include "mirrormm/base/explore_hook.h"
#include "mirrormm/base/tsan.h"

namespace mirrormm {

namespace rcu_internal {
// The calling thread's reader counter, or null until its first use registers the thread
// with liburcu (and again after the thread's registration was dropped at its exit).
inline thread_local unsigned long* tls_reader_ctr = nullptr;
// liburcu's global state the read side consults (urcu_memb_gp.ctr, urcu_memb_gp.futex,
// urcu_memb_has_sys_membarrier); the pointers are constants set up at load time.
extern const unsigned long* const gp_ctr;
extern const int32_t* const gp_futex;
extern const int* const has_sys_membarrier;
// URCU_GP_CTR_NEST_MASK: the nesting half of a reader counter.
inline constexpr unsigned long kNestMask = (1ul << (sizeof(unsigned long) * 4)) - 1;
// The token through which reader critical sections happen-before grace periods' ends (TSan).
extern char grace_token;

// Registers the calling thread and returns its reader counter.
unsigned long* register_thread();
// Wakes the writer that waits for this reader (urcu_common_wake_up_gp).
void wake_up_gp();

// The ordering an outermost transition needs on the reader's side: none beyond the compiler's
// when the writer uses sys_membarrier, a full fence otherwise.
inline void smp_mb_slave() {
  if (__builtin_expect(*has_sys_membarrier != 0, 1)) std::atomic_signal_fence(std::memory_order_seq_cst);
  else std::atomic_thread_fence(std::memory_order_seq_cst);
}

inline void read_lock() {
  if (explore_hook::exploring()) [[unlikely]]
    explore_hook::rcu_read_lock(explore_hook::RcuDomain::kRcu);
  unsigned long* ctr = tls_reader_ctr;
  if (__builtin_expect(ctr == nullptr, 0)) ctr = register_thread();
  std::atomic_signal_fence(std::memory_order_seq_cst);
  const unsigned long c = __atomic_load_n(ctr, __ATOMIC_RELAXED);
  if (c & kNestMask) {
    __atomic_store_n(ctr, c + 1, __ATOMIC_RELAXED);
    return;
  }
  __atomic_store_n(ctr, __atomic_load_n(gp_ctr, __ATOMIC_RELAXED), __ATOMIC_RELAXED);
  smp_mb_slave();
}

inline void read_unlock() {
  MM_TSAN_RELEASE(&grace_token);
  unsigned long* ctr = tls_reader_ctr;
  const unsigned long c = __atomic_load_n(ctr, __ATOMIC_RELAXED);
  if ((c & kNestMask) != 1) {
    __atomic_store_n(ctr, c - 1, __ATOMIC_RELAXED);
  } else {
    smp_mb_slave();
    __atomic_store_n(ctr, c - 1, __ATOMIC_RELAXED);
    smp_mb_slave();
    if (__builtin_expect(__atomic_load_n(gp_futex, __ATOMIC_RELAXED) == -1, 0)) wake_up_gp();
  }
  std::atomic_signal_fence(std::memory_order_seq_cst);
  if (explore_hook::exploring()) [[unlikely]]
    explore_hook::rcu_read_unlock(explore_hook::RcuDomain::kRcu);
}
}  // namespace rcu_internal

class RcuReadGuard {
 public:
  RcuReadGuard() { rcu_internal::read_lock(); }
  ~RcuReadGuard() { rcu_internal::read_unlock(); }
  RcuReadGuard(const RcuReadGuard&) = delete;
  RcuReadGuard& operator=(const RcuReadGuard&) = delete;
};

// Under the interleaving explorer (base/explore_hook.h) a scenario thread's grace period waits,
// by yielding, for the other scenario threads' read-side sections, and its callbacks run
// deterministically at the end of the run (or at its rcu_barrier).
//
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
