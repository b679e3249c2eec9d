// THE LOCK ORDER of the modeled VM, and its lock classes (the one place where both are
// written; docs/locking.md explains it, mm/rmap.c's header comment is the model).
//
// Outermost first: a lock may be taken while holding the ones above it on its branch, never
// the other way round. Where each nesting happens is noted on the right; the number in
// brackets is the class's rank, which the run-time checker enforces (base/locking.h).
//
//   stress: the slot lock [1]                (the workload's fork/exit of one slot, across
//                                             the system calls)
//   SwapTable::swapon_mutex [2]              (swapon/swapoff: swapoff's try_to_unuse walks
//                                             the process table and faults pages in under it)
//   System::procs_lock_ [3]                  (the process table; debug walks hold it across
//                                             their per-mm work)
//   System::files_lock_ [4]                  (the file table; checkers and teardown hold it
//                                             across page-cache work)
//   Process::lock_ [5]                       (get_task_mm against exit: load the mm and take
//                                             a user reference; nothing nests inside)
//   Flusher::pass_lock_ [6]                  (one writeback pass at a time; the pass takes
//                                             page locks and, through folio_mkclean, the
//                                             i_mmap and PTE locks under it)
//   DeviceMirror::detach_lock_ [8]           (the library's secondary MMU: held for read
//                                             across a device fault, which takes the
//                                             mmap_lock; for write by detach)
//   Mm::mmap_lock_ [10]                      (rwsem; syscalls write, slow-path faults read;
//                                             fork nests the child's inside the parent's)
//     mm_all_locks_mutex [12]                (mm_take_all_locks: one taker at a time; the
//                                             nest lock of the i_mmap and anon_vma locks)
//     Mm::snapshot_lock_ [15]                (fault slow path rebuilding the VMA snapshot)
//     the page lock, PG_locked [17]          (lock_page: rmap walks, migration, truncation of
//                                             a page take it before the locks below)
//       DmirrorDevice::devmem_lock_ [18]     (the dmirror test driver's chunks and open
//                                             mirrors: a migration to the device adds a chunk
//                                             with its source pages locked, migrate_to_ram
//                                             clears mirrors under the faulting page's lock;
//                                             eviction drops it before locking pages)
//     ShmemInode::i_mmap_lock_ [20]          (vma_link/unlink of file VMAs; truncate's
//                                             unmap_mapping_range holds it without mmap_lock)
//       AnonVma::root->rwsem [30]            (anon_vma_prepare, clone, fork, unlink; mremap's
//                                             move_page_tables holds both rmap locks)
//         MmuNotifierSubscriptions::wq_lock [33] (waiters of read_begin and remove; the
//                                             subscriptions lock nests inside)
//         MmuNotifierSubscriptions::lock [35] (notifier lists, interval tree, invalidate_seq;
//                                             never held across a callback; register holds
//                                             it inside mm_take_all_locks)
//         Mm::page_table_lock_ [40]          (upper page-table levels, vma->anon_vma install)
//         XpmemMapper::lock_ [46]            (the remote mapper's table and in-flight
//                                             accesses: taken inside invalidate(), which
//                                             sleeps on it; around read_retry)
//         Page::ptl (split PTE lock) [50]    (zap, change_protection, faults, copy_page_range
//                                             and move_pte nest a second one: "nested")
//           SwapInfo::lock [52]              (a swap device's slot allocator: swap_lock and
//                                             si->lock; swap_duplicate and smaps' swap
//                                             counts under the PTE lock)
//           ShadowMmu::mmu_lock_ [55]        (the shadow MMU's SPTEs: its start/end and
//                                             release, and its young callbacks, which rmap
//                                             calls under the PTE lock; device DMA under it
//                                             may free a page)
//           SvaIotlb::lock_ [56]             (the IOTLB: arch_invalidate_secondary_tlbs
//                                             from the TLB flush, under a PTE lock or not;
//                                             device DMA under it may free a page)
//           ShmemInode::lock_ [60]           (page cache; smaps counts a file's swap
//                                             entries at the PTE holes it walks)
//           the swap cache's lock [61]       (swapper_spaces' i_pages lock)
//             Lruvec::lru_lock [65]          (LRU lists: add, isolate, putback, removal of
//                                             a page whose last reference went)
//             a CPU's LRU add batch [65]     (folio_add_lru; same rank as lru_lock, never
//                                             held with it or with another batch's)
//             PhysMem::Pcp::lock [70]        (per-CPU frame lists)
//               PhysMem::lock_ [75]          (global frame list)
//           Cpu::tlb_lock_ [80]              (TLB fill and shootdown)
//   Leaves, taken under any of the above and never held across mm work (in this order
//   among themselves):
//     DiskBlocks::lock_ [81]                 (a regular file's blocks on the model disk:
//                                             writeback copies a page to its block under
//                                             the page lock; faults read blocks with no lock)
//     Flusher::lock_ [82]                    (the writeback thread's wakeups, from faults
//                                             that dirty pages; never across writeback)
//     Kswapd::lock_ [83]                     (wakeup_kswapd from the allocator, with whatever
//                                             the allocating path holds; never across reclaim)
//     OomKiller::lock_ [84]                  (out_of_memory from the allocator's slow path
//                                             queues a victim; never across the reap)
//     ShmemSwaplist::lock_ [85]              (shmem_swaplist: an inode adds or removes itself
//                                             under its ShmemInode::lock_ when its first
//                                             swap entry comes or its last goes; swapoff
//                                             takes inode references under it and drops it
//                                             before swapping them in)
//     a kmem_cache's per-CPU stack [86]      (kmem_cache alloc/free: vm_area_alloc/free,
//                                             anon_vma_alloc/put_anon_vma; storage only)
//       its node lock [87]                   (refilling and spilling a CPU stack, shrink)
//     DmirrorDevice::lock_ [88]              (the dmirror test driver's free device pages:
//                                             folio_free runs wherever a device page's last
//                                             reference goes, under page-table locks too)
//     the gather registry's lock [89]        (pending mmu_gathers, for the leak check)
//     rmap_lists_lock [90]                   (rmap-notifier lists; under the page lock)
//     Mm::checker_lock_ [91]                 (the coherence checker's active invalidations)
//       the checker's mm shards [92], frame shards [93], subscriber names [94],
//       last report [95]                     (from brackets, PTE changes, frame frees)
//         System::violations_lock_ [96]      (the report list; taken by every checker)
//     stress: the mirror table's lock [97]   (the workload's device mirrors)
//     the kmem_cache report hook's lock [98] (a write after free or a use of a free object
//                                             reported by an object cache; held only to
//                                             copy the hook)
//     the driver lock checker's graph [99]   (base/driver_lock.h: taken by the checked
//                                             operations of driver locks and of the VM's
//                                             pseudo-locks, with anything held; holds nothing)
//     the secondary-MMU kinds' registry [100] (held only to look a kind up or add one;
//                                             factories run without it)
//     the trace recorder's thread list [101] (a thread's first traced event registers its
//                                             buffer; the memory samples and the merge: last,
//                                             since an event may be traced under any lock)
//       a thread's trace buffer [102]        (every traced fault, invalidation callback and
//                                             shootdown appends under whatever it holds)
//
// The per-VMA lock is not a lock object: a fault holds one VMA's read side instead of the
// mmap_lock (lock_vma_under_rcu), and vma_start_write (under mmap_lock for write) waits for
// those readers; it ranks with the mmap_lock.
//
// Faults take the PTE lock with either the mmap_lock (read) or a VMA read lock held; the
// software CPU's TLB lock is never held while faulting (a fault can shoot down the faulting
// CPU's own TLB). Secondary MMUs' own locks (a driver's page-table lock, DeviceMirror's
// update lock) are taken inside their callbacks and around read_retry; they are outside this
// order and must not be held across a call into the VM that can fault. They are DriverLocks
// (base/driver_lock.h), whose checker orders them against the invalidation callbacks and
// reclaim instead of by rank.
#pragma once

#include "mirrormm/base/locking.h"

namespace mirrormm::lock_class {

inline constexpr LockClass kStressSlots{1};
inline constexpr LockClass kSwapon{2};
inline constexpr LockClass kProcs{3};
inline constexpr LockClass kFiles{4};
inline constexpr LockClass kProcess{5};
inline constexpr LockClass kFlusherPass{6};
inline constexpr LockClass kDeviceDetach{8};
inline constexpr LockClass kMmapLock{10};
inline constexpr LockClass kAllLocks{12};
inline constexpr LockClass kSnapshotLock{15};
inline constexpr LockClass kPageLock{17};
inline constexpr LockClass kDmirrorDevmem{18};
inline constexpr LockClass kIMmap{20};
inline constexpr LockClass kAnonVma{30};
inline constexpr LockClass kNotifierWait{33};
inline constexpr LockClass kMmuNotifier{35};
inline constexpr LockClass kPageTableLock{40};
inline constexpr LockClass kXpmem{46};
inline constexpr LockClass kPtl{50};
inline constexpr LockClass kSwapInfo{52};
inline constexpr LockClass kShadowMmuLock{55};
inline constexpr LockClass kSvaIotlb{56};
inline constexpr LockClass kInode{60};
inline constexpr LockClass kSwapCache{61};
inline constexpr LockClass kLruLock{65};
inline constexpr LockClass kPcp{70};
inline constexpr LockClass kFreeList{75};
inline constexpr LockClass kTlb{80};
inline constexpr LockClass kDiskBlocks{81};
inline constexpr LockClass kFlusher{82};
inline constexpr LockClass kKswapd{83};
inline constexpr LockClass kOomReaper{84};
inline constexpr LockClass kShmemSwaplist{85};
inline constexpr LockClass kSlabCpu{86};
inline constexpr LockClass kSlabNode{87};
inline constexpr LockClass kDmirrorFreeList{88};
inline constexpr LockClass kGatherRegistry{89};
inline constexpr LockClass kRmapNotifierList{90};
inline constexpr LockClass kCheckerRanges{91};
inline constexpr LockClass kCheckerMmShard{92};
inline constexpr LockClass kCheckerFrameShard{93};
inline constexpr LockClass kCheckerNames{94};
inline constexpr LockClass kCheckerLastReport{95};
inline constexpr LockClass kViolations{96};
inline constexpr LockClass kStressMirrors{97};
inline constexpr LockClass kSlabReport{98};
inline constexpr LockClass kDriverLockGraph{99};
inline constexpr LockClass kSecondaryMmuKinds{100};
inline constexpr LockClass kTraceThreads{101};
inline constexpr LockClass kTraceBuffer{102};

}  // namespace mirrormm::lock_class
