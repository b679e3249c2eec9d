// anon_vma identities and their chains (the anon_vma half of mm/rmap.c).
//
// Only what VMA merging and fork need exists yet: identity, the chain of a VMA, and the
// counters Linux uses to decide reuse (num_children, num_active_vmas). The reverse-map walk
// over a page's mappings is not modeled yet; pages already point at their anon_vma.
#include <new>

#include <fmt/format.h>

#include "mm/internal.h"
#include "mm/slab.h"
#include "mm/system_internal.h"

namespace mirrormm {

// anon_vma_cachep: SLAB_TYPESAFE_BY_RCU, as in Linux. An rmap walk reaches an anon_vma
// obliquely, from a page's mapping, with nothing pinning it: under RcuReadGuard the memory
// stays an AnonVma, and its rwsem a valid lock, however often the anon_vma is freed and
// reused, so the walk may take the rwsem and then recheck that the page still belongs to it.
// The rwsem is therefore constructed once, by the constructor, and is the range that
// poisoning leaves alone; every other field is set up by anon_vma_alloc.
namespace {
void anon_vma_ctor(void* p) { new (p) AnonVma(); }

KmemCache::KeepRange anon_vma_keep_range() {
  static const AnonVma probe;
  return {static_cast<size_t>(reinterpret_cast<const char*>(&probe.rwsem) - reinterpret_cast<const char*>(&probe)),
          sizeof(probe.rwsem)};
}
}  // namespace

KmemCache& anon_vma_cachep() {
  static KmemCache* cache =  // never destroyed: its chunks are released through RCU callbacks
      new KmemCache("anon_vma", sizeof(AnonVma), alignof(AnonVma), SlabFlags::kTypesafeByRcu, anon_vma_ctor,
                    anon_vma_keep_range());
  return *cache;
}

namespace {

// The new anon_vma is not published yet: its fields are written without its root's rwsem.
AnonVma* anon_vma_alloc() NO_THREAD_SAFETY_ANALYSIS {
  auto* av = static_cast<AnonVma*>(anon_vma_cachep().alloc());
  av->root = av;
  av->parent = av;
  av->refcount.store(1, std::memory_order_relaxed);
  av->num_children = 0;
  av->num_active_vmas = 0;
  av->num_avcs = 0;
  return av;
}

void put_anon_vma(AnonVma* av) {
  if (av->refcount.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  AnonVma* root = av->root;
  anon_vma_cachep().free(av);  // no destructor: the rwsem stays constructed (type-stable)
  if (root != av) put_anon_vma(root);
}

// The counters of an anon_vma change under its root's rwsem: the VMAs linked to one family of
// anon_vmas belong to different processes, under different mmap_locks.
void anon_vma_chain_link(Vma* vma, AnonVma* av) {
  vma->anon_vma_chain.push_back(av);
  WriteGuard g(av->root->rwsem);
  av->num_avcs++;
}

// anon_vma_compatible(a, b): a ends where b starts and they differ only in rwx.
bool anon_vma_compatible(const Vma* a, const Vma* b) {
  return a->vm_end == b->vm_start && a->vm_file == b->vm_file &&
         !((a->vm_flags ^ b->vm_flags) & ~(VM_ACCESS_FLAGS | VM_SOFTDIRTY)) &&
         b->vm_pgoff == a->vm_pgoff + ((b->vm_start - a->vm_start) >> kPageShift);
}

AnonVma* reusable_anon_vma(const Vma* old, const Vma* a, const Vma* b) {
  if (!anon_vma_compatible(a, b)) return nullptr;
  // Another fault (mmap_lock for read) may be installing old's anon_vma right now; that
  // happens under page_table_lock.
  SpinGuard g(old->vm_mm->page_table_lock_);
  if (old->anon_vma && old->anon_vma_chain.size() == 1) return old->anon_vma;
  return nullptr;
}

// find_mergeable_anon_vma: the immediate next neighbour first, then the previous one.
AnonVma* find_mergeable_anon_vma(Vma* vma) REQUIRES_SHARED(vma->vm_mm->mmap_lock_) {
  Mm* mm = vma->vm_mm;
  mmap_assert_locked(mm);
  Vma* next = mm->vma_next(vma);
  if (next && next->vm_start == vma->vm_end) {
    if (AnonVma* av = reusable_anon_vma(next, vma, next)) return av;
  }
  Vma* prev = mm->vma_prev(vma);
  if (prev) return reusable_anon_vma(prev, prev, vma);
  return nullptr;
}

}  // namespace

Errno anon_vma_prepare(Vma* vma) {
  if (vma->anon_vma) return Errno::kOk;
  Mm* mm = vma->vm_mm;
  AnonVma* av = find_mergeable_anon_vma(vma);
  AnonVma* allocated = nullptr;
  if (!av) av = allocated = anon_vma_alloc();
  {
    // anon_vma_lock_write, then page_table_lock (the lock order).
    WriteGuard rw(av->root->rwsem);
    if (allocated) av->num_children++;  // a new root is its own parent
    SpinGuard g(mm->page_table_lock_);
    if (!vma->anon_vma) {
      vma->anon_vma_chain.push_back(av);
      av->num_avcs++;
      av->num_active_vmas++;
      vma->anon_vma = av;
      allocated = nullptr;
    }
  }
  if (allocated) put_anon_vma(allocated);
  return Errno::kOk;
}

Errno anon_vma_clone(Vma* dst, const Vma* src) {
  for (AnonVma* av : src->anon_vma_chain) {  // oldest first, as Linux's reverse walk
    anon_vma_chain_link(dst, av);
    // Reuse an anon_vma that no VMA uses any more and that has at most one child. The root
    // is never reused: it counts itself as a child.
    WriteGuard g(av->root->rwsem);
    if (!dst->anon_vma && src->anon_vma && av->num_children < 2 && av->num_active_vmas == 0)
      dst->anon_vma = av;
  }
  if (AnonVma* av = dst->anon_vma) {
    WriteGuard g(av->root->rwsem);
    av->num_active_vmas++;
  }
  return Errno::kOk;
}

Errno anon_vma_fork(Vma* vma, const Vma* pvma) {
  if (!pvma->anon_vma) return Errno::kOk;
  vma->anon_vma = nullptr;
  if (Errno e = anon_vma_clone(vma, pvma); e != Errno::kOk) return e;
  if (vma->anon_vma) return Errno::kOk;  // an existing anon_vma was reused
  AnonVma* av = anon_vma_alloc();
  av->root = pvma->anon_vma.load()->root;
  av->parent = pvma->anon_vma;
  av->root->refcount.fetch_add(1, std::memory_order_relaxed);
  vma->anon_vma = av;
  // The unchained-anon_vma test switch leaves the child's own anon_vma out of its chain: no
  // link counts it, so a VMA that links it later frees it, while the child still points at
  // it, when that VMA goes.
  if (!vma->vm_mm->sys()->debug_broken(System::DebugBreak::kForkUnchainedAnonVma)) anon_vma_chain_link(vma, av);
  WriteGuard g(av->root->rwsem);
  av->num_active_vmas++;
  anon_vma_assert_write_locked(av->parent, av);
  av->parent->num_children++;
  return Errno::kOk;
}

void unlink_anon_vmas(Vma* vma) {
  std::vector<AnonVma*> empty;
  // vma->anon_vma is in the chain: while our link on it is still counted, nobody can free it.
  // (Touching it after the loop would race with another process dropping the last link.)
  if (AnonVma* av = vma->anon_vma) {
    WriteGuard g(av->root->rwsem);
    av->num_active_vmas--;
    vma->anon_vma = nullptr;
  }
  // Newest first, so that a root is released after its children.
  for (auto it = vma->anon_vma_chain.rbegin(); it != vma->anon_vma_chain.rend(); ++it) {
    AnonVma* av = *it;
    WriteGuard g(av->root->rwsem);
    if (--av->num_avcs == 0) {
      anon_vma_assert_write_locked(av->parent, av);
      av->parent->num_children--;
      empty.push_back(av);
    }
  }
  vma->anon_vma_chain.clear();
  for (AnonVma* av : empty) put_anon_vma(av);
}

bool anon_vma_chain_check(const Vma* vma) {
  AnonVma* av = vma->anon_vma;
  if (!av) return true;
  for (AnonVma* linked : vma->anon_vma_chain)
    if (linked == av) return true;
  vma->vm_mm->sys()->report_violation(fmt::format(
      "mm {}: VMA [{:#x}, {:#x}) has anon_vma {} outside its own anon_vma_chain ({} link(s))", vma->vm_mm->id(),
      vma->vm_start, vma->vm_end, static_cast<const void*>(av), vma->anon_vma_chain.size()));
  return false;
}

void anon_vma_chain_repair(Vma* vma) {
  if (!anon_vma_chain_check(vma)) anon_vma_chain_link(vma, vma->anon_vma);
}

Errno dup_anon_vma(Vma* dst, const Vma* src) {
  if (src->anon_vma && !dst->anon_vma) {
    dst->anon_vma = src->anon_vma.load();
    return anon_vma_clone(dst, src);
  }
  return Errno::kOk;
}

}  // namespace mirrormm
