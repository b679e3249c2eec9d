// Annotated lock types and scoped guards, and the run-time lock checker they report to.
//
// Every lock has a class (LockClass: its rank in the lock order). The classes and the lock
// order itself are declared by the layer that owns the locks: the VM's are in
// src/mm/lock_order.h, the one place where the order is written.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <shared_mutex>

#include "mirrormm/base/explore_hook.h"
#include "mirrormm/base/thread_annotations.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MM_CPU_RELAX() _mm_pause()
#else
#define MM_CPU_RELAX() ((void)0)
#endif

namespace mirrormm {

// A lock class: its rank for the run-time order checker (lockdep's idea, reduced to a total
// order). A thread may only take a lock whose rank is higher than every lock it holds, or,
// with the `nested` variants, a second lock of the class it holds last (one level, as Linux's
// SINGLE_DEPTH_NESTING). Classes are values of this type declared by the owning layer
// (src/mm/lock_order.h); LockClass{} (rank 0) is not checked.
enum class LockClass : uint8_t {};
inline constexpr LockClass kUncheckedLock{};

// How a lock is held: rw-semaphores can be held shared.
enum class LockMode : uint8_t { kExclusive, kShared };

namespace lockdep {
// Whether acquisitions are checked. On by default in debug builds (MIRRORMM_DEBUG_CHECKS),
// off otherwise; tests may switch it. Checking costs a relaxed load when off.
extern std::atomic<bool> enabled;
void acquire(LockClass c, const void* lock, bool nested, LockMode mode);
void release(LockClass c, const void* lock);
// The checks themselves, kept out of the lock operations' path (and reading the lock's class
// only when checking is on).
[[gnu::cold, gnu::noinline]] inline void checked_acquire(LockClass c, const void* lock, bool nested, LockMode mode) {
  if (c != kUncheckedLock) acquire(c, lock, nested, mode);
}
[[gnu::cold, gnu::noinline]] inline void checked_release(LockClass c, const void* lock) {
  if (c != kUncheckedLock) release(c, lock);
}
inline void check_acquire(LockClass c, const void* lock, bool nested, LockMode mode = LockMode::kExclusive) {
  if (__builtin_expect(enabled.load(std::memory_order_relaxed), false)) checked_acquire(c, lock, nested, mode);
}
// Linux's nest_lock: while a thread holds the serializing lock of mm_take_all_locks (one
// taker at a time), it may hold any number of locks of one class, taken in address order.
extern thread_local int nest_lock_depth;
inline void check_release(LockClass c, const void* lock) {
  if (__builtin_expect(enabled.load(std::memory_order_relaxed), false)) checked_release(c, lock);
}
// What the calling thread holds of `lock` according to the checker (lockdep_is_held): used by
// the lock assertions. kUnknown when checking is off (nothing can be said).
enum class Held : uint8_t { kUnknown, kNo, kShared, kExclusive };
Held held_by_me(const void* lock);
// The checkers' report: prints "mirrormm lockdep: " and text to stderr, then aborts (tests
// catch it with EXPECT_DEATH). The ranked checker and the driver lock checker
// (base/driver_lock.h) both end here.
[[noreturn]] void report(const char* text);
}  // namespace lockdep

// The reader/writer primitive under the annotated lock types (RwSem, and the mm's MmapLock,
// which adds a sequence count). Unannotated on purpose: use it only inside a capability
// class whose own methods carry the annotations and report to the lock checker.
//
// Under the interleaving explorer (base/explore_hook.h) every operation is a scheduling point
// and a blocking one never blocks the OS thread: it tries, and while that fails the thread is
// blocked on the lock until a release.
class RawRwLock {
 public:
  void lock() {
    if (explore_hook::exploring()) [[unlikely]]
      return explore_hook::acquire(this, 0, &try_exclusive, this);
    m_.lock();
  }
  void unlock() {
    m_.unlock();
    if (explore_hook::exploring()) [[unlikely]]
      explore_hook::released(this, 0);
  }
  void lock_shared() {
    if (explore_hook::exploring()) [[unlikely]]
      return explore_hook::acquire(this, 0, &try_shared, this);
    m_.lock_shared();
  }
  void unlock_shared() {
    m_.unlock_shared();
    if (explore_hook::exploring()) [[unlikely]]
      explore_hook::released(this, 0);
  }
  bool try_lock_shared() {
    MM_EXPLORE_TRYLOCK(this, 0);
    return m_.try_lock_shared();
  }

 private:
  static bool try_exclusive(void* l) { return static_cast<RawRwLock*>(l)->m_.try_lock(); }
  static bool try_shared(void* l) { return static_cast<RawRwLock*>(l)->m_.try_lock_shared(); }
  std::shared_mutex m_;
};

// A test-and-test-and-set spinlock for short, non-sleeping sections (PTE locks, free lists).
class CAPABILITY("spinlock") SpinLock {
 public:
  SpinLock() = default;
  explicit SpinLock(LockClass c) : class_(c) {}
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() ACQUIRE() { lock_checked(false); }
  // A second lock of the class taken last (see LockClass).
  void lock_nested() ACQUIRE() { lock_checked(true); }
  bool try_lock() TRY_ACQUIRE(true) {
    MM_EXPLORE_TRYLOCK(this, static_cast<uint8_t>(class_));
    if (!try_raw(this)) return false;
    lockdep::check_acquire(class_, this, true);  // a trylock cannot deadlock
    return true;
  }
  void unlock() RELEASE() {
    lockdep::check_release(class_, this);
    locked_.store(false, std::memory_order_release);
    if (explore_hook::exploring()) [[unlikely]]
      explore_hook::released(this, static_cast<uint8_t>(class_));
  }
  bool debug_is_locked() const { return locked_.load(std::memory_order_relaxed); }
  void set_class(LockClass c) { class_ = c; }

 private:
  void lock_checked(bool nested) NO_THREAD_SAFETY_ANALYSIS {
    lockdep::check_acquire(class_, this, nested);
    if (explore_hook::exploring()) [[unlikely]]
      return explore_hook::acquire(this, static_cast<uint8_t>(class_), &try_raw, this);
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) MM_CPU_RELAX();
    }
  }
  static bool try_raw(void* l) {
    auto* s = static_cast<SpinLock*>(l);
    return !s->locked_.load(std::memory_order_relaxed) && !s->locked_.exchange(true, std::memory_order_acquire);
  }
  std::atomic<bool> locked_{false};
  LockClass class_ = kUncheckedLock;  // written once, before the lock is shared
};

// A sleeping mutex.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  explicit Mutex(LockClass c) : class_(c) {}
  void lock() ACQUIRE() {
    lockdep::check_acquire(class_, this, false);
    raw_lock();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    MM_EXPLORE_TRYLOCK(this, static_cast<uint8_t>(class_));
    if (!m_.try_lock()) return false;
    lockdep::check_acquire(class_, this, true);  // a trylock cannot deadlock
    return true;
  }
  void unlock() RELEASE() {
    lockdep::check_release(class_, this);
    raw_unlock();
  }
  // Linux's mutex_lock_nest_lock: one of any number of locks of this class taken while the
  // caller holds `nest` (mm_take_all_locks). The static analysis tracks the nest lock, not
  // these; the run-time checker tracks both.
  void lock_nest_lock(const Mutex& nest) REQUIRES(nest) {
    (void)nest;
    lockdep::check_acquire(class_, this, false);
    raw_lock();
  }
  void unlock_nest_lock(const Mutex& nest) REQUIRES(nest) {
    (void)nest;
    lockdep::check_release(class_, this);
    raw_unlock();
  }
  void set_class(LockClass c) { class_ = c; }  // before the lock is shared

 private:
  // The mutex itself, with the explorer's scheduling (see RawRwLock).
  void raw_lock() {
    if (explore_hook::exploring()) [[unlikely]]
      return explore_hook::acquire(this, static_cast<uint8_t>(class_), &try_raw, this);
    m_.lock();
  }
  void raw_unlock() {
    m_.unlock();
    if (explore_hook::exploring()) [[unlikely]]
      explore_hook::released(this, static_cast<uint8_t>(class_));
  }
  static bool try_raw(void* l) { return static_cast<Mutex*>(l)->m_.try_lock(); }
  std::mutex m_;
  LockClass class_ = kUncheckedLock;  // written once
};

// A reader/writer semaphore (Linux's rw_semaphore): mmap_lock, anon_vma's rwsem.
class CAPABILITY("rwsem") RwSem {
 public:
  RwSem() = default;
  explicit RwSem(LockClass c) : class_(c) {}
  void down_write() ACQUIRE() {
    lockdep::check_acquire(class_, this, false);
    m_.lock();
  }
  // The second rwsem of a class taken last (fork: the child's mmap_lock inside the parent's).
  void down_write_nested() ACQUIRE() {
    lockdep::check_acquire(class_, this, true);
    m_.lock();
  }
  void up_write() RELEASE() {
    lockdep::check_release(class_, this);
    m_.unlock();
  }
  void down_read() ACQUIRE_SHARED() {
    lockdep::check_acquire(class_, this, false, LockMode::kShared);
    m_.lock_shared();
  }
  void up_read() RELEASE_SHARED() {
    lockdep::check_release(class_, this);
    m_.unlock_shared();
  }
  // down_read_trylock: never waits (so it cannot deadlock, whatever is held).
  bool down_read_trylock() TRY_ACQUIRE_SHARED(true) {
    if (!m_.try_lock_shared()) return false;
    lockdep::check_acquire(class_, this, true, LockMode::kShared);
    return true;
  }
  // down_write_nest_lock: see Mutex::lock_nest_lock.
  void down_write_nest_lock(const Mutex& nest) REQUIRES(nest) {
    (void)nest;
    lockdep::check_acquire(class_, this, false);
    m_.lock();
  }
  void set_class(LockClass c) { class_ = c; }  // before the lock is shared
  void up_write_nest_lock(const Mutex& nest) REQUIRES(nest) {
    (void)nest;
    lockdep::check_release(class_, this);
    m_.unlock();
  }

 private:
  RawRwLock m_;  // its scheduling under the explorer is RawRwLock's
  LockClass class_ = kUncheckedLock;  // written once
};

template <class L>
class SCOPED_CAPABILITY LockGuard {
 public:
  explicit LockGuard(L& l) ACQUIRE(l) : l_(l) { l_.lock(); }
  ~LockGuard() RELEASE() { l_.unlock(); }
  LockGuard(const LockGuard&) = delete;
  LockGuard& operator=(const LockGuard&) = delete;

 private:
  L& l_;
};
using SpinGuard = LockGuard<SpinLock>;

class SCOPED_CAPABILITY NestedSpinGuard {
 public:
  explicit NestedSpinGuard(SpinLock& l) ACQUIRE(l) : l_(l) { l_.lock_nested(); }
  ~NestedSpinGuard() RELEASE() { l_.unlock(); }
  NestedSpinGuard(const NestedSpinGuard&) = delete;
  NestedSpinGuard& operator=(const NestedSpinGuard&) = delete;

 private:
  SpinLock& l_;
};
using MutexGuard = LockGuard<Mutex>;

// Scoped write/read holds of any rw-semaphore-like lock (RwSem, the mm's MmapLock).
template <class S>
class SCOPED_CAPABILITY WriteGuard {
 public:
  explicit WriteGuard(S& s) ACQUIRE(s) : s_(s) { s_.down_write(); }
  ~WriteGuard() RELEASE() { s_.up_write(); }
  WriteGuard(const WriteGuard&) = delete;
  WriteGuard& operator=(const WriteGuard&) = delete;

 private:
  S& s_;
};

template <class S>
class SCOPED_CAPABILITY ReadGuard {
 public:
  explicit ReadGuard(S& s) ACQUIRE_SHARED(s) : s_(s) { s_.down_read(); }
  ~ReadGuard() RELEASE() { s_.up_read(); }
  ReadGuard(const ReadGuard&) = delete;
  ReadGuard& operator=(const ReadGuard&) = delete;

 private:
  S& s_;
};

}  // namespace mirrormm
