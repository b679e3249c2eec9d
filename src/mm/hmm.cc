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
  MmapReadGuard g(mm);
  GupPfn pfn;
  Errno e = get_user_pfns(mm, addr, 1, write ? ForWrite::kYes : ForWrite::kNo, fault ? FaultIn::kYes : FaultIn::kNo,
                          &pfn);
  if (e != Errno::kOk) return e;
  if (!pfn.valid) return Errno::kNoEnt;
  *writable = pfn.writable;
  return pfn.pfn;
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
