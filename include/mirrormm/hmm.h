// Heterogeneous memory management for device drivers (include/linux/hmm.h, Linux 6.18):
// hmm_range_fault, which snapshots, and faults in where asked, the CPU page tables of a range
// for a device to mirror, and the address-space calls a driver makes around it.
//
// The driver loop (docs/driver-guide.md walks through it; DeviceMirror::fault is one):
//
//   again:
//     range.notifier_seq = mmu_interval_read_begin(range.notifier);
//     mmap_read_lock(mm);
//     err = hmm_range_fault(&range);
//     mmap_read_unlock(mm);
//     if (err == Errno::kBusy) goto again;       // an invalidation hit the range
//     if (err != Errno::kOk) return err;
//     driver->update.lock();                      // the lock invalidate() takes
//     if (mmu_interval_read_retry(range.notifier, range.notifier_seq)) {
//       driver->update.unlock();
//       goto again;
//     }
//     ...program the device from range.hmm_pfns...
//     driver->update.unlock();
//
// The update lock must not be held across hmm_range_fault (it may fault, allocate, reclaim and
// so invalidate, and invalidate() takes that lock): the driver lock checker
// (base/driver_lock.h) reports a driver that does.
#pragma once

#include <cstdint>
#include <optional>

#include "mirrormm/errno.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/vm_flags.h"

namespace mirrormm {

class Mm;

// ---- the hmm_pfns encoding (enum hmm_pfn_flags) ----
//
// One unsigned long per page, flags in the high bits and the pfn in the low ones, as Linux
// lays them out on a 64-bit machine:
//
//   63 VALID  62 WRITE  61 ERROR  60 DMA_MAPPED  59 P2PDMA  58 P2PDMA_BUS
//   57..53 the map order (hmm_pfn_to_map_order)   52..0 the pfn
//
// Output: VALID, the pfn is mapped and at least readable (WRITE: writable too); ERROR, the
// device must not access the page (no VMA, a VMA that cannot be read, VM_IO/VM_PFNMAP, a
// special entry); 0, nothing is mapped but a fault could map something (none, swapped out,
// being migrated). The sticky bits (DMA_MAPPED, P2PDMA, P2PDMA_BUS) are the driver's own and
// pass from input to output unchanged.
// Input: REQ_FAULT (the VALID bit) asks for the page to end up VALID, faulting it in if
// needed; REQ_WRITE (the WRITE bit, with REQ_FAULT) for it to end up WRITE, write-faulting
// (breaking COW) if needed. The request for page i is
//   default_flags | (hmm_pfns[i] & pfn_flags_mask).
inline constexpr unsigned kHmmBitsPerLong = 64;
inline constexpr uint64_t HMM_PFN_VALID = 1ull << (kHmmBitsPerLong - 1);
inline constexpr uint64_t HMM_PFN_WRITE = 1ull << (kHmmBitsPerLong - 2);
inline constexpr uint64_t HMM_PFN_ERROR = 1ull << (kHmmBitsPerLong - 3);
inline constexpr uint64_t HMM_PFN_DMA_MAPPED = 1ull << (kHmmBitsPerLong - 4);
inline constexpr uint64_t HMM_PFN_P2PDMA = 1ull << (kHmmBitsPerLong - 5);
inline constexpr uint64_t HMM_PFN_P2PDMA_BUS = 1ull << (kHmmBitsPerLong - 6);
inline constexpr unsigned HMM_PFN_ORDER_SHIFT = kHmmBitsPerLong - 11;
inline constexpr uint64_t HMM_PFN_REQ_FAULT = HMM_PFN_VALID;
inline constexpr uint64_t HMM_PFN_REQ_WRITE = HMM_PFN_WRITE;
inline constexpr uint64_t HMM_PFN_FLAGS = ~((1ull << HMM_PFN_ORDER_SHIFT) - 1);
// The bits carried from input to output.
inline constexpr uint64_t HMM_PFN_INOUT_FLAGS = HMM_PFN_DMA_MAPPED | HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS;

// The frame of an output entry (Linux has hmm_pfn_to_page; the model names frames by pfn).
inline constexpr uint64_t hmm_pfn_to_pfn(uint64_t hmm_pfn) { return hmm_pfn & ~HMM_PFN_FLAGS; }
// The order of the CPU mapping the entry came from: 0 for a PTE (the model maps no huge pages).
inline constexpr unsigned hmm_pfn_to_map_order(uint64_t hmm_pfn) {
  return static_cast<unsigned>((hmm_pfn >> HMM_PFN_ORDER_SHIFT) & 0x1f);
}

// How long a driver keeps retrying -EBUSY before giving up (HMM_RANGE_DEFAULT_TIMEOUT, ms).
inline constexpr unsigned kHmmRangeDefaultTimeoutMs = 1000;

// struct hmm_range: what to walk and what was found.
struct HmmRange {
  // Supplies the address space (its mm) and the sequence to check: an interval notifier of
  // the driver's covering [start, end).
  MmuIntervalNotifier* notifier = nullptr;
  uint64_t notifier_seq = 0;  // mmu_interval_read_begin's result
  uint64_t start = 0;         // page aligned
  uint64_t end = 0;           // page aligned, exclusive
  // (end - start) / 4096 entries: requests in, results out (see the encoding above).
  uint64_t* hmm_pfns = nullptr;
  uint64_t default_flags = 0;
  uint64_t pfn_flags_mask = 0;
  // The pgmap owner whose device-private pages are reported rather than faulted
  // (mirrormm/memremap.h): such a page comes back VALID, with WRITE when its entry is
  // writable, and its device pfn. Another owner's device-private page is treated as not
  // present: faulted back to system RAM when REQ_FAULT asks for it, else 0.
  const void* dev_private_owner = nullptr;
};

// hmm_range_fault: fills range->hmm_pfns for [start, end), faulting pages in as requested.
// The caller holds the notifier's mm's mmap_lock for read (asserted in debug builds) and
// keeps holding it. One walk of the page tables, one PTE table at a time: when pages of a
// table need faults, exactly those pages are faulted (handle_mm_fault, as a remote access),
// and the walk resumes at the first of them. Before each pass the notifier sequence is
// checked.
//
// Returns kOk, or:
//   -EBUSY   the sequence moved (mmu_interval_check_retry): start again from read_begin;
//   -EFAULT  a page asked for cannot be made valid: no VMA, a VMA without VM_READ, a VM_IO or
//            VM_PFNMAP VMA, a special entry, or a fault that failed (Linux 6.18's
//            hmm_vma_fault reports every VM_FAULT_ERROR this way, out of memory included);
//   -EPERM   a write was asked for in a VMA without VM_WRITE;
//   -EINVAL  a range that is not page aligned, is empty or wraps, or has no notifier, no
//            inserted notifier or no hmm_pfns;
// -ENOMEM, which Linux documents, comes from no path of the walk (nor of Linux's).
// After an error, entries before the failing page hold results and the rest their input.
Errno hmm_range_fault(HmmRange* range);

// ---- what drivers call around it ----

// The mmap_lock for read (mmap_read_lock / mmap_read_unlock).
void mmap_read_lock(Mm* mm);
void mmap_read_unlock(Mm* mm);

// User references (mm_users): mmget_not_zero takes one unless the address space is already
// being torn down (false then); mmput drops one, and the last tears the address space down.
// A driver holds one while it faults on the process's behalf.
bool mmget_not_zero(Mm* mm);
void mmput(Mm* mm);
// Structure references (mm_count): keep the Mm itself alive (for a later mmget_not_zero or
// notifier removal) without keeping its memory mapped.
void mmgrab(Mm* mm);
void mmdrop(Mm* mm);

// What a driver may read of a VMA: a copy, valid while the caller holds the mmap_lock.
struct VmaInfo {
  uint64_t vm_start = 0;
  uint64_t vm_end = 0;  // exclusive
  vm_flags_t vm_flags = 0;
};
// vma_lookup: the VMA containing addr. find_vma: the first VMA ending after addr (it may
// start after addr). The caller holds the mmap_lock (read or write).
std::optional<VmaInfo> vma_lookup(Mm* mm, uint64_t addr);
std::optional<VmaInfo> find_vma(Mm* mm, uint64_t addr);

}  // namespace mirrormm
