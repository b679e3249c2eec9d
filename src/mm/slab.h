// Object caches (Linux's kmem_cache, mm/slab.c's role): per-type caches of fixed-size objects
// for the model's own metadata (anon_vmas, VMAs).
//
// A cache carves 64 KiB chunks (Linux's slabs) from the C++ heap into objects; the model's
// frame pool is for simulated frames, not for metadata. Each software CPU has a small stack
// of free objects (Linux's array_cache), so that an allocation or a free is a push or a pop
// under an uncontended lock; the stacks refill from, and spill to, the chunks' own free lists
// behind the cache's node lock. A chunk whose objects are all back on its free list is
// released to the heap, keeping one spare chunk per cache (shrink() releases that too).
//
// The constructor. A cache may have one, run when an object's memory is set up (when a chunk
// is carved), not on every allocation: an object comes back from free() in its constructed
// state and is handed out again as is (Linux's ctor contract). There is no destructor: a
// chunk's memory is released without running one.
//
// SLAB_TYPESAFE_BY_RCU (kTypesafeByRcu). An object of such a cache may be freed and handed
// out again at once, but only as an object of the same type: the chunk holding it goes back
// to the heap only after an RCU grace period. A reader inside RcuReadGuard that reached an
// object "obliquely" (through a pointer that nothing pins, as rmap reaches an anon_vma from a
// page) may therefore still take the object's lock, which the constructor set up and no free
// disturbs, but must then recheck the object's identity: it may be freed, or freed and reused
// for another object of the type. The protocol, as in Linux's page_lock_anon_vma_read:
//
//     RcuReadGuard rcu;
//     T* obj = load the pointer;          // may be stale from here on
//     lock obj->lock;                     // valid: type-stable memory, kept by the ctor
//     if (obj is not the object we meant) // the identity recheck, under the lock
//       unlock, give up or retry;
//     ... obj's fields are stable ...
//
// Without the flag a freed object's memory may be reused at once by the next allocation, so a
// user whose readers may still hold a pointer frees after a grace period (kfree_rcu's use:
// vm_area_free defers its free with rcu_free_later).
//
// Debug checking (on by default with MIRRORMM_DEBUG_CHECKS, switchable at run time with
// debug_set_checks). A freed object is filled with kPoisonFree (Linux's POISON_FREE), except
// its kept range: the constructor-initialised part that a free leaves valid (an anon_vma's
// rwsem, which the type-stable contract keeps; the whole object for a cache with a
// constructor and no range). The next allocation of the object checks that
// the poison is intact; a write after free is reported with the cache's name. Readers that
// rely on the identity recheck call debug_check_live() when they use a field past it: a use
// of a freed object, which the recheck should have turned away, is reported.
//
// Reports go to stderr, to a process-wide counter (debug_reports()) and to a hook that a test
// or a checker may register (debug_set_report_hook). A cache is process-wide, like Linux's,
// so it has no System to report to.
//
// Lifecycle: a cache is created once and lives until the process exits (the model's caches
// are function-local statics never destroyed, since RCU callbacks may still free into them at
// exit); a cache a test creates may be destroyed once every object is freed, and its
// destructor waits for pending RCU releases.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"

namespace mirrormm {

enum class SlabFlags : uint32_t {
  kNone = 0,
  kTypesafeByRcu = 1u << 0,  // SLAB_TYPESAFE_BY_RCU (was SLAB_DESTROY_BY_RCU)
};

// Counters of a cache. A snapshot: other CPUs may allocate and free while it is taken.
struct KmemCacheStats {
  uint64_t objects_in_use = 0;      // allocated and not yet freed
  uint64_t objects_per_chunk = 0;
  uint64_t chunks = 0;              // chunks the cache holds (carved, not released)
  uint64_t chunks_rcu_pending = 0;  // released chunks waiting for their grace period (TYPESAFE)
  uint64_t chunks_allocated = 0;    // chunks ever carved
  uint64_t chunks_released = 0;     // chunks ever returned to the heap
};

// One object cache. Locks: each CPU stack's spinlock (its objects and count), then the node
// lock (the chunks' free lists, the partial list and the chunk counters); a free object's
// state byte belongs to whoever holds the object. States of an object: free in a chunk's
// free list, free on a CPU stack, allocated.
class KmemCache {
 public:
  // Sets up the object at obj (uninitialised memory of the cache's size and alignment).
  using Ctor = void (*)(void* obj);
  // A byte range of the object (offset, size) that poisoning leaves alone: the part of the
  // constructed state that stays valid after a free (for a TYPESAFE cache, what its oblique
  // readers rely on; the rest the allocator's caller sets up again). Only with a constructor;
  // a cache with a constructor and no range keeps the whole object, as Linux does not poison
  // caches with a ctor.
  struct KeepRange {
    size_t offset;
    size_t size;
  };
  static constexpr size_t kChunkSize = 64 * 1024;
  static constexpr uint8_t kPoisonFree = 0x6b;  // POISON_FREE

  KmemCache(std::string name, size_t size, size_t align, SlabFlags flags, Ctor ctor = nullptr,
            KeepRange keep = {});
  // Every object must have been freed. Waits for pending RCU releases of chunks.
  ~KmemCache();
  KmemCache(const KmemCache&) = delete;
  KmemCache& operator=(const KmemCache&) = delete;

  // kmem_cache_alloc: an object in its constructed state (as the constructor left it, or as
  // its last user freed it). Never fails (the heap throws std::bad_alloc).
  [[nodiscard]] void* alloc() EXCLUDES(node_lock_);
  // kmem_cache_free: obj becomes free at once. Without kTypesafeByRcu its memory may be handed
  // out by the next alloc(), so readers that may still hold it must be past a grace period.
  void free(void* obj) EXCLUDES(node_lock_);
  // kmem_cache_shrink: drains the per-CPU stacks and releases every empty chunk (through a
  // grace period for TYPESAFE caches; rcu_barrier() waits for those).
  void shrink() EXCLUDES(node_lock_);

  KmemCacheStats stats() const EXCLUDES(node_lock_);
  const std::string& name() const { return name_; }
  size_t object_size() const { return size_; }
  bool typesafe_by_rcu() const { return flags_ == SlabFlags::kTypesafeByRcu; }

  // Debug checking: whether objects are poisoned on free and checked on allocation. Process-
  // wide; defaults to kDebugChecks. An object freed while it was off is not checked later.
  static void debug_set_checks(bool on);
  static bool debug_checks();
  // The identity-recheck assertion of TYPESAFE readers: reports a use of obj, an object of
  // this cache, while it is free. Returns whether obj is allocated (true when checks are off).
  // `what` names the use in the report ("anon_vma->num_children").
  bool debug_check_live(const void* obj, std::string_view what) const;
  // The cache an object belongs to (read from its chunk's header): for checkers that reached
  // an object obliquely and must know whether its cache is type-stable.
  static KmemCache* debug_cache_of(const void* obj);
  // Reports made by every cache so far (write after free, use of a free object).
  static uint64_t debug_reports();
  // Called with each report's text, besides stderr; an empty function removes the hook.
  static void debug_set_report_hook(std::function<void(std::string_view)> hook);

 private:
  struct Chunk;
  static constexpr int kCpuSlots = 64;  // as PhysMem's per-CPU lists: indexed by tls_this_cpu
  static constexpr int kCpuLimit = 120;  // mm/slab.c's limit and batchcount for small objects
  static constexpr int kBatch = 60;      // objects moved between a CPU stack and the chunks
  // A software CPU's stack of free objects (Linux's array_cache). Threads that run as no CPU
  // share the last slot.
  struct alignas(64) CpuCache {
    SpinLock lock{lock_class::kSlabCpu};
    int count GUARDED_BY(lock) = 0;
    void* objs[kCpuLimit] GUARDED_BY(lock) = {};
    // Allocations minus frees on this CPU (negative when objects are freed on another CPU
    // than the one that allocated them): kept per CPU so that alloc and free share no line.
    // Written under lock; atomic so that stats() sums without taking every CPU's lock.
    std::atomic<int64_t> in_use{0};
  };

  Chunk* chunk_of(const void* obj) const;
  size_t index_in(const Chunk* c, const void* obj) const;
  void* object_at(Chunk* c, size_t i) const;
  void refill_locked(CpuCache& cpu) REQUIRES(cpu.lock) EXCLUDES(node_lock_);
  void flush_locked(CpuCache& cpu, int n) REQUIRES(cpu.lock) EXCLUDES(node_lock_);
  void put_object_locked(void* obj) REQUIRES(node_lock_);
  Chunk* grow_locked() REQUIRES(node_lock_);
  void release_chunk_locked(Chunk* c) REQUIRES(node_lock_);
  // Whether free objects are poisoned in AddressSanitizer's shadow (ASan builds only): none
  // of a free object's bytes may be read.
  bool asan_poison() const { return flags_ != SlabFlags::kTypesafeByRcu && keep_.size == 0; }
  void poison(void* obj) const;
  void check_poison(const void* obj) const;
  static void report(const std::string& text);
  int64_t debug_in_use() const;  // the sum of the CPUs' counts: racy

  const std::string name_;  // written once
  const size_t size_;       // written once
  const size_t align_;      // written once
  const SlabFlags flags_;   // written once
  const Ctor ctor_;         // written once
  const KeepRange keep_;    // written once
  // The chunk layout (written once, by the constructor): the distance between objects, the
  // objects per chunk and the offset of the first object.
  size_t stride_ = 0;
  uint64_t reciprocal_ = 0;  // for index_in
  size_t per_chunk_ = 0;
  size_t first_offset_ = 0;

  CpuCache cpu_[kCpuSlots];
  // The node lock: the chunks' free lists and the list of chunks with free objects.
  mutable SpinLock node_lock_{lock_class::kSlabNode};
  Chunk* partial_ GUARDED_BY(node_lock_) = nullptr;  // chunks with free objects, doubly linked
  uint64_t chunks_ GUARDED_BY(node_lock_) = 0;
  uint64_t empty_chunks_ GUARDED_BY(node_lock_) = 0;  // on partial_ with every object free
  uint64_t chunks_allocated_ GUARDED_BY(node_lock_) = 0;
  uint64_t chunks_released_ GUARDED_BY(node_lock_) = 0;
  // Atomic: changed by RCU callbacks.
  std::atomic<uint64_t> rcu_pending_{0};
};

// The model's caches (Linux's names): anon_vma_cachep (rmap.cc; SLAB_TYPESAFE_BY_RCU, the
// rwsem kept) and vm_area_cachep (vma.cc; freed after a grace period by vm_area_free).
KmemCache& anon_vma_cachep();
KmemCache& vm_area_cachep();

}  // namespace mirrormm
