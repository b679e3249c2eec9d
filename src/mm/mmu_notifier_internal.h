// The primary MMU's side of the MMU notifiers (mmu_notifier.h's inline wrappers in Linux):
// the brackets every PTE-changing path calls, release on exit, the TLB-flush hook, the rmap
// notifier call, and the coherence checker's hooks. Implemented in mmu_notifier.cc.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "mirrormm/mmu_notifier.h"
#include "mm/mm_types.h"
#include "mm/notifier_hooks.h"
#include "mm/physmem.h"

namespace mirrormm {

namespace notifier_internal {
// Brackets the primary paths skip: bit e for event e (mmu_debug_drop_bracket), kAllBrackets
// for every event (mmu_debug_hooks_off, the benchmarks' "as before notifiers" baseline). One
// load per bracket.
inline constexpr unsigned kAllBrackets = 1u << 31;
extern std::atomic<unsigned> skipped_brackets;
// mmu_debug_fail_take_all_locks: registration fails with -EINTR as if a signal were pending.
extern std::atomic<bool> fail_take_all_locks;
}  // namespace notifier_internal

// The public _locked entry points again, with the requirement the public header cannot spell
// (Mm is opaque there): the caller holds mm's mmap_lock for write.
Errno __mmu_notifier_register(MmuNotifier* sub, Mm* mm) REQUIRES(mm->mmap_lock_);
Result<MmuNotifier*> mmu_notifier_get_locked(const MmuNotifierOps* ops, Mm* mm) REQUIRES(mm->mmap_lock_);
Errno mmu_interval_notifier_insert_locked(MmuIntervalNotifier* sub, Mm* mm, uint64_t start, uint64_t length,
                                          const MmuIntervalNotifierOps* ops) REQUIRES(mm->mmap_lock_);

inline bool mm_has_notifiers(const Mm* mm) {
  return mm->notifier_subscriptions_.load(std::memory_order_acquire) != nullptr;
}

// The out-of-line halves, called only when the inline test says there is work.
void __mmu_notifier_invalidate_range_start_checked(MmuNotifierRange* range);
Errno __mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range);
void __mmu_notifier_invalidate_range_end_checked(MmuNotifierRange* range);
void __mmu_notifier_release(Mm* mm);
void __mmu_notifier_arch_invalidate_secondary_tlbs(Mm* mm, uint64_t start, uint64_t end);

// Whether the coherence checker watches mm's machine (SystemConfig::mmu_checker): one relaxed
// load, through the frame pool every address space points at.
inline bool mmu_checker_on(const Mm* mm) { return mm->mem().mmu_checker_on(); }

inline bool notifier_hooks_wanted(const Mm* mm) { return mm_has_notifiers(mm) || mmu_checker_on(mm); }

// Blockable start/end (mmu_notifier_invalidate_range_start/end).
inline void mmu_notifier_invalidate_range_start(MmuNotifierRange* range) {
  range->flags |= MMU_NOTIFIER_RANGE_BLOCKABLE;
  if (notifier_hooks_wanted(range->mm)) __mmu_notifier_invalidate_range_start_checked(range);
}
// The non-blocking start: 0 or -EAGAIN; after -EAGAIN the caller changes no PTE and does not
// call end.
inline Errno mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range) {
  range->flags &= ~MMU_NOTIFIER_RANGE_BLOCKABLE;
  if (notifier_hooks_wanted(range->mm)) return __mmu_notifier_invalidate_range_start_nonblock(range);
  return Errno::kOk;
}
inline void mmu_notifier_invalidate_range_end(MmuNotifierRange* range) {
  if (notifier_hooks_wanted(range->mm)) __mmu_notifier_invalidate_range_end_checked(range);
}

// A bracket as a scope: start in the constructor, end in the destructor. The primary paths
// use this so that no return path can miss the end.
class MmuNotifierBracket {
 public:
  MmuNotifierBracket(MmuNotifyEvent event, Mm* mm, uint64_t start, uint64_t end, const void* owner = nullptr) {
    mmu_notifier_range_init_owner(&range_, event, 0, mm, start, end, owner);
    const unsigned mask = notifier_internal::kAllBrackets | (1u << static_cast<int>(event));
    skip_ = (notifier_internal::skipped_brackets.load(std::memory_order_relaxed) & mask) != 0;
    if (!skip_) mmu_notifier_invalidate_range_start(&range_);
  }
  ~MmuNotifierBracket() {
    if (!skip_) mmu_notifier_invalidate_range_end(&range_);
  }
  MmuNotifierBracket(const MmuNotifierBracket&) = delete;
  MmuNotifierBracket& operator=(const MmuNotifierBracket&) = delete;

 private:
  MmuNotifierRange range_;
  bool skip_;
};

// exit_mmap's first step: interval notifiers get invalidate(RELEASE, everything), classic
// subscribers release() once and are unhashed, and a grace period passes.
inline void mmu_notifier_release(Mm* mm) {
  if (mm_has_notifiers(mm)) __mmu_notifier_release(mm);
}

// Called by the TLB-flush path for [start, end) of mm.
inline void mmu_notifier_arch_invalidate_secondary_tlbs(Mm* mm, uint64_t start, uint64_t end) {
  if (mm_has_notifiers(mm)) __mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end);
}

// A present PTE of mm at addr gained write access (mprotect's upgrade, a write fault that
// reuses the page). Architectures whose TLBs cache permissions flush there (arm64's
// ptep_set_access_flags flushes the page it made writable, and change_pte_range flushes every
// changed PTE where pte_needs_flush is the generic one), and since Linux 6.6 ("Invalidate
// secondary IOMMU TLB on permission upgrade") that flush reaches the secondary TLBs through
// arch_invalidate_secondary_tlbs: an SMMU that cached the read-only translation would fault
// forever otherwise. The model's CPUs re-walk on a permission fault, as x86's do, so only
// the secondary TLBs are told. Called under the PTE lock, after the change.
void mmu_notifier_pte_upgrade(Mm* mm, uint64_t addr);

// Aging (rmap's folio_referenced side): ORed over subscribers; test_young stops at the first.
int mmu_notifier_clear_flush_young(Mm* mm, uint64_t start, uint64_t end);
int mmu_notifier_clear_young(Mm* mm, uint64_t start, uint64_t end);
int mmu_notifier_test_young(Mm* mm, uint64_t addr);

// mmdrop's teardown of the per-mm state (interval notifiers hold mm_count, so the tree is
// empty by then).
void mmu_notifier_subscriptions_destroy(Mm* mm);

// ---- checker hooks ----

// A PTE of mm at addr changed from old_pte to new_pte (under its PTE lock).
void mmu_checker_pte_change_slow(Mm* mm, uint64_t addr, pteval_t old_pte, pteval_t new_pte);
inline void mmu_checker_pte_change(Mm* mm, uint64_t addr, pteval_t old_pte, pteval_t new_pte) {
  if (mmu_checker_on(mm)) mmu_checker_pte_change_slow(mm, addr, old_pte, new_pte);
}
// mm is torn down: every bracket of it has ended and no secondary mapping of it remains.
// Forgets mm's secondary mappings whether the checker is on or not (the registry must not
// keep an address space's entries past its life).
void mmu_checker_mm_exit(Mm* mm);
// The active invalidations of mm, as the checker records them: between the last start
// callback and the first end callback of a bracket (when every subscriber has been told and
// none has been told it is over).
void checker_range_start(const MmuNotifierRange* range);
void checker_range_end(const MmuNotifierRange* range);
// Around one arch_invalidate_secondary_tlbs walk: begin returns the checker's TLB-fill
// sequence, end reports every secondary TLB entry of [start, end) that existed when the
// flush began and is still there.
uint64_t checker_tlb_flush_begin(Mm* mm);
void checker_tlb_flush_end(Mm* mm, uint64_t start, uint64_t end, uint64_t begun);
// A device access (device_access_pfn) of sub through its secondary mapping of addr in mm to
// frame pfn, which the caller has pinned: true when sub declared that mapping
// (mmu_checker_map), it still agrees with the primary PTE (frame, and write permission for a
// write) and no invalidation covering addr is active. Otherwise reports and returns false.
// Called only with the checker on.
bool mmu_checker_device_access(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool write);
// Reports a device access refused before the checker's own test (a frame that is not a user
// data page of this machine), naming sub, mm's process and addr. kind: a short fixed string.
void mmu_checker_report_device(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, const char* kind,
                               const std::string& what);

}  // namespace mirrormm
