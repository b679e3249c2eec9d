// Locks of secondary-MMU drivers, and the dependency checker that watches them (Linux
// lockdep's classic job, for locks that have no place in the library's own ranked order).
//
// The library's locks have ranks (mirrormm/base/locking.h, src/mm/lock_order.h). A driver's
// locks cannot: the library does not know them. What matters for a driver is how its locks
// relate to two things the VM does on its behalf or behind its back, which Linux models as
// pseudo-locks (lockdep maps) and the checker here models the same way:
//
//   mmu_notifier_invalidate_range_start_map   held while invalidation callbacks run
//                                            (invalidate_range_start/end, an interval
//                                            notifier's invalidate()) and taken for a moment
//                                            by mmu_interval_read_begin;
//   fs_reclaim                               taken for a moment by every allocation that may
//                                            reclaim (a page allocation with Gfp::kUser,
//                                            hmm_range_fault, which may fault), since reclaim
//                                            unmaps pages and so invalidates.
//
// Registering a notifier records fs_reclaim -> invalidate map (Linux primes lockdep the same
// way in __mmu_notifier_register). A driver lock taken inside invalidate() adds invalidate
// map -> lock; the same lock held across hmm_range_fault or a page allocation adds lock ->
// fs_reclaim. Together they close a cycle, which is reported the first time both orders
// have been seen, from whichever thread completes it, even when that thread is the only one:
// the deadlock (invalidate() waiting for the lock its own fault path holds) need not happen
// for it to be found.
//
// The checker is a directed graph of lock classes (a DriverLock's name, or a pseudo-lock),
// with one edge per "taken while holding" order seen, each edge remembering what the thread
// held and where each was taken. A cycle is reported with both chains of names and places,
// through the same report-and-abort path as the ranked checker ("mirrormm lockdep: ...").
//
// Cost: it runs when lockdep::enabled is set (debug builds, the clang and asan-ubsan presets;
// tests switch it on), like the ranked checker; otherwise each operation pays one relaxed load.
#pragma once

#include <atomic>
#include <mutex>

#include "mirrormm/base/locking.h"

namespace mirrormm {

namespace driver_lockdep {

// Where a lock was taken. The operations below take the file and line as default arguments
// (__builtin_FILE/__builtin_LINE, which both compilers have; std::source_location needs a newer
// clang than the tsan and clang presets use), so that they record their caller's.
struct SourceLoc {
  const char* file;
  unsigned line;
};

// A node of the dependency graph: a lock class (every DriverLock with the same name) or a
// pseudo-lock. The name is the class: it must outlive the program (a string literal).
// The node number is assigned at the first checked acquisition (atomic: any thread may be the first).
class LockClassKey {
 public:
  explicit constexpr LockClassKey(const char* name) : name_(name) {}
  const char* name() const { return name_; }
  int node();  // registers the class on first use

 private:
  const char* name_;
  std::atomic<int> node_{-1};
};

// Linux's lockdep maps for the VM's pseudo-locks (see the header comment).
extern LockClassKey mmu_notifier_invalidate_range_start_map;
extern LockClassKey fs_reclaim_map;

// The checker's operations, for the pseudo-locks and DriverLock. `lock` identifies the
// instance (recursion on one instance is reported), `loc` is where it was taken.
void acquire_slow(LockClassKey* key, const void* lock, bool trylock, SourceLoc loc);
void release_slow(const void* lock);
inline bool checking() { return __builtin_expect(lockdep::enabled.load(std::memory_order_relaxed), false); }

// lock_map_acquire / lock_map_release on a pseudo-lock.
inline void lock_map_acquire(LockClassKey* map, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  if (checking()) acquire_slow(map, map, false, {file, line});
}
inline void lock_map_release(LockClassKey* map) {
  if (checking()) release_slow(map);
}

// The pseudo-lock held for a scope (the invalidation callbacks' section).
class LockMapScope {
 public:
  explicit LockMapScope(LockClassKey* map, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
      : map_(map) {
    lock_map_acquire(map_, file, line);
  }
  ~LockMapScope() { lock_map_release(map_); }
  LockMapScope(const LockMapScope&) = delete;
  LockMapScope& operator=(const LockMapScope&) = delete;

 private:
  LockClassKey* map_;
};

// might_alloc for an allocation that may reclaim: fs_reclaim taken and dropped.
inline void might_alloc(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  if (checking()) {
    acquire_slow(&fs_reclaim_map, &fs_reclaim_map, false, {file, line});
    release_slow(&fs_reclaim_map);
  }
}
// What may fault on behalf of a device (hmm_range_fault): it may allocate, reclaim and so
// invalidate: fs_reclaim, and inside it the invalidate map.
inline void might_fault_and_invalidate(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  if (checking()) {
    acquire_slow(&fs_reclaim_map, &fs_reclaim_map, false, {file, line});
    acquire_slow(&mmu_notifier_invalidate_range_start_map, &mmu_notifier_invalidate_range_start_map, false,
                 {file, line});
    release_slow(&mmu_notifier_invalidate_range_start_map);
    release_slow(&fs_reclaim_map);
  }
}
// __mmu_notifier_register's priming: invalidations may come from reclaim.
inline void prime_notifier_dependencies(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) {
  might_fault_and_invalidate(file, line);
}

}  // namespace driver_lockdep

// A driver's sleeping lock (a mutex) with a named class in the driver dependency checker.
// Every lock constructed with the same name is one class, as with Linux's static lock keys:
// name the lock by its role ("dmirror->mutex"), not by its instance. Annotated like the
// library's Mutex, so GUARDED_BY and REQUIRES work on what it protects.
//
// Rules it checks (each a report, see the header comment): no order between two driver
// classes, or between a driver class and the VM's pseudo-locks, is seen both ways; a lock
// is not taken again by the thread that holds it. A trylock is recorded as held but adds no
// order of its own (it cannot wait).
class CAPABILITY("mutex") DriverLock {
 public:
  explicit DriverLock(const char* name) : key_(name) {}
  DriverLock(const DriverLock&) = delete;
  DriverLock& operator=(const DriverLock&) = delete;

  void lock(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) ACQUIRE() {
    if (driver_lockdep::checking()) driver_lockdep::acquire_slow(&key_, this, false, {file, line});
    if (explore_hook::exploring()) [[unlikely]]
      return explore_hook::acquire(this, 0, &try_raw, this);
    m_.lock();
  }
  bool try_lock(const char* file = __builtin_FILE(), unsigned line = __builtin_LINE()) TRY_ACQUIRE(true) {
    MM_EXPLORE_TRYLOCK(this, 0);
    if (!m_.try_lock()) return false;
    if (driver_lockdep::checking()) driver_lockdep::acquire_slow(&key_, this, true, {file, line});
    return true;
  }
  void unlock() RELEASE() {
    if (driver_lockdep::checking()) driver_lockdep::release_slow(this);
    m_.unlock();
    if (explore_hook::exploring()) [[unlikely]]
      explore_hook::released(this, 0);
  }
  const char* name() const { return key_.name(); }

 private:
  // The primitive's try, for the interleaving explorer (base/explore_hook.h), as in Mutex.
  static bool try_raw(void* l) { return static_cast<DriverLock*>(l)->m_.try_lock(); }
  driver_lockdep::LockClassKey key_;
  // The primitive under the annotated face (as in Mutex); checked by the graph, not by rank.
  std::mutex m_;
};

// A DriverLock held for a scope; records where the scope began.
class SCOPED_CAPABILITY DriverLockGuard {
 public:
  explicit DriverLockGuard(DriverLock& l, const char* file = __builtin_FILE(), unsigned line = __builtin_LINE())
      ACQUIRE(l)
      : l_(l) {
    l_.lock(file, line);
  }
  ~DriverLockGuard() RELEASE() { l_.unlock(); }
  DriverLockGuard(const DriverLockGuard&) = delete;
  DriverLockGuard& operator=(const DriverLockGuard&) = delete;

 private:
  DriverLock& l_;
};

}  // namespace mirrormm
