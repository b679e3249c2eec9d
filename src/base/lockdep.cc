// The run-time lock checker (see LockClass in mirrormm/base/locking.h): order, same-class
// nesting, and what the calling thread holds (for the lock assertions).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "mirrormm/base/locking.h"

namespace mirrormm::lockdep {

#ifdef MIRRORMM_DEBUG_CHECKS
std::atomic<bool> enabled{true};
#else
std::atomic<bool> enabled{false};
#endif

namespace {
struct HeldLock {
  LockClass c;
  const void* lock;
  LockMode mode;
};
thread_local std::vector<HeldLock> held;

[[noreturn]] void violation(const char* what, LockClass c, const void* lock) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "class %d (%p)", static_cast<int>(c), lock);
  std::string text = std::string(what) + ": taking " + buf + " while holding:";
  for (const HeldLock& h : held) {
    std::snprintf(buf, sizeof buf, " %d(%p)", static_cast<int>(h.c), h.lock);
    text += buf;
  }
  report(text.c_str());
}
}  // namespace

thread_local int nest_lock_depth = 0;

void report(const char* text) {
  std::fprintf(stderr, "mirrormm lockdep: %s\n", text);
  std::abort();
}

void acquire(LockClass c, const void* lock, bool nested, LockMode mode) {
  if (!held.empty()) {
    const HeldLock& top = held.back();
    for (const HeldLock& h : held)
      if (h.lock == lock) violation("recursive acquisition", c, lock);
    if (static_cast<int>(c) < static_cast<int>(top.c)) violation("lock order inversion", c, lock);
    if (c == top.c && nest_lock_depth > 0) {
      // Under a nest lock (mm_take_all_locks): any number of one class, taken in one order.
    } else if (c == top.c) {
      if (!nested) violation("same-class nesting without a nested annotation", c, lock);
      // One level only: a third lock of the class would need an order among equals.
      if (held.size() >= 2 && held[held.size() - 2].c == c) violation("same-class nesting deeper than one level", c, lock);
    }
  }
  held.push_back({c, lock, mode});
}

void release(LockClass c, const void* lock) {
  for (size_t i = held.size(); i-- > 0;) {
    if (held[i].lock == lock) {
      held.erase(held.begin() + static_cast<long>(i));
      return;
    }
  }
  // Taken while checking was off: nothing to forget.
  (void)c;
}

Held held_by_me(const void* lock) {
  if (!enabled.load(std::memory_order_relaxed)) return Held::kUnknown;
  for (const HeldLock& h : held)
    if (h.lock == lock) return h.mode == LockMode::kShared ? Held::kShared : Held::kExclusive;
  return Held::kNo;
}

}  // namespace mirrormm::lockdep
