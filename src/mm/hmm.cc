// What secondary MMUs call to read the primary page tables (mm/hmm.c's role): hmm_range_fault,
// which walks a range's page tables once and faults in what the driver asks for; the
// one-page lookup mm_get_pfn; the address-space calls drivers make around them; and access
// to a frame as a device would (DMA).
#include <algorithm>
#include <cstring>
#include <string>

#include "mirrormm/base/driver_lock.h"
#include "mirrormm/base/tsan.h"
#include "mirrormm/hmm.h"
#include "mirrormm/mmu_notifier.h"
#include "mm/internal.h"
#include "mm/memremap.h"
#include "mm/migrate.h"
#include "mm/mm.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"
#include "mm/vmstat.h"

namespace mirrormm {

// ---- hmm_range_fault ----
//
// The walk (Linux's walk_page_range with hmm_walk_ops, one pass):
//
//   for each VMA or gap in [last, end):
//     a gap (no VMA):                 ERROR, or -EFAULT if a fault is asked for in it
//     a VMA that cannot be mirrored:  the same (hmm_vma_walk_test: VM_IO, VM_PFNMAP, !VM_READ)
//     otherwise its page tables, one PTE table at a time (walk_pte_tables_until):
//       a missing table:              0, or fault the pages asked for (hmm_vma_walk_hole)
//       each entry (hmm_vma_handle_pte):
//         none                        0, or fault
//         swap entry                  0, or fault (swap-in)
//         migration entry             0, or wait for the migration and walk again
//         other non-present           0, or -EFAULT
//         present                     pfn | VALID [| WRITE]; fault if that falls short of
//                                     the request (a write to a read-only or COW entry)
//         special, not the zero page  ERROR, or -EFAULT if a fault is asked for
//
// "Fault" ends the pass (kBusy inside the walk): the pages of the table range that need a
// fault are faulted, `last` is left at the first of them, and the next pass starts there, after
// checking the notifier sequence. (Linux's hmm_vma_fault faults every page from the first
// that needs it to the end of the range, all with that page's fault flags; faulting only the
// pages whose requests need it, each as asked, maps nothing that was not asked for and gives
// every page that was the same result.) Entries before `last` hold their results, entries from
// `last` on their requests, which is why a pass can always restart there.
//
// The entries are read without the PTE lock, as Linux's pte_offset_map does: the mmap_lock
// keeps the tables, and an entry that changes after it was read is the invalidation's business
// (the driver's read_retry catches it).

namespace {

enum RequiredFault : unsigned {
  HMM_NEED_FAULT = 1u << 0,
  HMM_NEED_WRITE_FAULT = 1u << 1,
  HMM_NEED_ALL_BITS = HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT,
};

struct HmmVmaWalk {
  HmmRange* range;
  Mm* mm;
  uint64_t last;  // the first address whose entry still holds its request
};

uint64_t* pfns_at(const HmmRange* range, uint64_t addr) { return &range->hmm_pfns[(addr - range->start) >> kPageShift]; }

// hmm_pte_need_fault: what the request of one page needs, given what the CPU entry allows.
unsigned hmm_pte_need_fault(const HmmRange* range, uint64_t pfn_req_flags, uint64_t cpu_flags) {
  pfn_req_flags &= range->pfn_flags_mask;
  pfn_req_flags |= range->default_flags;
  if (!(pfn_req_flags & HMM_PFN_REQ_FAULT)) return 0;
  if ((pfn_req_flags & HMM_PFN_REQ_WRITE) && !(cpu_flags & HMM_PFN_WRITE))
    return HMM_NEED_FAULT | HMM_NEED_WRITE_FAULT;
  if (!(cpu_flags & HMM_PFN_VALID)) return HMM_NEED_FAULT;
  return 0;
}

// hmm_range_need_fault: the union over [addr, end) of what the requests need of entries that
// allow cpu_flags.
unsigned hmm_range_need_fault(const HmmRange* range, uint64_t addr, uint64_t end, uint64_t cpu_flags) {
  if (!((range->default_flags | range->pfn_flags_mask) & HMM_PFN_REQ_FAULT)) return 0;
  unsigned required = 0;
  const uint64_t* pfns = pfns_at(range, addr);
  for (uint64_t n = (end - addr) >> kPageShift; n--; ++pfns) {
    required |= hmm_pte_need_fault(range, *pfns, cpu_flags);
    if (required == HMM_NEED_ALL_BITS) break;
  }
  return required;
}

// Stores flags as the result of [addr, end), keeping the sticky bits.
void hmm_pfns_fill(HmmRange* range, uint64_t addr, uint64_t end, uint64_t flags) {
  uint64_t* pfns = pfns_at(range, addr);
  for (uint64_t n = (end - addr) >> kPageShift; n--; ++pfns) *pfns = (*pfns & HMM_PFN_INOUT_FLAGS) | flags;
}

uint64_t pte_to_hmm_pfn_flags(pteval_t pte) {
  if (!pte_present(pte) || pte_protnone(pte)) return 0;
  return pte_write(pte) ? (HMM_PFN_VALID | HMM_PFN_WRITE) : HMM_PFN_VALID;
}

// What a page needs, from its entry (table may be null: no PTE table yet).
unsigned page_need_fault(const HmmRange* range, const pte_t* ptep, uint64_t addr) {
  const pteval_t pte = ptep ? ptep_get(ptep) : 0;
  return hmm_pte_need_fault(range, *pfns_at(range, addr), pte_to_hmm_pfn_flags(pte));
}

// hmm_vma_fault: faults the pages of [addr, end) that need it (ptep: addr's slot, or null
// when the range has no PTE table), each as its request asks, and ends the pass: the walk
// starts again at addr. -EPERM for a write fault in a VMA without VM_WRITE; -EFAULT when a
// fault fails.
Errno hmm_vma_fault(HmmVmaWalk* walk, Vma* vma, const pte_t* ptep, uint64_t addr, uint64_t end) {
  walk->last = addr;
  for (; addr < end; addr += kPageSize, ptep = ptep ? ptep + 1 : nullptr) {
    const unsigned required = page_need_fault(walk->range, ptep, addr);
    if (!required) continue;
    unsigned fault_flags = FAULT_FLAG_REMOTE;
    if (required & HMM_NEED_WRITE_FAULT) {
      if (!(vma->vm_flags & VM_WRITE)) return Errno::kPerm;
      fault_flags |= FAULT_FLAG_WRITE;
    }
    const unsigned r = handle_mm_fault(vma, addr, fault_flags);
    if (!(r & VM_FAULT_RETRY)) walk->mm->mem().events().count(PGFAULT);
    if (r & (VM_FAULT_OOM | VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) return Errno::kFault;
  }
  return Errno::kBusy;
}

// hmm_vma_walk_hole: [addr, end) has no PTE table (vma set) or no VMA at all.
Errno hmm_vma_walk_hole(HmmVmaWalk* walk, Vma* vma, uint64_t addr, uint64_t end) {
  const unsigned required = hmm_range_need_fault(walk->range, addr, end, 0);
  if (!vma) {
    if (required) return Errno::kFault;
    hmm_pfns_fill(walk->range, addr, end, HMM_PFN_ERROR);
    return Errno::kOk;
  }
  if (required) return hmm_vma_fault(walk, vma, nullptr, addr, end);
  hmm_pfns_fill(walk->range, addr, end, 0);
  return Errno::kOk;
}

// One PTE table's part of the range (hmm_vma_walk_pmd's loop over hmm_vma_handle_pte).
Errno hmm_vma_walk_ptes(HmmVmaWalk* walk, Vma* vma, pte_t* ptep, uint64_t addr, uint64_t end) {
  HmmRange* range = walk->range;
  const PhysMem& mem = walk->mm->mem();
  uint64_t* pfns = pfns_at(range, addr);
  for (; addr < end; addr += kPageSize, ++ptep, ++pfns) {
    const pteval_t pte = ptep_get(ptep);
    const uint64_t req = *pfns;
    const uint64_t sticky = req & HMM_PFN_INOUT_FLAGS;
    if (!pte_present(pte)) {
      // A device-private page of the caller's own device is reported, never faulted: VALID,
      // and WRITE as the entry allows (hmm_vma_handle_pte).
      if (is_device_private_entry(pte) &&
          page_pgmap(mem.pfn_to_page(device_private_entry_pfn(pte)))->owner == range->dev_private_owner) {
        *pfns = sticky | device_private_entry_pfn(pte) | HMM_PFN_VALID |
                (is_writable_device_private_entry(pte) ? HMM_PFN_WRITE : 0);
        continue;
      }
      if (!hmm_pte_need_fault(range, req, 0)) {
        *pfns = sticky;  // none, swapped out or migrating: a fault could map it
        continue;
      }
      // Another owner's device-private page is faulted back to system RAM, and a page some
      // device holds exclusively is taken back from it (remove_device_exclusive_entry).
      if (pte_none(pte) || !non_swap_entry(pte) || is_device_page_entry(pte))
        return hmm_vma_fault(walk, vma, ptep, addr, end);
      if (is_migration_entry(pte)) {
        walk->last = addr;
        migration_entry_wait(walk->mm, ptep, pte);
        return Errno::kBusy;
      }
      return Errno::kFault;
    }
    const uint64_t cpu_flags = pte_to_hmm_pfn_flags(pte);
    if (hmm_pte_need_fault(range, req, cpu_flags)) return hmm_vma_fault(walk, vma, ptep, addr, end);
    // The zero page is a normal read-only page here; other special entries have no page
    // a device could use (vm_normal_page is null).
    if (pte_special(pte) && !mem.is_zero_pfn(pte_pfn(pte))) {
      if (hmm_pte_need_fault(range, req, 0)) return Errno::kFault;
      *pfns = sticky | HMM_PFN_ERROR;
      continue;
    }
    *pfns = sticky | pte_pfn(pte) | cpu_flags;
  }
  return Errno::kOk;
}

// One pass over [walk->last, range->end): kOk when every entry holds its result, kBusy
// when the pass stopped to fault or wait (walk->last says where to resume), or the error.
Errno hmm_walk_pass(HmmVmaWalk* walk) {
  Mm* mm = walk->mm;
  mmap_assert_locked(mm);
  const uint64_t end = walk->range->end;
  uint64_t addr = walk->last;
  Vma* vma = mm->find_vma(addr);
  while (addr < end) {
    if (!vma || addr < vma->vm_start) {
      const uint64_t next = vma ? std::min(end, vma->vm_start) : end;
      if (Errno e = hmm_vma_walk_hole(walk, nullptr, addr, next); e != Errno::kOk) return e;
      addr = next;
      continue;
    }
    const uint64_t next = std::min(end, vma->vm_end);
    if ((vma->vm_flags & (VM_IO | VM_PFNMAP)) || !(vma->vm_flags & VM_READ)) {
      // hmm_vma_walk_test: no struct pages behind it, or no read access (and so, HMM
      // assumes, no write access either).
      if (hmm_range_need_fault(walk->range, addr, next, 0)) return Errno::kFault;
      hmm_pfns_fill(walk->range, addr, next, HMM_PFN_ERROR);
    } else {
      Errno e = walk_pte_tables_until(
          mm, addr, next,
          [&](pte_t* ptep, uint64_t a, uint64_t stop, Page*) { return hmm_vma_walk_ptes(walk, vma, ptep, a, stop); },
          [&](uint64_t a, uint64_t stop) { return hmm_vma_walk_hole(walk, vma, a, stop); });
      if (e != Errno::kOk) return e;
    }
    addr = next;
    vma = mm->vma_next(vma);
  }
  return Errno::kOk;
}

}  // namespace

Errno hmm_range_fault(HmmRange* range) {
  if (!range || !range->notifier || !range->notifier->mm || !range->hmm_pfns) return Errno::kInval;
  if (offset_in_page(range->start) || offset_in_page(range->end) || range->end <= range->start)
    return Errno::kInval;
  Mm* mm = range->notifier->mm;
  // The caller's mmap_lock: checked whenever the lock checker runs (mmap_assert_locked
  // checks only in debug builds), since a driver that forgets it races with munmap.
  if (lockdep::held_by_me(&mm->mmap_lock_) == lockdep::Held::kNo) mmap_assert_failed(mm, "locked");
  mmap_assert_locked(mm);
  // It may fault, so allocate, so reclaim, so invalidate: a driver lock held across it must
  // not be one its invalidate() takes.
  driver_lockdep::might_fault_and_invalidate();
  HmmVmaWalk walk{range, mm, range->start};
  Errno e;
  do {
    if (mmu_interval_check_retry(range->notifier, range->notifier_seq)) return Errno::kBusy;
    e = hmm_walk_pass(&walk);
  } while (e == Errno::kBusy);
  return e;
}

// ---- driver calls around it ----

bool mmget_not_zero(Mm* mm) {
  int users = mm->mm_users_.load(std::memory_order_relaxed);
  while (users > 0)
    if (mm->mm_users_.compare_exchange_weak(users, users + 1, std::memory_order_acquire, std::memory_order_relaxed))
      return true;
  return false;
}

namespace {
std::optional<VmaInfo> vma_info(const Vma* vma) {
  if (!vma) return std::nullopt;
  return VmaInfo{vma->vm_start, vma->vm_end, vma->vm_flags};
}
}  // namespace

std::optional<VmaInfo> vma_lookup(Mm* mm, uint64_t addr) {
  mmap_assert_locked(mm);
  return vma_info(mm->vma_lookup(addr));
}

std::optional<VmaInfo> find_vma(Mm* mm, uint64_t addr) {
  mmap_assert_locked(mm);
  return vma_info(mm->find_vma(addr));
}

// ---- one-page lookups and device access ----

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
// carry none of PG_anon, PG_shmem and PG_driver, and a pinned frame cannot change hands. With the
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
  if (!zero && ((flags & (PG_free | PG_pgtable)) || !(flags & (PG_anon | PG_shmem | PG_driver)))) {
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
