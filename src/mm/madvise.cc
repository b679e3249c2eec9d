// madvise (mm/madvise.c): the advice values of the v1 script format, and process_madvise.
//
// Flag advice (DONTFORK, DOFORK, WIPEONFORK, KEEPONFORK, HUGEPAGE, NOHUGEPAGE) changes
// vm_flags through vma_modify_flags, splitting and merging like mprotect, and turns -ENOMEM
// into -EAGAIN as Linux does. DONTNEED (and DONTNEED_LOCKED, which VM_LOCKED does not stop)
// zaps. FREE frees private anonymous pages lazily: they are cleaned and moved to the
// inactive file list, and reclaim drops them unless they are written again first. REMOVE
// punches a hole in the file behind a shared mapping. GUARD_INSTALL and GUARD_REMOVE put and
// take guard markers (pgtable.h) in page-table entries. POPULATE_READ/WRITE fault pages in as
// GUP does and report -EINVAL/-ENOMEM/-EFAULT. COLD ages the pages mapped only by this
// process (young bits cleared, moved to the inactive LRU lists). WILLNEED, COLD and PAGEOUT
// change nothing visible to the process on a machine without swap, except that PAGEOUT
// drops clean lazily freed pages (and droppable ones) there too.
//
// mseal: the advice that discards data is refused with -EPERM, VMA by VMA (what came before
// in the range stays done), on sealed read-only private anonymous memory.
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/system_internal.h"
#include "mm/vmscan.h"

namespace mirrormm {

namespace {

bool behavior_valid(uint64_t b) {
  switch (b) {
    case kMadvWillneed:
    case kMadvDontneed:
    case kMadvDontfork:
    case kMadvDofork:
    case kMadvWipeonfork:
    case kMadvKeeponfork:
    case kMadvCold:
    case kMadvPageout:
    case kMadvPopulateRead:
    case kMadvPopulateWrite:
    case kMadvFree:
    case kMadvRemove:
    case kMadvHugepage:
    case kMadvNohugepage:
    case kMadvDontneedLocked:
    case kMadvGuardInstall:
    case kMadvGuardRemove:
      return true;
    default:
      return false;
  }
}

// The advices that change VMA flags. Guard installation sets VM_MAYBE_GUARD (Linux sets it
// atomically under the read lock) and runs under the write lock here.
bool needs_write_lock(uint64_t b) {
  return b == kMadvDontfork || b == kMadvDofork || b == kMadvWipeonfork || b == kMadvKeeponfork ||
         b == kMadvHugepage || b == kMadvNohugepage || b == kMadvGuardInstall;
}

// is_discard: the advices that throw data away (or keep a child from getting it).
bool is_discard(uint64_t b) {
  switch (b) {
    case kMadvFree:
    case kMadvDontneed:
    case kMadvDontneedLocked:
    case kMadvRemove:
    case kMadvDontfork:
    case kMadvWipeonfork:
    case kMadvGuardInstall:
      return true;
    default:
      return false;
  }
}

// is_ro_anon: private anonymous memory that cannot be written (PROT_NONE included).
bool is_ro_anon(const Vma* vma) {
  if (vma->vm_file || (vma->vm_flags & VM_SHARED)) return false;
  return !(vma->vm_flags & VM_WRITE);
}

// can_madvise_modify: discarding sealed read-only anonymous memory would change what the
// process reads there, which sealing promised it would not.
bool can_madvise_modify(const Vma* vma, uint64_t behavior) {
  return can_modify_vma(vma) || !is_discard(behavior) || !is_ro_anon(vma);
}

// is_valid_guard_vma: guard markers go into any page-table-mapped VMA except special and
// hugetlb ones; installing them into a locked VMA is refused (it would unpopulate it).
bool is_valid_guard_vma(const Vma* vma, bool allow_locked) {
  vm_flags_t disallowed = VM_SPECIAL | VM_HUGETLB;
  if (!allow_locked) disallowed |= VM_LOCKED;
  return !(vma->vm_flags & disallowed);
}

// reclaim_pages for pages picked with a reference each: those still on an LRU list are
// isolated and reclaimed; the references are dropped.
void reclaim_picked(System* sys, std::vector<Page*>& picked) {
  PhysMem& mem = sys->mem();
  std::vector<Page*> isolated;
  for (Page* page : picked) {
    if (folio_isolate_lru(mem, page)) isolated.push_back(page);
    mem.put_page(page);
  }
  if (!isolated.empty()) (void)reclaim_pages(sys, isolated);
}

// madvise_pageout on a machine without swap: anonymous pages cannot be written anywhere and
// stay mapped, except lazily freed and droppable ones, which reclaim drops (a lazily free
// page written again since MADV_FREE is kept and becomes swap-backed again), and so do
// unevictable ones. Page-cache (shmem) pages that only this mapping maps are unmapped (their
// dirty bit moving to the page); a clean one is then dropped from the cache, a dirty one
// stays cached (shmem cannot write it out either).
void madvise_pageout(Vma* vma, uint64_t start, uint64_t end) {
  Mm* mm = vma->vm_mm;
  lru_add_drain(mm->mem());  // a page held by an add batch would keep its cache reference
  std::vector<Page*> unmapped;
  std::vector<Page*> lazy;  // lazily freed and droppable pages: reclaim needs no swap for them
  {
    // Reclaim's try_to_unmap brackets each page with MMU_NOTIFY_CLEAR; here one bracket
    // covers the range walked.
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, start, end);
    MmuGather tlb(mm);
    int64_t shmem = 0;
    walk_pte_tables(mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
      SpinGuard g(table->ptl);
      for (; addr < stop; addr += kPageSize, ptep++) {
        pteval_t v = ptep_get(ptep);
        if (!pte_present(v) || pte_special(v)) continue;
        Page* page = mm->mem().pfn_to_page(pte_pfn(v));
        if (page->mapcount.load(std::memory_order_relaxed) != 1) continue;
        // An unevictable (mlocked) page stays mapped: shrink_folio_list keeps it first thing.
        // Its VMA need not be locked (mremap's MREMAP_DONTUNMAP clears the source's lock and
        // leaves the pages it did not move mlocked).
        if (page->test(PG_unevictable)) continue;
        if (page->test(PG_anon) && !page->test(PG_swapbacked) && page->test(PG_lru)) {
          mm->mem().get_page(page);  // held until it is isolated
          lazy.push_back(page);
          continue;
        }
        if (!page->test(PG_shmem)) continue;
        v = ptep_get_and_clear(ptep);
        mmu_checker_pte_change(mm, addr, v, 0);
        tlb.flush_range(addr, addr + kPageSize);
        if (pte_dirty(v)) page->set(PG_dirty);
        page->mapcount.fetch_sub(1, std::memory_order_relaxed);
        shmem++;
        mm->mem().get_page(page);  // held until the clean check below
        unmapped.push_back(page);
        tlb.remove_page(page);  // the PTE's reference
      }
    });
    if (shmem) mm->add_rss(MM_SHMEMPAGES, -shmem);
  }
  for (Page* page : unmapped) {
    if (page->test(PG_shmem) && page->mapping)
      static_cast<ShmemInode*>(page->mapping)->remove_clean_page(page->index, page);
    mm->mem().put_page(page);
  }
  reclaim_picked(mm->sys(), lazy);
}

// madvise_cold_or_pageout_pte_range over [start, end) of one VMA. For each present PTE of a
// normal page that only one PTE maps (a page that may be mapped elsewhere is somebody else's
// working set too): the young bit is cleared (the TLB entry goes with the gather, so the next
// access sets it again) and PG_referenced with it. Then
//   - cold: an active page is marked PG_workingset and the page is deactivated;
//   - pageout (a machine with swap room; reclaim_pages): every such page on an LRU list is
//     isolated and reclaimed regardless of its references: anonymous pages to swap, shmem
//     pages to swap or (clean) out of the cache, each mapping removed by try_to_unmap under
//     its own invalidation.
// This CPU's add batch is drained first, so that pages faulted in just before are on their
// lists. Clearing the young bit is not a downgrade, so no invalidation brackets it; the
// checker hears of the change as of any other. The caller holds the mmap_lock for read.
enum class ColdOrPageout { kCold, kPageout };
void madvise_cold_or_pageout(Vma* vma, uint64_t start, uint64_t end, ColdOrPageout what) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  lru_add_drain(mem);
  std::vector<Page*> picked;
  {
    MmuGather tlb(mm);
    walk_pte_tables(mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
      SpinGuard g(table->ptl);
      for (; addr < stop; addr += kPageSize, ptep++) {
        const pteval_t v = ptep_get(ptep);
        if (!pte_present(v) || pte_special(v)) continue;
        Page* page = mem.pfn_to_page(pte_pfn(v));
        if (page->mapcount.load(std::memory_order_relaxed) != 1) continue;  // folio_maybe_mapped_shared
        if (what == ColdOrPageout::kPageout && !page->test(PG_lru)) continue;
        if (pte_young(v) && ptep_test_and_clear_young(ptep)) {
          mmu_checker_pte_change(mm, addr, v, ptep_get(ptep));
          tlb.flush_range(addr, addr + kPageSize);
        }
        page->clear(PG_referenced);
        if (what == ColdOrPageout::kPageout) {
          mem.get_page(page);  // held until it is isolated (or found gone)
          picked.push_back(page);
          continue;
        }
        if (page->test(PG_active)) page->set(PG_workingset);
        folio_deactivate(mem, page);
      }
    });
  }
  reclaim_picked(mm->sys(), picked);
}

// MADV_FREE's page-table walk (madvise_free_pte_range) over [start, end) of a private
// anonymous VMA, under one MMU_NOTIFY_CLEAR bracket:
//   - a swap entry is freed at once (its PTE cleared: the page reads as zero);
//   - a present anonymous page loses its young and dirty bits (PTE and, when it is not
//     shared, PG_dirty) and is marked lazily free (folio_mark_lazyfree). A page that is
//     dirty as a page or in the swap cache and mapped elsewhere too is left alone; the
//     model also leaves swap-cache pages alone (Linux frees their swap first).
// A write afterwards sets the dirty bit again, which tells reclaim to keep the page; a
// clean lazily free page is dropped and the next access reads zeros. Markers, migration
// and device entries stay. The caller holds the mmap_lock for read.
void madvise_free_range(Vma* vma, uint64_t start, uint64_t end) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  System* sys = mm->sys();
  lru_add_drain(mem);  // pages still in an add batch could not be moved to the file list
  std::vector<pteval_t> last_refs;  // swap entries whose last PTE went while cached
  int64_t swapents = 0;
  {
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, start, end);
    MmuGather tlb(mm);
    walk_pte_tables(mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
      SpinGuard g(table->ptl);
      for (; addr < stop; addr += kPageSize, ptep++) {
        const pteval_t v = ptep_get(ptep);
        if (pte_none(v)) continue;
        if (!pte_present(v)) {
          if (!is_swap_pte(v) || non_swap_entry(v)) continue;
          const pteval_t entry = pte_to_swp_entry(ptep_get_and_clear(ptep));
          swapents++;
          if (swap_free(sys, entry)) last_refs.push_back(entry);
          continue;
        }
        if (pte_special(v)) continue;
        Page* page = mem.pfn_to_page(pte_pfn(v));
        if (!page->test(PG_anon) || page->test(PG_zone_device)) continue;
        if (page->test(PG_swapcache)) continue;
        if (page->test(PG_dirty)) {
          if (page->mapcount.load(std::memory_order_relaxed) != 1) continue;
          page->clear(PG_dirty);
        }
        if (pte_young(v) || pte_dirty(v)) {
          const pteval_t old = ptep_modify_prot_start(ptep);
          const pteval_t cleaned = pte_mkold(pte_mkclean(old));
          ptep_modify_prot_commit(ptep, cleaned);
          mmu_checker_pte_change(mm, addr, old, cleaned);
          tlb.flush_range(addr, addr + kPageSize);
        }
        folio_mark_lazyfree(mem, page);
      }
    });
  }
  if (swapents) mm->add_rss(MM_SWAPENTS, -swapents);
  for (pteval_t entry : last_refs) try_to_reclaim_swap(sys, entry);
}

// madvise_guard_install over [start, end) of one VMA. The VMA gets VM_MAYBE_GUARD (which
// makes fork copy its page tables) and, when it is anonymous, an anon_vma (with markers in
// its page tables it is no longer empty; a file or shared VMA gets none, as on the 6.18
// host, where such VMAs still merge as if unfaulted);
// whatever the range maps is zapped (under its own invalidation), then every entry becomes
// a guard marker. No VMA is split. The caller holds the mmap_lock for write.
Errno madvise_guard_install(Vma* vma, uint64_t start, uint64_t end) REQUIRES(vma->vm_mm->mmap_lock_) {
  Mm* mm = vma->vm_mm;
  if (!is_valid_guard_vma(vma, /*allow_locked=*/false)) return Errno::kInval;
  vma_set_flags(vma, vma->vm_flags | VM_MAYBE_GUARD);
  if (vma->is_anonymous() && anon_vma_prepare(vma) != Errno::kOk) return Errno::kNoMem;
  {
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, start, end);
    MmuGather tlb(mm);
    zap_page_range(tlb, vma, start, end);
  }
  const pteval_t marker = make_guard_marker();
  for (uint64_t addr = start; addr < end; addr += kPageSize) {
    pte_t* ptep = pte_alloc(mm, addr, Gfp::kUser);
    if (!ptep) return Errno::kNoMem;
    SpinGuard g(pte_lockptr(mm, ptep));
    if (pte_none(ptep_get(ptep))) set_pte(ptep, marker);
  }
  return Errno::kOk;
}

// madvise_guard_remove: the guard markers of [start, end) become none again (the pages
// fault in afresh); nothing else changes. Allowed on locked VMAs.
Errno madvise_guard_remove(Vma* vma, uint64_t start, uint64_t end) {
  if (!is_valid_guard_vma(vma, /*allow_locked=*/true)) return Errno::kInval;
  walk_pte_tables(vma->vm_mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
    SpinGuard g(table->ptl);
    for (; addr < stop; addr += kPageSize, ptep++)
      if (is_guard_pte_marker(ptep_get(ptep))) pte_clear(ptep);
  });
  return Errno::kOk;
}

// madvise_vma_behavior for one VMA piece [start, end), in two halves: the advices that only
// look at pages run with the mmap_lock held for read, the ones that change VMA flags with it
// held for write (madvise_need_mmap_write decides which; do_madvise picks the half).
Errno vma_behavior_pages(Mm* mm, Vma* vma, Vma** prev, uint64_t start, uint64_t end, uint64_t behavior)
    REQUIRES_SHARED(mm->mmap_lock_) {
  *prev = vma;
  if (!can_madvise_modify(vma, behavior)) return Errno::kPerm;
  switch (behavior) {
    case kMadvDontneed:
    case kMadvDontneedLocked:
    case kMadvFree: {
      // madvise_dontneed_free_valid_vma; MADV_FREE is for private anonymous memory only.
      const vm_flags_t forbidden = VM_PFNMAP | (behavior == kMadvDontneedLocked ? VM_NONE : VM_LOCKED);
      if (vma->vm_flags & forbidden) return Errno::kInval;
      if (behavior == kMadvFree) {
        if (!vma->is_anonymous()) return Errno::kInval;
        madvise_free_range(vma, start, end);
        return Errno::kOk;
      }
      MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, start, end);
      MmuGather tlb(mm);
      zap_page_range(tlb, vma, start, end);
      return Errno::kOk;
    }
    case kMadvGuardRemove:
      return madvise_guard_remove(vma, start, end);
    case kMadvWillneed:
      // madvise_willneed -> vfs_fadvise(POSIX_FADV_WILLNEED): a regular file's pages of the
      // range are read into the page cache (force_page_cache_readahead), not mapped.
      if (vma->vm_file && vma->vm_file->inode->is_regular())
        force_page_cache_ra(vma->vm_file->inode, vma->linear_page_index(start), (end - start) >> kPageShift);
      return Errno::kOk;
    case kMadvCold:
      if (vma->vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) return Errno::kInval;
      madvise_cold_or_pageout(vma, start, end, ColdOrPageout::kCold);
      return Errno::kOk;
    case kMadvPageout:
      if (vma->vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) return Errno::kInval;
      // Without room in swap the host-comparable path: nothing can be written anywhere.
      if (swap_has_room(mm->sys()))
        madvise_cold_or_pageout(vma, start, end, ColdOrPageout::kPageout);
      else
        madvise_pageout(vma, start, end);
      return Errno::kOk;
  }
  MM_BUG_ON(true);  // needs_write_lock() sent every other advice to vma_behavior_flags
  return Errno::kInval;
}

Errno vma_behavior_flags(Mm* mm, Vma* vma, Vma** prev, uint64_t start, uint64_t end, uint64_t behavior)
    REQUIRES(mm->mmap_lock_) {
  if (!can_madvise_modify(vma, behavior)) return Errno::kPerm;
  if (behavior == kMadvGuardInstall) {
    *prev = vma;
    mmap_assert_write_locked(vma->vm_mm);  // the same mm, reached through the VMA
    return madvise_guard_install(vma, start, end);
  }
  vm_flags_t new_flags = vma->vm_flags;
  switch (behavior) {
    case kMadvDontfork:
      new_flags |= VM_DONTCOPY;
      break;
    case kMadvDofork:
      if (new_flags & VM_IO) return Errno::kInval;
      new_flags &= ~VM_DONTCOPY;
      break;
    case kMadvWipeonfork:
      if (vma->vm_file || (new_flags & VM_SHARED)) return Errno::kInval;
      new_flags |= VM_WIPEONFORK;
      break;
    case kMadvKeeponfork:
      if (vma->vm_flags & VM_DROPPABLE) return Errno::kInval;  // droppable is always wiped on fork
      new_flags &= ~VM_WIPEONFORK;
      break;
    case kMadvHugepage:  // hugepage_madvise
      new_flags = (new_flags & ~VM_NOHUGEPAGE) | VM_HUGEPAGE;
      break;
    case kMadvNohugepage:
      new_flags = (new_flags & ~VM_HUGEPAGE) | VM_NOHUGEPAGE;
      break;
  }
  if (new_flags == vma->vm_flags) {
    *prev = vma;
    return Errno::kOk;
  }
  Result<Vma*> r = vma_modify_flags(mm, *prev, vma, start, end, new_flags);
  if (!r.ok()) return r.error() == Errno::kNoMem ? Errno::kAgain : r.error();
  *prev = r.value();
  vma_set_flags(r.value(), new_flags);
  return Errno::kOk;
}

// madvise_walk_vmas: applies one half of madvise_vma_behavior to every VMA piece of
// [start, end); holes are skipped but reported as -ENOMEM at the end. The caller holds the
// mmap_lock in the mode that half requires (a function pointer carries no annotation: the
// call sites in do_madvise pair them).
using VmaBehaviorFn = Errno (*)(Mm*, Vma*, Vma**, uint64_t, uint64_t, uint64_t);
Errno madvise_walk_vmas(Mm* mm, uint64_t start, uint64_t end, uint64_t behavior, VmaBehaviorFn vma_behavior)
    REQUIRES_SHARED(mm->mmap_lock_) {
  Errno error = Errno::kOk;
  Errno unmapped_error = Errno::kOk;
  Vma* vma = mm->find_vma(start);
  Vma* prev = vma ? mm->vma_prev(vma) : nullptr;
  if (vma && start > vma->vm_start) prev = vma;
  for (;;) {
    if (!vma) return Errno::kNoMem;
    if (start < vma->vm_start) {
      unmapped_error = Errno::kNoMem;
      start = vma->vm_start;
      if (start >= end) break;
    }
    uint64_t tmp = std::min(vma->vm_end, end);
    error = vma_behavior(mm, vma, &prev, start, tmp, behavior);
    if (error != Errno::kOk) return error;
    start = tmp;
    if (prev && start < prev->vm_end) start = prev->vm_end;
    if (start >= end) break;
    vma = mm->find_vma(prev ? prev->vm_end : start);
  }
  return unmapped_error;
}

// madvise_remove over [start, end): VMA by VMA, a hole is punched into the file behind each
// piece (vfs_fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE)) with the mmap_lock
// dropped, as Linux drops it (the file system's locks rank above it); the walk then looks
// the next VMA up again. Only a shared mapping that may write its file may punch: a
// private one is -EACCES, one without a file (or locked) -EINVAL.
Errno madvise_remove_range(Mm* mm, uint64_t start, uint64_t end) EXCLUDES(mm->mmap_lock_) {
  Errno unmapped_error = Errno::kOk;
  for (;;) {
    File* file = nullptr;
    uint64_t first = 0, tmp = 0;
    {
      MmapReadGuard g(mm);
      Vma* vma = mm->find_vma(start);
      if (!vma) return Errno::kNoMem;
      if (start < vma->vm_start) {
        unmapped_error = Errno::kNoMem;
        start = vma->vm_start;
        if (start >= end) return unmapped_error;
      }
      tmp = std::min(vma->vm_end, end);
      if (!can_madvise_modify(vma, kMadvRemove)) return Errno::kPerm;
      if ((vma->vm_flags & VM_LOCKED) || !vma->vm_file) return Errno::kInval;
      if ((vma->vm_flags & (VM_SHARED | VM_MAYWRITE)) != (VM_SHARED | VM_MAYWRITE)) return Errno::kAcces;
      file = vma->vm_file;
      get_file(file);
      first = vma->linear_page_index(start);
    }
    file->inode->punch_hole(first, first + ((tmp - start) >> kPageShift));
    fput(file);
    start = tmp;
    if (start >= end) return unmapped_error;
  }
}

// process_madvise_remote_valid: the advice another process may give: none that discards
// data or changes VMAs (MADV_COLLAPSE too, which the model does not have).
bool process_madvise_remote_valid(uint64_t behavior) {
  return behavior == kMadvCold || behavior == kMadvPageout || behavior == kMadvWillneed;
}

}  // namespace

Errno do_process_madvise(Mm* caller, Mm* target, uint64_t start, uint64_t len, uint64_t behavior) {
  // import_iovec: a negative length is -EINVAL; a length above MAX_RW_COUNT is cut to it;
  // a segment that reaches past the user address space is -EFAULT (access_ok, x86-64's
  // USER_PTR_MAX being TASK_SIZE). All before the advice is looked at.
  constexpr uint64_t kMaxRwCount = 0x7ffff000;  // INT_MAX & PAGE_MASK
  if (static_cast<int64_t>(len) < 0) return Errno::kInval;
  len = std::min(len, kMaxRwCount);
  if (start + len < start || start + len > kTaskSize) return Errno::kFault;
  if (target != caller && !process_madvise_remote_valid(behavior)) return Errno::kInval;
  // vector_madvise: an empty vector advises nothing, whatever it says.
  if (len == 0) return Errno::kOk;
  return do_madvise(target, start, len, behavior);
}

Errno do_madvise(Mm* mm, uint64_t start, uint64_t len_in, uint64_t behavior) {
  if (offset_in_page(start)) return Errno::kInval;
  const uint64_t len = page_align(len_in);
  if (len_in && !len) return Errno::kInval;
  if (start + len < start) return Errno::kInval;
  if (!behavior_valid(behavior)) return Errno::kInval;
  const uint64_t end = start + len;
  if (end == start) return Errno::kOk;

  if (needs_write_lock(behavior)) {
    MmapWriteGuard g(mm);
    Errno error = madvise_walk_vmas(mm, start, end, behavior, vma_behavior_flags);
    if constexpr (kDebugChecks) validate_mm(mm);  // needs the VMAs stable: only under write
    return error;
  }
  if (behavior == kMadvRemove) return madvise_remove_range(mm, start, end);
  MmapReadGuard g(mm);
  if (behavior == kMadvPopulateRead || behavior == kMadvPopulateWrite)
    return faultin_page_range(mm, start, end, behavior == kMadvPopulateWrite ? ForWrite::kYes : ForWrite::kNo);
  return madvise_walk_vmas(mm, start, end, behavior, vma_behavior_pages);
}

}  // namespace mirrormm
