// Faulting user pages in on behalf of the kernel (mm/gup.c): the one loop that populate
// (mm_populate, MAP_POPULATE), madvise(MADV_POPULATE_READ/WRITE) and driver lookups (the
// primary side of hmm_range_fault) share.
//
// The loop is __get_user_pages': for each page, find the VMA (a new one only when the address
// leaves the previous one), check that the VMA allows the access (check_vma_flags), follow
// the PTE under its lock (follow_page_pte) and, when it does not map a page the way the
// caller wants it (present; writable for FOLL_WRITE), fault (faultin_page) and follow again.
// The caller holds the mmap_lock for read throughout, so VMAs and page tables stay put; the
// fault path may still see concurrent faults, zaps (MADV_DONTNEED) and truncation, which is
// why a fault that succeeded is followed by another look at the PTE rather than trusted.
#include <algorithm>
#include <optional>

#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/pgtable.h"
#include "mm/physmem.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

// check_vma_flags: whether the VMA can be accessed as gup_flags asks. FOLL_FORCE (populate)
// overrides VM_READ for a VMA that is accessible at all; a forced write still needs VM_WRITE
// here, as nothing in the model writes through a read-only VMA.
bool check_vma_flags(const Vma* vma, unsigned gup_flags) {
  if (vma->vm_flags & (VM_IO | VM_PFNMAP)) return false;
  if (gup_flags & FOLL_WRITE) return vma->vm_flags & VM_WRITE;
  if (gup_flags & FOLL_FORCE) return vma->is_accessible();
  return vma->vm_flags & VM_READ;
}

// follow_page_pte: the pfn addr maps when its entry allows the access, or nullopt. With
// FOLL_TOUCH the access counts as one the VM saw: a write marks the page dirty unless its PTE
// already is (the caller is about to write it without the MMU noticing: so
// MADV_POPULATE_WRITE through a writable, clean shared entry dirties the page-cache page, and
// pageout keeps it), and any access marks a normal page accessed (folio_mark_accessed, under
// the PTE lock, whose entry's reference keeps the page alive).
std::optional<GupPfn> follow_page_pte(Mm* mm, uint64_t addr, unsigned gup_flags) {
  pte_t* ptep = pte_offset(mm, addr);
  if (!ptep) return std::nullopt;
  SpinGuard g(pte_lockptr(mm, ptep));
  const pteval_t v = ptep_get(ptep);
  if (!pte_hw_present(v) || ((gup_flags & FOLL_WRITE) && !pte_write(v))) return std::nullopt;
  if ((gup_flags & FOLL_TOUCH) && !pte_special(v)) {
    Page* page = mm->mem().pfn_to_page(pte_pfn(v));
    if ((gup_flags & FOLL_WRITE) && !pte_dirty(v)) page->set(PG_dirty);
    folio_mark_accessed(mm->mem(), page);
  }
  return GupPfn{pte_pfn(v), pte_write(v), true};
}

// faultin_page: the fault that makes the next follow succeed, as an errno. It counts as a
// fault in /proc/vmstat (mm_account_fault counts GUP's faults too).
Errno faultin_page(Vma* vma, uint64_t addr, unsigned gup_flags) {
  unsigned fault_flags = 0;
  if (gup_flags & FOLL_WRITE) fault_flags |= FAULT_FLAG_WRITE;
  if (gup_flags & FOLL_REMOTE) fault_flags |= FAULT_FLAG_REMOTE;
  const unsigned r = handle_mm_fault(vma, addr, fault_flags);
  if (!(r & VM_FAULT_RETRY)) vma->vm_mm->mem().events().count(PGFAULT);
  if (r & VM_FAULT_OOM) return Errno::kNoMem;
  if (r & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) return Errno::kFault;
  return Errno::kOk;
}

}  // namespace

GupResult get_user_pages(Mm* mm, uint64_t start, uint64_t nr_pages, unsigned gup_flags, GupPfn* pfns) {
  mmap_assert_locked(mm);
  GupResult res;
  Vma* vma = nullptr;
  for (uint64_t addr = start & kPageMask; res.nr_done < nr_pages; addr += kPageSize) {
    if (!vma || addr >= vma->vm_end) {
      vma = mm->vma_lookup(addr);
      if (!vma) {
        res.error = (gup_flags & FOLL_MADV_POPULATE) ? Errno::kNoMem : Errno::kFault;
        return res;
      }
      if (!check_vma_flags(vma, gup_flags)) {
        res.error = (gup_flags & FOLL_MADV_POPULATE) ? Errno::kInval : Errno::kFault;
        return res;
      }
    }
    std::optional<GupPfn> pfn;
    while (!(pfn = follow_page_pte(mm, addr, gup_flags))) {
      if (gup_flags & FOLL_NOFAULT) break;
      res.error = faultin_page(vma, addr, gup_flags);
      if (res.error != Errno::kOk) return res;
    }
    if (pfns) pfns[res.nr_done] = pfn.value_or(GupPfn{});
    res.nr_done++;
  }
  return res;
}

Errno populate_vma_page_range(Vma* vma, uint64_t start, uint64_t end) {
  // Linux has never broken COW for a lock-on-fault VMA here: its pages come with its faults.
  if (vma->vm_flags & VM_LOCKONFAULT) return Errno::kOk;
  // Writable private mappings get write faults (breaking COW), everything else forced read
  // faults, which cover write-only and exec-only mappings but not PROT_NONE ones.
  unsigned gup_flags = FOLL_TOUCH;
  if ((vma->vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE) gup_flags |= FOLL_WRITE;
  else gup_flags |= FOLL_FORCE;
  return get_user_pages(vma->vm_mm, start, (page_align(end) - start) >> kPageShift, gup_flags, nullptr).error;
}

Errno faultin_page_range(Mm* mm, uint64_t start, uint64_t end, ForWrite write) {
  unsigned gup_flags = FOLL_TOUCH | FOLL_MADV_POPULATE;
  if (write == ForWrite::kYes) gup_flags |= FOLL_WRITE;
  return get_user_pages(mm, start, (page_align(end) - start) >> kPageShift, gup_flags, nullptr).error;
}

Errno get_user_pfns(Mm* mm, uint64_t start, uint64_t nr_pages, ForWrite write, FaultIn fault, GupPfn* pfns) {
  mmap_assert_locked(mm);
  unsigned gup_flags = FOLL_REMOTE;
  if (write == ForWrite::kYes) gup_flags |= FOLL_WRITE;
  if (fault == FaultIn::kNo) gup_flags |= FOLL_NOFAULT;
  // hmm_vma_walk_test's answers: a VMA that cannot be read is -EFAULT, a write to one without
  // VM_WRITE -EPERM (check_vma_flags would call both -EFAULT).
  for (uint64_t addr = start & kPageMask, left = nr_pages; left;) {
    const Vma* vma = mm->vma_lookup(addr);
    if (!vma || !(vma->vm_flags & VM_READ) || (vma->vm_flags & (VM_IO | VM_PFNMAP))) return Errno::kFault;
    if (write == ForWrite::kYes && !(vma->vm_flags & VM_WRITE)) return Errno::kPerm;
    const uint64_t n = std::min(left, (vma->vm_end - addr) >> kPageShift);
    addr += n << kPageShift;
    left -= n;
  }
  return get_user_pages(mm, start, nr_pages, gup_flags, pfns).error;
}

}  // namespace mirrormm
