// The model's core structures (include/linux/mm_types.h's role): the address space (Mm),
// its VMAs, the anon_vma identities that rmap and VMA merging use, and shared-memory files.
//
// Lifecycles and guards are stated on each type. The lock order is in mm/lock_order.h.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"
#include "mirrormm/config.h"
#include "mirrormm/vm_flags.h"
#include "mm/interval_tree.h"
#include "mm/pgtable.h"
#include "mm/physmem.h"

namespace mirrormm {

class System;
class ShmemInode;
class KmemCache;
struct MmuNotifierSubscriptions;

struct AnonVma;
struct Vma;

// An anon_vma_chain link (struct anon_vma_chain): says that `vma` may map pages of
// `anon_vma`. It sits in two places: the VMA's chain (Vma::anon_vma_chain, changed under the
// VMA's mmap_lock for write, or for read plus the anon_vma lock when a fault adds the first
// link) and the anon_vma's interval tree (AnonVma::rb_root, keyed by the VMA's page-offset
// range, changed under the root's rwsem for write). The tree key is the VMA's
// [vm_pgoff, vm_pgoff + pages - 1] when the link was inserted; every change of a linked VMA's
// range re-keys its links under the same lock (vma_set_range).
//
// Lifecycle: allocated by anon_vma_chain_link, freed by unlink_anon_vmas after leaving the
// tree; a reverse-map walk that holds the root's rwsem for read may use the links it finds
// (and their VMAs, which are freed only after their links are gone).
struct AnonVmaChain {
  Vma* vma = nullptr;           // written once
  AnonVma* anon_vma = nullptr;  // written once
  // Interval-tree node (interval_tree.h), guarded by anon_vma->root->rwsem.
  uint64_t start = 0, last = 0, subtree_last = 0, seq = 0;
  AnonVmaChain* left = nullptr;
  AnonVmaChain* right = nullptr;
  int height = 0;
  bool in_tree = false;
};

// An anon_vma: the identity that private anonymous pages point to (page->mapping), shared by
// the VMAs that may map them (a process's VMA, its split pieces and, through the chain, its
// fork children); its interval tree of anon_vma_chain links is what the reverse map walks.
//
// Memory: from anon_vma_cachep(), SLAB_TYPESAFE_BY_RCU (rmap.cc). The first three fields are
// the type-stable part that the constructor sets up and a free leaves valid: an oblique reader
// (folio_lock_anon_vma_read) may read root, take its rwsem and try refcount on an anon_vma
// that has been freed or reused meanwhile, then rechecks. They come first, together, so that
// one byte range covers them (the cache's kept range); root is read racily by such readers
// and written with a relaxed atomic store (anon_vma_root_racy).
//
// Lifecycle: allocated by anon_vma_prepare() or anon_vma_fork() with refcount 1; that
// reference is dropped when the last anon_vma_chain link goes (num_avcs reaches 0). A child
// holds a reference on its root; a reverse-map walk that must sleep for the lock holds one
// (folio_get_anon_vma). Freed when refcount reaches 0.
// Guarded by root->rwsem: num_children, num_active_vmas, num_avcs, rb_root (the model takes
// mmap_lock for write around VMA changes too, which is what makes the counters stable for
// merge decisions).
struct AnonVma {
  AnonVma* root = nullptr;    // written at creation, before publication (type-stable)
  std::atomic<int> refcount{0};  // type-stable: 0 while free
  RwSem rwsem{lock_class::kAnonVma};  // type-stable; only the root's is used
  AnonVma* parent = nullptr;  // written once at creation, before publication
  int num_children GUARDED_BY(root->rwsem) = 0;     // anon_vmas whose parent this is (a root counts itself)
  int num_active_vmas GUARDED_BY(root->rwsem) = 0;  // VMAs whose ->anon_vma is this
  int num_avcs GUARDED_BY(root->rwsem) = 0;         // chain links (VMAs that may map its pages)
  IntervalTree<AnonVmaChain> rb_root GUARDED_BY(root->rwsem);  // the links, by page offset
  KmemCache* cache = nullptr;  // the cache it came from (freed back there); written once
};

// anon_vma->root read by an oblique reader, which may race with the anon_vma's reuse (the
// writer stores with anon_vma_set_root).
inline AnonVma* anon_vma_root_racy(AnonVma* av) {
  return std::atomic_ref<AnonVma*>(av->root).load(std::memory_order_relaxed);
}
inline void anon_vma_set_root(AnonVma* av, AnonVma* root) {
  std::atomic_ref<AnonVma*>(av->root).store(root, std::memory_order_relaxed);
}

// States that av's root rwsem is held for write, where the analysis cannot see it: every
// anon_vma of a family shares the root, so holding one member's root lock holds them all
// (av->parent->root is av->root). Checked in debug builds.
inline void anon_vma_assert_write_locked(AnonVma* av, AnonVma* locked) ASSERT_CAPABILITY(av->root->rwsem) {
  (void)av;
  MM_DEBUG_ON(av->root != locked->root);
  if constexpr (kDebugChecks) MM_BUG_ON(lockdep::held_by_me(&locked->root->rwsem) == lockdep::Held::kNo);
}

struct DeviceFileOps;

// An open file description (struct file) of a shared-memory file, a regular file or a
// character device (whose inode, InodeKind::kDevice, has no pages of its own: a driver's
// f_op->mmap fills its mappings, mirrormm/device_file.h). VMAs that map it hold a reference;
// merging compares File pointers, not inodes.
// Lifecycle: refcount; the last put drops the inode reference.
struct File {
  ShmemInode* inode = nullptr;  // written once
  std::atomic<int> refcount{1};
  bool writable = false;        // f_mode & FMODE_WRITE; written once
  // A character device's file operations and the driver's private_data; written once at
  // open, null for the other kinds.
  const DeviceFileOps* f_op = nullptr;
  void* private_data = nullptr;
};

class Mm;

// The mmap_lock: an rw-semaphore plus the sequence count that per-VMA locks compare with
// (Linux's mm_lock_seq). The sequence is odd exactly while the lock is held for write; a
// VMA is write-locked when its vm_lock_seq equals the current (odd) sequence, so releasing
// the mmap_lock releases every VMA write lock at once.
class CAPABILITY("mmap_lock") MmapLock {
 public:
  void down_write() ACQUIRE() {
    lockdep::check_acquire(lock_class::kMmapLock, this, false);
    sem_.lock();
    seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
  }
  // fork: the child's mmap_lock inside the parent's (one level of same-class nesting).
  void down_write_nested() ACQUIRE() {
    lockdep::check_acquire(lock_class::kMmapLock, this, true);
    sem_.lock();
    seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
  }
  void up_write() RELEASE() {
    seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_seq_cst);
    lockdep::check_release(lock_class::kMmapLock, this);
    sem_.unlock();
  }
  void down_read() ACQUIRE_SHARED() {
    lockdep::check_acquire(lock_class::kMmapLock, this, false, LockMode::kShared);
    sem_.lock_shared();
  }
  void up_read() RELEASE_SHARED() {
    lockdep::check_release(lock_class::kMmapLock, this);
    sem_.unlock_shared();
  }
  // mmap_read_trylock: never waits.
  bool down_read_trylock() TRY_ACQUIRE_SHARED(true) {
    if (!sem_.try_lock_shared()) return false;
    lockdep::check_acquire(lock_class::kMmapLock, this, true, LockMode::kShared);
    return true;
  }
  uint64_t seq() const { return seq_.load(std::memory_order_seq_cst); }

 private:
  RawRwLock sem_;  // the rw-semaphore itself; this class is its annotated face
  std::atomic<uint64_t> seq_{0};
};

// A virtual memory area. Every field is guarded by vm_mm->mmap_lock_: written with it held
// for write *and* the VMA write-locked (vma_start_write), read with the mmap_lock held or the
// VMA read-locked (the per-VMA lock of the fault path). anon_vma is the exception: the fault
// path installs it holding mmap_lock for read plus vm_mm->page_table_lock_, so it is atomic.
// The fields are not GUARDED_BY: the per-VMA read lock is a reference count, not a capability,
// so "mmap_lock or VMA read lock" cannot be stated to the analysis; the writers' side is
// checked through REQUIRES(mm->mmap_lock_) on every function that changes a linked VMA.
//
// Lifecycle: detached until vma_link(), detached again by vma_unlink(); freed after an RCU
// grace period (lockless lookups may still hold the pointer).
struct Vma {
  uint64_t vm_start = 0;
  uint64_t vm_end = 0;
  uint64_t vm_pgoff = 0;
  vm_flags_t vm_flags = 0;
  pgprot_t vm_page_prot = 0;
  Mm* vm_mm = nullptr;
  std::atomic<AnonVma*> anon_vma{nullptr};
  // The anon_vma_chain: a link to every anon_vma this VMA is linked into, oldest (the root
  // side) first. A fork child's chain has more than one entry ("not singular").
  std::vector<AnonVmaChain*> anon_vma_chain;
  File* vm_file = nullptr;  // holds a reference
  // This VMA's node in its file's i_mmap interval tree (vma->shared.rb), keyed by its
  // page-offset range; guarded by the file's i_mmap lock.
  struct IMmapNode {
    Vma* vma = nullptr;
    uint64_t start = 0, last = 0, subtree_last = 0, seq = 0;
    IMmapNode* left = nullptr;
    IMmapNode* right = nullptr;
    int height = 0;
    bool in_tree = false;
  } shared;

  // The per-VMA lock (Linux 6.4+). vm_lock_seq: the mm's mmap_lock sequence when the VMA was
  // last write-locked. vm_refcnt: fault-path readers holding the read lock. detached: not in
  // the tree. Memory ordering: a writer stores vm_lock_seq, then waits for vm_refcnt to reach
  // zero; a reader increments vm_refcnt, then checks vm_lock_seq and detached; all seq_cst,
  // so one of them always sees the other.
  std::atomic<uint64_t> vm_lock_seq{~0ull};
  std::atomic<bool> detached{true};
  // Written by every fault that takes the read lock: padded onto a cache line of its own,
  // away from the fields those faults read (and from neighbouring allocations).
  char pad_before_refcnt_[64] = {};
  std::atomic<int> vm_refcnt{0};
  char pad_after_refcnt_[60] = {};

  uint64_t pages() const { return (vm_end - vm_start) >> kPageShift; }
  bool is_anonymous() const { return vm_file == nullptr; }
  bool is_accessible() const { return vm_flags & VM_ACCESS_FLAGS; }
  uint64_t linear_page_index(uint64_t addr) const { return vm_pgoff + ((addr - vm_start) >> kPageShift); }
};

// Write-locks a VMA (caller holds the mmap_lock for write): waits until no fault holds its
// read lock; no new reader gets in until the mmap_lock is released.
void vma_start_write(Vma* vma);
// The fault path's read lock; false when the VMA is write-locked or detached.
bool vma_start_read(Vma* vma);
inline void vma_end_read(Vma* vma) { vma->vm_refcnt.fetch_sub(1, std::memory_order_release); }

inline bool vma_is_fork_child(const Vma* v) {
  return v && v->anon_vma && v->anon_vma_chain.size() != 1;
}

enum RssCounter { MM_ANONPAGES, MM_SHMEMPAGES, MM_SWAPENTS, NR_MM_COUNTERS };

// An address space (mm_struct).
//
// Lifecycle (state_): kAlive from creation; exit_mmap() moves it to kExiting before it tears
// the mappings down (from then on no CPU walks its page tables) and to kDead when they are
// gone; the structure is freed when the last mm_count reference goes (mmdrop), after an RCU
// grace period. System calls run only on a kAlive address space (they hold a user reference).
class Mm {
 public:
  enum class State : uint8_t { kAlive, kExiting, kDead };

  Mm(System* sys, uint64_t id);
  ~Mm();
  Mm(const Mm&) = delete;
  Mm& operator=(const Mm&) = delete;

  System* sys() const { return sys_; }
  // The machine's frames (what page-table walks need, without reaching the System).
  PhysMem& mem() const { return *mem_; }
  uint64_t id() const { return id_; }

  // mmap_lock: held for write by every system call that changes the VMA set, for read by
  // faults that cannot use the per-VMA lock, mincore and populate.
  MmapLock mmap_lock_;

  // A sorted copy of the VMA tree for lock-free lookups (lock_vma_under_rcu), tagged with the
  // mmap_lock sequence it was built at: valid only while that sequence is current. Rebuilt
  // lazily by the fault slow path (under mmap_lock for read and snapshot_lock_); old copies
  // are freed after an RCU grace period.
  struct VmaSnapshot {
    uint64_t seq;
    std::vector<uint64_t> starts, ends;
    std::vector<Vma*> vmas;
  };
  std::atomic<VmaSnapshot*> snapshot_{nullptr};
  Mutex snapshot_lock_ ACQUIRED_AFTER(mmap_lock_){lock_class::kSnapshotLock};
  // The VMA containing addr, read-locked, or nullptr (then take the mmap_lock path).
  Vma* lock_vma_under_rcu(uint64_t addr);
  void refresh_snapshot() REQUIRES_SHARED(mmap_lock_);

  // Users (the process and in-flight system calls); the address space is torn down when
  // the last goes (mmput).
  std::atomic<int> mm_users_{1};
  // References on the structure itself (mmgrab/mmdrop): all users together hold one, every
  // notifier subscription holds one. The last mmdrop frees the Mm after a grace period.
  std::atomic<int> mm_count_{1};
  // MMU notifiers: allocated by the first registration, published with a release store,
  // freed by the last mmdrop (mmu_notifier.cc).
  std::atomic<MmuNotifierSubscriptions*> notifier_subscriptions_{nullptr};
  // The coherence checker's record of this mm's active invalidations [start, end) and their
  // MmuNotifyEvent (a leaf lock, taken under any other).
  struct CheckerRange {
    uint64_t start, end;
    int event;
    bool operator==(const CheckerRange&) const = default;
  };
  Mutex checker_lock_{lock_class::kCheckerRanges};
  std::vector<CheckerRange> checker_ranges_ GUARDED_BY(checker_lock_);
  // The process this address space belongs to (Linux's mm->owner), for messages: 0 until
  // the process is published, never changed after. Atomic: rmap walks may reach a fork
  // child's mm before fork publishes it.
  std::atomic<uint64_t> owner_pid_{0};
  // Written by exit_mmap under the mmap_lock for write; read without it (acquire) by CPUs,
  // which check it under their TLB lock before walking (the flush that follows kExiting waits
  // for walks already under way).
  std::atomic<State> state_{State::kAlive};
  State state() const { return state_.load(std::memory_order_acquire); }

  // VMAs keyed by vm_start. Lookups are O(log n).
  std::map<uint64_t, Vma*> vmas_ GUARDED_BY(mmap_lock_);
  uint64_t map_count_ GUARDED_BY(mmap_lock_) = 0;
  int execute_only_pkey_ GUARDED_BY(mmap_lock_) = -1;
  // What mlockall(MCL_FUTURE) adds to every new mapping (mm->def_flags: VM_LOCKED, with
  // VM_LOCKONFAULT for MCL_ONFAULT); a fork child starts without it.
  vm_flags_t def_flags_ GUARDED_BY(mmap_lock_) = 0;
  // The process's resource limits (signal->rlim; one address space per process here), soft
  // (cur) and hard (max), indexed by the RLIMIT_* number of mirrormm/mman.h. Set from the
  // machine's configuration at creation, copied by fork, changed by setrlimit; the checks
  // read them with the mmap_lock held, as they read the VMA counters they compare with.
  struct Rlimit {
    uint64_t cur = ~0ull, max = ~0ull;
  };
  static constexpr unsigned kNrRlimits = 16;
  Rlimit rlim_[kNrRlimits] GUARDED_BY(mmap_lock_);

  // Guards installation of upper-level page-table entries and of vma->anon_vma.
  SpinLock page_table_lock_ ACQUIRED_AFTER(mmap_lock_){lock_class::kPageTableLock};
  Page* pgd_ = nullptr;  // written once at creation

  // Split rss counters: one cache line per CPU (Linux's percpu rss), summed by rss().
  static constexpr int kRssSlots = 64;
  struct alignas(64) RssSlot {
    std::atomic<int64_t> v[NR_MM_COUNTERS] = {};
  };
  RssSlot rss_[kRssSlots];
  // CPUs that may hold TLB entries of this address space (mm_cpumask). Bits are set by the
  // CPU before its first walk of this mm and never cleared while the mm lives.
  std::atomic<uint64_t> cpumask_{0};

  void add_rss(RssCounter c, int64_t n);
  int64_t rss(RssCounter c) const {
    int64_t sum = 0;
    for (const RssSlot& s : rss_) sum += s.v[c].load(std::memory_order_relaxed);
    return sum;
  }

  // VMA lookups (Linux's find_vma & co). All REQUIRE mmap_lock (shared or exclusive).
  Vma* find_vma(uint64_t addr) REQUIRES_SHARED(mmap_lock_);           // first with vm_end > addr
  Vma* vma_lookup(uint64_t addr) REQUIRES_SHARED(mmap_lock_);         // containing addr
  Vma* find_vma_intersection(uint64_t start, uint64_t end) REQUIRES_SHARED(mmap_lock_);
  Vma* vma_prev(const Vma* vma) REQUIRES_SHARED(mmap_lock_);
  Vma* vma_next(const Vma* vma) REQUIRES_SHARED(mmap_lock_);
  // The VMA ending at or before addr with the greatest start (prev of a hole at addr).
  Vma* find_vma_prev(uint64_t addr) REQUIRES_SHARED(mmap_lock_);

 private:
  System* sys_;    // written once at creation
  PhysMem* mem_;   // sys_'s frame pool; written once at creation
  uint64_t id_;
};

// Linux's mmap_assert_locked()/mmap_assert_write_locked(): state that mm's mmap_lock is held
// (for read or write / for write). They tell the thread-safety analysis what it cannot follow
// itself (mm reached through vma->vm_mm or a local copy) and, in debug builds with the lock
// checker on, check it against the calling thread's held locks.
void mmap_assert_failed(const Mm* mm, const char* what);
inline void mmap_assert_locked(Mm* mm) ASSERT_SHARED_CAPABILITY(mm->mmap_lock_) {
  if constexpr (kDebugChecks) {
    if (lockdep::held_by_me(&mm->mmap_lock_) == lockdep::Held::kNo) mmap_assert_failed(mm, "locked");
  }
}
inline void mmap_assert_write_locked(Mm* mm) ASSERT_CAPABILITY(mm->mmap_lock_) {
  if constexpr (kDebugChecks) {
    const lockdep::Held h = lockdep::held_by_me(&mm->mmap_lock_);
    if (h == lockdep::Held::kNo || h == lockdep::Held::kShared) mmap_assert_failed(mm, "write-locked");
  }
}

// The mmap_lock as Linux's calls and as scoped guards (guard(mmap_read_lock)): system calls
// and drivers take it through these.
// mmap_read_lock/unlock are out of line: drivers call them too (mirrormm/hmm.h).
void mmap_read_lock(Mm* mm) ACQUIRE_SHARED(mm->mmap_lock_);
void mmap_read_unlock(Mm* mm) RELEASE_SHARED(mm->mmap_lock_);
inline bool mmap_read_trylock(Mm* mm) TRY_ACQUIRE_SHARED(true, mm->mmap_lock_) { return mm->mmap_lock_.down_read_trylock(); }
inline void mmap_write_lock(Mm* mm) ACQUIRE(mm->mmap_lock_) { mm->mmap_lock_.down_write(); }
inline void mmap_write_unlock(Mm* mm) RELEASE(mm->mmap_lock_) { mm->mmap_lock_.up_write(); }
// fork: the child's mmap_lock inside the parent's (SINGLE_DEPTH_NESTING).
inline void mmap_write_lock_nested(Mm* mm) ACQUIRE(mm->mmap_lock_) { mm->mmap_lock_.down_write_nested(); }

class SCOPED_CAPABILITY MmapReadGuard {
 public:
  explicit MmapReadGuard(Mm* mm) ACQUIRE_SHARED(mm->mmap_lock_) : mm_(mm) { mm_->mmap_lock_.down_read(); }
  ~MmapReadGuard() RELEASE() { mm_->mmap_lock_.up_read(); }
  MmapReadGuard(const MmapReadGuard&) = delete;
  MmapReadGuard& operator=(const MmapReadGuard&) = delete;

 private:
  Mm* mm_;
};

class SCOPED_CAPABILITY MmapWriteGuard {
 public:
  explicit MmapWriteGuard(Mm* mm) ACQUIRE(mm->mmap_lock_) : mm_(mm) { mm_->mmap_lock_.down_write(); }
  ~MmapWriteGuard() RELEASE() { mm_->mmap_lock_.up_write(); }
  MmapWriteGuard(const MmapWriteGuard&) = delete;
  MmapWriteGuard& operator=(const MmapWriteGuard&) = delete;

 private:
  Mm* mm_;
};

}  // namespace mirrormm
