// Device-exclusive access (make_device_exclusive of mm/rmap.c, Linux 6.15 and later). The API
// and its rules are in mirrormm/migrate_device.h; the entry is pgtable.h's
// make_device_exclusive_entry, and the way back (remove_device_exclusive_entry,
// restore_exclusive_pte, fork's try_restore_exclusive_pte) is memory.cc's.
//
// Protocol, per attempt:
//   GUP (FOLL_GET | FOLL_WRITE): the page is mapped writable, hence anonymous-exclusive
//   lock_page
//     invalidate_range_start(EXCLUSIVE, [addr, addr + PAGE_SIZE), owner)
//       PTE lock
//         recheck: the PTE still maps this page, writable (else retry from the GUP)
//         ptep_get_and_clear + TLB flush; dirty bit -> PG_dirty
//         device-exclusive entry (reference, mapcount and rss stay: the entry stands for them)
//       PTE unlock
//     invalidate_range_end
//   return the page locked, with GUP's reference (the caller maps it in the device, then
//   unlocks and puts it)
// A CPU access that meets the entry waits for the page lock, so it cannot restore the PTE
// before the driver has finished mapping the page.
#include "mirrormm/migrate_device.h"

#include "mm/internal.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/system_internal.h"
#include "mm/tlb.h"

namespace mirrormm {

namespace {

// The second walk: the PTE at addr of mm becomes a device-exclusive entry if it still maps
// page writable. The caller holds the page lock, inside the EXCLUSIVE bracket.
bool convert_to_device_exclusive(Mm* mm, uint64_t addr, Page* page) {
  PhysMem& mem = mm->mem();
  pte_t* ptep = pte_offset(mm, addr);
  if (!ptep) return false;
  const pfn_t pfn = mem.page_to_pfn(page);
  SpinGuard g(pte_lockptr(mm, ptep));
  const pteval_t cur = ptep_get(ptep);
  // Only one PTE can map an anonymous page writable, so this is the page's only mapping.
  if (!pte_hw_present(cur) || pte_special(cur) || pte_pfn(cur) != pfn || !pte_write(cur)) return false;
  const pteval_t old = ptep_get_and_clear(ptep);  // the final dirty bit
  flush_tlb_page(mm, addr);
  if (pte_dirty(old)) page->set(PG_dirty);
  const pteval_t entry = make_device_exclusive_entry(pfn);
  set_pte(ptep, entry);
  mmu_checker_pte_change(mm, addr, old, entry);
  return true;
}

}  // namespace

Result<uint64_t> make_device_exclusive(Mm* mm, uint64_t addr, void* owner) {
  mmap_assert_locked(mm);
  addr &= kPageMask;
  PhysMem& mem = mm->mem();
  for (;;) {
    // get_user_page_vma_remote: faults the page in writable; an entry some device holds
    // exclusively is taken back first (its driver sees MMU_NOTIFY_CLEAR).
    GupPfn got;
    const GupResult r = get_user_pages(mm, addr, 1, FOLL_GET | FOLL_WRITE | FOLL_TOUCH | FOLL_REMOTE, &got);
    if (r.error != Errno::kOk) return r.error;
    Page* page = mem.pfn_to_page(static_cast<pfn_t>(got.pfn));
    if (!page->test(PG_anon)) {
      mem.put_page(page);
      return Errno::kOpNotSupp;
    }
    lock_page(page);
    bool converted;
    {
      // Secondary MMUs unmap the page now; the caller filters its own event out by owner.
      MmuNotifierBracket bracket(MmuNotifyEvent::kExclusive, mm, addr, addr + kPageSize, owner);
      converted = convert_to_device_exclusive(mm, addr, page);
    }
    if (converted) return static_cast<uint64_t>(got.pfn);
    // The PTE changed between the GUP and the lock (a zap, a migration, a fork that
    // write-protected it): start over.
    unlock_page(page);
    mem.put_page(page);
  }
}

}  // namespace mirrormm
