// liburcu-bp glue for the notifier SRCU domain (see mirrormm/base/srcu.h).
//
// Without _LGPL_SOURCE: the read side calls into liburcu-bp instead of inlining it here. The
// inline fast path reads the library's thread-local reader record through a pointer that
// UBSan's alignment check rejects (liburcu-bp's TLS layout), and the notifier read side is
// not the hot path the VM's RCU read side is.
#include <urcu/urcu-bp.h>

#include "mirrormm/base/srcu.h"

#include <memory>
#include <utility>

#if defined(__SANITIZE_THREAD__)
#define MM_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MM_TSAN 1
#endif
#endif

#ifdef MM_TSAN
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#endif

namespace mirrormm {

namespace srcu_internal {
#ifdef MM_TSAN
namespace {
// Reader sections happen-before the end of the grace periods that wait for them; TSan cannot
// see liburcu's own ordering.
char grace_token;
}  // namespace
#endif

void read_lock() { urcu_bp_read_lock(); }

void read_unlock() {
#ifdef MM_TSAN
  __tsan_release(&grace_token);
#endif
  urcu_bp_read_unlock();
}

void after_grace_period() {
#ifdef MM_TSAN
  __tsan_acquire(&grace_token);
#endif
}
}  // namespace srcu_internal

namespace {
struct Callback {
  rcu_head head;
  std::function<void()>* fn;
};

void run_callback(rcu_head* head) {
  Callback* raw = caa_container_of(head, Callback, head);
#ifdef MM_TSAN
  __tsan_acquire(raw);
#endif
  srcu_internal::after_grace_period();
  std::unique_ptr<Callback> cb(raw);
  std::unique_ptr<std::function<void()>> fn(cb->fn);
  (*fn)();
}
}  // namespace

void srcu_synchronize() {
  urcu_bp_synchronize_rcu();
  srcu_internal::after_grace_period();
}

void srcu_call(std::function<void()> fn) {
  auto* cb = new Callback{};
  cb->fn = new std::function<void()>(std::move(fn));
#ifdef MM_TSAN
  __tsan_release(cb);
#endif
  urcu_bp_call_rcu(&cb->head, run_callback);
}

void srcu_barrier() { urcu_bp_barrier(); }

}  // namespace mirrormm
