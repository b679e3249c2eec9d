// liburcu glue: inline read side (_LGPL_SOURCE), thread registration, call_rcu.
#define _LGPL_SOURCE 1
#include <urcu/urcu-memb.h>

#include "mirrormm/base/rcu.h"

#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

#include "base/rcu_callback.h"
#include "mirrormm/base/tsan.h"

namespace mirrormm {

namespace rcu_internal {

thread_local bool registered = false;

namespace {
// The token through which reader critical sections happen-before grace periods' ends.
char grace_token;

// Unregisters the thread from liburcu when it exits.
struct Registration {
  ~Registration() {
    if (registered) urcu_memb_unregister_thread();
    registered = false;
  }
};
thread_local Registration registration;
}  // namespace

void register_thread() {
  urcu_memb_register_thread();
  registered = true;
  (void)&registration;  // instantiate the thread-local so its destructor runs
}

void read_lock() { urcu_memb_read_lock(); }

void read_unlock() {
  MM_TSAN_RELEASE(&grace_token);
  urcu_memb_read_unlock();
}

void after_grace_period() { MM_TSAN_ACQUIRE(&grace_token); }

}  // namespace rcu_internal

void rcu_synchronize() {
  if (!rcu_internal::registered) rcu_internal::register_thread();
  urcu_memb_synchronize_rcu();
  rcu_internal::after_grace_period();
}

void rcu_call(std::function<void()> fn) {
  if (!rcu_internal::registered) rcu_internal::register_thread();
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
  free_batch.items.emplace_back(fn, p);
  if (free_batch.items.size() >= FreeBatch::kMax) free_batch.submit();
}

void rcu_barrier() {
  if (!rcu_internal::registered) rcu_internal::register_thread();
  free_batch.submit();
  urcu_memb_barrier();
}

}  // namespace mirrormm
