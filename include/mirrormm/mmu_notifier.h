// MMU notifiers: how a secondary MMU (a KVM-style shadow page table, an HMM device mirror, an
// IOMMU sharing the CPU page tables, a remote mapper) stays coherent with the primary one.
// The API is Linux's (include/linux/mmu_notifier.h, 6.18), in three families:
//
// 1. Classic notifiers (struct mmu_notifier): a subscription on one address space with a table
//    of callbacks (MmuNotifierOps). register/unregister, or get/put for one shared subscription
//    per (mm, ops). Callbacks run inside an SRCU read-side section (base/srcu.h) and may sleep
//    when the range is blockable.
// 2. Interval notifiers (struct mmu_interval_notifier): a [start, start+length) interval of one
//    address space with an invalidate() callback and the odd/even invalidate_seq collision-retry
//    protocol (read_begin / read_retry / check_retry / set_seq) that a driver uses to build its
//    secondary PTEs without holding any mm lock.
// 3. Rmap notifiers (the first MMU-notifier patch's class 2): global subscribers called for
//    pages flagged PG_external_rmap, with the page locked, after the page's PTEs were removed.
//
// Every primary path that changes PTEs brackets the change with invalidate_range_start/end (see
// docs/mmu-notifiers.md for the list and its events). The coherence checker (mmu_checker_*)
// verifies that brackets cover every downgrade and that no secondary mapping outlives or
// outranks its primary PTE.
//
// Contexts. start/end, invalidate() and release() may be called with the mmap_lock, a file's
// i_mmap lock or an anon_vma lock held (never a PTE lock): a callback must not take those,
// must not call back into register/unregister/insert/remove, and must not sleep when the range
// is not blockable. arch_invalidate_secondary_tlbs and the young callbacks run under a PTE
// lock or the TLB-flush path and never sleep.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "mirrormm/base/explore_hook.h"
#include "mirrormm/errno.h"

namespace mirrormm {

class Mm;
class Process;
class System;
struct Page;
struct MmuNotifierSubscriptions;  // per-mm state, private to the library

// ---- ranges and events ----

// enum mmu_notifier_event, in Linux's order.
enum class MmuNotifyEvent : int {
  kUnmap = 0,           // munmap, mremap moving the range, exit's teardown
  kClear = 1,           // PTEs cleared or replaced for other reasons (madvise, COW, fork, truncate)
  kProtectionVma = 2,   // mprotect: the whole range gets the VMA's new protection
  kProtectionPage = 3,  // per-page change: inspect the CPU page table at end
  kSoftDirty = 4,
  kRelease = 5,         // interval notifiers only: the address space is being torn down
  kMigrate = 6,         // owner: the migrating driver
  kExclusive = 7,       // owner: the caller of make_device_exclusive
};
// "unmap", "clear", "protection_vma", "protection_page", "soft_dirty", "release", "migrate",
// "exclusive".
const char* mmu_notify_event_name(MmuNotifyEvent e);

inline constexpr unsigned MMU_NOTIFIER_RANGE_BLOCKABLE = 1u << 0;

// struct mmu_notifier_range: [start, end) of mm (end exclusive).
struct MmuNotifierRange {
  Mm* mm = nullptr;
  uint64_t start = 0;
  uint64_t end = 0;
  unsigned flags = 0;
  MmuNotifyEvent event = MmuNotifyEvent::kUnmap;
  const void* owner = nullptr;
};
inline bool mmu_notifier_range_blockable(const MmuNotifierRange* r) {
  return r->flags & MMU_NOTIFIER_RANGE_BLOCKABLE;
}
inline void mmu_notifier_range_init(MmuNotifierRange* r, MmuNotifyEvent event, unsigned flags, Mm* mm,
                                    uint64_t start, uint64_t end) {
  *r = MmuNotifierRange{mm, start, end, flags, event, nullptr};
}
inline void mmu_notifier_range_init_owner(MmuNotifierRange* r, MmuNotifyEvent event, unsigned flags, Mm* mm,
                                          uint64_t start, uint64_t end, const void* owner) {
  *r = MmuNotifierRange{mm, start, end, flags, event, owner};
}

// ---- classic notifiers ----

struct MmuNotifier;

// struct mmu_notifier_ops. Every member may be null. A subscriber uses either start/end
// (a secondary MMU with its own page tables) or arch_invalidate_secondary_tlbs (hardware that
// walks the CPU page tables and only caches translations), never both: registering both is
// -EINVAL. A subscriber whose invalidate_range_start can fail (-EAGAIN on a non-blockable
// range) must not have invalidate_range_end.
struct MmuNotifierOps {
  // Exactly once per subscription: from exit (before any page of the mm is freed) or from
  // unregister, whichever comes first. Tear down every secondary mapping and create no more.
  void (*release)(MmuNotifier* sub, Mm* mm) = nullptr;
  // Test-and-clear the accessed state of secondary mappings of [start, end); the results of
  // all subscribers are ORed. _flush also flushes the secondary TLB. Must not sleep.
  int (*clear_flush_young)(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end) = nullptr;
  int (*clear_young)(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end) = nullptr;
  // Non-destructive; the walk stops at the first subscriber that reports young.
  int (*test_young)(MmuNotifier* sub, Mm* mm, uint64_t addr) = nullptr;
  // Between start and end no secondary mapping of the range may be created; at start the pages
  // are still mapped, at end they may be freed. Returns 0, or -EAGAIN (as Errno::kAgain's
  // value negated) only on a non-blockable range.
  int (*invalidate_range_start)(MmuNotifier* sub, const MmuNotifierRange* range) = nullptr;
  void (*invalidate_range_end)(MmuNotifier* sub, const MmuNotifierRange* range) = nullptr;
  // For secondary TLBs over the CPU page tables: called from the TLB-flush path whenever CPU
  // TLB entries of [start, end) are invalidated. Must not sleep.
  void (*arch_invalidate_secondary_tlbs)(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end) = nullptr;
  // get/put only: alloc_notifier is called with the mmap_lock held for write; free_notifier
  // after the last put and a grace period (no callback can be running), must not sleep.
  MmuNotifier* (*alloc_notifier)(Mm* mm) = nullptr;
  void (*free_notifier)(MmuNotifier* sub) = nullptr;
};

// struct mmu_notifier: embed it (or derive from it) in the subscriber's own structure.
// Fields below `ops` are the library's.
struct MmuNotifier {
  const MmuNotifierOps* ops = nullptr;
  Mm* mm = nullptr;
  // hlist linkage, guarded by the subscriptions lock; `next` is read under SRCU. pprev is
  // null when unhashed.
  std::atomic<MmuNotifier*> next{nullptr};
  std::atomic<MmuNotifier*>* pprev = nullptr;
  unsigned users = 0;  // get/put references, guarded by the subscriptions lock
  std::atomic<bool> released{false};  // release() was claimed (by exit or unregister)
  std::atomic<int> release_calls{0};  // release() calls made: more than one is a violation
  // Set by mmu_notifier_debug_free: the driver freed the subscription; any later use by the
  // core is reported as "notifier used after free".
  std::atomic<bool> debug_freed{false};
};

// Registers sub on mm (mmap_lock for write, then mm_take_all_locks). The caller holds a user
// reference on mm (mm_users > 0) and no mm locks. -EINVAL for ops with both start/end and
// arch_invalidate_secondary_tlbs, -ENOMEM when the per-mm state cannot be allocated.
Errno mmu_notifier_register(MmuNotifier* sub, Mm* mm);
// The same with the mmap_lock already held for write.
Errno __mmu_notifier_register(MmuNotifier* sub, Mm* mm);
// Calls release() unless it already ran, unhashes sub, and waits until no callback of sub is
// running. Sleeps; not from a callback. The caller may free sub when it returns.
void mmu_notifier_unregister(MmuNotifier* sub, Mm* mm);
// One subscription per (mm, ops): an existing one gets another user (-EOVERFLOW at the
// limit), else ops->alloc_notifier(mm) is registered. _locked: mmap_lock held for write.
Result<MmuNotifier*> mmu_notifier_get(const MmuNotifierOps* ops, Mm* mm);
Result<MmuNotifier*> mmu_notifier_get_locked(const MmuNotifierOps* ops, Mm* mm);
// Drops a user; the last one unhashes sub and frees it (free_notifier) after a grace period.
// Never calls release(): the caller has already stopped using secondary mappings. May be
// called from release().
void mmu_notifier_put(MmuNotifier* sub);
// Waits for every free_notifier queued by put so far (a module's exit path).
void mmu_notifier_synchronize();
// What a driver's immediate kfree of its subscription is to the checker (a debug allocator's
// poisoning): the memory stays with its owner, but every later touch by the core (an SRCU
// reader still on it, unregister's unhash) is reported as "notifier used after free". Only
// broken driver variants call it: a correct driver frees through mmu_notifier_put, whose
// free_notifier runs after an SRCU grace period.
void mmu_notifier_debug_free(MmuNotifier* sub);

// ---- interval notifiers ----

struct MmuIntervalNotifier;

struct MmuIntervalNotifierOps {
  // The range overlaps the interval: stop using secondary mappings of the overlap before
  // returning. Call mmu_interval_set_seq(sub, cur_seq) unconditionally, under the same driver
  // lock that read_retry is called under. Returns false only when it would have to sleep and
  // the range is not blockable.
  bool (*invalidate)(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) = nullptr;
};

// An interval notifier's lifecycle, guarded by the mm's subscriptions lock:
//
//   kIdle --insert--> kInTree                    (tree not frozen)
//         --insert--> kInsertPending --last end--> kInTree     (frozen: deferred)
//   kInTree --remove--> kRemoving                (not frozen: erased at once)
//           --remove--> kRemovePending --last end--> kRemoving  (frozen: deferred)
//   kInsertPending --remove--> kRemoving         (dropped from the deferred list)
//   kRemoving --no find() reference left--> kIdle  (remove returns; may be inserted again)
enum class MmuIntervalState : uint8_t { kIdle, kInsertPending, kInTree, kRemovePending, kRemoving };

// struct mmu_interval_notifier. Fields are the library's; read them with the accessors.
struct MmuIntervalNotifier {
  // Interval-tree node: [start, last] inclusive, augmented with the subtree's largest last.
  // in_tree is the tree's own node bit (kInTree and kRemovePending).
  uint64_t start = 0;
  uint64_t last = 0;
  uint64_t subtree_last = 0;
  uint64_t seq = 0;  // the interval tree's order among equal starts
  MmuIntervalNotifier* left = nullptr;
  MmuIntervalNotifier* right = nullptr;
  int height = 0;
  bool in_tree = false;
  MmuIntervalState state = MmuIntervalState::kIdle;
  // The deferred list (while the tree is frozen): kInsertPending and kRemovePending entries.
  MmuIntervalNotifier* deferred_next = nullptr;
  const MmuIntervalNotifierOps* ops = nullptr;
  Mm* mm = nullptr;  // set by insert, cleared when remove returns (the owner's thread only)
  std::atomic<uint64_t> invalidate_seq{0};
  // find() references: remove waits until they are dropped.
  std::atomic<int> refs{0};
};
inline uint64_t mmu_interval_notifier_start(const MmuIntervalNotifier* s) { return s->start; }
inline uint64_t mmu_interval_notifier_last(const MmuIntervalNotifier* s) { return s->last; }

// Inserts [start, start+length) of mm. -EOVERFLOW for length 0 or a wrapping end; -EINVAL
// when mm has no users. May take the mmap_lock for write (the first interval of an mm);
// _locked: the caller holds it for write. During an invalidation the insert may be deferred:
// use read_begin/read_retry before creating any secondary mapping.
Errno mmu_interval_notifier_insert(MmuIntervalNotifier* sub, Mm* mm, uint64_t start, uint64_t length,
                                   const MmuIntervalNotifierOps* ops);
Errno mmu_interval_notifier_insert_locked(MmuIntervalNotifier* sub, Mm* mm, uint64_t start, uint64_t length,
                                          const MmuIntervalNotifierOps* ops);
// Removes sub; when it returns no invalidate() of sub is running or will run and no find()
// reference is held. Sleeps; not from a callback.
void mmu_interval_notifier_remove(MmuIntervalNotifier* sub);

// The collision-retry protocol (see docs/mmu-notifiers.md):
//   seq = read_begin(sub);           // waits while an invalidation of sub is under way
//   ...look up the primary PTEs...   // check_retry(sub, seq) may end the work early
//   lock(driver->update);
//   if (read_retry(sub, seq)) { unlock; goto again; }
//   ...program secondary PTEs...; unlock(driver->update);
uint64_t mmu_interval_read_begin(MmuIntervalNotifier* sub);
// Under the driver lock that invalidate() holds around set_seq: true means "collided, retry".
inline bool mmu_interval_read_retry(MmuIntervalNotifier* sub, uint64_t seq) {
  MM_EXPLORE_POINT(kNotifier, sub);
  return sub->invalidate_seq.load(std::memory_order_relaxed) != seq;
}
// Lock-free hint: true is reliable, false may be stale.
inline bool mmu_interval_check_retry(MmuIntervalNotifier* sub, uint64_t seq) {
  return sub->invalidate_seq.load(std::memory_order_acquire) != seq;
}
// From invalidate(), under the driver lock.
inline void mmu_interval_set_seq(MmuIntervalNotifier* sub, uint64_t cur_seq) {
  MM_EXPLORE_POINT(kNotifier, sub);
  sub->invalidate_seq.store(cur_seq, std::memory_order_release);
}

// mmu_interval_notifier_find (proposed for Linux, never merged), made safe: the first interval of
// mm with these ops overlapping [start, last] as program order sees it (a pending insert is
// found, an interval whose remove has begun is not), returned with a reference that keeps it
// alive: remove() waits until mmu_interval_notifier_put_ref drops it. nullptr if none.
MmuIntervalNotifier* mmu_interval_notifier_find(Mm* mm, const MmuIntervalNotifierOps* ops, uint64_t start,
                                                uint64_t last);
void mmu_interval_notifier_put_ref(MmuIntervalNotifier* sub);

// ---- rmap notifiers ----

struct MmuRmapNotifier;
struct MmuRmapNotifierOps {
  // page (PG_external_rmap) lost its primary PTEs; called with the page locked, may sleep.
  // pfn identifies the frame.
  void (*invalidate_page)(MmuRmapNotifier* mrn, Page* page, uint64_t pfn) = nullptr;
};
struct MmuRmapNotifier {
  const MmuRmapNotifierOps* ops = nullptr;
  std::atomic<MmuRmapNotifier*> next{nullptr};
  std::atomic<MmuRmapNotifier*>* pprev = nullptr;
};
// Global (per System) registration; unregister waits for running callbacks.
void mmu_rmap_notifier_register(System* sys, MmuRmapNotifier* mrn);
void mmu_rmap_notifier_unregister(System* sys, MmuRmapNotifier* mrn);
// PageExternalRmap: the subscriber marks the frames it maps through its own rmap.
void set_page_external_rmap(System* sys, uint64_t pfn);
void clear_page_external_rmap(System* sys, uint64_t pfn);

// ---- address-space references and primary lookups for secondary MMUs ----

// A user reference on p's address space (get_task_mm), or nullptr if it exited; drop it with
// mmput_ref. Registration requires one.
Mm* get_task_mm(Process* p);
void mmput_ref(Mm* mm);
// The machine an address space belongs to.
System* mm_sys(const Mm* mm);
// The primary translation of addr in mm (what hmm_range_fault reports after faulting):
// faults the page in first when fault is set (write: for writing). Returns the pfn with
// *writable set, or -EFAULT (no VMA / no access), -EPERM (write to a VMA without VM_WRITE),
// -ENOMEM. Takes the mmap_lock for read; the caller holds none.
Result<uint64_t> mm_get_pfn(Mm* mm, uint64_t addr, bool fault, bool write, bool* writable);
// A device DMA: reads or writes len bytes at addr of mm through sub's secondary mapping of
// addr's page to frame pfn (the bytes must lie in that page). Returns true when the access
// was performed. The caller holds the lock that its invalidation callbacks take (the
// "update" lock), as a device would use its page table, and keeps mm alive (a subscription
// does).
//
// Checked when it happens, so that a broken driver or kernel is reported and can never
// corrupt the model: the frame must exist and hold user data (an anonymous or page-cache
// page, or the zero page for a read); it is pinned for the copy, so it cannot be freed and
// reused meanwhile. With the coherence checker on, also: sub declared this mapping
// (mmu_checker_map) to pfn, the primary PTE has not lost it since (same frame, writable for a
// write) and no invalidation covering addr is active. A refused access is reported
// (System::report_violation) and not performed; a refused read fills buf with zeros.
bool device_access_pfn(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, void* buf, uint64_t len,
                       bool write);

// ---- the coherence checker ----
//
// Switched per machine: SystemConfig::mmu_checker (on in debug builds and in the test suite)
// and System::set_mmu_checker. Secondary MMUs declare each secondary mapping they create and
// drop; the checker reports (System::report_violation, each with a short kind) the moment:
//   - a primary PTE loses access or changes frame outside an active invalidation covering it;
//   - a secondary mapping outlives its primary PTE (present when the PTE is cleared or
//     points elsewhere) or outranks it (writable while the PTE is not), or is created over a
//     PTE that does not map that frame;
//   - a device accesses memory through a mapping that is undeclared, stale, outranking, or
//     inside an active invalidation (device_access_pfn; the access is refused);
//   - a frame is freed while a secondary mapping still names it;
//   - starts and ends do not pair up (checked when an mm is torn down).
// Messages name the subscriber (mmu_checker_name), the process, the address and the
// invalidation in progress, if any.
//
// sub: any identity of the secondary MMU (one per subscriber).
void mmu_checker_map(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool writable);
void mmu_checker_unmap(const void* sub, Mm* mm, uint64_t addr);
// The same for a secondary TLB over the CPU page tables (a subscriber with
// arch_invalidate_secondary_tlbs, an IOMMU with SVA): its entry may lag behind the PTE, as a
// CPU's TLB entry does, until the next arch_invalidate_secondary_tlbs of its address; the
// checker then reports an entry that was cached when that flush began and is still there
// when it returns, and refuses device accesses through it. Frames are still checked at free.
void mmu_checker_map_tlb(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool writable);
void mmu_checker_unmap_all(const void* sub);
// The name the checker's messages give sub ("gpu0", "dev A"); without one they print its
// address. An empty name forgets it: do so before sub's memory may be reused.
void mmu_checker_name(const void* sub, const std::string& name);
// Process-wide: how many violations the checker has reported so far, the last one, and how
// many times a broken kernel or driver was requested (mmu_debug_drop_bracket with an event,
// mmu_debug_broken_driver). The test
// suite fails any test during which the first grew while the last did not.
uint64_t mmu_checker_reports();
std::string mmu_checker_last_report();
uint64_t mmu_debug_breakages();
// Test switch: the primary paths skip their brackets for this event (a deliberately broken
// kernel, to show that the checker catches it). -1 restores them all.
void mmu_debug_drop_bracket(int event);
// Test switch: the caller is about to run a deliberately broken secondary MMU (one that
// ignores invalidations, say) to show what the checker reports. Counts as a broken kernel
// for mmu_debug_breakages.
void mmu_debug_broken_driver();
// Whether some primary path brackets its PTE changes with this event, so that dropping its
// brackets can break anything: unmap, clear, protection_vma and protection_page today.
// soft_dirty, migrate and exclusive wait for the mechanisms that use them (clear_refs,
// migration, make_device_exclusive); release is exit's own call, not a bracket.
bool mmu_debug_bracket_used(MmuNotifyEvent event);
// Test switch: mm_take_all_locks fails with -EINTR (as on a pending signal), so that
// registration's failure path can be exercised.
void mmu_debug_fail_take_all_locks(bool fail);
// Benchmark switch: every notifier hook returns at once, as before notifiers existed (the
// baseline of "no subscriber costs nothing").
void mmu_debug_hooks_off(bool off);

}  // namespace mirrormm
