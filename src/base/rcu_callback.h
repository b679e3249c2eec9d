// Running a std::function after a grace period of one liburcu flavour: the glue rcu.cc (memb,
// the VM's RCU) and srcu.cc (bp, the notifiers' SRCU) share. Include it after the flavour's
// header, which declares struct rcu_head.
#pragma once

#include <functional>
#include <memory>
#include <utility>

#include "mirrormm/base/tsan.h"

namespace mirrormm::rcu_internal {

// Standard layout, so that the rcu_head can be mapped back to its Callback.
struct Callback {
  rcu_head head;
  std::function<void()>* fn;
};

// AfterGracePeriod: the flavour's acquire of its readers' releases (TSan only).
template <void (*AfterGracePeriod)()>
void run_callback(rcu_head* head) {
  Callback* raw = caa_container_of(head, Callback, head);
  MM_TSAN_ACQUIRE(raw);  // liburcu's queue hands the callback over; TSan cannot see it
  AfterGracePeriod();
  std::unique_ptr<Callback> cb(raw);
  std::unique_ptr<std::function<void()>> fn(cb->fn);
  (*fn)();
}

// Under the explorer, a scenario thread's callback is queued with the run (base/explore_hook.h):
// true. False (fn unchanged) for any other thread.
bool explore_defer(std::function<void()>& fn);

// Queues fn with the flavour's call_rcu.
template <void (*CallRcu)(rcu_head*, void (*)(rcu_head*)), void (*AfterGracePeriod)()>
void queue_callback(std::function<void()> fn) {
  auto* cb = new Callback{};
  cb->fn = new std::function<void()>(std::move(fn));
  MM_TSAN_RELEASE(cb);
  CallRcu(&cb->head, &run_callback<AfterGracePeriod>);
}

}  // namespace mirrormm::rcu_internal
