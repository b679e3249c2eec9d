// Unmapping one mapping of a page for reclaim: try_to_unmap_one (mm/rmap.c). The reverse-map
// walk that finds a page's mappings (try_to_unmap) calls it once per VMA that maps the page.
#include "mm/internal.h"
#include "mm/vmstat.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/rmap.h"
#include "mm/swapfile.h"
#include "mm/system_internal.h"

namespace mirrormm {

// Protocol, per mapping:
//   invalidate_range_start(CLEAR, [address, address + PAGE_SIZE))
//     PTE lock
//       recheck that the PTE maps this page
//       ptep_get_and_clear; report to the checker; flush the TLB (secondary TLBs too)
//       dirty bit -> PG_dirty; the swap PTE (anon) or none (shmem); rss and mapcount
//     PTE unlock
//   invalidate_range_end
//   drop the PTE's page reference
// The reference goes only after the end callback: a secondary MMU that shares the CPU page
// tables may use the old translation until it has been told the invalidation is over, so the
// frame must not be freed (and reused) before that.
//
// The re-injected System::DebugBreak::kUnmapPutBeforeEnd turns this back into the order of
// kernels whose secondary TLBs heard of an unmap only through a notifier call made with the
// end: the PTE's reference goes before invalidate_range_end, the secondary-TLB invalidation is
// left to the end, and a caller that lent its own reference (reclaim of a lazily freed page)
// gets the page freed by the last mapping's put. That put was safe only while it was never the
// last one ("the page can not be free in this function as call of try_to_unmap() must hold a
// reference on the page"); with it last, the frame is free while an IOTLB still translates to
// it.
bool try_to_unmap_one(Page* page, Vma* vma, uint64_t address, unsigned flags, bool* lent) {
  (void)flags;  // no TTU_* behaviour is modeled yet
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  System* sys = mm->sys();
  address &= kPageMask;
  const bool anon = page->test(PG_anon);
  MM_BUG_ON(!(page->flags.load(std::memory_order_relaxed) & PG_locked));
  // Not swap-backed: lazily freed by MADV_FREE, or in a droppable VMA.
  const bool lazyfree = anon && !page->test(PG_swapbacked);
  MM_BUG_ON(anon && !lazyfree && !page->test(PG_swapcache));
  pte_t* ptep = pte_offset(mm, address);
  if (!ptep) return true;
  const pfn_t pfn = mem.page_to_pfn(page);
  bool unmapped = false;
  const bool put_early = sys->debug_broken(System::DebugBreak::kUnmapPutBeforeEnd);
  {
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, address, address + kPageSize);
    {
      SpinGuard g(pte_lockptr(mm, ptep));
      const pteval_t cur = ptep_get(ptep);
      // A device-exclusive entry maps the page too (it is swapped out like a PTE; the device
      // was told by the invalidation above): nothing a CPU could cache, no A/D bits.
      const bool device = is_device_exclusive_entry(cur) && device_exclusive_entry_pfn(cur) == pfn;
      // Not ours (any more):
      if (!device && (!pte_present(cur) || pte_special(cur) || pte_pfn(cur) != pfn)) return true;
      // A locked VMA keeps its pages: the page is mlocked and the walk ends, so that reclaim
      // keeps it (on the unevictable list).
      if (vma_flags_racy(vma) & VM_LOCKED) {
        if (mlock_folio(mem, page)) mem.events().count(UNEVICTABLE_PGCULLED);
        return false;
      }
      // folio_try_share_anon_rmap_pte refuses a page that may be pinned: a device may be
      // writing it, and a swap-in would map another copy. The mapping stays. (Pins are taken
      // under this PTE lock, so none can appear once it is checked.)
      if (anon && page->test(PG_anon_exclusive) && folio_maybe_dma_pinned(page)) return false;
      const pteval_t v = ptep_get_and_clear(ptep);
      mmu_checker_pte_change(mm, address, v, 0);
      if (!device) {
        if (put_early) flush_tlb_range_cpus(mm, address, address + kPageSize);
        else flush_tlb_page(mm, address);
      }
      const bool dirty = !device && pte_dirty(v);
      if (lazyfree) {
        // A lazily free page written since MADV_FREE (its PTE or the page dirty) is wanted
        // again: it stays mapped and becomes swap-backed again (the page is isolated, so no
        // list depends on the flag). A droppable page goes even when dirty; otherwise the
        // page is discarded: nothing is kept of it.
        if (!(vma_flags_racy(vma) & VM_DROPPABLE) && (dirty || page->test(PG_dirty))) {
          set_pte(ptep, v);
          page->set(PG_swapbacked);
          return false;
        }
        mm->add_rss(MM_ANONPAGES, -1);
      } else if (anon) {
        if (dirty) page->set(PG_dirty);
        if (swap_duplicate(sys, page->swap) != Errno::kOk) {
          set_pte(ptep, v);  // the mapping stays as it was (nothing could use it meanwhile)
          return false;
        }
        pteval_t swp = page->swap;
        // The exclusivity moves from the page to the swap PTE (folio_try_share_anon_rmap_pte).
        if (page->test(PG_anon_exclusive)) {
          swp = pte_swp_mkexclusive(swp);
          page->clear(PG_anon_exclusive);
        }
        set_pte(ptep, swp);
        mm->add_rss(MM_ANONPAGES, -1);
        mm->add_rss(MM_SWAPENTS, 1);
      } else {
        if (dirty) page->set(PG_dirty);
        mm->add_rss(MM_SHMEMPAGES, -1);
      }
      page->mapcount.fetch_sub(1, std::memory_order_relaxed);
      unmapped = true;
    }
    if (put_early) {
      // The broken order: the caller's lent reference goes with the last mapping (the page
      // unlocked first, as a caller without a reference would not hold its lock), then the
      // PTE's, before the end and before the secondary TLBs hear of the unmap.
      const bool freeing = lent && !folio_mapped(page);
      if (freeing) {
        unlock_page(page);
        mem.put_page(page);
        *lent = true;
      }
      mem.put_page(page);
      mmu_notifier_arch_invalidate_secondary_tlbs(mm, address, address + kPageSize);
      return !freeing;
    }
  }
  if (unmapped) mem.put_page(page);  // after invalidate_range_end
  return true;
}

}  // namespace mirrormm
