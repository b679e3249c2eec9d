// madvise (mm/madvise.c): the advice values of the v1 script format.
//
// Flag advice (DONTFORK, DOFORK, WIPEONFORK, KEEPONFORK) changes vm_flags through
// vma_modify_flags, splitting and merging like mprotect, and turns -ENOMEM into -EAGAIN as
// Linux does. DONTNEED zaps. POPULATE_READ/WRITE fault pages in as GUP does and report
// -EINVAL/-ENOMEM/-EFAULT. COLD ages the pages mapped only by this process (young bits
// cleared, moved to the inactive LRU lists). WILLNEED, COLD and PAGEOUT change nothing
// visible to the process on a machine without swap (anonymous and shmem pages stay resident).
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
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
      return true;
    default:
      return false;
  }
}

bool needs_write_lock(uint64_t b) {
  return b == kMadvDontfork || b == kMadvDofork || b == kMadvWipeonfork || b == kMadvKeeponfork;
}

// madvise_pageout on a machine without swap: anonymous pages cannot be written anywhere and
// stay mapped, and so do unevictable ones. Page-cache (shmem) pages that only this mapping maps are unmapped (their
// dirty bit moving to the page); a clean one is then dropped from the cache, a dirty one
// stays cached (shmem cannot write it out either).
void madvise_pageout(Vma* vma, uint64_t start, uint64_t end) {
  Mm* mm = vma->vm_mm;
  lru_add_drain(mm->mem());  // a page held by an add batch would keep its cache reference
  std::vector<Page*> unmapped;
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
        if (!page->test(PG_shmem) || page->mapcount.load(std::memory_order_relaxed) != 1) continue;
        // An unevictable (mlocked) page stays mapped: shrink_folio_list keeps it first thing.
        // Its VMA need not be locked (mremap's MREMAP_DONTUNMAP clears the source's lock and
        // leaves the pages it did not move mlocked).
        if (page->test(PG_unevictable)) continue;
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
  std::vector<Page*> isolated;
  for (Page* page : picked) {
    if (folio_isolate_lru(mem, page)) isolated.push_back(page);
    mem.put_page(page);
  }
  if (!isolated.empty()) (void)reclaim_pages(mm->sys(), isolated);
}

// madvise_vma_behavior for one VMA piece [start, end), in two halves: the advices that only
// look at pages run with the mmap_lock held for read, the ones that change VMA flags with it
// held for write (madvise_need_mmap_write decides which; do_madvise picks the half).
Errno vma_behavior_pages(Mm* mm, Vma* vma, Vma** prev, uint64_t start, uint64_t end, uint64_t behavior)
    REQUIRES_SHARED(mm->mmap_lock_) {
  switch (behavior) {
    case kMadvDontneed: {
      *prev = vma;
      if (vma->vm_flags & (VM_PFNMAP | VM_LOCKED)) return Errno::kInval;
      MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, start, end);
      MmuGather tlb(mm);
      zap_page_range(tlb, vma, start, end);
      return Errno::kOk;
    }
    case kMadvWillneed:
      *prev = vma;
      // madvise_willneed -> vfs_fadvise(POSIX_FADV_WILLNEED): a regular file's pages of the
      // range are read into the page cache (force_page_cache_readahead), not mapped.
      if (vma->vm_file && vma->vm_file->inode->is_regular())
        force_page_cache_ra(vma->vm_file->inode, vma->linear_page_index(start), (end - start) >> kPageShift);
      return Errno::kOk;
    case kMadvCold:
      *prev = vma;
      if (vma->vm_flags & (VM_LOCKED | VM_PFNMAP | VM_HUGETLB)) return Errno::kInval;
      madvise_cold_or_pageout(vma, start, end, ColdOrPageout::kCold);
      return Errno::kOk;
    case kMadvPageout:
      *prev = vma;
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
      new_flags &= ~VM_WIPEONFORK;
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

}  // namespace

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
  MmapReadGuard g(mm);
  if (behavior == kMadvPopulateRead || behavior == kMadvPopulateWrite)
    return faultin_page_range(mm, start, end, behavior == kMadvPopulateWrite ? ForWrite::kYes : ForWrite::kNo);
  return madvise_walk_vmas(mm, start, end, behavior, vma_behavior_pages);
}

}  // namespace mirrormm
