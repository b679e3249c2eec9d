// ShadowMmu: a KVM-style shadow MMU (virt/kvm/kvm_main.c's protocol) over one "memslot" of a
// process: shadow PTEs (SPTEs) with an accessed bit, kept coherent by a classic notifier.
//
//   invalidate_range_start  mmu_invalidate_in_progress++ and the range joins the accumulated
//                           invalidation range; the SPTEs of the range are zapped. Never fails
//                           (so it may have an end).
//   invalidate_range_end    mmu_invalidate_seq++, then mmu_invalidate_in_progress--.
//   release                 every SPTE is zapped and no fault maps again (kvm_flush_shadow_all).
//   clear_flush_young       test-and-clear the accessed bits of [start, end) (kvm_age_gfn);
//   clear_young             the same (the shadow MMU has no TLB of its own to flush);
//   test_young              whether an SPTE of addr is young (kvm_test_age_gfn).
//
// The fault path is kvm's: snapshot mmu_invalidate_seq, resolve the pfns without the
// mmu_lock (mm_get_pfn may fault and sleep), take the mmu_lock and retry when
// mmu_invalidate_retry says an invalidation is in progress or completed meanwhile. SPTEs are
// created young. Guest accesses (read, write) go through the SPTEs and set their accessed
// bit, so that the LRU's folio_referenced sees a page the guest keeps touching as young
// (through clear_flush_young) and reclaim keeps it.
//
// Locking: the mmu_lock is a spinlock (the young callbacks run under a PTE lock), ranked
// below the PTE lock (src/mm/lock_order.h); the detach lock is held shared across a fault.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/secondary_mmu.h"

namespace mirrormm {

struct ShadowSpte {
  uint64_t pfn;
  bool writable;
  bool accessed;  // set by the device's accesses, cleared by the aging callbacks
};

class ShadowMmu : public SecondaryMmuTable<SpinLock, SpinGuard, ShadowSpte> {
 public:
  // Deliberately broken variants, for the checker's tests.
  enum class Broken {
    kNone,
    kNoAging,       // "broken-aging": no clear_flush_young/clear_young/test_young; reclaim
                    // takes pages the guest keeps touching
    kKeepMappings,  // "broken-keep": invalidate_range_start keeps the SPTEs
    kIgnoreInProgress,  // "broken-inprogress": a fault checks only mmu_invalidate_seq, not
                        // mmu_invalidate_in_progress, so it maps what an invalidation that
                        // has started (and not yet ended) is taking away
    kFreeInRelease,  // "broken-release-free": release() frees the subscription at once
                     // (mmu_notifier_debug_free) instead of after an SRCU grace period, and
                     // the core's later touches of it are uses after free
  };
  // Attaches to p with the memslot [start, start+length). Errors as attach_secondary_mmu.
  static Result<std::unique_ptr<ShadowMmu>> attach(Process* p, uint64_t start = 0, uint64_t length = kUserSpaceEnd,
                                                   Broken broken = Broken::kNone);
  ~ShadowMmu() override;

  std::string kind() const override;
  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) override;
  void detach() override;
  // Whether the SPTE of addr's page exists and is young (racy: for tests).
  bool debug_young(uint64_t addr);

 private:
  struct Sub : MmuNotifier {
    ShadowMmu* owner;
  };
  ShadowMmu(Mm* mm, uint64_t start, uint64_t last, Broken broken);
  static int invalidate_range_start(MmuNotifier* sub, const MmuNotifierRange* range);
  static void invalidate_range_end(MmuNotifier* sub, const MmuNotifierRange* range);
  static void release(MmuNotifier* sub, Mm* mm);
  static int clear_young(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end);
  static int test_young(MmuNotifier* sub, Mm* mm, uint64_t addr);
  // kvm's mmu_invalidate_retry.
  bool mmu_invalidate_retry_locked(uint64_t mmu_seq) REQUIRES(lock_);
  bool access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) override;

  const Broken broken_;
  Sub sub_;
  // lock_ is KVM's mmu_lock and table_ the SPTEs; besides them, under lock_:
  uint64_t mmu_invalidate_seq_ GUARDED_BY(lock_) = 0;
  uint64_t mmu_invalidate_in_progress_ GUARDED_BY(lock_) = 0;
  // The union of the ranges of the invalidations in progress (reset by the first start).
  uint64_t mmu_invalidate_range_start_ GUARDED_BY(lock_) = 0;
  uint64_t mmu_invalidate_range_end_ GUARDED_BY(lock_) = 0;
  bool released_ GUARDED_BY(lock_) = false;
};

}  // namespace mirrormm
