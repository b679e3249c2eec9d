// What secondary MMUs call to read the primary page tables (mm/hmm.c's role): look up, and
// fault in when asked, the frame that backs a user address, and access a frame as a device
// would (DMA).
#include <cstring>

#include "mirrormm/base/tsan.h"
#include "mirrormm/mmu_notifier.h"
#include "mm/internal.h"
#include "mm/system_internal.h"

namespace mirrormm {

Result<uint64_t> mm_get_pfn(Mm* mm, uint64_t addr, bool fault, bool write, bool* writable) {
  *writable = false;
  ReadGuard g(mm->mmap_lock_);
  Vma* vma = mm->vma_lookup(addr);
  if (!vma || !(vma->vm_flags & VM_READ) || (vma->vm_flags & (VM_IO | VM_PFNMAP))) return Errno::kFault;
  if (write && !(vma->vm_flags & VM_WRITE)) return Errno::kPerm;
  for (int tries = 0; tries < 16; ++tries) {
    if (pte_t* ptep = pte_offset(mm, addr)) {
      SpinGuard pg(pte_lockptr(mm, ptep));
      pteval_t v = ptep_get(ptep);
      if (pte_hw_present(v) && (!write || pte_write(v))) {
        *writable = pte_write(v);
        return pte_pfn(v);
      }
    }
    if (!fault) return Errno::kNoEnt;
    unsigned r = handle_mm_fault(vma, addr, FAULT_FLAG_REMOTE | (write ? unsigned{FAULT_FLAG_WRITE} : 0u));
    if (r & VM_FAULT_OOM) return Errno::kNoMem;
    if (r & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) return Errno::kFault;
  }
  return Errno::kBusy;
}

void device_access_pfn(System* sys, uint64_t pfn, uint64_t offset, void* buf, uint64_t len, bool write) {
  MM_BUG_ON(offset + len > kPageSize);
  uint8_t* frame = sys->mem().page_address(sys->mem().pfn_to_page(pfn)) + offset;
  MM_TSAN_IGNORE_BEGIN();  // simulated RAM: races belong to the simulated programs
  if (write) {
    std::memcpy(frame, buf, len);
  } else {
    std::memcpy(buf, frame, len);
  }
  MM_TSAN_IGNORE_END();
}

}  // namespace mirrormm
