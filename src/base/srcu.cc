// liburcu-bp glue for the notifier SRCU domain (see mirrormm/base/srcu.h).
//
// Without _LGPL_SOURCE: the read side calls into liburcu-bp instead of inlining it here. The
// inline fast path reads the library's thread-local reader record through a pointer that
// UBSan's alignment check rejects (liburcu-bp's TLS layout), and the notifier read side is
// not the hot path the VM's RCU read side is.
#include <urcu/urcu-bp.h>

#include "mirrormm/base/srcu.h"

#include <utility>

#include "base/rcu_callback.h"
#include "mirrormm/base/explore_hook.h"
#include "mirrormm/base/tsan.h"

namespace mirrormm {

namespace srcu_internal {
namespace {
// Reader sections happen-before the end of the grace periods that wait for them; TSan cannot
// see liburcu's own ordering.
char grace_token;
}  // namespace

void read_lock() {
  if (explore_hook::exploring()) [[unlikely]]
    explore_hook::rcu_read_lock(explore_hook::RcuDomain::kSrcu);
  urcu_bp_read_lock();
}

void read_unlock() {
  MM_TSAN_RELEASE(&grace_token);
  urcu_bp_read_unlock();
  if (explore_hook::exploring()) [[unlikely]]
    explore_hook::rcu_read_unlock(explore_hook::RcuDomain::kSrcu);
}

void after_grace_period() { MM_TSAN_ACQUIRE(&grace_token); }
}  // namespace srcu_internal

void srcu_synchronize() {
  if (explore_hook::exploring()) [[unlikely]]
    if (explore_hook::rcu_synchronize(explore_hook::RcuDomain::kSrcu)) return;
  urcu_bp_synchronize_rcu();
  srcu_internal::after_grace_period();
}

void srcu_call(std::function<void()> fn) {
  if (explore_hook::exploring()) [[unlikely]]
    if (rcu_internal::explore_defer(fn)) return;
  rcu_internal::queue_callback<&urcu_bp_call_rcu, &srcu_internal::after_grace_period>(std::move(fn));
}

void srcu_barrier() {
  if (explore_hook::exploring()) [[unlikely]]
    if (explore_hook::rcu_barrier(explore_hook::RcuDomain::kSrcu)) return;
  urcu_bp_barrier();
}

}  // namespace mirrormm
