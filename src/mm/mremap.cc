// mremap (mm/mremap.c, Linux 6.18): resize in place, move (with MREMAP_FIXED or MAYMOVE),
// MREMAP_DONTUNMAP, and 6.17's multi-VMA moves of same-size MREMAP_FIXED requests.
//
// The order of checks and side effects follows Linux: parameter checks before anything is
// locked; MREMAP_FIXED unmaps the destination before later steps that may still fail; a
// failing move leaves what was done.
#include <algorithm>

#include "mm/internal.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

constexpr uint64_t kRemapMaymove = 1, kRemapFixed = 2, kRemapDontunmap = 4;

enum class RemapType { kNoResize, kShrink, kExpand };

// struct vma_remap_struct.
struct Vrm {
  Mm* mm = nullptr;
  Vma* vma = nullptr;
  uint64_t addr = 0, old_len = 0, new_len = 0, flags = 0, new_addr = 0;
  uint64_t delta = 0;
  RemapType type = RemapType::kNoResize;
  int64_t charged = 0;
  bool mlocked = false;  // a locked VMA grew or moved: what it gained is populated after

  bool implies_new_addr() const { return flags & (kRemapFixed | kRemapDontunmap); }
  bool move_only() const { return (flags & kRemapFixed) && old_len == new_len; }
  bool will_map_new() const { return type == RemapType::kExpand || implies_new_addr(); }
  bool overlaps() const {
    const uint64_t end_old = addr + old_len, end_new = new_addr + new_len;
    return end_old > new_addr && end_new > addr;
  }
};

void set_delta_and_type(Vrm& v) {
  v.delta = v.new_len > v.old_len ? v.new_len - v.old_len : v.old_len - v.new_len;
  if (v.old_len == v.new_len) v.type = RemapType::kNoResize;
  else if (v.old_len > v.new_len) v.type = RemapType::kShrink;
  else v.type = RemapType::kExpand;
}

Errno check_mremap_params(Vrm& v) {
  if (v.flags & ~(kRemapFixed | kRemapMaymove | kRemapDontunmap)) return Errno::kInval;
  if (offset_in_page(v.addr)) return Errno::kInval;
  if (!v.new_len) return Errno::kInval;
  if (v.new_len > kTaskSize) return Errno::kInval;
  if (!v.implies_new_addr()) return Errno::kOk;
  if (v.new_addr > kTaskSize - v.new_len) return Errno::kInval;
  if (offset_in_page(v.new_addr)) return Errno::kInval;
  if (!(v.flags & kRemapMaymove)) return Errno::kInval;
  if ((v.flags & kRemapDontunmap) && v.old_len != v.new_len) return Errno::kInval;
  if (v.overlaps()) return Errno::kInval;
  return Errno::kOk;
}

Errno check_map_count(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  // move_vma needs room for up to 3 more VMAs; refuse before touching anything.
  if (v.implies_new_addr() && v.mm->map_count_ + 2 >= v.mm->sys()->config().max_map_count - 3)
    return Errno::kNoMem;
  return Errno::kOk;
}

Errno check_prep_vma(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Vma* vma = v.vma;
  if (!vma) return Errno::kFault;
  // mseal: no mremap at all, not even one that would change nothing.
  if (!can_modify_vma(vma)) return Errno::kPerm;
  set_delta_and_type(v);
  if (!v.implies_new_addr()) v.new_addr = v.addr;
  if (!v.will_map_new()) return Errno::kOk;
  // !old_len "duplicates" a mapping: meaningful only for shared mappings.
  if (!v.old_len && !(vma->vm_flags & (VM_SHARED | VM_MAYSHARE))) return Errno::kInval;
  if ((v.flags & kRemapDontunmap) && (vma->vm_flags & (VM_DONTEXPAND | VM_PFNMAP))) return Errno::kInval;
  // The range must not run past the VMA's end. A shrinking move is checked on what remains
  // after the shrink (measured on the 6.18 host: the tail may span other VMAs and holes).
  const uint64_t span = v.type == RemapType::kShrink ? v.new_len : v.old_len;
  if (span > vma->vm_end - v.addr) return Errno::kFault;
  if (v.new_len == v.old_len) return Errno::kOk;
  const uint64_t pgoff = vma->linear_page_index(v.addr);
  if (pgoff + (v.new_len >> kPageShift) < pgoff) return Errno::kInval;
  if (vma->vm_flags & (VM_DONTEXPAND | VM_PFNMAP)) return Errno::kFault;
  // A growing mapping must stay within RLIMIT_MEMLOCK (if locked) and RLIMIT_AS/DATA.
  if (v.type == RemapType::kExpand) {
    if (!mlock_future_ok(v.mm, vma->vm_flags, v.delta)) return Errno::kAgain;
    if (!may_expand_vm(v.mm, vma->vm_flags, v.delta >> kPageShift)) return Errno::kNoMem;
  }
  return Errno::kOk;
}

bool calc_charge(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  if (!(v.vma->vm_flags & VM_ACCOUNT)) return true;
  const uint64_t bytes = (v.flags & kRemapDontunmap) ? v.new_len : v.delta;
  if (!vm_enough_memory(v.mm->sys(), static_cast<int64_t>(bytes >> kPageShift))) return false;
  v.charged = static_cast<int64_t>(bytes >> kPageShift);
  return true;
}

void uncharge(Vrm& v) {
  if (v.charged) vm_unacct_memory(v.mm->sys(), v.charged);
  v.charged = 0;
}

Errno shrink_vma(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Errno e = do_munmap(v.mm, v.addr + v.new_len, v.delta);
  v.vma = nullptr;
  if (e != Errno::kOk) return e;
  v.vma = v.mm->vma_lookup(v.addr);
  return v.vma ? Errno::kOk : Errno::kFault;
}

// copy_vma: the destination VMA, merged with its neighbours when possible (6.18.y's
// vma_merge_copied_range), else a copy of the source.
Vma* copy_vma(Mm* mm, Vma** vmap, uint64_t addr, uint64_t len, uint64_t pgoff) REQUIRES(mm->mmap_lock_) {
  Vma* vma = *vmap;
  const uint64_t vma_start = vma->vm_start;
  // An anonymous VMA that was never faulted takes the pgoff of its new place, to merge there.
  if (vma->is_anonymous() && !vma->anon_vma) pgoff = addr >> kPageShift;
  VmaMergeState vmg;
  vmg.mm = mm;
  vmg.prev = mm->find_vma_prev(addr);
  vmg.next = mm->find_vma(addr);
  if (vmg.next && vmg.next->vm_start < addr + len) return nullptr;  // cannot happen: unmapped
  vmg.start = addr;
  vmg.end = addr + len;
  vmg.pgoff = pgoff;
  vmg.vm_flags = vma->vm_flags;
  vmg.file = vma->vm_file;
  vmg.anon_vma = vma->anon_vma;
  vmg.copied_from = vma;
  mmap_assert_write_locked(vmg.mm);
  Vma* new_vma = vma_merge_new_range(vmg);
  if (new_vma) {
    // The source itself may have merged into the copy (only when it was never faulted).
    if (vma_start >= new_vma->vm_start && vma_start < new_vma->vm_end) *vmap = new_vma;
    return new_vma;
  }
  new_vma = vm_area_dup(vma);
  new_vma->vm_start = addr;
  new_vma->vm_end = addr + len;
  new_vma->vm_pgoff = pgoff;
  if (anon_vma_clone(new_vma, vma) != Errno::kOk) {
    new_vma->anon_vma = nullptr;
    vm_area_free(new_vma);
    return nullptr;
  }
  vma_link(mm, new_vma);
  return new_vma;
}

// Moves one entry; the caller holds the PTE locks of both tables.
void move_pte_locked(Mm* mm, uint64_t old_addr, pte_t* sptep, pte_t* dptep) {
  const pteval_t v = ptep_get_and_clear(sptep);
  mmu_checker_pte_change(mm, old_addr, v, 0);
  set_pte(dptep, v);
}

// Moves one entry under the source PTE lock and, when it is another table's, the
// destination's (nested inside, as Linux's move_ptes does).
void move_pte(Mm* mm, uint64_t old_addr, SpinLock& sptl, SpinLock& dptl, pte_t* sptep, pte_t* dptep) {
  SpinGuard s(sptl);
  if (&dptl == &sptl) {
    move_pte_locked(mm, old_addr, sptep, dptep);
    return;
  }
  NestedSpinGuard d(dptl);
  move_pte_locked(mm, old_addr, sptep, dptep);
}

// move_page_tables: entries of [old, old+len) move to [new, new+len) as they are.
uint64_t move_page_tables_locked(Mm* mm, uint64_t old_addr, uint64_t new_addr, uint64_t len) {
  uint64_t moved_to = old_addr;  // everything below has been moved
  bool failed = false;
  MmuNotifierBracket bracket(MmuNotifyEvent::kUnmap, mm, old_addr, old_addr + len);
  walk_pte_tables(mm, old_addr, old_addr + len, [&](pte_t* sptep, uint64_t a, uint64_t stop, Page* stable) {
    if (failed) return;
    for (; a < stop; a += kPageSize, sptep++) {
      if (pte_none(sptep->load(std::memory_order_relaxed))) continue;
      pte_t* dptep = pte_alloc(mm, a - old_addr + new_addr);
      if (!dptep) {
        failed = true;
        return;
      }
      move_pte(mm, a, stable->ptl, pte_lockptr(mm, dptep), sptep, dptep);
      moved_to = a + kPageSize;
    }
    if (!failed) moved_to = stop;
  });
  flush_tlb_range(mm, old_addr, old_addr + len);
  return failed ? moved_to - old_addr : len;
}

// take_rmap_locks around the move: a reverse-map walk must not pass the new VMA before an
// entry arrives there and the old one after it left, or remove_migration_ptes would miss a
// migration entry on its way (the entries of vma's file and anon_vma family are all
// reached under these two locks). Linux takes them only when the new VMA could be visited
// first (need_rmap_locks); they are always taken here.
uint64_t move_page_tables(Mm* mm, Vma* vma, uint64_t old_addr, uint64_t new_addr, uint64_t len) {
  auto move = [&] { return move_page_tables_locked(mm, old_addr, new_addr, len); };
  AnonVma* av = vma->anon_vma.load(std::memory_order_acquire);
  auto with_anon = [&] {
    if (!av) return move();
    WriteGuard g(av->root->rwsem);
    return move();
  };
  if (!vma->vm_file) return with_anon();
  MutexGuard g(vma->vm_file->inode->i_mmap_lock());
  return with_anon();
}

void unmap_source_vma(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Mm* mm = v.mm;
  mmap_assert_write_locked(mm);
  Vma* vma = v.vma;
  const uint64_t addr = v.addr, len = v.old_len;
  // The new VMA carries the accounting of what moves: keep munmap from releasing it, and put
  // VM_ACCOUNT back on the remnants of a split source.
  const bool accountable_move = (vma->vm_flags & VM_ACCOUNT) && !(v.flags & kRemapDontunmap);
  uint64_t vm_start = 0, vm_end = 0;
  if (accountable_move) {
    vma_set_flags(vma, vma->vm_flags & ~VM_ACCOUNT);
    vm_start = vma->vm_start;
    vm_end = vma->vm_end;
  }
  Errno e = do_munmap(mm, addr, len);
  v.vma = nullptr;
  if (e != Errno::kOk) {
    vm_enough_memory(mm->sys(), static_cast<int64_t>(len >> kPageShift));  // vm_acct_memory
    return;
  }
  if (accountable_move) {
    if (vm_start < addr) {
      if (Vma* prev = mm->find_vma_prev(addr)) vma_set_flags(prev, prev->vm_flags | VM_ACCOUNT);
    }
    if (vm_end > addr + len) {
      if (Vma* next = mm->find_vma(addr + len)) vma_set_flags(next, next->vm_flags | VM_ACCOUNT);
    }
  }
}

Result<uint64_t> move_vma(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Mm* mm = v.mm;
  mmap_assert_write_locked(mm);
  if (mm->map_count_ >= mm->sys()->config().max_map_count - 3) return Errno::kNoMem;
  if (!calc_charge(v)) return Errno::kNoMem;
  Vma* vma = v.vma;
  vma_start_write(vma);  // no racing faults while the entries move
  const uint64_t new_pgoff = vma->linear_page_index(v.addr);
  Vma* new_vma = copy_vma(mm, &vma, v.new_addr, v.new_len, new_pgoff);
  if (!new_vma) {
    uncharge(v);
    return Errno::kNoMem;
  }
  v.vma = vma;
  const uint64_t moved = move_page_tables(mm, vma, v.addr, v.new_addr, v.old_len);
  if (moved < v.old_len) {
    // Out of frames for page tables: move back what moved, then drop the copy's range.
    move_page_tables(mm, new_vma, v.new_addr, v.addr, moved);
    Vrm back = v;
    mmap_assert_write_locked(back.mm);
    back.vma = new_vma;
    back.addr = v.new_addr;
    back.old_len = v.new_len;
    back.flags &= ~kRemapDontunmap;
    unmap_source_vma(back);
    return Errno::kNoMem;
  }
  if (vma->vm_flags & VM_LOCKED) v.mlocked = true;
  if (v.flags & kRemapDontunmap) {
    // dontunmap_complete: the source stays, empty; whole-VMA moves drop its anon_vma.
    vma_set_flags(vma, vma->vm_flags & ~(VM_LOCKED | VM_LOCKONFAULT));
    if (new_vma != vma && v.addr == vma->vm_start && v.addr + v.old_len == vma->vm_end)
      unlink_anon_vmas(vma);
  } else {
    unmap_source_vma(v);
  }
  if constexpr (kDebugChecks) validate_mm(mm);
  return v.new_addr;
}

Result<uint64_t> set_new_addr(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  uint64_t map_flags = 0;
  if (v.flags & kRemapFixed) map_flags |= kMapFixed;
  return get_unmapped_area(v.mm, v.implies_new_addr() ? v.new_addr : 0, v.new_len, map_flags);
}

Result<uint64_t> mremap_to(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Mm* mm = v.mm;
  mmap_assert_write_locked(mm);
  if (v.flags & kRemapFixed) {
    // The destination is unmapped first; this stays done whatever fails later.
    Errno e = do_munmap(mm, v.new_addr, v.new_len);
    v.vma = nullptr;
    if (e != Errno::kOk) return e;
    v.vma = mm->vma_lookup(v.addr);
    if (!v.vma) return Errno::kFault;
  }
  if (v.type == RemapType::kShrink) {
    Errno e = shrink_vma(v);
    if (e != Errno::kOk) return e;
    v.old_len = v.new_len;
  }
  // MREMAP_DONTUNMAP keeps the source: the address space grows by old_len.
  if ((v.flags & kRemapDontunmap) && !may_expand_vm(mm, v.vma->vm_flags, v.old_len >> kPageShift))
    return Errno::kNoMem;
  Result<uint64_t> a = set_new_addr(v);
  if (!a.ok()) return a;
  v.new_addr = a.value();
  return move_vma(v);
}

Result<uint64_t> expand_vma(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Mm* mm = v.mm;
  mmap_assert_write_locked(mm);
  Vma* vma = v.vma;
  // In place when [addr, addr+old_len) reaches the VMA's end and the extension is free.
  bool in_place = false;
  if (vma->vm_end - v.addr == v.old_len) {
    const uint64_t end = vma->vm_end + v.delta;
    in_place = end >= vma->vm_end && !mm->find_vma_intersection(vma->vm_end, end) &&
               get_unmapped_area(mm, vma->vm_start, end - vma->vm_start, kMapFixed).ok();
  }
  if (in_place) {
    if (!calc_charge(v)) return Errno::kNoMem;
    // vma_merge_extend: a new range right after vma, merging with vma (and maybe next).
    VmaMergeState vmg;
    vmg.mm = mm;
    vmg.prev = vma;
    vmg.next = mm->vma_next(vma);
    vmg.start = vma->vm_end;
    vmg.end = vma->vm_end + v.delta;
    vmg.pgoff = vma->linear_page_index(vma->vm_end);
    vmg.vm_flags = vma->vm_flags;
    vmg.file = vma->vm_file;
    vmg.anon_vma = vma->anon_vma;
    mmap_assert_write_locked(vmg.mm);
    if (!vma_merge_new_range(vmg)) {
      uncharge(v);
      return Errno::kNoMem;
    }
    if (vma->vm_flags & VM_LOCKED) v.mlocked = true;
    return v.addr;
  }
  if (!(v.flags & kRemapMaymove)) return Errno::kNoMem;
  Result<uint64_t> a = set_new_addr(v);
  if (!a.ok()) return a;
  v.new_addr = a.value();
  return move_vma(v);
}

Result<uint64_t> mremap_at(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  switch (v.type) {
    case RemapType::kNoResize:
      return v.addr;
    case RemapType::kShrink: {
      Errno e = shrink_vma(v);
      if (e != Errno::kOk) return e;
      return v.addr;
    }
    case RemapType::kExpand:
      return expand_vma(v);
  }
  return Errno::kInval;
}

// remap_move (6.17+): every VMA in [addr, addr+len) moves to the same offset from new_addr,
// gaps preserved; the range must start in a VMA.
Result<uint64_t> remap_move(Vrm& v) REQUIRES(v.mm->mmap_lock_) {
  Mm* mm = v.mm;
  mmap_assert_write_locked(mm);
  const uint64_t start = v.addr, end = v.addr + v.old_len;
  uint64_t target_addr = v.new_addr;
  Result<uint64_t> res = Errno::kFault;
  bool seen_vma = false;
  uint64_t last_end = 0;
  uint64_t cursor = start;
  for (;;) {
    Vma* vma = mm->find_vma(cursor);
    if (!vma || vma->vm_start >= end) break;
    const uint64_t addr = std::max(vma->vm_start, start);
    const uint64_t len = std::min(end, vma->vm_end) - addr;
    if (!seen_vma && start < vma->vm_start) return Errno::kFault;
    const uint64_t offset = seen_vma ? vma->vm_start - last_end : 0;
    last_end = vma->vm_end;
    const uint64_t vma_end = vma->vm_end;
    Vrm one = v;
    one.vma = vma;
    one.addr = addr;
    one.new_addr = target_addr + offset;
    one.old_len = one.new_len = len;
    one.charged = 0;
    mmap_assert_write_locked(one.mm);
    Errno e = check_prep_vma(one);
    Result<uint64_t> r = e == Errno::kOk ? mremap_to(one) : Result<uint64_t>(e);
    if (!r.ok()) return r;
    if (!seen_vma) res = r.value();
    seen_vma = true;
    target_addr = r.value() + len;
    cursor = std::min(end, vma_end);
    if (cursor >= end) break;
  }
  return res;
}

Result<uint64_t> mremap_vrm(Mm* mm, Vrm& v, uint64_t addr, uint64_t old_len, uint64_t new_len,
                                  uint64_t flags, uint64_t new_addr) EXCLUDES(mm->mmap_lock_) {
  v.mm = mm;
  v.addr = addr;
  v.old_len = page_align(old_len);
  v.new_len = page_align(new_len);
  v.flags = flags;
  v.new_addr = new_addr;
  if (Errno e = check_mremap_params(v); e != Errno::kOk) return e;
  MmapWriteGuard g(mm);
  mmap_assert_write_locked(v.mm);
  if (Errno e = check_map_count(v); e != Errno::kOk) return e;
  if (v.move_only()) return remap_move(v);
  v.vma = mm->vma_lookup(v.addr);
  if (Errno e = check_prep_vma(v); e != Errno::kOk) return e;
  return v.implies_new_addr() ? mremap_to(v) : mremap_at(v);
}

}  // namespace

Result<uint64_t> do_mremap(Mm* mm, uint64_t addr, uint64_t old_len, uint64_t new_len, uint64_t flags,
                           uint64_t new_addr) {
  Vrm v;
  Result<uint64_t> r = mremap_vrm(mm, v, addr, old_len, new_len, flags, new_addr);
  // A locked mapping that grew gets its new part populated, as mlock would.
  if (r.ok() && v.mlocked && v.new_len > v.old_len)
    mm_populate(mm, r.value() + v.old_len, v.new_len - v.old_len);
  return r;
}

}  // namespace mirrormm
