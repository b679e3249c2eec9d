// anon_vma identities, their chains and the reverse-map walk (mm/rmap.c).
//
// Locking, as mm/rmap.c's header states it (the full order is in mm/lock_order.h):
//   mmap_lock > page lock > i_mmap lock > anon_vma root rwsem > PTE lock.
// A chain link is added under the root's rwsem for write (plus the mm's page_table_lock when
// a fault installs a VMA's first anon_vma); a walk holds the root's rwsem for read.
#include <new>
#include <vector>

#include <fmt/format.h>

#include "mirrormm/base/rcu.h"
#include "mm/internal.h"
#include "mm/vmstat.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/pgtable_walk.h"
#include "mm/rmap.h"
#include "mm/shmem.h"
#include "mm/slab.h"
#include "mm/system_internal.h"
#include "mm/tlb.h"

namespace mirrormm {

// anon_vma_cachep: SLAB_TYPESAFE_BY_RCU, as in Linux. An rmap walk reaches an anon_vma
// obliquely, from a page's mapping, with nothing pinning it: under RcuReadGuard the memory
// stays an AnonVma, and its root, refcount and rwsem valid, however often the anon_vma is
// freed and reused, so the walk may take the root's rwsem and then recheck that the page still
// belongs to it. Those three fields are constructed once, by the constructor, and are the
// range that poisoning leaves alone; every other field is set up by anon_vma_alloc.
namespace {
void anon_vma_ctor(void* p) { new (p) AnonVma(); }

KmemCache::KeepRange anon_vma_keep_range() {
  static const AnonVma probe;
  const char* base = reinterpret_cast<const char*>(&probe);
  const char* end = reinterpret_cast<const char*>(&probe.rwsem) + sizeof(probe.rwsem);
  static_assert(offsetof(AnonVma, root) == 0, "the type-stable fields come first");
  return {0, static_cast<size_t>(end - base)};
}

// The checkers' variant: the same objects without the type-stable mode. A free object's
// memory may be reused at once; an oblique reader that reaches one is a use after free.
KmemCache& anon_vma_plain_cachep() {
  static KmemCache* cache =
      new KmemCache("anon_vma(plain)", sizeof(AnonVma), alignof(AnonVma), SlabFlags::kNone, anon_vma_ctor);
  return *cache;
}

KmemCache& anon_vma_chain_cachep() {
  static KmemCache* cache =  // never destroyed, as every model cache
      new KmemCache("anon_vma_chain", sizeof(AnonVmaChain), alignof(AnonVmaChain), SlabFlags::kNone);
  return *cache;
}
}  // namespace

KmemCache& anon_vma_cachep() {
  static KmemCache* cache =  // never destroyed: its chunks are released through RCU callbacks
      new KmemCache("anon_vma", sizeof(AnonVma), alignof(AnonVma), SlabFlags::kTypesafeByRcu, anon_vma_ctor,
                    anon_vma_keep_range());
  return *cache;
}

namespace {

// The new anon_vma is not published yet, but its memory is type-stable: an oblique reader
// holding a stale pointer may try its rwsem at any time. The guarded fields are therefore set
// up under that rwsem (the new anon_vma is its own root), which costs an uncontended lock per
// allocation and keeps every write under the lock the fields name. refcount is set with a
// store, not constructed: such a reader may be trying it (it fails on 0, the value of a free
// object, and may succeed once it is 1, then rechecks). The caller holds no anon_vma lock.
AnonVma* anon_vma_alloc(System* sys) {
  KmemCache& cache =
      sys->debug_broken(System::DebugBreak::kAnonVmaNotTypesafe) ? anon_vma_plain_cachep() : anon_vma_cachep();
  auto* av = static_cast<AnonVma*>(cache.alloc());
  anon_vma_set_root(av, av);
  av->parent = av;
  {
    WriteGuard g(av->rwsem);
    anon_vma_assert_write_locked(av, av);
    av->num_children = 0;
    av->num_active_vmas = 0;
    av->num_avcs = 0;
    new (&av->rb_root) IntervalTree<AnonVmaChain>();
  }
  av->cache = &cache;
  av->refcount.store(1, std::memory_order_release);
  return av;
}

AnonVmaChain* anon_vma_chain_alloc() { return new (anon_vma_chain_cachep().alloc()) AnonVmaChain(); }
void anon_vma_chain_free(AnonVmaChain* avc) { anon_vma_chain_cachep().free(avc); }

// The key of vma in an rmap interval tree: its page-offset range, inclusive.
void avc_set_key(AnonVmaChain* avc) {
  avc->start = avc->vma->vm_pgoff;
  avc->last = avc->vma->vm_pgoff + avc->vma->pages() - 1;
}

// anon_vma_chain_link: vma may map pages of av. The caller holds av's root rwsem for write.
void anon_vma_chain_link_locked(Vma* vma, AnonVmaChain* avc, AnonVma* av) REQUIRES(av->root->rwsem) {
  avc->vma = vma;
  avc->anon_vma = av;
  vma->anon_vma_chain.push_back(avc);
  avc_set_key(avc);
  av->rb_root.insert(avc);
  av->num_avcs++;
}

void anon_vma_chain_link(Vma* vma, AnonVma* av) {
  AnonVmaChain* avc = anon_vma_chain_alloc();
  WriteGuard g(av->root->rwsem);
  anon_vma_chain_link_locked(vma, avc, av);
}

// anon_vma_compatible(a, b): a ends where b starts and they differ only in rwx and in the
// flags merging ignores (VM_IGNORE_MERGE: soft-dirty, guard markers).
bool anon_vma_compatible(const Vma* a, const Vma* b) {
  return a->vm_end == b->vm_start && a->vm_file == b->vm_file &&
         !((a->vm_flags ^ b->vm_flags) & ~(VM_ACCESS_FLAGS | VM_IGNORE_MERGE)) &&
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

// States that av's root rwsem is held (for read at least) through `locked`, a member of the
// same family whose root the caller locked.
void anon_vma_assert_read_locked(AnonVma* av, AnonVma* root) ASSERT_SHARED_CAPABILITY(av->root->rwsem) {
  (void)av;
  (void)root;
  MM_DEBUG_ON(av->root != root);
}

}  // namespace

void put_anon_vma(AnonVma* av) {
  if (av->refcount.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  AnonVma* root = av->root;
  av->cache->free(av);  // no destructor: root, refcount and rwsem stay valid (type-stable)
  if (root != av) put_anon_vma(root);
}

Errno anon_vma_prepare(Vma* vma) {
  if (vma->anon_vma) return Errno::kOk;
  Mm* mm = vma->vm_mm;
  AnonVma* av = find_mergeable_anon_vma(vma);
  AnonVma* allocated = nullptr;
  if (!av) av = allocated = anon_vma_alloc(mm->sys());
  AnonVmaChain* avc = anon_vma_chain_alloc();
  {
    // anon_vma_lock_write, then page_table_lock (the lock order).
    WriteGuard rw(av->root->rwsem);
    if (allocated) av->num_children++;  // a new root is its own parent
    SpinGuard g(mm->page_table_lock_);
    if (!vma->anon_vma) {
      anon_vma_chain_link_locked(vma, avc, av);
      av->num_active_vmas++;
      // Published last: a fault under the VMA lock that sees it finds the link in place.
      vma->anon_vma.store(av, std::memory_order_release);
      allocated = nullptr;
      avc = nullptr;
    }
  }
  if (avc) anon_vma_chain_free(avc);
  if (allocated) put_anon_vma(allocated);
  return Errno::kOk;
}

Errno anon_vma_clone(Vma* dst, const Vma* src) {
  for (AnonVmaChain* src_avc : src->anon_vma_chain) {  // oldest first, as Linux's reverse walk
    AnonVma* av = src_avc->anon_vma;
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
  AnonVma* av = anon_vma_alloc(vma->vm_mm->sys());
  anon_vma_set_root(av, pvma->anon_vma.load()->root);
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
  // Newest first, so that a root is released after its children. Each link leaves its
  // anon_vma's tree under the root's rwsem: from then on no walk reaches this VMA through it.
  for (auto it = vma->anon_vma_chain.rbegin(); it != vma->anon_vma_chain.rend(); ++it) {
    AnonVmaChain* avc = *it;
    AnonVma* av = avc->anon_vma;
    {
      WriteGuard g(av->root->rwsem);
      av->rb_root.erase(avc);
      if (--av->num_avcs == 0) {
        anon_vma_assert_write_locked(av->parent, av);
        av->parent->num_children--;
        empty.push_back(av);
      }
    }
    anon_vma_chain_free(avc);
  }
  vma->anon_vma_chain.clear();
  for (AnonVma* av : empty) put_anon_vma(av);
}

bool anon_vma_chain_check(const Vma* vma) {
  AnonVma* av = vma->anon_vma;
  if (!av) return true;
  for (AnonVmaChain* avc : vma->anon_vma_chain)
    if (avc->anon_vma == av) return true;
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

// ---- the reverse-map walk ----

AnonVma* folio_anon_vma(const Page* page) {
  if (!page->test(PG_anon)) return nullptr;
  return static_cast<AnonVma*>(std::atomic_ref<void*>(const_cast<Page*>(page)->mapping).load(std::memory_order_acquire));
}

namespace {

// An oblique reader reached av: with the type-stable cache that is allowed even if av is free
// (the recheck comes next); with the plain cache (its test switch) a free av is a use after
// free, reported by the cache. Returns false when av must not be touched.
bool anon_vma_oblique_ok(const AnonVma* av) {
  KmemCache* cache = KmemCache::debug_cache_of(av);
  return cache->typesafe_by_rcu() || cache->debug_check_live(av, "anon_vma reached from a page (no SLAB_TYPESAFE_BY_RCU)");
}

// The identity recheck under the root's rwsem (folio_mapped), which the test switch removes.
bool anon_vma_recheck(System* sys, Page* page) {
  return folio_mapped(page) || sys->debug_broken(System::DebugBreak::kNoAnonVmaRecheck);
}

}  // namespace

AnonVma* folio_get_anon_vma(System* sys, Page* page) {
  RcuReadGuard rcu;
  AnonVma* av = folio_anon_vma(page);
  if (!av || !folio_mapped(page)) return nullptr;
  if (const System::RmapGate& gate = sys->debug_rmap_gate()) gate(page);
  sys->debug_race_pause();
  if (!anon_vma_oblique_ok(av)) return nullptr;
  int c = av->refcount.load(std::memory_order_relaxed);
  do {
    if (c == 0) return nullptr;  // free (or being freed): not the page's any more
  } while (!av->refcount.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel));
  // The reference pins the memory, not the identity: if the page was unmapped meanwhile, av
  // may be another anon_vma now.
  if (!folio_mapped(page)) {
    put_anon_vma(av);
    return nullptr;
  }
  return av;
}

bool folio_lock_anon_vma_read(Page* page, RmapWalkControl* rwc, const std::function<void(AnonVma*)>& fn) {
  System* sys = rwc->sys;
  AnonVma* av = nullptr;
  AnonVma* root = nullptr;
  {
    RcuReadGuard rcu;
    av = folio_anon_vma(page);
    if (!av || !folio_mapped(page)) return false;
    if (const System::RmapGate& gate = sys->debug_rmap_gate()) gate(page);
    sys->debug_race_pause();
    if (!anon_vma_oblique_ok(av)) return false;
    root = anon_vma_root_racy(av);
    if (root->rwsem.down_read_trylock()) {
      // Still mapped, so av is still the page's anon_vma and root its root; holding the
      // rwsem keeps it from going away.
      if (!anon_vma_recheck(sys, page)) {
        root->rwsem.up_read();
        return false;
      }
      anon_vma_assert_read_locked(av, root);
      fn(av);
      root->rwsem.up_read();
      return true;
    }
    if (rwc->try_lock) {
      rwc->contended = true;
      return false;
    }
  }
  // Sleeping for the lock: pin av first (folio_get_anon_vma), outside the RCU section.
  av = folio_get_anon_vma(sys, page);
  if (!av) return false;
  root = av->root;
  bool ran = false;
  {
    ReadGuard g(root->rwsem);
    if (anon_vma_recheck(sys, page)) {
      anon_vma_assert_read_locked(av, root);
      fn(av);
      ran = true;
    }
  }
  put_anon_vma(av);
  return ran;
}

uint64_t vma_address(const Vma* vma, uint64_t pgoff) {
  if (pgoff < vma->vm_pgoff) return ~0ull;
  const uint64_t addr = vma->vm_start + ((pgoff - vma->vm_pgoff) << kPageShift);
  return addr < vma->vm_end ? addr : ~0ull;
}

pte_t* page_vma_mapped_pte(Page* page, Vma* vma, uint64_t address) {
  pte_t* ptep = pte_offset(vma->vm_mm, address);
  if (!ptep) return nullptr;
  const pteval_t v = ptep_get(ptep);
  const pfn_t pfn = vma->vm_mm->mem().page_to_pfn(page);
  if (is_device_exclusive_entry(v)) return device_exclusive_entry_pfn(v) == pfn ? ptep : nullptr;
  if (!pte_present(v) || pte_special(v)) return nullptr;
  return pte_pfn(v) == pfn ? ptep : nullptr;
}

namespace {

// Visits the VMAs of one anon_vma tree (or i_mmap tree) that may map pgoff.
// The walk visits the candidate VMAs in two passes: the interval-tree query first gathers
// them (touching only the chain links), then each is checked while the memory the ones a few
// places later will need is prefetched: the VMA, its mm, and the top-level page-table entry.
// A page shared by many processes has those in as many different places, so the misses of
// different address spaces overlap instead of adding up.
constexpr size_t kInlineVmas = 32;
// How far ahead each stage works: one stage's prefetch must have arrived when the next stage
// reads it, a couple of VMAs later.
constexpr size_t kAheadVma = 10, kAheadMm = 8, kAheadPgd = 6, kAheadPud = 4, kAheadPmd = 2;

// The entry of `table` (a level of vma's page tables) for address, if that entry is present:
// the next level's table.
pte_t* next_level(const Vma* v, const pte_t* entry) {
  const pteval_t e = ptep_get(entry);
  return pte_none(e) ? nullptr : table_of(v->vm_mm->mem(), e);
}

// The prefetches for the VMAs ahead: the VMA, its mm's pgd pointer, then its PGD, PUD and PMD
// entries, each stage reading what the stage before prefetched. The page-table reads are peeks
// of what the walk itself will read under the rmap lock a few VMAs later.
void prefetch_walk(Vma* const* vmas, size_t n, size_t i, uint64_t pgoff) {
  if (i + kAheadVma < n) __builtin_prefetch(vmas[i + kAheadVma]);
  if (i + kAheadMm < n) __builtin_prefetch(&vmas[i + kAheadMm]->vm_mm->pgd_);
  auto entry_at = [&](size_t k, int levels) -> const pte_t* {
    const Vma* v = vmas[k];
    const uint64_t address = vma_address(v, pgoff);
    if (address == ~0ull) return nullptr;
    const pte_t* e = &pgd_table(v->vm_mm)[index_at(address, kPgdShift)];
    static constexpr int kShifts[] = {kPgdShift, kPudShift, kPmdShift};
    for (int l = 1; l < levels && e; l++) {
      const pte_t* t = next_level(v, e);
      e = t ? &t[index_at(address, kShifts[l])] : nullptr;
    }
    return e;
  };
  if (i + kAheadPgd < n)
    if (const pte_t* e = entry_at(i + kAheadPgd, 1)) __builtin_prefetch(e);
  if (i + kAheadPud < n)
    if (const pte_t* e = entry_at(i + kAheadPud, 2)) __builtin_prefetch(e);
  if (i + kAheadPmd < n)
    if (const pte_t* e = entry_at(i + kAheadPmd, 3)) __builtin_prefetch(e);
}

// The VMAs of anon_vma av that may map the page, in the interval tree's order (for equal
// ranges, oldest link first: a fork's child comes after its parent).
void rmap_walk_anon_vma(Page* page, AnonVma* av, RmapWalkControl& rwc) REQUIRES_SHARED(av->root->rwsem) {
  const uint64_t pgoff = page->index;
  Vma* inline_vmas[kInlineVmas];
  std::vector<Vma*> more;  // used past kInlineVmas
  size_t n = 0;
  av->rb_root.for_each_overlap(pgoff, pgoff, [&](AnonVmaChain* avc) {
    if (n < kInlineVmas) {
      inline_vmas[n] = avc->vma;
    } else {
      if (more.empty()) more.assign(inline_vmas, inline_vmas + kInlineVmas);
      more.push_back(avc->vma);
    }
    n++;
    return true;
  });
  Vma* const* vmas = n <= kInlineVmas ? inline_vmas : more.data();
  for (size_t i = 0; i < n; i++) {
    prefetch_walk(vmas, n, i, pgoff);
    const uint64_t address = vma_address(vmas[i], pgoff);
    if (address == ~0ull) continue;
    if (!rwc.rmap_one(page, vmas[i], address)) break;
    if (rwc.done && rwc.done(page)) break;
  }
}

void rmap_walk_anon(Page* page, RmapWalkControl& rwc) {
  if (AnonVma* av = rwc.anon_vma) {
    ReadGuard g(av->root->rwsem);
    anon_vma_assert_read_locked(av, av->root);
    rmap_walk_anon_vma(page, av, rwc);
    return;
  }
  folio_lock_anon_vma_read(page, &rwc, [&](AnonVma* av) {
    // The recheck proved av is the page's: a use of a free anon_vma here is a missing recheck.
    if (KmemCache* cache = KmemCache::debug_cache_of(av); !cache->debug_check_live(av, "anon_vma->rb_root"))
      return;
    anon_vma_assert_read_locked(av, av->root);
    rmap_walk_anon_vma(page, av, rwc);
  });
}

void rmap_walk_file(Page* page, RmapWalkControl& rwc) {
  auto* inode = static_cast<ShmemInode*>(page->mapping);
  if (!inode) return;
  if (rwc.try_lock) {
    if (!inode->i_mmap_lock().try_lock()) {
      rwc.contended = true;
      return;
    }
  } else {
    inode->i_mmap_lock().lock();
  }
  const uint64_t pgoff = page->index;
  bool go = true;
  inode->for_each_mapping_of_locked(pgoff, pgoff, [&](Vma* vma) {
    if (!go) return;
    const uint64_t address = vma_address(vma, pgoff);
    if (address == ~0ull) return;
    go = rwc.rmap_one(page, vma, address) && !(rwc.done && rwc.done(page));
  });
  inode->i_mmap_lock().unlock();
}

}  // namespace

void rmap_walk(Page* page, RmapWalkControl& rwc) {
  if (page->test(PG_anon))
    rmap_walk_anon(page, rwc);
  else if (page->test(PG_shmem))
    rmap_walk_file(page, rwc);
}

int folio_referenced(System* sys, Page* page, PageLocked is_locked, bool* vm_locked) {
  if (!folio_mapped(page)) return 0;
  int referenced = 0;
  RmapWalkControl rwc;
  rwc.sys = sys;
  rwc.try_lock = is_locked == PageLocked::kNo;
  rwc.rmap_one = [&](Page* p, Vma* vma, uint64_t address) {
    Mm* mm = vma->vm_mm;
    pte_t* ptep = page_vma_mapped_pte(p, vma, address);
    if (ptep) {
      bool young;
      bool exclusive = false;
      {
        SpinGuard g(pte_lockptr(mm, ptep));
        // Recheck under the lock: the entry may have changed since the unlocked look.
        const pteval_t v = ptep_get(ptep);
        const uint64_t pfn = mm->mem().page_to_pfn(p);
        // A page a device holds exclusively is in use by that device: folio_referenced_one
        // counts a device-exclusive entry as young (there is no bit to clear).
        exclusive = is_device_exclusive_entry(v) && device_exclusive_entry_pfn(v) == pfn;
        const bool maps = (pte_present(v) && pte_pfn(v) == pfn) || exclusive;
        // folio_referenced_one's VM_LOCKED case: restore the mlock that got missed.
        if (maps && (vma_flags_racy(vma) & VM_LOCKED)) {
          if (mlock_folio(mm->mem(), p)) mm->mem().events().count(UNEVICTABLE_PGCULLED);
          if (vm_locked) *vm_locked = true;
          return false;
        }
        young = !exclusive && maps && ptep_test_and_clear_young(ptep);
      }
      if (exclusive) referenced++;
      // ptep_clear_flush_young: a CPU that cached the translation while it was young would
      // not set the bit again; flush it so the next access is seen.
      if (young) {
        flush_tlb_page(mm, address);
        referenced++;
      }
    }
    // mmu_notifier_clear_flush_young: a secondary MMU that used the page keeps it young (also
    // when the CPU's mapping is gone, as for a page a device still maps).
    if (mmu_notifier_clear_flush_young(mm, address, address + kPageSize)) referenced++;
    return true;
  };
  rmap_walk(page, rwc);
  if (rwc.contended) return 1;  // a busy rmap lock: treat as referenced and keep the page
  return referenced;
}

void vma_adjust_rmap(Vma* vma, uint64_t start, uint64_t end, uint64_t pgoff) {
  ShmemInode* inode = vma->vm_file ? vma->vm_file->inode : nullptr;
  AnonVma* root = vma->anon_vma_chain.empty() ? nullptr : vma->anon_vma_chain.front()->anon_vma->root;
  // The anon_vma side: every link leaves its tree, the fields change, the links go back with
  // their new keys, all under the root's rwsem.
  auto adjust_anon = [&] {
    if (!root) {
      vma->vm_start = start;
      vma->vm_end = end;
      vma->vm_pgoff = pgoff;
      return;
    }
    WriteGuard g(root->rwsem);
    for (AnonVmaChain* avc : vma->anon_vma_chain) {
      anon_vma_assert_write_locked(avc->anon_vma, root);
      avc->anon_vma->rb_root.erase(avc);
    }
    vma->vm_start = start;
    vma->vm_end = end;
    vma->vm_pgoff = pgoff;
    for (AnonVmaChain* avc : vma->anon_vma_chain) {
      anon_vma_assert_write_locked(avc->anon_vma, root);
      avc_set_key(avc);
      avc->anon_vma->rb_root.insert(avc);
    }
  };
  if (!inode) {
    adjust_anon();
    return;
  }
  // The file side outside it (i_mmap lock before the anon_vma lock).
  MutexGuard g(inode->i_mmap_lock());
  const bool linked = vma->shared.in_tree;
  if (linked) inode->i_mmap_remove_locked(vma);
  adjust_anon();
  if (linked) inode->i_mmap_insert_locked(vma);
}

void unlink_file_vma(Vma* vma) {
  if (vma->vm_file) vma->vm_file->inode->i_mmap_remove(vma);
}

}  // namespace mirrormm
