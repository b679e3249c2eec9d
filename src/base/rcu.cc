// liburcu glue: the variables of the inline read side (rcu.h), thread registration, call_rcu.
#define _LGPL_SOURCE 1
#include <urcu/urcu-memb.h>

#include "mirrormm/base/rcu.h"

#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "base/rcu_callback.h"
#include "mirrormm/base/explore_hook.h"
#include "mirrormm/base/tsan.h"

namespace mirrormm {

namespace rcu_internal {

// The constants and layout the inline read side (rcu.h) assumes.
static_assert(kNestMask == URCU_GP_CTR_NEST_MASK && URCU_GP_COUNT == 1);
static_assert(sizeof(urcu_memb_gp.futex) == sizeof(int32_t));

const unsigned long* const gp_ctr = &urcu_memb_gp.ctr;
const int32_t* const gp_futex = &urcu_memb_gp.futex;
const int* const has_sys_membarrier = &urcu_memb_has_sys_membarrier;

char grace_token;

namespace {
// Unregisters the thread from liburcu when it exits.
struct Registration {
  ~Registration() {
    if (tls_reader_ctr) urcu_memb_unregister_thread();
    tls_reader_ctr = nullptr;
  }
};
thread_local Registration registration;
}  // namespace

unsigned long* register_thread() {
  urcu_memb_register_thread();
  tls_reader_ctr = &URCU_TLS(urcu_memb_reader).ctr;
  (void)&registration;  // instantiate the thread-local so its destructor runs
  return tls_reader_ctr;
}

void wake_up_gp() { urcu_common_wake_up_gp(&urcu_memb_gp); }

void after_grace_period() { MM_TSAN_ACQUIRE(&grace_token); }

}  // namespace rcu_internal

namespace rcu_internal {
// Under the explorer: fn after the scenario threads' grace period, deterministically.
bool explore_defer(std::function<void()>& fn) {
  auto* box = new std::function<void()>(std::move(fn));
  auto run = [](void* p) {
    auto* f = static_cast<std::function<void()>*>(p);
    (*f)();
    delete f;
  };
  if (explore_hook::rcu_defer(run, box)) return true;
  fn = std::move(*box);
  delete box;
  return false;
}
}  // namespace rcu_internal

void rcu_synchronize() {
  if (explore_hook::exploring()) [[unlikely]]
    if (explore_hook::rcu_synchronize(explore_hook::RcuDomain::kRcu)) return;
  if (!rcu_internal::tls_reader_ctr) rcu_internal::register_thread();
  urcu_memb_synchronize_rcu();
  rcu_internal::after_grace_period();
}

void rcu_call(std::function<void()> fn) {
  if (explore_hook::exploring()) [[unlikely]]
    if (rcu_internal::explore_defer(fn)) return;
  if (!rcu_internal::tls_reader_ctr) rcu_internal::register_thread();
  rcu_internal::queue_callback<&urcu_memb_call_rcu, &rcu_internal::after_grace_period>(std::move(fn));
}

namespace {
// The calling thread's batch of rcu_free_later() requests.
struct FreeBatch {
  static constexpr size_t kMax = 64;
  std::vector<std::pair<void (*)(void*), void*>> items;
  void submit() {
    if (items.empty()) return;
    auto batch = std::make_shared<std::vector<std::pair<void (*)(void*), void*>>>(std::move(items));
    items.clear();
    rcu_call([batch] {
      for (auto& [fn, p] : *batch) fn(p);
    });
  }
  ~FreeBatch() { submit(); }
};
thread_local FreeBatch free_batch;
}  // namespace

void rcu_free_later(void (*fn)(void*), void* p) {
  if (explore_hook::exploring()) [[unlikely]]
    if (explore_hook::rcu_defer(fn, p)) return;
  free_batch.items.emplace_back(fn, p);
  if (free_batch.items.size() >= FreeBatch::kMax) free_batch.submit();
}

void rcu_barrier() {
  if (explore_hook::exploring()) [[unlikely]]
    if (explore_hook::rcu_barrier(explore_hook::RcuDomain::kRcu)) return;
  if (!rcu_internal::tls_reader_ctr) rcu_internal::register_thread();
  free_batch.submit();
  urcu_memb_barrier();
}

}  // namespace mirrormm
