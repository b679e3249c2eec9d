// The LRU lists of user pages (mm/swap.c's role, the list half of mm/vmscan.c's, and
// include/linux/mm_inline.h's list helpers): which pages reclaim will look at, in which order.
//
// Every user page (anonymous, shmem page cache) goes on one of five lists of the machine's
// Lruvec when it is created; reclaim takes the oldest pages from a list's tail. Swap-backed
// pages (anonymous and shmem: PG_swapbacked) live on the anon lists, others on the file lists
// (folio_is_file_lru); PG_active picks the active or the inactive list of that type and
// PG_unevictable sends a page to the unevictable list.
//
// New pages reach the lists through per-CPU add batches (cpu_fbatches.lru_add): folio_add_lru
// appends the page to the batch of the CPU it runs on, and the batch moves to the list under
// one lru_lock hold when it fills (kFolioBatchSize pages) or is drained (lru_add_drain for
// this CPU, lru_add_drain_all for every CPU). A fault therefore appends to a per-CPU array
// instead of taking the global lru_lock. A page in a batch is not on a list yet: PG_lru is
// clear and the list sizes do not count it (as /proc/vmstat's nr_*_anon do not).
//
// Linux's batch takes a reference on each page (folio_get), dropped once the page is linked;
// the model's takes none, which spares two atomic operations per page. The page's LRU state
// (Page::lru_state) says instead that it is queued (kLruQueued), and Linux's reference shows
// where Linux's code would see it: folio_ref_count counts it. A page whose last reference
// goes while queued is not freed by the put: the free path marks it orphaned
// (kLruOrphaned) and the batch's drain, which finds it so, frees it.
//
// Reference and locking rules:
//  - PG_lru, PG_active and the links change under lru_lock while a page is on a list; a page
//    in an add batch gets PG_active under that batch's lock (folio_mark_accessed), before it
//    reaches a list. PG_referenced and PG_workingset are hints, set and cleared racily.
//  - lru_state changes under lru_lock, except when folio_add_lru queues a page: kNone to
//    kQueued, by a caller holding a reference to a page on no list.
//  - Whoever clears PG_lru (isolation) holds a page reference: the isolated page cannot be
//    freed, and putting it back (move_folios_to_lru) drops that reference.
//  - When a page's last reference goes while it is listed or queued, the free path takes
//    lru_lock: a listed page leaves its list before the frame returns to the pool
//    (__page_cache_release), a queued one is orphaned and left to its drain. Nobody lists or
//    queues a page without holding a reference, so the free path's unlocked test of lru_state
//    (zero or not) is stable.
//  - No page is freed with lru_lock held: a list operation that drops the last reference of a
//    page unlinks it and frees it after unlocking.
//  - The lock order is in mm/lock_order.h: lru_lock [65] nests inside the PTE lock, the
//    inode and swap-cache locks, and outside the per-CPU frame lists. The add batches' locks
//    share that rank and are never held together with lru_lock or with each other.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"
#include "mm/mm_types.h"
#include "mm/physmem.h"

namespace mirrormm {

// enum lru_list, in Linux's order (an anon or file base plus the active offset).
enum LruList : int {
  LRU_INACTIVE_ANON,
  LRU_ACTIVE_ANON,
  LRU_INACTIVE_FILE,
  LRU_ACTIVE_FILE,
  LRU_UNEVICTABLE,
  NR_LRU_LISTS
};

// The names /proc/vmstat gives the lists (without the "nr_" prefix).
inline constexpr std::array<std::string_view, NR_LRU_LISTS> kLruListNames = {
    "inactive_anon", "active_anon", "inactive_file", "active_file", "unevictable",
};

// Linux 6.18's PAGEVEC_SIZE (FOLIO_BATCH_SIZE): the pages a per-CPU LRU batch holds.
inline constexpr int kFolioBatchSize = 31;

// Whether the page belongs on the file lists: it is not swap-backed.
inline bool folio_is_file_lru(const Page* page) { return !page->test(PG_swapbacked); }

// The list the page's flags select (folio_lru_list).
inline LruList folio_lru_list(const Page* page) {
  const uint32_t flags = page->flags.load(std::memory_order_relaxed);  // one snapshot of the three
  if (flags & PG_unevictable) return LRU_UNEVICTABLE;
  const int base = (flags & PG_swapbacked) ? LRU_INACTIVE_ANON : LRU_INACTIVE_FILE;
  return static_cast<LruList>(base + ((flags & PG_active) ? 1 : 0));
}

// The LRU lists of one memory node (struct lruvec). One per PhysMem for now; a NUMA node
// would own one.
//
// Each list is doubly linked through the pages' lru_prev/lru_next (pfns, 0 at the ends), head
// = newest, tail = oldest. lru_lock guards the lists, their sizes, the links of every page on
// them, and PG_lru/PG_active of those pages. A page is on the list folio_lru_list() names
// for as long as PG_lru is set.
struct Lruvec {
  explicit Lruvec(PhysMem* m) : mem(m) {}
  Lruvec(const Lruvec&) = delete;
  Lruvec& operator=(const Lruvec&) = delete;

  struct List {
    pfn_t head = 0;  // newest
    pfn_t tail = 0;  // oldest: reclaim scans from here
    uint64_t nr = 0;
  };

  PhysMem* const mem;  // the machine whose frames the lists link (lruvec_pgdat); never changes
  SpinLock lru_lock{lock_class::kLruLock};
  std::array<List, NR_LRU_LISTS> lists GUARDED_BY(lru_lock);

  // lruvec_add_folio: links the page at the head of folio_lru_list(page). PG_lru is the
  // caller's to set.
  void add_folio(Page* page) REQUIRES(lru_lock);
  // lruvec_add_folio_tail: the same at the tail (the next page reclaim will see).
  void add_folio_tail(Page* page) REQUIRES(lru_lock);
  // lruvec_del_folio: unlinks the page from folio_lru_list(page), so the flags that select
  // the list must not have changed since it was linked.
  void del_folio(Page* page) REQUIRES(lru_lock);

  uint64_t size_locked(LruList lru) const REQUIRES(lru_lock) { return lists[lru].nr; }
  // The sizes of all lists, read under one hold of lru_lock.
  std::array<uint64_t, NR_LRU_LISTS> sizes() EXCLUDES(lru_lock);

  // Calls fn(page) for each page of a list from head (newest) to tail (oldest). fn must not
  // change the list.
  template <class Fn>
  void for_each_locked(LruList lru, Fn fn) REQUIRES(lru_lock) {
    for (pfn_t pfn = lists[lru].head; pfn != 0;) {
      Page* page = mem->pfn_to_page(pfn);
      pfn = page->lru_next;
      fn(page);
    }
  }

 private:
  void link(Page* page, LruList lru, bool at_head) REQUIRES(lru_lock);
};

// What an entry of an mlock batch asks for (the low bits Linux's mlock_fbatch keeps in the
// folio pointer): mlock a page that is on (or briefly off) the LRU, mlock a new page that is
// on no list yet, or munlock.
enum class MlockOp : uint8_t { kMunlock, kMlockLru, kMlockNew };

// The per-CPU LRU batches, one slot per software CPU indexed as the frame pool's per-CPU
// lists are (this_cpu_slot; threads that are not CPUs share the last slot): the add batch
// (cpu_fbatches.lru_add) and the mlock batch (mlock_fbatch, mm/mlock.cc). Each batch's lock
// is taken by threads running as its CPU and by drains of other CPUs (lru_add_drain_all), so
// it is almost never contended.
class LruAddBatches {
 public:
  static constexpr int kSlots = 64;
  struct MlockEntry {
    Page* page;
    MlockOp op;
  };
  struct alignas(64) Slot {
    SpinLock lock{lock_class::kLruLock};  // same rank as lru_lock; never held with it
    // Pages queued. Written under lock (load + store); atomic only so that a drain may skip
    // an empty slot without taking its lock (a page queued meanwhile waits for the next one).
    std::atomic<int> nr{0};
    Page* pages[kFolioBatchSize] GUARDED_BY(lock) = {};
    // The mlock batch, with the same rules: its own lock (never held with lock or lru_lock),
    // a count a drain may read without it, and entries holding a page reference each.
    SpinLock mlock_lock{lock_class::kLruLock};
    std::atomic<int> mlock_nr{0};
    MlockEntry mlock[kFolioBatchSize] GUARDED_BY(mlock_lock) = {};
  };
  Slot& slot(int i) { return slots_[i]; }
  Slot& this_cpu() { return slots_[this_cpu_slot(kSlots)]; }

 private:
  Slot slots_[kSlots];
};

// ---- mm/swap.c: adding pages, moving them between lists ----

// The tail of folio_add_lru when the page filled this CPU's batch (folio_batch_move_lru):
// takes the batch out under the slot's lock, which the caller holds and this releases, and
// moves it to the lists.
void lru_add_batch_full(PhysMem& mem, LruAddBatches::Slot& s) RELEASE(s.lock);

// folio_add_lru: queues a page that is on no list and in no batch for the LRU through this
// CPU's add batch (which takes no reference: see the file comment); moves the batch to the
// lists when it fills. The caller holds a reference. Callable under the PTE lock, the inode
// lock and the swap-cache lock.
inline void folio_add_lru(PhysMem& mem, Page* page) {
  MM_BUG_ON(page->lru_state.load(std::memory_order_relaxed) != kLruNone);
  MM_DEBUG_ON(page->test(PG_active) && page->test(PG_unevictable));
  page->lru_state.store(kLruQueued, std::memory_order_relaxed);
  LruAddBatches::Slot& s = mem.lru_add_batches().this_cpu();
  s.lock.lock();
  const int nr = s.nr.load(std::memory_order_relaxed) + 1;
  s.pages[nr - 1] = page;
  if (nr == kFolioBatchSize) [[unlikely]] {
    lru_add_batch_full(mem, s);
    return;
  }
  s.nr.store(nr, std::memory_order_relaxed);
  s.lock.unlock();
}
// mlock_new_folio (mm/mlock.cc): a page created for a locked VMA, on no list yet, becomes
// mlocked at once and reaches the unevictable list, with one counted lock, through this
// CPU's mlock batch instead of the add batch. The caller holds a reference.
void mlock_new_folio(PhysMem& mem, Page* page);
// The mlock half of a drain (mlock_drain_local/mlock_drain_remote, mm/mlock.cc): applies one
// CPU's queued mlocks and munlocks. Same calling rules as lru_add_drain_all.
void mlock_drain_slot(PhysMem& mem, LruAddBatches::Slot& s);
// The end of an mlock batch's move under lru_lock (folios_put's part for pages that may have
// lost their last other reference meanwhile): drops the batch's reference of each page; a page
// whose last reference that was leaves its list and is stored in dying (room for n), for the
// caller to free after releasing lru_lock. Returns how many were stored.
size_t drop_batch_refs_locked(Lruvec& lruvec, Page* const* pages, int n, Page** dying) REQUIRES(lruvec.lru_lock);
// folio_add_lru_vma (lru_cache_add_inactive_or_unevictable before 5.x): a new page mapped in
// vma; in a VM_LOCKED (and not VM_SPECIAL) VMA it goes to the unevictable list, otherwise to
// the inactive list of its type (new anonymous pages start inactive, as since Linux 5.9).
inline void folio_add_lru_vma(PhysMem& mem, Page* page, const Vma* vma) {
  if ((vma->vm_flags & (VM_LOCKED | VM_SPECIAL)) == VM_LOCKED) mlock_new_folio(mem, page);
  else folio_add_lru(mem, page);
}
// lru_add_drain: moves this CPU's add batch to the lists and applies its mlock batch. A
// thread that runs as no CPU stands for a process that may have faulted on any of them, so it
// drains every CPU's batches.
void lru_add_drain(PhysMem& mem);
// lru_add_drain_all: the same for every CPU's batch; empty ones are skipped without taking
// their lock. Callable wherever alloc_page is (the allocator's last resort before failing):
// with no lock of rank 65 or above held.
void lru_add_drain_all(PhysMem& mem);

// folio_mark_accessed (mark_page_accessed): a use of the page that software saw. An
// unreferenced page becomes referenced; a referenced inactive page is activated (on a list:
// moved to the active list, PGACTIVATE; in this CPU's add batch: marked PG_active, so the
// drain puts it on the active list) and loses PG_referenced; an active page keeps (or gets)
// PG_referenced. Unevictable pages stay where they are. The caller holds a reference.
void folio_mark_accessed(PhysMem& mem, Page* page);
// folio_activate: an inactive evictable page on a list moves to the head of its active list
// (PGACTIVATE). A page on no list is left alone. The caller holds a reference.
void folio_activate(PhysMem& mem, Page* page);
// folio_deactivate (MADV_COLD): an active evictable page on a list moves to the head of its
// inactive list and loses PG_active and PG_referenced (PGDEACTIVATE). The caller holds a
// reference.
void folio_deactivate(PhysMem& mem, Page* page);
// folio_mark_lazyfree (MADV_FREE): a swap-backed anonymous page on a list, neither in the
// swap cache nor unevictable, loses PG_swapbacked, PG_active and PG_referenced and moves to
// the head of the inactive file list (lru_lazyfree): reclaim may then drop it without
// writing it anywhere, unless it is written again first (its PTE's dirty bit). The caller
// holds a reference and the page's PTE lock (so that no fault maps it meanwhile).
void folio_mark_lazyfree(PhysMem& mem, Page* page);

// ---- mm/vmscan.c: isolation and putback ----

// folio_isolate_lru: takes the page off its list for the caller (migration, reclaim of one
// page). Takes a reference (get_page_unless_zero: a page on its way to the free list cannot
// be isolated), clears PG_lru and unlinks under lru_lock. Returns false, holding nothing,
// when the page is on no list.
bool folio_isolate_lru(PhysMem& mem, Page* page);
// folio_putback_lru: puts an isolated page back on the list its flags select and drops the
// isolation reference (the page is freed if that was the last one).
void folio_putback_lru(PhysMem& mem, Page* page);
// isolate_lru_folios: reclaim's scanner. Looks at up to nr_to_scan pages from the tail
// (oldest end) of list `lru` under one lru_lock hold; each page that still has a reference
// is isolated (a reference taken, PG_lru cleared, unlinked) and appended to *dst; a page whose
// refcount is 0 is being freed and is moved to the head instead. Stores the pages looked at
// in *nr_scanned when it is not null. Returns the number isolated. Scan statistics are the
// caller's to count.
size_t isolate_lru_folios(Lruvec& lruvec, LruList lru, size_t nr_to_scan, std::vector<Page*>* dst,
                          size_t* nr_scanned = nullptr) EXCLUDES(lruvec.lru_lock);
// move_folios_to_lru: puts isolated pages back, each at the head of the list its flags
// select, under one lru_lock hold, and drops their isolation references; pages whose last
// reference that was are freed after the lock is released. Returns the number put back.
size_t move_folios_to_lru(Lruvec& lruvec, Page* const* pages, size_t n) EXCLUDES(lruvec.lru_lock);

// ---- the free path (PhysMem) ----

// __page_cache_release for the pages of a batch whose last reference went, under one
// lru_lock hold: those on a list leave it and lose PG_lru; those still queued in an add
// batch are orphaned (its drain frees them) and removed from pages. Returns how many are
// left, at the front of pages: the frames the caller frees.
size_t page_cache_release(Lruvec& lruvec, Page** pages, size_t n) EXCLUDES(lruvec.lru_lock);

// ---- checkers (quiescent points) ----

// Calls fn(page) once per reference held by a per-CPU batch: the mlock batches' entries (the
// add batches hold none).
template <class Fn>
void debug_for_each_lru_batched(PhysMem& mem, Fn fn);
// Checks every list: links consistent in both directions, each page PG_lru, on the list its
// flags select, not free, and each size equal to the number of pages linked. Calls
// bad(message) for each problem found.
void debug_check_lru(PhysMem& mem, const std::function<void(const std::string&)>& bad);

template <class Fn>
void debug_for_each_lru_batched(PhysMem& mem, Fn fn) {
  for (int i = 0; i < LruAddBatches::kSlots; i++) {
    LruAddBatches::Slot& s = mem.lru_add_batches().slot(i);
    SpinGuard g(s.mlock_lock);
    const int nr = s.mlock_nr.load(std::memory_order_relaxed);
    for (int k = 0; k < nr; k++) fn(s.mlock[k].page);
  }
}

}  // namespace mirrormm
