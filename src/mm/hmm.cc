// What secondary MMUs call to read the primary page tables (mm/hmm.c's role): look up, and
// fault in when asked, the frame that backs a user address, and access a frame as a device
// would (DMA).
#include <cstring>
#include <string>

#include "mirrormm/base/tsan.h"
#include "mirrormm/mmu_notifier.h"
#include "mm/internal.h"
#include "mm/mmu_notifier_internal.h"
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

// Two tiers. Always (the checker on or off): the frame exists, is allocated, and holds user
// data; the access pins it. This is what keeps a broken driver or kernel from writing into a
// page table, a free frame or a frame being set up: page tables (PG_pgtable) and fresh frames
// carry neither PG_anon nor PG_shmem, and a pinned frame cannot change hands. With the
// checker on, the declared mapping must also still be coherent (mmu_checker_device_access).
bool device_access_pfn(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, void* buf, uint64_t len, bool write) {
  PhysMem& mem = mm->mem();
  const uint64_t offset = offset_in_page(addr);
  auto refuse = [&](const char* kind, const std::string& what) {
    mmu_checker_report_device(sub, mm, addr, pfn, kind, what);
    if (!write && len <= kPageSize) std::memset(buf, 0, len);
    return false;
  };
  if (len > kPageSize - offset)
    return refuse(write ? "device write across a page" : "device read across a page",
                  "the access of " + std::to_string(len) + " bytes crosses the end of the page");
  const bool zero = mem.is_zero_pfn(static_cast<pfn_t>(pfn));
  if (pfn >= mem.nr_frames() || (!zero && !mem.valid_pfn(static_cast<pfn_t>(pfn))))
    return refuse(write ? "device write to no frame" : "device read from no frame", "no such frame");
  if (zero && write) return refuse("device write to the zero page", "the frame is the shared zero page");
  Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfn));
  if (!zero && !PhysMem::get_page_unless_zero(page))
    return refuse(write ? "device write to a freed frame" : "device read from a freed frame", "the frame is free");
  const uint32_t flags = page->flags.load(std::memory_order_acquire);
  if (!zero && ((flags & (PG_free | PG_pgtable)) || !(flags & (PG_anon | PG_shmem)))) {
    mem.put_page(page);
    return refuse(write ? "device write to a foreign frame" : "device read from a foreign frame",
                  (flags & PG_pgtable) ? "the frame is a page table" : "the frame holds no user data");
  }
  const bool allowed = !mmu_checker_on(mm) || mmu_checker_device_access(sub, mm, addr, pfn, write);
  if (allowed) {
    uint8_t* frame = mem.pfn_to_virt(static_cast<pfn_t>(pfn)) + offset;
    MM_TSAN_IGNORE_BEGIN();  // simulated RAM: races belong to the simulated programs
    if (write) {
      std::memcpy(frame, buf, len);
    } else {
      std::memcpy(buf, frame, len);
    }
    MM_TSAN_IGNORE_END();
  } else if (!write) {
    std::memset(buf, 0, len);
  }
  if (!zero) mem.put_page(page);
  return allowed;
}

}  // namespace mirrormm
