// Annotated lock types and scoped guards, and the model's lock order.
//
// LOCK ORDER (outermost first; a lock may be taken while holding the ones above it on its
// branch, never the other way round). Where it nests is noted on the right.
//
//   Mm::mmap_lock_                           (rwsem; syscalls write, faults read)
//     ShmemInode::i_mmap_lock_               (vma_link/unlink of file VMAs; truncate's
//                                             unmap_mapping_range holds it, without
//                                             mmap_lock, around the zap below)
//     AnonVma::root->rwsem_                  (anon_vma_prepare, fork's anon_vma_fork)
//     Mm::page_table_lock_                   (upper page-table levels, vma->anon_vma install)
//     Page::ptl (split PTE lock)             (zap, change_protection, faults, copy_page_range:
//                                             child's ptl nests inside the parent's)
//       ShmemInode::lock_                    (shmem page cache insert/lookup, in faults)
//       PhysMem::lock_                       (frame free list; leaf)
//     Cpu::tlb_lock_                         (TLB fill and shootdown; leaf)
//   System::lock_                            (process table; never held across mm work)
//
// Faults run with mmap_lock_ held for read and take the PTE lock; the software CPU's TLB lock
// is never held while faulting (a fault can shoot down the faulting CPU's own TLB).
#pragma once

#include <atomic>
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

// A test-and-test-and-set spinlock for short, non-sleeping sections (PTE locks, free lists).
class CAPABILITY("spinlock") SpinLock {
 public:
  SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void lock() ACQUIRE() {
    while (locked_.exchange(true, std::memory_order_acquire)) {
      while (locked_.load(std::memory_order_relaxed)) MM_CPU_RELAX();
    }
  }
  bool try_lock() TRY_ACQUIRE(true) {
    return !locked_.load(std::memory_order_relaxed) &&
           !locked_.exchange(true, std::memory_order_acquire);
  }
  void unlock() RELEASE() { locked_.store(false, std::memory_order_release); }
  bool debug_is_locked() const { return locked_.load(std::memory_order_relaxed); }

 private:
  std::atomic<bool> locked_{false};
};

// A sleeping mutex.
class CAPABILITY("mutex") Mutex {
 public:
  void lock() ACQUIRE() { m_.lock(); }
  void unlock() RELEASE() { m_.unlock(); }
  bool try_lock() TRY_ACQUIRE(true) { return m_.try_lock(); }

 private:
  std::mutex m_;
};

// A reader/writer semaphore (Linux's rw_semaphore): mmap_lock, anon_vma's rwsem.
class CAPABILITY("rwsem") RwSem {
 public:
  void down_write() ACQUIRE() { m_.lock(); }
  void up_write() RELEASE() { m_.unlock(); }
  void down_read() ACQUIRE_SHARED() { m_.lock_shared(); }
  void up_read() RELEASE_SHARED() { m_.unlock_shared(); }

 private:
  std::shared_mutex m_;
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
