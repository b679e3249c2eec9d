// mmap, munmap, address-space layout, stack expansion, overcommit and exit_mmap (mm/mmap.c,
// mm/vma.c's unmap half, mm/util.c's accounting).
#include <algorithm>

#include "mirrormm/device_file.h"
#include "mm/filemap.h"
#include "mm/tlb.h"
#include "mm/internal.h"
#include "mm/rmap.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/mm.h"
#include "mm/lru.h"
#include "mm/shmem.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

constexpr uint64_t kMmapBase = 0x7ff000000000ull;  // top of the top-down search (no ASLR)

// protection_map[VM_READ|VM_WRITE|VM_EXEC|VM_SHARED] for x86.
constexpr pgprot_t kProtectionMap[16] = {
    PAGE_NONE,      PAGE_READONLY, PAGE_COPY,   PAGE_COPY,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_COPY_EXEC, PAGE_COPY_EXEC,
    PAGE_NONE,      PAGE_READONLY, PAGE_SHARED, PAGE_SHARED,
    PAGE_READONLY_EXEC, PAGE_READONLY_EXEC, PAGE_SHARED_EXEC, PAGE_SHARED_EXEC,
};

uint64_t vm_start_gap(const Vma* vma, uint64_t gap) {
  uint64_t s = vma->vm_start;
  if (vma->vm_flags & VM_GROWSDOWN) {
    s -= gap;
    if (s > vma->vm_start) s = 0;
  }
  return s;
}

bool accountable_mapping(const File* file, vm_flags_t vm_flags) {
  (void)file;  // hugetlbfs files would be excluded; none exist in the model
  return (vm_flags & (VM_NORESERVE | VM_SHARED | VM_WRITE)) == VM_WRITE;
}

// Top-down search for a free range of len bytes below kMmapBase (vm_unmapped_area).
Result<uint64_t> unmapped_area_topdown(Mm* mm, uint64_t len, uint64_t align) REQUIRES(mm->mmap_lock_) {
  const uint64_t gap = mm->sys()->config().stack_guard_gap;
  uint64_t high = kMmapBase;
  auto it = mm->vmas_.lower_bound(high);
  // Walk gaps from the top down: the gap below `next` (or below high) and above `prev`.
  for (;;) {
    uint64_t gap_end = high;
    if (it != mm->vmas_.end()) gap_end = std::min(gap_end, vm_start_gap(it->second, gap));
    uint64_t gap_start = kMmapMinAddr;
    auto pit = it;
    bool has_prev = pit != mm->vmas_.begin();
    if (has_prev) {
      --pit;
      gap_start = std::max(gap_start, pit->second->vm_end);
    }
    if (gap_end > gap_start && gap_end - gap_start >= len) {
      uint64_t a = (gap_end - len) & ~(align - 1);
      if (a >= gap_start) return a;
    }
    if (!has_prev) return Errno::kNoMem;
    it = pit;
    high = pit->second->vm_start;
  }
}

Result<uint64_t> get_unmapped_area_impl(Mm* mm, uint64_t addr, uint64_t len, uint64_t flags)
    REQUIRES(mm->mmap_lock_) {
  if (len > kTaskSize) return Errno::kNoMem;
  if (!(flags & kMapFixed)) {
    bool found = false;
    if (addr) {
      addr &= kPageMask;
      if (kTaskSize - len >= addr) {
        Vma* vma = mm->find_vma(addr);
        if (!vma || addr + len <= vm_start_gap(vma, mm->sys()->config().stack_guard_gap)) found = true;
      }
    }
    if (!found) {
      const uint64_t align = (!addr && (len & (kPmdSize - 1)) == 0) ? kPmdSize : kPageSize;
      Result<uint64_t> r = unmapped_area_topdown(mm, len, align);
      if (!r.ok()) return r;
      addr = r.value();
    }
  }
  if (addr > kTaskSize - len) return Errno::kNoMem;
  if (offset_in_page(addr)) return Errno::kInval;
  return addr;
}

int execute_only_pkey(Mm* mm) REQUIRES(mm->mmap_lock_) {
  if (!mm->sys()->config().exec_only_pkey) return -1;
  if (mm->execute_only_pkey_ == -1) mm->execute_only_pkey_ = 1;  // the first key after 0
  return mm->execute_only_pkey_;
}

// The VMAs of [start, end) after splitting at both ends (vms_gather_munmap_vmas), in order.
// vma is the first VMA intersecting the range. On error nothing was split.
Errno gather_munmap_vmas(Mm* mm, Vma* vma, uint64_t start, uint64_t end, std::vector<Vma*>* out)
    REQUIRES(mm->mmap_lock_) {
  if (start > vma->vm_start) {
    // Punching a hole adds a VMA: that is the one split that respects max_map_count.
    if (end < vma->vm_end && mm->map_count_ >= mm->sys()->config().max_map_count) return Errno::kNoMem;
    // A sealed VMA is not split for an unmapping that must fail anyway.
    if (!can_modify_vma(vma)) return Errno::kPerm;
    Errno e = __split_vma(mm, vma, start, NewBelow::kYes);
    if (e != Errno::kOk) return e;
  }
  for (Vma* v = vma; v && v->vm_start < end; v = mm->vma_next(v)) {
    // A sealed VMA in the range refuses the whole unmapping; a start split already made
    // stays (vms_gather_munmap_vmas' modify_vma_failed).
    if (!can_modify_vma(v)) return Errno::kPerm;
    if (v->vm_end > end) {
      Errno e = __split_vma(mm, v, end, NewBelow::kNo);
      if (e != Errno::kOk) return e;
    }
    out->push_back(v);
  }
  return Errno::kOk;
}

// Zaps and removes gathered VMAs (vms_complete_munmap_vmas), freeing page tables in the gap
// between floor and ceiling.
void complete_munmap_vmas(Mm* mm, const std::vector<Vma*>& vmas, uint64_t floor, uint64_t ceiling,
                          bool free_tables) REQUIRES(mm->mmap_lock_) {
  if (vmas.empty()) return;
  lru_add_drain(mm->mem());  // pages this CPU queued for the LRU can be freed by the zap
  // Faults holding a VMA read lock must be out before the entries go (and stay out: the
  // VMAs stay write-locked until the mmap_lock is released), or they could map pages that
  // the zap has already passed.
  for (Vma* v : vmas) vma_start_write(v);
  int64_t unacct = 0;
  {
    MmuNotifierBracket bracket(MmuNotifyEvent::kUnmap, mm, vmas.front()->vm_start, vmas.back()->vm_end);
    MmuGather tlb(mm);
    for (Vma* v : vmas) {
      mmap_assert_write_locked(v->vm_mm);
      zap_page_range(tlb, v, v->vm_start, v->vm_end, ZapCows::kYes, ZapMarkers::kDrop);
    }
    // free_pgtables: the VMAs leave the reverse map before their page tables go, so that no
    // rmap walk (which holds only the rmap locks) can reach a table being freed.
    for (Vma* v : vmas) {
      unlink_anon_vmas(v);
      unlink_file_vma(v);
    }
    if (free_tables) free_pgd_range(tlb, vmas.front()->vm_start, vmas.back()->vm_end, floor, ceiling);
  }
  for (Vma* v : vmas) {
    if (v->vm_flags & VM_ACCOUNT) unacct += v->pages();
    remove_vma(mm, v);
  }
  if (unacct) vm_unacct_memory(mm->sys(), unacct);
}

// __mmap_new_file_vma's mmap_file for a device file: the driver's f_op->mmap fills the new
// VMA (not linked yet, the mmap_lock held for write) with the protection the VMA will have.
// When the hook fails, whatever it inserted is zapped (unmap_region) before the VMA goes.
Errno call_driver_mmap(Mm* mm, Vma* vma) REQUIRES(mm->mmap_lock_) {
  MM_BUG_ON(vma->vm_mm != mm);
  vma_set_page_prot(vma);
  File* file = vma->vm_file;
  const Errno e = file->f_op->mmap(file, vma, vma->vm_start, vma->vm_end);
  if (e != Errno::kOk) {
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, vma->vm_start, vma->vm_end);
    MmuGather tlb(mm);
    zap_page_range(tlb, vma, vma->vm_start, vma->vm_end, ZapCows::kYes, ZapMarkers::kDrop);
  }
  return e;
}

// shmem_zero_setup: a shared anonymous mapping gets its own shmem file.
Errno shmem_zero_setup(Vma* vma) {
  System* sys = vma->vm_mm->sys();
  const uint64_t size = vma->vm_end - vma->vm_start;
  if (!(vma->vm_flags & VM_NORESERVE) && !vm_enough_memory(sys, size >> kPageShift))
    return Errno::kNoMem;
  ShmemInode* inode = new ShmemInode(sys, "dev/zero", size);
  vma->vm_file = open_file(inode, /*writable=*/true);
  inode->put();
  return Errno::kOk;
}

Result<uint64_t> mmap_region(Mm* mm, File* file, uint64_t addr, uint64_t len, vm_flags_t vm_flags,
                             uint64_t pgoff) REQUIRES(mm->mmap_lock_) {
  System* sys = mm->sys();
  const uint64_t end = addr + len;
  const uint64_t pglen = len >> kPageShift;

  // __mmap_setup: gather what MAP_FIXED replaces. Splits done here persist if a later step
  // fails, exactly as Linux leaves them (its abort path reattaches the split pieces).
  std::vector<Vma*> old;
  if (Vma* first = mm->find_vma_intersection(addr, end)) {
    Errno e = gather_munmap_vmas(mm, first, addr, end, &old);
    if (e != Errno::kOk) return e;
  }
  uint64_t nr_accounted = 0, nr_pages = 0;
  for (Vma* v : old) {
    nr_pages += v->pages();
    if (v->vm_flags & VM_ACCOUNT) nr_accounted += v->pages();
  }
  // RLIMIT_AS and RLIMIT_DATA, net of what the mapping replaces.
  if (!may_expand_vm(mm, vm_flags, pglen - nr_pages)) return Errno::kNoMem;

  int64_t charged = 0;
  if (accountable_mapping(file, vm_flags)) {
    charged = static_cast<int64_t>(pglen) - static_cast<int64_t>(nr_accounted);
    if (charged > 0 && !vm_enough_memory(sys, charged)) return Errno::kNoMem;
    if (charged < 0) charged = 0;
    vm_flags |= VM_ACCOUNT;
  }
  // Old mappings go. Their commitment was netted against the new charge when the new
  // mapping is accountable; otherwise it is released with them.
  if (!old.empty()) {
    if (vm_flags & VM_ACCOUNT)
      for (Vma* v : old) vma_set_flags(v, v->vm_flags & ~VM_ACCOUNT);
    complete_munmap_vmas(mm, old, 0, 0, /*free_tables=*/false);
  }

  VmaMergeState vmg;
  vmg.mm = mm;
  mmap_assert_write_locked(vmg.mm);
  vmg.prev = mm->find_vma_prev(addr);
  vmg.next = mm->find_vma(addr);
  vmg.start = addr;
  vmg.end = end;
  vmg.pgoff = pgoff;
  vmg.vm_flags = vm_flags;
  vmg.file = file;
  Vma* vma = nullptr;
  // A device file's mapping is the driver's to fill, and becomes VM_MIXEDMAP (VM_SPECIAL):
  // it never merges, so it always gets a VMA of its own.
  const bool driver_mmap = file && file->f_op && file->f_op->mmap;
  if ((vmg.prev || vmg.next) && !driver_mmap) vma = vma_merge_new_range(vmg);
  if (!vma) {
    vma = vm_area_alloc(mm);
    vma->vm_start = addr;
    vma->vm_end = end;
    vma->vm_pgoff = pgoff;
    vma->vm_flags = vm_flags;
    if (file) {
      get_file(file);
      vma->vm_file = file;
      if (driver_mmap) {
        Errno e = call_driver_mmap(mm, vma);
        if (e != Errno::kOk) {
          vm_area_free(vma);  // never linked: detached, no anon_vma
          if (charged) vm_unacct_memory(sys, charged);
          return e;
        }
      }
    } else if (vm_flags & VM_SHARED) {
      // The shmem file (and its accounting) is set up after the old mappings were cleared:
      // when it fails, they stay gone (vms_abort_munmap_vmas leaves the gap).
      Errno e = shmem_zero_setup(vma);
      if (e != Errno::kOk) {
        vm_area_free(vma);  // never linked: detached, no anon_vma
        if (charged) vm_unacct_memory(sys, charged);
        return e;
      }
    }
    vma_link(mm, vma);
  }
  // __mmap_complete: a VMA that cannot be mlocked (vma_supports_mlock: special or droppable)
  // loses the lock flags mlockall(MCL_FUTURE) gave it; do_mmap still populates it as a locked
  // mapping. It was merged (or not) with the flags it asked for.
  if ((vma->vm_flags & VM_LOCKED) && (vma->vm_flags & (VM_SPECIAL | VM_DROPPABLE)))
    vma_set_flags(vma, vma->vm_flags & ~VM_LOCKED_MASK);
  vma_set_page_prot(vma);
  if constexpr (kDebugChecks) validate_mm(mm);
  return addr;
}

}  // namespace

Result<uint64_t> get_unmapped_area(Mm* mm, uint64_t addr, uint64_t len, uint64_t flags) {
  return get_unmapped_area_impl(mm, addr, len, flags);
}

bool vm_enough_memory(System* sys, int64_t pages) {
  const SystemConfig& c = sys->config();
  auto& committed = sys->committed_pages();
  committed.fetch_add(pages, std::memory_order_relaxed);
  if (c.overcommit_memory == 1) return true;
  if (c.overcommit_memory == 0) {
    if (static_cast<uint64_t>(pages) <= c.totalram_pages + c.total_swap_pages) return true;
  } else {
    const int64_t limit =
        static_cast<int64_t>(c.totalram_pages * c.overcommit_ratio / 100 + c.total_swap_pages);
    if (committed.load(std::memory_order_relaxed) <= limit) return true;
  }
  committed.fetch_sub(pages, std::memory_order_relaxed);
  return false;
}

void vm_unacct_memory(System* sys, int64_t pages) {
  sys->committed_pages().fetch_sub(pages, std::memory_order_relaxed);
}

pgprot_t vm_get_page_prot(vm_flags_t flags) {
  return kProtectionMap[flags & (VM_READ | VM_WRITE | VM_EXEC | VM_SHARED)];
}

// Stored atomically: remove_migration_ptes reads it under a PTE lock only (READ_ONCE).
void vma_set_page_prot(Vma* vma) {
  pgprot_t prot = vm_get_page_prot(vma->vm_flags);
  // A write-notify mapping maps clean pages read-only: its shared-writable protection
  // without the write bit (vm_pgprot_modify(..., vm_flags & ~VM_SHARED)).
  if (vma_wants_writenotify(vma)) prot = pte_wrprotect(prot);
  std::atomic_ref<pgprot_t>(vma->vm_page_prot).store(prot, std::memory_order_relaxed);
}

Result<uint64_t> do_mmap(Mm* mm, File* file, uint64_t addr, uint64_t len, uint64_t prot,
                         uint64_t flags, uint64_t pgoff, uint64_t* populate) {
  *populate = 0;
  const SystemConfig& cfg = mm->sys()->config();
  if (!len) return Errno::kInval;
  if (flags & kMapFixedNoReplace) flags |= kMapFixed;
  if (!(flags & kMapFixed)) {
    addr &= kPageMask;
    if (addr && addr < kMmapMinAddr) addr = page_align(kMmapMinAddr);
  }
  len = page_align(len);
  if (!len) return Errno::kNoMem;
  if (pgoff + (len >> kPageShift) < pgoff) return Errno::kOverflow;
  if (mm->map_count_ > cfg.max_map_count) return Errno::kNoMem;

  Result<uint64_t> area = get_unmapped_area_impl(mm, addr, len, flags);
  if (!area.ok()) return area;
  addr = area.value();
  if ((flags & kMapFixedNoReplace) && mm->find_vma_intersection(addr, addr + len)) return Errno::kExist;

  int pkey = 0;
  if (prot == kProtExec) {
    pkey = execute_only_pkey(mm);
    if (pkey < 0) pkey = 0;
  }
  vm_flags_t vm_flags = calc_vm_prot_bits(prot, pkey) | mm->def_flags_ | VM_MAYREAD | VM_MAYWRITE | VM_MAYEXEC;
  if (flags & kMapGrowsDown) vm_flags |= VM_GROWSDOWN;
  // calc_vm_flag_bits: a stack never gets huge pages (MAP_STACK, Linux 6.7+), file or not.
  if (flags & kMapStack) vm_flags |= VM_NOHUGEPAGE;
  if (flags & kMapLocked) vm_flags |= VM_LOCKED;
  if ((flags & kMapLocked) && !can_do_mlock(mm)) return Errno::kPerm;
  if (!mlock_future_ok(mm, vm_flags, len)) return Errno::kAgain;

  if (file) {
    // file_mmap_ok: the range must fit below MAX_LFS_FILESIZE.
    constexpr uint64_t kMaxFileSize = 0x7fffffffffffffffull;
    if (len > kMaxFileSize || pgoff > (kMaxFileSize - len) >> kPageShift) return Errno::kOverflow;
    switch (flags & kMapType) {
      case kMapShared:
      case kMapSharedValidate:
        // MAP_SHARED drops the flags it does not know; MAP_SHARED_VALIDATE refuses them.
        if ((flags & kMapType) == kMapSharedValidate && (flags & ~kLegacyMapMask)) return Errno::kOpNotSupp;
        if ((prot & kProtWrite) && !file->writable) return Errno::kAcces;
        vm_flags |= VM_SHARED | VM_MAYSHARE;
        // A read-only descriptor: no VM_MAYWRITE, and not VM_SHARED (never writable).
        if (!file->writable) vm_flags &= ~(VM_MAYWRITE | VM_SHARED);
        [[fallthrough]];
      case kMapPrivate:
        if (vm_flags & (VM_GROWSDOWN | VM_GROWSUP)) return Errno::kInval;
        break;
      default:
        return Errno::kInval;
    }
  } else {
    switch (flags & kMapType) {
      case kMapShared:
        if (vm_flags & (VM_GROWSDOWN | VM_GROWSUP)) return Errno::kInval;
        pgoff = 0;
        vm_flags |= VM_SHARED | VM_MAYSHARE;
        break;
      case kMapDroppable:
        // Droppable memory is neither locked nor a stack; it is wiped on fork, left out of
        // core dumps and never charged (its pages may vanish at any time).
        if (flags & (kMapLocked | kMapGrowsDown)) return Errno::kInval;
        vm_flags |= VM_DROPPABLE | VM_WIPEONFORK | VM_DONTDUMP | VM_NORESERVE;
        [[fallthrough]];
      case kMapPrivate:
        pgoff = addr >> kPageShift;
        break;
      default:
        return Errno::kInval;
    }
  }
  if ((flags & kMapNoReserve) && cfg.overcommit_memory != 2) vm_flags |= VM_NORESERVE;

  Result<uint64_t> r = mmap_region(mm, file, addr, len, vm_flags, pgoff);
  if (r.ok() && ((vm_flags & VM_LOCKED) || (flags & (kMapPopulate | kMapNonBlock)) == kMapPopulate))
    *populate = len;
  return r;
}

Errno mm_populate_range(Mm* mm, uint64_t start, uint64_t len, PopulateErrors errors) {
  MmapReadGuard g(mm);
  const uint64_t end = start + len < start ? kTaskSize : start + len;
  for (uint64_t nstart = start; nstart < end;) {
    Vma* vma = mm->find_vma(nstart);
    if (!vma || vma->vm_start >= end) break;
    const uint64_t nend = std::min(end, vma->vm_end);
    if (nstart < vma->vm_start) nstart = vma->vm_start;
    if (!(vma->vm_flags & (VM_IO | VM_PFNMAP))) {
      mmap_assert_locked(vma->vm_mm);
      const Errno e = populate_vma_page_range(vma, nstart, nend);
      if (e != Errno::kOk && errors == PopulateErrors::kReport) return e;
    }
    nstart = nend;
  }
  return Errno::kOk;
}

Errno do_vmi_align_munmap(Mm* mm, Vma* vma, uint64_t start, uint64_t end) {
  std::vector<Vma*> vmas;
  Errno e = gather_munmap_vmas(mm, vma, start, end, &vmas);
  if (e != Errno::kOk) return e;
  Vma* prev = mm->vma_prev(vmas.front());
  Vma* next = mm->vma_next(vmas.back());
  complete_munmap_vmas(mm, vmas, prev ? prev->vm_end : 0, next ? next->vm_start : kTaskSize,
                       /*free_tables=*/true);
  if constexpr (kDebugChecks) validate_mm(mm);
  return Errno::kOk;
}

Errno do_munmap(Mm* mm, uint64_t start, uint64_t len) {
  if (offset_in_page(start) || start > kTaskSize || len > kTaskSize - start) return Errno::kInval;
  const uint64_t end = start + page_align(len);
  if (end == start) return Errno::kInval;
  Vma* vma = mm->find_vma_intersection(start, end);
  if (!vma) return Errno::kOk;
  return do_vmi_align_munmap(mm, vma, start, end);
}

Errno expand_stack_locked(Vma* vma, uint64_t address) {
  Mm* mm = vma->vm_mm;
  mmap_assert_write_locked(mm);
  const SystemConfig& cfg = mm->sys()->config();
  if (!(vma->vm_flags & VM_GROWSDOWN)) return Errno::kFault;
  address &= kPageMask;
  if (address < kMmapMinAddr) return Errno::kPerm;
  // Enforce stack_guard_gap against an accessible, non-stack neighbour below.
  if (Vma* prev = mm->vma_prev(vma)) {
    if (!(prev->vm_flags & VM_GROWSDOWN) && prev->is_accessible() &&
        address - prev->vm_end < cfg.stack_guard_gap)
      return Errno::kNoMem;
  }
  if (anon_vma_prepare(vma) != Errno::kOk) return Errno::kNoMem;
  if (address >= vma->vm_start) return Errno::kOk;
  const uint64_t size = vma->vm_end - address;
  const uint64_t grow = (vma->vm_start - address) >> kPageShift;
  if (grow > vma->vm_pgoff) return Errno::kNoMem;
  // acct_stack_growth: RLIMIT_AS, RLIMIT_STACK, RLIMIT_MEMLOCK for a locked stack, then
  // overcommit (the last test: it charges).
  if (!may_expand_vm(mm, vma->vm_flags, grow)) return Errno::kNoMem;
  if (size > rlimit(mm, kRlimitStack)) return Errno::kNoMem;
  if (!mlock_future_ok(mm, vma->vm_flags, grow << kPageShift)) return Errno::kNoMem;
  if (!vm_enough_memory(mm->sys(), grow)) return Errno::kNoMem;
  vma_set_start(mm, vma, address);
  return Errno::kOk;
}

Result<uint64_t> vm_mmap_pgoff(Mm* mm, File* file, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                               uint64_t pgoff) {
  uint64_t populate = 0;
  Result<uint64_t> r = [&] {
    MmapWriteGuard g(mm);
    return do_mmap(mm, file, addr, len, prot, flags, pgoff, &populate);
  }();
  if (r.ok() && populate) mm_populate(mm, r.value(), populate);
  return r;
}

Errno vm_munmap(Mm* mm, uint64_t start, uint64_t len) {
  MmapWriteGuard g(mm);
  return do_munmap(mm, start, len);
}

void exit_mmap(Mm* mm) {
  // Release first, without the mmap_lock (a release callback may take driver locks that its
  // fault path holds around mmap_lock): interval notifiers see RELEASE, classic subscribers
  // release() once; then exit's own unmap sends UNMAP to the intervals that stay registered.
  mmu_notifier_release(mm);
  MmapWriteGuard g(mm);
  MM_BUG_ON(mm->state() != Mm::State::kAlive);
  mm->state_.store(Mm::State::kExiting, std::memory_order_seq_cst);
  std::vector<Vma*> all;
  for (auto& [start, v] : mm->vmas_) all.push_back(v);
  complete_munmap_vmas(mm, all, 0, kTaskSize, /*free_tables=*/false);
  mm->state_.store(Mm::State::kDead, std::memory_order_release);
  // No CPU walks the tables once this flush has returned (they check the state first).
  flush_tlb_mm(mm);
  free_all_pgtables(mm);
  mmu_checker_mm_exit(mm);
}

}  // namespace mirrormm
