// Locking memory (mm/mlock.c): mlock, mlock2, munlock, mlockall, munlockall, the mlocked
// state of pages and the unevictable LRU list they live on; and the resource limits the
// mapping calls obey (may_expand_vm and the VMA counters of mm/mmap.c, do_prlimit of
// kernel/sys.c).
//
// A VMA is locked when VM_LOCKED is set (VM_LOCKONFAULT with it: mlock2(MLOCK_ONFAULT) and
// MCL_ONFAULT, which lock what is faulted later instead of populating now). The flags change
// through mlock_fixup, which splits and merges VMAs as mprotect does (vma_modify_flags). A
// page mapped by a locked VMA is mlocked: PG_mlocked and PG_unevictable, on the unevictable
// list, where reclaim never looks. Pages become mlocked when
//   - mlock_fixup locks a range: the pages its PTEs map (mlock_vma_pages_range);
//   - a fault maps a page into a locked VMA (folio_add_lru_vma for new anonymous pages,
//     mlock_vma_folio for page-cache and swap-cache pages);
//   - reclaim meets a locked VMA among a page's mappings (folio_referenced,
//     try_to_unmap_one): the page is moved to the unevictable list and kept
//     (unevictable_pgs_culled). This is what guarantees that a locked page is never
//     reclaimed, whatever raced with the lock.
// and lose one lock when munlock clears the flags (the pages its PTEs map) or a locked VMA's
// mapping of the page goes (zap, COW). As in Linux 6.18 a page on the unevictable list counts
// its locked mappings (mlock_count) and stops being mlocked when the count reaches 0. The
// count may undercount (a lock taken while the page was off the LRU is not counted); a page
// that a locked VMA still maps then returns to the evictable lists until reclaim finds that
// VMA and culls it again, which is how Linux recovers from a lost count. A page whose VMA
// lost its lock without an unlock of its pages (MREMAP_DONTUNMAP clears the source's flags)
// stays mlocked until it is freed, as in Linux.
//
// Locks: mlock_fixup runs under the mmap_lock for write; the page walk takes each PTE lock
// and, inside it, the lru_lock (lock_order.h: the lru_lock nests inside the PTE lock).
// Population afterwards runs under the mmap_lock for read, as MAP_POPULATE's does.
#include <algorithm>

#include "mirrormm/mman.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/vmstat.h"

namespace mirrormm {

// ---- the page side ----
//
// As in Linux 6.18, mlock and munlock of a page go through a per-CPU batch (mlock_fbatch),
// like the LRU add batch: mlock_folio sets PG_mlocked at once and queues the page; the list
// move and the count wait until the batch is applied under one lru_lock hold, when it fills
// (kFolioBatchSize entries) or is drained (lru_add_drain and lru_add_drain_all drain it after
// the add batch). munlock_folio queues only: whether the page stays mlocked depends on its
// count, which only the batch looks at. Each entry holds a page reference until applied.
//
// The order in which the two batches of a CPU are applied decides the count: a page that an
// mlock entry finds off the LRU (still in the add batch, or isolated) is not counted, and the
// add batch then puts it on the unevictable list with a count of 0 (lru_add); a page the add
// batch linked first is counted by its mlock entry. A page faulted into a locked VMA is added
// to the add batch just before it is mlocked, so when both batches fill in step the add batch
// goes first and every such page is counted once; out of step, some are not counted, and a
// later mlock of a second mapping and the munlocks of both leave them evictable or mlocked
// accordingly.

namespace {

// __mlock_folio: an mlock entry of a page that was on (or briefly off) the LRU.
void apply_mlock(Lruvec& lruvec, Page* page) REQUIRES(lruvec.lru_lock) {
  // Off the LRU (in an add batch, isolated) nothing can be done: whoever puts it back decides.
  if (!page->test(PG_lru)) return;
  if (!page->test(PG_mlocked)) {
    // Munlocked meanwhile: back to the evictable lists if it was still unevictable.
    if (page->test(PG_unevictable)) {
      lruvec.del_folio(page);
      page->clear(PG_unevictable);
      lruvec.add_folio(page);
    }
    return;
  }
  if (page->test(PG_unevictable)) {
    page->mlock_count++;
    return;
  }
  lruvec.del_folio(page);
  page->clear(PG_active);
  page->set(PG_unevictable);
  page->mlock_count = 1;
  lruvec.add_folio(page);
}

// __mlock_new_folio: a new page joins a list, the unevictable one when still mlocked.
void apply_mlock_new(Lruvec& lruvec, Page* page) REQUIRES(lruvec.lru_lock) {
  MM_BUG_ON(page->test(PG_lru));
  if (page->test(PG_mlocked)) {
    page->clear(PG_active);
    page->set(PG_unevictable);
    page->mlock_count = 1;
  }
  lruvec.add_folio(page);
  page->set(PG_lru);
}

// __munlock_folio: a munlock entry. On the unevictable list the count goes down and the page
// stays mlocked while it is not 0; otherwise this is taken for the last lock (reclaim
// restores one that a locked mapping still holds). A page off the LRU loses PG_mlocked and,
// since nothing re-evaluates it until it is put back, PG_unevictable with it, so that the
// putback picks an evictable list (Linux's putback decides from PG_mlocked).
void apply_munlock(Lruvec& lruvec, VmEvents& events, Page* page) REQUIRES(lruvec.lru_lock) {
  const bool on_lru = page->test(PG_lru);
  if (on_lru && page->test(PG_unevictable)) {
    if (page->mlock_count) page->mlock_count--;
    if (page->mlock_count) return;
  }
  if (page->test(PG_mlocked)) {
    page->clear(PG_mlocked);
    events.count(UNEVICTABLE_PGMUNLOCKED);
  }
  if (!page->test(PG_unevictable)) return;
  if (on_lru) lruvec.del_folio(page);
  page->clear(PG_unevictable);
  if (on_lru) lruvec.add_folio(page);
}

// mlock_folio_batch: applies entries in order under one lru_lock hold, then drops their
// references (freeing, after the lock, pages whose last reference that was).
void mlock_folio_batch(PhysMem& mem, const LruAddBatches::MlockEntry* entries, int n) {
  Lruvec& lruvec = mem.lruvec();
  Page* pages[kFolioBatchSize];
  Page* dying[kFolioBatchSize];
  size_t ndying = 0;
  {
    SpinGuard g(lruvec.lru_lock);
    for (int i = 0; i < n; i++) {
      Page* page = entries[i].page;
      pages[i] = page;
      switch (entries[i].op) {
        case MlockOp::kMlockLru: apply_mlock(lruvec, page); break;
        case MlockOp::kMlockNew: apply_mlock_new(lruvec, page); break;
        case MlockOp::kMunlock: apply_munlock(lruvec, mem.events(), page); break;
      }
    }
    ndying = drop_batch_refs_locked(lruvec, pages, n, dying);
  }
  if (ndying) mem.free_unref_pages(dying, ndying);
}

// Queues an entry (holding a reference the caller took) in this CPU's mlock batch and
// applies the batch when it is full.
void mlock_batch_add(PhysMem& mem, Page* page, MlockOp op) {
  LruAddBatches::Slot& s = mem.lru_add_batches().this_cpu();
  LruAddBatches::MlockEntry full[kFolioBatchSize];
  {
    SpinGuard g(s.mlock_lock);
    const int nr = s.mlock_nr.load(std::memory_order_relaxed) + 1;
    s.mlock[nr - 1] = {page, op};
    if (nr < kFolioBatchSize) {
      s.mlock_nr.store(nr, std::memory_order_relaxed);
      return;
    }
    std::copy(s.mlock, s.mlock + kFolioBatchSize, full);
    s.mlock_nr.store(0, std::memory_order_relaxed);
  }
  mlock_folio_batch(mem, full, kFolioBatchSize);
}

}  // namespace

void mlock_drain_slot(PhysMem& mem, LruAddBatches::Slot& s) {
  if (s.mlock_nr.load(std::memory_order_relaxed) == 0) return;
  LruAddBatches::MlockEntry entries[kFolioBatchSize];
  int n;
  {
    SpinGuard g(s.mlock_lock);
    n = s.mlock_nr.load(std::memory_order_relaxed);
    std::copy(s.mlock, s.mlock + n, entries);
    s.mlock_nr.store(0, std::memory_order_relaxed);
  }
  if (n) mlock_folio_batch(mem, entries, n);
}

bool mlock_folio(PhysMem& mem, Page* page) {
  const bool newly = !(page->flags.fetch_or(PG_mlocked, std::memory_order_relaxed) & PG_mlocked);
  if (newly) mem.events().count(UNEVICTABLE_PGMLOCKED);
  mem.get_page(page);
  mlock_batch_add(mem, page, MlockOp::kMlockLru);
  return newly;
}

void munlock_folio(PhysMem& mem, Page* page) {
  // PG_mlocked is the batch's to clear: only it knows whether other locks remain.
  mem.get_page(page);
  mlock_batch_add(mem, page, MlockOp::kMunlock);
}

void mlock_new_folio(PhysMem& mem, Page* page) {
  MM_BUG_ON(page->test(PG_lru));
  page->set(PG_mlocked);
  mem.events().count(UNEVICTABLE_PGMLOCKED);
  // The mlock batch's reference (its entries hold one each, unlike the add batch's).
  mem.get_page(page);
  mlock_batch_add(mem, page, MlockOp::kMlockNew);
}

// ---- the VMA counters and the limits ----

uint64_t rlimit(Mm* mm, unsigned resource) { return mm->rlim_[resource].cur; }

bool is_data_mapping(vm_flags_t flags) { return (flags & (VM_WRITE | VM_SHARED | VM_STACK)) == VM_WRITE; }

VmCounts mm_vm_counts(Mm* mm) {
  VmCounts c;
  for (auto& [start, vma] : mm->vmas_) {
    const uint64_t pages = vma->pages();
    c.total += pages;
    if (is_data_mapping(vma->vm_flags)) c.data += pages;
    if (vma->vm_flags & VM_LOCKED) c.locked += pages;
  }
  return c;
}

bool may_expand_vm(Mm* mm, vm_flags_t flags, uint64_t npages) {
  const uint64_t as = rlimit(mm, kRlimitAs) >> kPageShift;
  const uint64_t data = rlimit(mm, kRlimitData) >> kPageShift;
  const bool data_limited = is_data_mapping(flags) && data < (kRlimInfinity >> kPageShift);
  // Unlimited, the common case, needs no count of the VMAs.
  if (as >= (kRlimInfinity >> kPageShift) && !data_limited) return true;
  const VmCounts c = mm_vm_counts(mm);
  if (c.total + npages > as) return false;
  if (data_limited && c.data + npages > data) {
    // ignore_rlimit_data's Valgrind exception: a soft limit of 0 lets data grow up to the
    // hard limit (Linux also warns once; ignore_rlimit_data itself is off).
    if (data == 0 && c.data + npages <= mm->rlim_[kRlimitData].max >> kPageShift) return true;
    return false;
  }
  return true;
}

bool can_do_mlock(Mm* mm) {
  if (rlimit(mm, kRlimitMemlock) != 0) return true;
  return mm->sys()->config().cap_ipc_lock;
}

bool mlock_future_ok(Mm* mm, vm_flags_t flags, uint64_t bytes) {
  if (!(flags & VM_LOCKED) || mm->sys()->config().cap_ipc_lock) return true;
  const uint64_t limit = rlimit(mm, kRlimitMemlock) >> kPageShift;
  const uint64_t locked = mm_vm_counts(mm).locked + (bytes >> kPageShift);
  return locked <= limit;
}

// ---- the mechanism ----

namespace {

// mlock_vma_pages_range: sets the new flags and brings the pages the range maps in line
// with them (mlock_pte_range: the zero page and non-present entries are left alone).
void mlock_vma_pages_range(Mm* mm, Vma* vma, uint64_t start, uint64_t end, vm_flags_t newflags)
    REQUIRES(mm->mmap_lock_) {
  vma_set_flags(vma, newflags);
  PhysMem& mem = mm->mem();
  lru_add_drain(mem);
  walk_pte_tables(mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
    SpinGuard g(table->ptl);
    for (; addr < stop; addr += kPageSize, ptep++) {
      const pteval_t v = ptep_get(ptep);
      if (!pte_present(v) || pte_special(v)) continue;  // the zero page is never mlocked
      Page* page = mem.pfn_to_page(pte_pfn(v));
      if (newflags & VM_LOCKED) mlock_folio(mem, page);
      else munlock_folio(mem, page);
    }
  });
  lru_add_drain(mem);
}

// mlock_fixup: gives [start, end) of vma the lock flags newflags, splitting or merging
// (vma_modify_flags). Special and droppable VMAs never take VM_LOCKED and are left as they
// are (a droppable page must stay droppable). *prev becomes the VMA now covering start.
Errno mlock_fixup(Mm* mm, Vma* vma, Vma** prev, uint64_t start, uint64_t end, vm_flags_t newflags)
    REQUIRES(mm->mmap_lock_) {
  const vm_flags_t oldflags = vma->vm_flags;
  if (newflags == oldflags || (oldflags & (VM_SPECIAL | VM_HUGETLB | VM_DROPPABLE))) {
    *prev = vma;
    return Errno::kOk;
  }
  Result<Vma*> r = vma_modify_flags(mm, *prev, vma, start, end, newflags);
  if (!r.ok()) return r.error();
  vma = r.value();
  *prev = vma;
  // Locked before and after (only VM_LOCKONFAULT changes): the pages already are mlocked,
  // and locking them twice would be wrong.
  if ((newflags & VM_LOCKED) && (oldflags & VM_LOCKED)) {
    vma_set_flags(vma, newflags);
    return Errno::kOk;
  }
  mlock_vma_pages_range(mm, vma, start, end, newflags);
  return Errno::kOk;
}

// apply_vma_lock_flags: mlock_fixup over every VMA of [start, start + len), in address order.
// A range starting in a hole changes nothing; a later hole ends the walk with -ENOMEM,
// keeping what was changed before it.
Errno apply_vma_lock_flags(Mm* mm, uint64_t start, uint64_t len, vm_flags_t flags) REQUIRES(mm->mmap_lock_) {
  const uint64_t end = start + len;
  if (end < start) return Errno::kInval;
  if (end == start) return Errno::kOk;
  Vma* vma = mm->vma_lookup(start);
  if (!vma) return Errno::kNoMem;
  Vma* prev = mm->vma_prev(vma);
  if (start > vma->vm_start) prev = vma;
  uint64_t nstart = start;
  uint64_t tmp = vma->vm_start;
  while (vma && vma->vm_start < end) {
    if (vma->vm_start != tmp) return Errno::kNoMem;
    const vm_flags_t newflags = (vma->vm_flags & ~VM_LOCKED_MASK) | flags;
    tmp = std::min(vma->vm_end, end);
    Errno e = mlock_fixup(mm, vma, &prev, nstart, tmp, newflags);
    if (e != Errno::kOk) return e;
    tmp = prev->vm_end;
    nstart = tmp;
    vma = mm->find_vma(tmp);
  }
  if (tmp < end) return Errno::kNoMem;
  return Errno::kOk;
}

// count_mm_mlocked_page_nr: the pages of [start, start + len) that locked VMAs cover already
// (they are in locked_vm and must not count twice).
uint64_t count_mm_mlocked_page_nr(Mm* mm, uint64_t start, uint64_t len) REQUIRES_SHARED(mm->mmap_lock_) {
  const uint64_t end = start + len < start ? ~0ull : start + len;
  uint64_t count = 0;
  for (Vma* vma = mm->find_vma(start); vma && vma->vm_start < end; vma = mm->vma_next(vma)) {
    if (!(vma->vm_flags & VM_LOCKED)) continue;
    count += std::min(end, vma->vm_end) - std::max(start, vma->vm_start);
  }
  return count >> kPageShift;
}

// apply_mlockall_flags: the future part goes into def_flags; the current part locks (or,
// with no MCL_CURRENT, unlocks) every VMA whole. Errors of single VMAs are ignored.
void apply_mlockall_flags(Mm* mm, uint64_t flags) REQUIRES(mm->mmap_lock_) {
  mm->def_flags_ &= ~VM_LOCKED_MASK;
  if (flags & kMclFuture) {
    mm->def_flags_ |= VM_LOCKED;
    if (flags & kMclOnfault) mm->def_flags_ |= VM_LOCKONFAULT;
    if (!(flags & kMclCurrent)) return;
  }
  vm_flags_t to_add = 0;
  if (flags & kMclCurrent) {
    to_add = VM_LOCKED;
    if (flags & kMclOnfault) to_add |= VM_LOCKONFAULT;
  }
  Vma* prev = nullptr;
  for (Vma* vma = mm->find_vma(0); vma;) {
    const vm_flags_t newflags = (vma->vm_flags & ~VM_LOCKED_MASK) | to_add;
    if (mlock_fixup(mm, vma, &prev, vma->vm_start, vma->vm_end, newflags) != Errno::kOk) prev = vma;
    vma = mm->find_vma(prev->vm_end);
  }
}

// __mlock_posix_error_return: what population's errors mean to mlock's caller.
Errno mlock_posix_error(Errno e) {
  if (e == Errno::kFault) return Errno::kNoMem;
  if (e == Errno::kNoMem) return Errno::kAgain;
  return e;
}

}  // namespace

Errno do_mlock(Mm* mm, uint64_t start, uint64_t len, vm_flags_t flags) {
  const bool cap = mm->sys()->config().cap_ipc_lock;
  Errno error = Errno::kNoMem;
  {
    MmapWriteGuard g(mm);
    if (!can_do_mlock(mm)) return Errno::kPerm;
    len = page_align(len + offset_in_page(start));  // wraps as size_t arithmetic does
    start &= kPageMask;
    const uint64_t lock_limit = rlimit(mm, kRlimitMemlock) >> kPageShift;
    uint64_t locked = len >> kPageShift;
    if (!cap) {
      locked += mm_vm_counts(mm).locked;
      if (locked > lock_limit) locked -= count_mm_mlocked_page_nr(mm, start, len);
    }
    if (locked <= lock_limit || cap) error = apply_vma_lock_flags(mm, start, len, flags);
    if constexpr (kDebugChecks) validate_mm(mm);
  }
  if (error != Errno::kOk) return error;
  error = mm_populate_range(mm, start, len, PopulateErrors::kReport);
  if (error != Errno::kOk) return mlock_posix_error(error);
  return Errno::kOk;
}

Errno do_munlock(Mm* mm, uint64_t start, uint64_t len) {
  len = page_align(len + offset_in_page(start));
  start &= kPageMask;
  MmapWriteGuard g(mm);
  const Errno e = apply_vma_lock_flags(mm, start, len, 0);
  if constexpr (kDebugChecks) validate_mm(mm);
  return e;
}

Errno do_mlockall(Mm* mm, uint64_t flags) {
  if (!flags || (flags & ~(kMclCurrent | kMclFuture | kMclOnfault)) || flags == kMclOnfault) return Errno::kInval;
  Errno ret = Errno::kNoMem;
  {
    MmapWriteGuard g(mm);
    if (!can_do_mlock(mm)) return Errno::kPerm;
    const uint64_t lock_limit = rlimit(mm, kRlimitMemlock) >> kPageShift;
    if (!(flags & kMclCurrent) || mm->sys()->config().cap_ipc_lock || mm_vm_counts(mm).total <= lock_limit) {
      apply_mlockall_flags(mm, flags);
      ret = Errno::kOk;
    }
    if constexpr (kDebugChecks) validate_mm(mm);
  }
  if (ret == Errno::kOk && (flags & kMclCurrent)) (void)mm_populate_range(mm, 0, kTaskSize, PopulateErrors::kIgnore);
  return ret;
}

Errno do_munlockall(Mm* mm) {
  MmapWriteGuard g(mm);
  apply_mlockall_flags(mm, 0);
  if constexpr (kDebugChecks) validate_mm(mm);
  return Errno::kOk;
}

Errno do_setrlimit(Mm* mm, unsigned resource, uint64_t cur, uint64_t max) {
  if (resource >= Mm::kNrRlimits) return Errno::kInval;
  if (cur > max) return Errno::kInval;
  MmapWriteGuard g(mm);
  // No process of the model has CAP_SYS_RESOURCE (config.h).
  if (max > mm->rlim_[resource].max) return Errno::kPerm;
  mm->rlim_[resource] = {cur, max};
  return Errno::kOk;
}

Result<std::pair<uint64_t, uint64_t>> do_getrlimit(Mm* mm, unsigned resource) {
  if (resource >= Mm::kNrRlimits) return Errno::kInval;
  MmapReadGuard g(mm);
  return std::pair{mm->rlim_[resource].cur, mm->rlim_[resource].max};
}

VmCounts vm_counts(Mm* mm) {
  MmapReadGuard g(mm);
  return mm_vm_counts(mm);
}

}  // namespace mirrormm
