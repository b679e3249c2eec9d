// liburcu glue: inline read side (_LGPL_SOURCE), thread registration, call_rcu.
#define _LGPL_SOURCE 1
#include <urcu/urcu-memb.h>

#include "mirrormm/base/rcu.h"

#include <cstdlib>
#include <memory>
#include <utility>
#include <vector>

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

namespace rcu_internal {

thread_local bool registered = false;

namespace {
#ifdef MM_TSAN
// The token through which reader critical sections happen-before grace periods' ends.
char grace_token;
#endif

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
#ifdef MM_TSAN
  __tsan_release(&grace_token);
#endif
  urcu_memb_read_unlock();
}

}  // namespace rcu_internal

namespace {
// Standard layout, so that the rcu_head can be mapped back to its Callback.
struct Callback {
  rcu_head head;
  std::function<void()>* fn;
};

void run_callback(rcu_head* head) {
  Callback* raw = caa_container_of(head, Callback, head);
#ifdef MM_TSAN
  __tsan_acquire(raw);  // liburcu's queue hands the callback over; TSan cannot see it
  __tsan_acquire(&rcu_internal::grace_token);
#endif
  std::unique_ptr<Callback> cb(raw);
  std::unique_ptr<std::function<void()>> fn(cb->fn);
  (*fn)();
}
}  // namespace

void rcu_synchronize() {
  if (!rcu_internal::registered) rcu_internal::register_thread();
  urcu_memb_synchronize_rcu();
#ifdef MM_TSAN
  __tsan_acquire(&rcu_internal::grace_token);
#endif
}

void rcu_call(std::function<void()> fn) {
  if (!rcu_internal::registered) rcu_internal::register_thread();
  auto* cb = new Callback{};
  cb->fn = new std::function<void()>(std::move(fn));
#ifdef MM_TSAN
  __tsan_release(cb);
#endif
  urcu_memb_call_rcu(&cb->head, run_callback);
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
