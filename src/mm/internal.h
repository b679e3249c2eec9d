// Declarations shared between the mechanisms of src/mm (mm/internal.h's role). Each group
// names the file that implements it.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "mirrormm/errno.h"
#include "mirrormm/gup.h"
#include "mirrormm/mman.h"
#include "mm/mm_types.h"

namespace mirrormm {

class MmuGather;

// ---- vma.cc: VMA allocation, the tree, splitting and merging (mm/vma.c) ----

Vma* vm_area_alloc(Mm* mm);
// A copy of orig with the same anon_vma pointer but an empty chain (the caller clones it)
// and a new reference on the file.
Vma* vm_area_dup(const Vma* orig);
// Frees a VMA already unlinked from the tree and from its anon_vmas.
void vm_area_free(Vma* vma);

void vma_link(Mm* mm, Vma* vma) REQUIRES(mm->mmap_lock_);     // insert into the tree
void vma_unlink(Mm* mm, Vma* vma) REQUIRES(mm->mmap_lock_);   // erase from the tree
// Moves vm_start (re-keying the tree) and adjusts vm_pgoff by the same number of pages.
void vma_set_start(Mm* mm, Vma* vma, uint64_t start) REQUIRES(mm->mmap_lock_);
// Field updates of a linked VMA: each write-locks the VMA first.
void vma_set_end(Vma* vma, uint64_t end);
// Sets a linked VMA's whole range (vma_expand's target), re-keying the tree and the rmap.
void vma_set_range(Mm* mm, Vma* vma, uint64_t start, uint64_t end, uint64_t pgoff) REQUIRES(mm->mmap_lock_);
// can_modify_vma (mm/vma.h): false for a sealed VMA, which refuses munmap, mprotect,
// mremap, MAP_FIXED over it and (on read-only private anonymous memory) discarding advice.
inline bool can_modify_vma(const Vma* vma) { return !(vma->vm_flags & VM_SEALED); }

// Sticky flags (VM_STICKY) are never taken away: a VMA keeps them whatever flags a caller
// computed before a merge gave them to it. The store is atomic: rmap walks read VM_LOCKED
// without the mmap_lock (vma_flags_racy).
// Adds flags to a VMA's, with the same atomic store (the caller holds the VMA's write lock).
inline void vma_add_flags(Vma* vma, vm_flags_t flags) {
  std::atomic_ref<vm_flags_t>(vma->vm_flags).store(vma->vm_flags | flags, std::memory_order_relaxed);
}
inline void vma_set_flags(Vma* vma, vm_flags_t flags) {
  vma_start_write(vma);
  std::atomic_ref<vm_flags_t>(vma->vm_flags).store(flags | (vma->vm_flags & VM_STICKY), std::memory_order_relaxed);
}
// Erases a VMA from the tree, unlinks its anon_vmas and frees it.
void remove_vma(Mm* mm, Vma* vma) REQUIRES(mm->mmap_lock_);

// __split_vma: splits at addr; the new VMA takes [vm_start, addr) when new_below, else
// [addr, vm_end). Does not check max_map_count. split_vma does (ENOMEM at the limit).
enum class NewBelow { kNo, kYes };
Errno __split_vma(Mm* mm, Vma* vma, uint64_t addr, NewBelow new_below) REQUIRES(mm->mmap_lock_);
Errno split_vma(Mm* mm, Vma* vma, uint64_t addr, NewBelow new_below) REQUIRES(mm->mmap_lock_);

// The merge state (struct vma_merge_struct).
struct VmaMergeState {
  Mm* mm = nullptr;
  Vma* prev = nullptr;
  Vma* middle = nullptr;  // existing-range merges: the VMA being modified
  Vma* next = nullptr;
  Vma* target = nullptr;
  uint64_t start = 0, end = 0, pgoff = 0;
  vm_flags_t vm_flags = 0;
  File* file = nullptr;
  AnonVma* anon_vma = nullptr;
  Vma* copied_from = nullptr;  // mremap's copy_vma
  bool just_expand = false;
};

// Merges a new range [start, end) with prev and/or next; returns the VMA that now covers it
// or nullptr (no merge; nothing changed).
Vma* vma_merge_new_range(VmaMergeState& vmg) REQUIRES(vmg.mm->mmap_lock_);
// Gives [start, end) of vma (which must lie inside it) the flags newflags, merging with
// neighbours or splitting as Linux's vma_modify_flags() does. Returns the VMA that now
// covers exactly... at least [start, end), or an errno (a split done before the error stays).
Result<Vma*> vma_modify_flags(Mm* mm, Vma* prev, Vma* vma, uint64_t start, uint64_t end,
                              vm_flags_t newflags) REQUIRES(mm->mmap_lock_);

// Debug validator: tree keys, ordering, non-overlap, map_count, anon_vma chains.
void validate_mm(Mm* mm) REQUIRES_SHARED(mm->mmap_lock_);

// ---- rmap.cc: anon_vma identities (mm/rmap.c) ----

// Gives vma an anon_vma (reusing a compatible neighbour's); ENOMEM on failure.
Errno anon_vma_prepare(Vma* vma) REQUIRES_SHARED(vma->vm_mm->mmap_lock_);
// Links dst into every anon_vma of src's chain (reusing one for dst->anon_vma when allowed).
Errno anon_vma_clone(Vma* dst, const Vma* src);
// anon_vma_fork: clone the parent's chain and give the child its own anon_vma.
Errno anon_vma_fork(Vma* vma, const Vma* pvma);
void unlink_anon_vmas(Vma* vma);
// dup_anon_vma: when src has an anon_vma and dst has none, dst takes src's.
Errno dup_anon_vma(Vma* dst, const Vma* src);

// ---- rmap_unmap.cc: the per-mapping step of try_to_unmap (mm/rmap.c) ----

// try_to_unmap_one: removes the mapping of `page` at `address` of vma (the reverse-map walk
// calls it for each VMA mapping the page). The caller holds the page lock and keeps vma and
// its page tables alive (the rmap lock or the mmap_lock). An anonymous page must already be
// in the swap cache: its PTE becomes a swap PTE of page->swap (exclusive when the page was
// PG_anon_exclusive), taking a swap map count; a shmem page's PTE becomes none. The PTE's
// dirty bit moves to PG_dirty. Returns true when the address no longer maps the page
// (including when it did not map it to begin with), false when the swap count could not be
// taken (the PTE is left as it was). flags: TTU_* flags; none is modeled yet (pass 0).
// lent: only under System::DebugBreak::kUnmapPutBeforeEnd, from a caller that lends its own
// page reference; set when the unmap dropped it and freed the page (the walk then stops, and the
// caller must not touch the page again).
bool try_to_unmap_one(Page* page, Vma* vma, uint64_t address, unsigned flags, bool* lent = nullptr);

// ---- mm_take_all_locks.cc ----

// Serializes mm_take_all_locks callers (the nest lock of the rmap locks they take).
extern Mutex mm_all_locks_mutex;
// Write-locks every VMA of mm and takes every rmap lock its VMAs reach (i_mmap locks, anon_vma
// roots), in address order; mm_drop_all_locks releases them. The caller holds the mmap_lock
// for write from before take until after drop.
void mm_take_all_locks(Mm* mm) REQUIRES(mm->mmap_lock_) ACQUIRE(mm_all_locks_mutex);
void mm_drop_all_locks(Mm* mm) REQUIRES(mm->mmap_lock_) RELEASE(mm_all_locks_mutex);

// ---- pgtable.cc: page-table allocation and walks ----

// The PTE slot for addr, or nullptr when a level is missing. The caller keeps the tables alive
// by holding mmap_lock (tables are freed only under mmap_lock for write, after a flush).
pte_t* pte_offset(Mm* mm, uint64_t addr);
// The same, allocating missing tables; nullptr when the frame pool is exhausted. The fault
// path passes Gfp::kUser (it may reclaim); paths holding page-table or rmap locks, kNowait.
pte_t* pte_alloc(Mm* mm, uint64_t addr, Gfp gfp = Gfp::kNowait);
// The descriptor of the PTE table holding pte (its ptl is the split PTE lock).
Page* pte_table_page(Mm* mm, const pte_t* pte);
inline SpinLock& pte_lockptr(Mm* mm, const pte_t* pte) { return pte_table_page(mm, pte)->ptl; }
// Frees the page tables that map only [start, end), keeping tables that also map below floor
// or at/after ceiling (free_pgtables' floor/ceiling rule). Tables go through the gather.
void free_pgd_range(MmuGather& tlb, uint64_t start, uint64_t end, uint64_t floor, uint64_t ceiling);
// Frees every table, the PGD included (exit).
void free_all_pgtables(Mm* mm);
// Number of page-table frames of mm (for metadata accounting).
uint64_t count_pgtables(Mm* mm);

// ---- memory.cc: faults, zap, copy (mm/memory.c) ----

enum VmFault : unsigned {
  VM_FAULT_OK = 0,
  VM_FAULT_OOM = 1u << 0,
  VM_FAULT_SIGBUS = 1u << 1,
  VM_FAULT_SIGSEGV = 1u << 2,
  VM_FAULT_RETRY = 1u << 3,
};
enum FaultFlags : unsigned {
  FAULT_FLAG_WRITE = 1u << 0,
  FAULT_FLAG_REMOTE = 1u << 1,  // GUP (populate): no access_error, no stack expansion
  FAULT_FLAG_VMA_LOCK = 1u << 2,  // only the VMA's read lock is held, not the mmap_lock
  // GUP's FOLL_PIN of a shared anonymous page for reading (gup_must_unshare): the page is
  // copied (or reused, if nobody else has it) as a write fault would, but the PTE stays
  // read-only.
  FAULT_FLAG_UNSHARE = 1u << 3,
};
// Handles a fault at addr in vma, with the mmap_lock held for read or (FAULT_FLAG_VMA_LOCK)
// only the VMA read-locked; in the latter case work that needs the mmap_lock (a first
// anon_vma) answers VM_FAULT_RETRY and the caller retries under the mmap_lock.
unsigned handle_mm_fault(Vma* vma, uint64_t addr, unsigned flags);
// Removes the mappings of [start, end) inside vma; pages go to the gather. The caller keeps
// the VMA stable: mmap_lock, or for a file VMA the file's i_mmap lock. With kSharedOnly
// (unmap_mapping_range without even_cows) private anonymous copies are kept.
enum class ZapCows { kYes, kSharedOnly };
// Whether guard markers go too: only when the mapping itself goes (munmap, exit).
enum class ZapMarkers { kKeep, kDrop };
void zap_page_range(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, ZapCows cows = ZapCows::kYes,
                    ZapMarkers markers = ZapMarkers::kKeep);
// unmap_mapping_range: removes every mapping of the file's pages in [first, last) (page
// offsets; to the end of the file by default).
void unmap_mapping_range(ShmemInode* inode, uint64_t first, ZapCows cows, uint64_t last = UINT64_MAX);
// fork: copies the page-table entries of src into dst (write-protecting COW entries in both).
Errno copy_page_range(Vma* dst, Vma* src);
// Whether an access with these flags is allowed by the VMA (arch access_error()).
bool access_error(const Vma* vma, bool write);
// restore_exclusive_pte: the device-exclusive entry orig of locked page `page` at addr
// becomes a present PTE again (old; writable and, if the page is, dirty when the VMA is
// writable and the page still exclusive to it). The caller holds the page lock and the PTE
// lock, and has checked that the entry is still orig.
void restore_exclusive_pte(Vma* vma, Page* page, uint64_t addr, pte_t* ptep, pteval_t orig);

// ---- gup.cc: faulting user pages in for the kernel (mm/gup.c) ----

// folio_maybe_dma_pinned: the page's reference count reached the pin bias (mirrormm/gup.h).
inline bool folio_maybe_dma_pinned(const Page* page) {
  return page->refcount.load(std::memory_order_acquire) >= kGupPinCountingBias;
}

// The flags drivers pass (FOLL_WRITE, FOLL_FORCE, FOLL_NOFAULT, FOLL_GET, FOLL_PIN,
// FOLL_LONGTERM) are in mirrormm/gup.h; these are the memory manager's own.
inline constexpr unsigned FOLL_REMOTE = 1u << 3;         // on behalf of a device (FAULT_FLAG_REMOTE)
inline constexpr unsigned FOLL_MADV_POPULATE = 1u << 4;  // madvise's errnos: no VMA -ENOMEM, a refused VMA -EINVAL
inline constexpr unsigned FOLL_TOUCH = 1u << 5;          // the access counts as one: FOLL_WRITE marks the page dirty
// What one page resolved to: the pfn its PTE maps and whether the PTE is writable; valid is
// false only under FOLL_NOFAULT, for a page not mapped as wanted.
struct GupPfn {
  uint64_t pfn = 0;
  bool writable = false;
  bool valid = false;
};
// How far a walk got: nr_done pages resolved, then error (kOk when all were).
struct GupResult {
  uint64_t nr_done = 0;
  Errno error = Errno::kOk;
};
// __get_user_pages: resolves the nr_pages pages from start in order, faulting each in as
// gup_flags ask, and stores them in pfns (when not null). Stops at the first page whose VMA is
// missing or refuses the access (-EFAULT) or whose fault fails (-ENOMEM, -EFAULT for SIGBUS
// and SIGSEGV). The caller holds the mmap_lock for read.
GupResult get_user_pages(Mm* mm, uint64_t start, uint64_t nr_pages, unsigned gup_flags, GupPfn* pfns)
    REQUIRES_SHARED(mm->mmap_lock_);
// populate_vma_page_range: faults [start, end) of one VMA in as GUP does (write faults for a
// private writable VMA, forced read faults otherwise), stopping at the first page that fails:
// -EFAULT for a PROT_NONE VMA, a page beyond the end of a file or any other fault that
// cannot be fixed (a non-present special entry), -ENOMEM when memory runs out. A
// VM_LOCKONFAULT VMA is left alone: it is populated by its faults.
Errno populate_vma_page_range(Vma* vma, uint64_t start, uint64_t end) REQUIRES_SHARED(vma->vm_mm->mmap_lock_);
// faultin_page_range (madvise MADV_POPULATE_READ/WRITE): faults [start, end) in across VMAs;
// -ENOMEM for a hole or no memory, -EINVAL for a VMA that refuses the access (VM_IO, VM_PFNMAP,
// no VM_READ / VM_WRITE), -EFAULT for SIGBUS/SIGSEGV.
enum class ForWrite { kNo, kYes };
enum class FaultIn { kNo, kYes };
Errno faultin_page_range(Mm* mm, uint64_t start, uint64_t end, ForWrite write) REQUIRES_SHARED(mm->mmap_lock_);
// Driver lookups (the primary side of hmm_range_fault): resolves the nr_pages pages from start
// to pfns[0..nr_pages), for writing when write is kYes; with fault kYes missing (or, for
// writing, read-only) pages are faulted in, with kNo they come back with valid == false. The
// whole range is checked first: -EFAULT when a page has no VMA or its VMA cannot be read
// (or is VM_IO/VM_PFNMAP), -EPERM for a write to a VMA without VM_WRITE; then -ENOMEM or
// -EFAULT from a failed fault. The caller holds the mmap_lock for read.
Errno get_user_pfns(Mm* mm, uint64_t start, uint64_t nr_pages, ForWrite write, FaultIn fault, GupPfn* pfns)
    REQUIRES_SHARED(mm->mmap_lock_);

// ---- migrate_device.cc ----

// migrate_device_coherent_folio: moves device-coherent page pfn to a new system page (a
// long-term pin's check_and_migrate_movable_pages). The caller holds a reference, which the
// migration takes over, and no page lock. kOk when the page moved (or is no longer mapped:
// nothing to move), kBusy when it could not (locked elsewhere, referenced beyond its
// mappings, no memory for the copy).
Errno migrate_device_coherent_page(System* sys, uint64_t pfn);

// ---- mlock.cc: locked memory and resource limits (mm/mlock.c, mm/mmap.c) ----

// mlock_folio: one more locked mapping of the page: PG_mlocked is set at once (returns
// whether it was clear) and the page is queued in this CPU's mlock batch, which moves it to
// the unevictable list or raises its mlock_count when applied. munlock_folio: one locked
// mapping fewer, queued: when the batch brings the count to 0 the page stops being mlocked
// and returns to the evictable lists. As in Linux the count may undercount (a page the batch
// finds off the LRU is not counted); reclaim restores a lock lost that way. Both take a page
// reference for the batch and, when it is full, apply it under lru_lock: callable under the
// PTE lock, by a caller that holds a reference or the PTE lock of a PTE mapping the page.
bool mlock_folio(PhysMem& mem, Page* page);
void munlock_folio(PhysMem& mem, Page* page);
// A VMA's flags as an rmap walk reads them, without the mmap_lock (READ_ONCE): writers store
// them with vma_set_flags.
inline vm_flags_t vma_flags_racy(const Vma* vma) {
  return std::atomic_ref<const vm_flags_t>(vma->vm_flags).load(std::memory_order_relaxed);
}
// mlock_vma_folio: a page just mapped into vma is mlocked when vma is locked (and not
// special); munlock_vma_folio: a locked vma's mapping of the page goes.
inline void mlock_vma_folio(PhysMem& mem, Page* page, const Vma* vma) {
  if ((vma_flags_racy(vma) & (VM_LOCKED | VM_SPECIAL)) == VM_LOCKED) (void)mlock_folio(mem, page);
}
inline void munlock_vma_folio(PhysMem& mem, Page* page, const Vma* vma) {
  if (vma_flags_racy(vma) & VM_LOCKED) munlock_folio(mem, page);
}
// The process's soft limit of an RLIMIT_* resource.
uint64_t rlimit(Mm* mm, unsigned resource) REQUIRES_SHARED(mm->mmap_lock_);
// is_data_mapping: private, writable, not a stack (what RLIMIT_DATA counts).
bool is_data_mapping(vm_flags_t flags);
// total_vm, data_vm and locked_vm of the address space, summed over its VMAs (Linux keeps
// them as counters updated by vm_stat_account; the sums are the same).
VmCounts mm_vm_counts(Mm* mm) REQUIRES_SHARED(mm->mmap_lock_);
// may_expand_vm: whether npages more pages of a mapping with these flags stay within
// RLIMIT_AS and (for data) RLIMIT_DATA, with ignore_rlimit_data's soft-limit-0 exception.
bool may_expand_vm(Mm* mm, vm_flags_t flags, uint64_t npages) REQUIRES_SHARED(mm->mmap_lock_);
// can_do_mlock: CAP_IPC_LOCK or a non-zero RLIMIT_MEMLOCK.
bool can_do_mlock(Mm* mm) REQUIRES_SHARED(mm->mmap_lock_);
// mlock_future_ok: whether bytes more of a mapping with these flags may be locked.
bool mlock_future_ok(Mm* mm, vm_flags_t flags, uint64_t bytes) REQUIRES_SHARED(mm->mmap_lock_);

// ---- mmap.cc ----

// PROT_* (and a protection key) to VM_READ/WRITE/EXEC (calc_vm_prot_bits).
inline vm_flags_t calc_vm_prot_bits(uint64_t prot, int pkey) {
  vm_flags_t f = 0;
  if (prot & 0x1) f |= VM_READ;
  if (prot & 0x2) f |= VM_WRITE;
  if (prot & 0x4) f |= VM_EXEC;
  return f | (static_cast<vm_flags_t>(pkey) << kVmPkeyShift);
}

// __get_unmapped_area: checks a MAP_FIXED address, or finds room (honouring a free hint).
Result<uint64_t> get_unmapped_area(Mm* mm, uint64_t addr, uint64_t len, uint64_t flags) REQUIRES(mm->mmap_lock_);

// The overcommit check (security_vm_enough_memory_mm / __vm_enough_memory); charges on success.
bool vm_enough_memory(System* sys, int64_t pages);
void vm_unacct_memory(System* sys, int64_t pages);
pgprot_t vm_get_page_prot(vm_flags_t flags);
void vma_set_page_prot(Vma* vma);
// expand_downwards for a fault below a VM_GROWSDOWN VMA.
Errno expand_stack_locked(Vma* vma, uint64_t addr) REQUIRES(vma->vm_mm->mmap_lock_);
// Unmaps [start, end) (start aligned, end > start) under mmap_lock for write.
Errno do_vmi_align_munmap(Mm* mm, Vma* vma, uint64_t start, uint64_t end) REQUIRES(mm->mmap_lock_);
// Tears down the whole address space (exit_mmap).
void exit_mmap(Mm* mm);

// ---- mprotect.cc ----
// can_change_pte_writable: whether a PTE of a writable VMA may be made writable right away
// instead of waiting for a write fault (an exclusive anonymous page in a private mapping, a
// dirty page in a shared one).
bool can_change_pte_writable(Vma* vma, pteval_t pte);
enum CpFlags : unsigned { MM_CP_TRY_CHANGE_WRITABLE = 1u << 0 };
long change_protection(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, unsigned cp_flags)
    REQUIRES(vma->vm_mm->mmap_lock_);

}  // namespace mirrormm
