// mincore (mm/mincore.c): page residency, from the page tables for anonymous memory and from
// the page cache for file mappings.
#include <algorithm>

#include "mm/internal.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"

namespace mirrormm {

namespace {

void mincore_unmapped_range(const Vma* vma, uint64_t addr, uint64_t end, uint8_t* vec) {
  const uint64_t n = (end - addr) >> kPageShift;
  if (vma->vm_file) {
    uint64_t pgoff = vma->linear_page_index(addr);
    for (uint64_t i = 0; i < n; i++) vec[i] = vma->vm_file->inode->is_resident(pgoff + i) ? 1 : 0;
  } else {
    std::fill(vec, vec + n, 0);
  }
}

// mincore_swap: a swapped-out page is resident when the swap cache still holds it.
bool mincore_swap(System* sys, pteval_t v) {
  Page* page = swap_cache_get_folio(sys, pte_to_swp_entry(v));
  if (!page) return false;
  sys->mem().put_page(page);
  return true;
}

// do_mincore: residency of up to `pages` pages from addr, within one VMA. Returns the number
// of pages filled, or an errno.
Result<uint64_t> do_mincore(Mm* mm, uint64_t addr, uint64_t pages, uint8_t* vec)
    REQUIRES_SHARED(mm->mmap_lock_) {
  Vma* vma = mm->vma_lookup(addr);
  if (!vma) return Errno::kNoMem;
  const uint64_t end = std::min(vma->vm_end, addr + (pages << kPageShift));
  uint8_t* base = vec;
  uint64_t done_to = addr;
  walk_pte_tables(
      mm, addr, end,
      [&](pte_t* ptep, uint64_t a, uint64_t stop, Page*) {
        for (; a < stop; a += kPageSize, ptep++) {
          pteval_t v = ptep_get(ptep);
          uint8_t* slot = base + ((a - addr) >> kPageShift);
          if (pte_none(v) || is_pte_marker(v))  // pte_none_mostly: a guard marker maps nothing
            mincore_unmapped_range(vma, a, a + kPageSize, slot);
          else if (pte_present(v))
            *slot = 1;
          else if (is_migration_entry(v) || is_device_page_entry(v))
            *slot = 1;  // a page in memory: being moved, in device memory or held by a device
                        // (mincore_pte_range's non_swap_entry case)
          else
            *slot = !non_swap_entry(v) && mincore_swap(mm->sys(), v) ? 1 : 0;
        }
        done_to = stop;
      },
      [&](uint64_t a, uint64_t stop) {
        mincore_unmapped_range(vma, a, stop, base + ((a - addr) >> kPageShift));
        done_to = stop;
      });
  (void)done_to;
  return (end - addr) >> kPageShift;
}

}  // namespace

Errno do_mincore_syscall(Mm* mm, uint64_t start, uint64_t len, std::vector<uint8_t>* out) {
  out->clear();
  if (offset_in_page(start)) return Errno::kInval;
  // access_ok(start, len): the whole range must lie at or below the user pointer limit.
  const uint64_t sum = start + len;
  if (sum < start || sum > kTaskSize) return Errno::kNoMem;
  uint64_t pages = (len >> kPageShift) + (offset_in_page(len) != 0);
  // The kernel copies out PAGE_SIZE entries at a time; so do we, keeping what was copied
  // before an error.
  std::vector<uint8_t> tmp(kPageSize);
  while (pages) {
    const uint64_t chunk = std::min<uint64_t>(pages, kPageSize);
    Result<uint64_t> r = [&]() {
      MmapReadGuard g(mm);
      return do_mincore(mm, start, chunk, tmp.data());
    }();
    if (!r.ok()) return r.error();
    out->insert(out->end(), tmp.begin(), tmp.begin() + static_cast<long>(r.value()));
    pages -= r.value();
    start += r.value() << kPageShift;
  }
  return Errno::kOk;
}

}  // namespace mirrormm
