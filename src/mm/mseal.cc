// mseal (mm/mseal.c): sealing VMAs against change.
//
// A sealed VMA (VM_SEALED, smaps `sl`) refuses munmap, mremap, mprotect (even to what it
// already has), MAP_FIXED over it, and on read-only private anonymous memory the advice that
// discards data (madvise.cc); those checks live with each mechanism (can_modify_vma). Sealing
// itself goes through vma_modify_flags: sealed VMAs merge with sealed neighbours only, and
// fork copies the flag. A seal is never taken away.
#include <algorithm>

#include "mm/internal.h"
#include "mm/mm.h"

namespace mirrormm {

namespace {

// range_contains_unmapped: whether a hole lies anywhere in [start, end).
bool range_contains_unmapped(Mm* mm, uint64_t start, uint64_t end) REQUIRES(mm->mmap_lock_) {
  uint64_t prev_end = start;
  for (Vma* vma = mm->find_vma(start); vma && vma->vm_start < end; vma = mm->vma_next(vma)) {
    if (vma->vm_start > prev_end) return true;
    prev_end = vma->vm_end;
  }
  return prev_end < end;
}

// mseal_apply: every VMA piece of [start, end) gets VM_SEALED, merging where it can.
Errno mseal_apply(Mm* mm, uint64_t start, uint64_t end) REQUIRES(mm->mmap_lock_) {
  Vma* vma = mm->find_vma(start);
  Vma* prev = start > vma->vm_start ? vma : mm->vma_prev(vma);
  for (; vma && vma->vm_start < end; vma = mm->vma_next(vma)) {
    if (!(vma->vm_flags & VM_SEALED)) {
      Result<Vma*> r = vma_modify_flags(mm, prev, vma, std::max(start, vma->vm_start), std::min(vma->vm_end, end),
                                        vma->vm_flags | VM_SEALED);
      if (!r.ok()) return r.error();
      vma = r.value();  // the piece, or the neighbour it merged into
      vma_set_flags(vma, vma->vm_flags | VM_SEALED);
    }
    prev = vma;
  }
  return Errno::kOk;
}

}  // namespace

Errno do_mseal(Mm* mm, uint64_t start, uint64_t len_in, uint64_t flags) {
  if (flags) return Errno::kInval;
  if (offset_in_page(start)) return Errno::kInval;
  const uint64_t len = page_align(len_in);
  if (len_in && !len) return Errno::kInval;  // rounded up from a small negative length
  const uint64_t end = start + len;
  if (end < start) return Errno::kInval;
  if (end == start) return Errno::kOk;
  MmapWriteGuard g(mm);
  if (range_contains_unmapped(mm, start, end)) return Errno::kNoMem;
  Errno e = mseal_apply(mm, start, end);
  if constexpr (kDebugChecks) validate_mm(mm);
  return e;
}

}  // namespace mirrormm
