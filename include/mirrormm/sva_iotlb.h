// SvaIotlb: an IOMMU bound to a process's address space with SVA (shared virtual addressing):
// the device's translations come from the CPU page tables themselves, which the IOMMU walks,
// and the driver keeps no copy of them. What it has is an IOTLB, a cache of translations
// (page -> frame, writable), kept coherent only by arch_invalidate_secondary_tlbs: the CPU's
// TLB-flush path calls it whenever CPU TLB entries of a range are invalidated, and on a
// permission upgrade (mmu_notifier_pte_upgrade), so the subscription has no
// invalidate_range_start/end (Linux refuses both together). Its ops are Intel's and SMMUv3's
// SVA ops: release and arch_invalidate_secondary_tlbs.
//
// A device access looks the IOTLB up. On a miss the IOMMU walks the page tables (mm_get_pfn
// without faulting in) and fills the entry; when the walk finds nothing, or a write finds a
// read-only entry, the device sends a page request (PRI): the OS faults the page in for the
// access (mm_get_pfn with fault) and the device retries from its IOTLB. A read-only entry
// that outlives the upgrade the page request made would make the device fault forever (the
// arm64 SMMU bug that Linux 6.6 fixed): after a few such rounds the device gives up and
// reports it (violation kind "iotlb fault loop").
//
// Entries are declared with mmu_checker_map_tlb: they may lag behind their PTE until the
// next flush of their address, as a CPU's TLB entry does, and the checker reports one that a
// flush leaves in place. A fill races the flush with a sequence (a fill whose walk began
// before an invalidation is thrown away and walked again).
//
// Locking: the IOTLB's lock is a spinlock (arch_invalidate_secondary_tlbs may run under a
// PTE lock and must not sleep) ranked below the PTE lock; DMA runs under it, so an
// invalidation returns only once the accesses through the entries it drops have finished
// (an ATC invalidation's completion). The detach lock is held shared across an access.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/secondary_mmu.h"

namespace mirrormm {

struct IotlbEntry {
  uint64_t pfn;
  bool writable;
  uint64_t filled;  // the IOTLB's fill count when it was filled
};

class SvaIotlb : public SecondaryMmuTable<SpinLock, SpinGuard, IotlbEntry> {
 public:
  enum class Broken {
    kNone,
    kKeepEntries,  // "broken-keep": arch_invalidate_secondary_tlbs drops nothing
    // "broken-upgrade": the machine's PTE upgrades do not reach the secondary TLBs
    // (System::DebugBreak::kNoSecondaryTlbUpgrade, set for the machine's life on attach)
    kNoUpgradeFlush,
  };
  // Binds p's address space; the device reaches [start, start+length) of it.
  static Result<std::unique_ptr<SvaIotlb>> attach(Process* p, uint64_t start = 0, uint64_t length = kUserSpaceEnd,
                                                  Broken broken = Broken::kNone);
  ~SvaIotlb() override;

  std::string kind() const override;
  // ATS translation requests ahead of the DMA: a page request (fault in, for writing when
  // write) then a walk and fill, for each page.
  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) override;
  void detach() override;

 private:
  struct Sub : MmuNotifier {
    SvaIotlb* owner;
  };
  SvaIotlb(Mm* mm, uint64_t start, uint64_t last, Broken broken);
  static void invalidate_secondary_tlbs(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end);
  static void release(MmuNotifier* sub, Mm* mm);
  // The IOMMU's walk of page's PTE and the fill of its entry: -ENOENT when the walk finds
  // no present PTE, -EFAULT and the like as mm_get_pfn. The caller holds detach_lock_.
  Errno walk_and_fill(uint64_t page) EXCLUDES(lock_);
  // The page request (PRI): the OS faults page in for the access. *writable: the PTE is.
  Errno page_request(uint64_t page, bool write, bool* writable) EXCLUDES(lock_);
  bool access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) override;

  const Broken broken_;
  Sub sub_;
  // table_ is the IOTLB; besides it, under lock_:
  uint64_t invalidations_ GUARDED_BY(lock_) = 0;  // arch_invalidate_secondary_tlbs calls so far
  uint64_t fills_ GUARDED_BY(lock_) = 0;          // entries filled so far
  bool released_ GUARDED_BY(lock_) = false;
};

}  // namespace mirrormm
