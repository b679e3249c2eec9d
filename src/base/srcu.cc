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
#include "mirrormm/base/tsan.h"

namespace mirrormm {

namespace srcu_internal {
namespace {
// Reader sections happen-before the end of the grace periods that wait for them; TSan cannot
// see liburcu's own ordering.
char grace_token;
}  // namespace

void read_lock() { urcu_bp_read_lock(); }

void read_unlock() {
  MM_TSAN_RELEASE(&grace_token);
  urcu_bp_read_unlock();
}

void after_grace_period() { MM_TSAN_ACQUIRE(&grace_token); }
}  // namespace srcu_internal

void srcu_synchronize() {
  urcu_bp_synchronize_rcu();
  srcu_internal::after_grace_period();
}

void srcu_call(std::function<void()> fn) {
  rcu_internal::queue_callback<&urcu_bp_call_rcu, &srcu_internal::after_grace_period>(std::move(fn));
}

void srcu_barrier() { urcu_bp_barrier(); }

}  // namespace mirrormm
