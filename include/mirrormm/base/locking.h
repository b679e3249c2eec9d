// Annotated lock types and scoped guards, and the model's lock order.
//
// LOCK ORDER (outermost first; a lock may be taken while holding the ones above it on its
// branch, never the other way round). Where it nests is noted on the right; the rank in
// brackets is what the run-time checker (LockClass below) enforces.
//
//   Mm::mmap_lock_ [10]                      (rwsem; syscalls write, slow-path faults read;
//                                             fork nests the child's inside the parent's)
//     Mm::snapshot_lock_ [15]                (fault slow path rebuilding the VMA snapshot)
//     the page lock, PG_locked [17]          (lock_page: rmap walks, migration, truncation of
//                                             a page take it before the locks below)
//     ShmemInode::i_mmap_lock_ [20]          (vma_link/unlink of file VMAs; truncate's
//                                             unmap_mapping_range holds it without mmap_lock)
//       AnonVma::root->rwsem [30]            (anon_vma_prepare, clone, fork, unlink)
//         MmuNotifierSubscriptions::lock [35] (notifier lists, interval tree, invalidate_seq;
//                                             never held across a callback; register holds
//                                             it inside mm_take_all_locks)
//         Mm::page_table_lock_ [40]          (upper page-table levels, vma->anon_vma install)
//         Page::ptl (split PTE lock) [50]    (zap, change_protection, faults, copy_page_range
//                                             and move_pte nest a second one: "nested")
//           ShmemInode::lock_ [60]           (page cache)
//             PhysMem::Pcp::lock [70]        (per-CPU frame lists)
//               PhysMem::lock_ [75]          (global frame list)
//           Cpu::tlb_lock_ [80]              (TLB fill and shootdown)
//   The per-VMA lock is not a lock object: a fault holds one VMA's read side instead of the
//   mmap_lock (lock_vma_under_rcu), and vma_start_write (under mmap_lock for write) waits
//   for those readers; it ranks with the mmap_lock.
//   System::procs_lock_, files_lock_, violations_lock_ (std::mutex) are leaves, never held
//   across mm work.
//
// Faults take the PTE lock with either the mmap_lock (read) or a VMA read lock held; the
// software CPU's TLB lock is never held while faulting (a fault can shoot down the faulting
// CPU's own TLB).
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <shared_mutex>

#include "mirrormm/base/thread_annotations.h"

#if defined(__x86_64__)
#include <immintrin.h>
#define MM_CPU_RELAX() _mm_pause()
#else
#define MM_CPU_RELAX() ((void)0)
#endif

namespace mirrormm {

// Lock classes and their ranks for the run-time order checker (lockdep's idea, reduced to a
// total order): a thread may only take a lock whose rank is higher than every lock it holds,
// or, with the `nested` variants, a second lock of the class it holds last (one level, as
// Linux's SINGLE_DEPTH_NESTING). kNone locks are not checked.
enum class LockClass : uint8_t {
  kNone = 0,
  kMmapLock = 10,
  kAllLocks = 12,
  kSnapshotLock = 15,
  kPageLock = 17,
  kIMmap = 20,
  kAnonVma = 30,
  kNotifierWait = 33,
  kMmuNotifier = 35,
  kPageTableLock = 40,
  kPtl = 50,
  kInode = 60,
  kPcp = 70,
  kFreeList = 75,
  kTlb = 80,
  kRmapNotifierList = 90,
};

namespace lockdep {
// Whether acquisitions are checked. On by default in debug builds (MIRRORMM_DEBUG_CHECKS),
// off otherwise; tests may switch it. Checking costs a relaxed load when off.
extern std::atomic<bool> enabled;
void acquire(LockClass c, const void* lock, bool nested);
void release(LockClass c, const void* lock);
inline void check_acquire(LockClass c, const void* lock, bool nested) {
  if (c != LockClass::kNone && enabled.load(std::memory_order_relaxed)) acquire(c, lock, nested);
}
// Linux's nest_lock: while a thread holds the serializing lock of mm_take_all_locks (one
// taker at a time), it may hold any number of locks of one class, taken in address order.
extern thread_local int nest_lock_depth;
inline void check_release(LockClass c, const void* lock) {
  if (c != LockClass::kNone && enabled.load(std::memory_order_relaxed)) release(c, lock);
}
}  // namespace lockdep

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
    if (locked_.load(std::memory_order_relaxed) || locked_.exchange(true, std::memory_order_acquire)) return false;
    lockdep::check_acquire(class_, this, true);  // a trylock cannot deadlock
    return true;
  }
  void unlock() RELEASE() {
    lockdep::check_release(class_, this);
    locked_.store(false, std::memory_order_release);
  }
  bool debug_is_locked() const { return locked_.load(std::memory_order_relaxed); }
  void set_class(LockClass c) { class_ = c; }

 private:
  void lock_checked(bool nested) NO_THREAD_SAFETY_ANALYSIS {
    lockdep::check_acquire(class_, this, nested);
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) MM_CPU_RELAX();
    }
  }
  std::atomic<bool> locked_{false};
  LockClass class_ = LockClass::kNone;  // written once, before the lock is shared
};

// A sleeping mutex.
class CAPABILITY("mutex") Mutex {
 public:
  Mutex() = default;
  explicit Mutex(LockClass c) : class_(c) {}
  void lock() ACQUIRE() {
    lockdep::check_acquire(class_, this, false);
    m_.lock();
  }
  bool try_lock() TRY_ACQUIRE(true) {
    if (!m_.try_lock()) return false;
    lockdep::check_acquire(class_, this, true);  // a trylock cannot deadlock
    return true;
  }
  void unlock() RELEASE() {
    lockdep::check_release(class_, this);
    m_.unlock();
  }

 private:
  std::mutex m_;
  LockClass class_ = LockClass::kNone;  // written once
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
    lockdep::check_acquire(class_, this, false);
    m_.lock_shared();
  }
  void up_read() RELEASE_SHARED() {
    lockdep::check_release(class_, this);
    m_.unlock_shared();
  }

 private:
  std::shared_mutex m_;
  LockClass class_ = LockClass::kNone;  // written once
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
