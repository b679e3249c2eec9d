// Faults, zapping and fork's page-table copy (mm/memory.c), and the x86 fault entry.
//
// Reference rules: every PTE that maps a normal page (not the zero page) holds one page
// reference and one mapcount. Anonymous pages carry PG_anon with mapping = anon_vma and
// index = linear page index; PG_anon_exclusive marks a page mapped by exactly one process,
// which a write fault may reuse instead of copying.
#include <algorithm>
#include <cstring>
#include <optional>
#include <thread>
#include <vector>

#include "mirrormm/base/tsan.h"
#include "mirrormm/device_file.h"
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/memremap.h"
#include "mm/migrate.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

PhysMem& mem_of(const Vma* vma) { return vma->vm_mm->mem(); }

// The page a PTE maps, or nullptr for the zero page (vm_normal_page).
Page* vm_normal_page(const Vma* vma, pteval_t v) {
  if (pte_special(v)) return nullptr;
  return mem_of(vma).pfn_to_page(pte_pfn(v));
}

bool is_cow_mapping(vm_flags_t f) { return (f & (VM_SHARED | VM_MAYWRITE)) == VM_MAYWRITE; }

// vmf_anon_prepare: the VMA needs an anon_vma before it maps a private page. Under the per-VMA
// lock only an existing one can be used; creating one needs the mmap_lock (RETRY).
unsigned vmf_anon_prepare(Vma* vma, unsigned flags) {
  if (vma->anon_vma.load(std::memory_order_acquire)) return VM_FAULT_OK;
  if (flags & FAULT_FLAG_VMA_LOCK) return VM_FAULT_RETRY;
  mmap_assert_locked(vma->vm_mm);  // the contract of the non-VMA_LOCK path
  return anon_vma_prepare(vma) == Errno::kOk ? VM_FAULT_OK : VM_FAULT_OOM;
}

// folio_add_new_anon_rmap for a page this fault allocated: it becomes exclusive to the VMA.
// The page is on no list, in no cache and no PTE maps it yet; the only other code that can
// reach it is a speculative reference by frame number (device_access_pfn's
// get_page_unless_zero), which reads the flags and never writes them. So nobody else writes
// its flags until set_pte publishes it, and they are set with a plain load and store
// (Linux's __folio_set_swapbacked), as init_page set them.
void page_add_new_anon_rmap(Page* page, Vma* vma, uint64_t addr) {
  page->mapping = vma->anon_vma;
  page->index = vma->linear_page_index(addr);
  const uint32_t flags = page->flags.load(std::memory_order_relaxed);
  MM_DEBUG_ON((flags & (PG_swapcache | PG_free)) || page->test(PG_lru));
  // A droppable VMA's pages are not swap-backed: they live on the file lists and reclaim
  // drops them, dirty or not, instead of writing them to swap.
  const uint32_t swapbacked = (vma->vm_flags & VM_DROPPABLE) ? 0u : uint32_t{PG_swapbacked};
  page->flags.store(flags | PG_anon | PG_anon_exclusive | swapbacked, std::memory_order_relaxed);
  page->mapcount.store(1, std::memory_order_relaxed);
}

// Whether a fault may install into the entry it found none: the recheck under the PTE lock
// that every installing path makes after its unlocked read (another fault may have mapped the
// address meanwhile). DebugBreak::kNoPteNoneRecheck removes it, for the checkers' tests.
bool pte_still_none(const Vma* vma, const pte_t* ptep) {
  return pte_none(ptep_get(ptep)) || vma->vm_mm->sys()->debug_broken(System::DebugBreak::kNoPteNoneRecheck);
}

// Maps a new anonymous page at addr (folio_add_new_anon_rmap + set_pte_at, the tail of
// do_anonymous_page, do_cow_fault): the page becomes exclusive to this VMA, and the reference
// the caller allocated it with is the PTE's. Takes the PTE lock; when another fault mapped
// the address first, the page is dropped instead.
void install_new_anon_page(Vma* vma, uint64_t addr, pte_t* ptep, Page* page, pteval_t entry) {
  Mm* mm = vma->vm_mm;
  {
    SpinGuard g(pte_lockptr(mm, ptep));
    if (pte_still_none(vma, ptep)) {
      page_add_new_anon_rmap(page, vma, addr);
      folio_add_lru_vma(mem_of(vma), page, vma);
      mm->add_rss(MM_ANONPAGES, 1);
      set_pte(ptep, entry);
      return;
    }
  }
  mem_of(vma).put_page(page);  // lost a race
}

// do_anonymous_page: the PTE was none in a private anonymous VMA.
unsigned do_anonymous_page(Vma* vma, uint64_t addr, pte_t* ptep, unsigned flags) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mem_of(vma);
  if (vma->vm_flags & VM_SHARED) return VM_FAULT_SIGBUS;
  if (!(flags & FAULT_FLAG_WRITE)) {
    // Reads map the shared zero page; no anon_vma is needed.
    pteval_t entry = pte_mkspecial(pfn_pte(mem.zero_pfn(), vma->vm_page_prot));
    SpinGuard g(pte_lockptr(mm, ptep));
    if (pte_still_none(vma, ptep)) set_pte(ptep, entry);
    return VM_FAULT_OK;
  }
  if (unsigned r = vmf_anon_prepare(vma, flags)) return r;
  Page* page = mem.alloc_page(Zero::kYes, Gfp::kUser);
  if (!page) return VM_FAULT_OOM;
  pteval_t entry = pfn_pte(mem.page_to_pfn(page), vma->vm_page_prot);
  if (vma->vm_flags & VM_WRITE) entry = pte_mkwrite(pte_mkdirty(entry));
  install_new_anon_page(vma, addr, ptep, page, entry);
  return VM_FAULT_OK;
}

// The first page offset wholly beyond the end of the file (DIV_ROUND_UP(i_size, PAGE_SIZE)).
uint64_t file_end_pgoff(const ShmemInode* inode) { return page_align(inode->size()) >> kPageShift; }

// Maps page-cache page `page` (carrying the reference the PTE will hold) at ptep, with the
// PTE lock held: set_pte_range + folio_add_file_rmap_pte.
void set_file_pte(Vma* vma, pte_t* ptep, Page* page, unsigned flags) {
  pteval_t entry = pfn_pte(mem_of(vma).page_to_pfn(page), vma->vm_page_prot);
  if (flags & FAULT_FLAG_WRITE) entry = pte_mkdirty(pte_mkwrite(entry));
  page->mapcount.fetch_add(1, std::memory_order_relaxed);
  vma->vm_mm->add_rss(MM_SHMEMPAGES, 1);
  set_pte(ptep, entry);
  mlock_vma_folio(mem_of(vma), page, vma);  // folio_add_file_rmap_ptes
}

// Whether every entry of the PTE table at `table` is none. Caller holds the table's PTE lock.
bool table_is_empty(const pte_t* table) {
  for (uint64_t i = 0; i < kPtrsPerTable; i++)
    if (!pte_none(ptep_get(table + i))) return false;
  return true;
}

// Linux's fault_around_bytes (64 KiB, its default): the window a read fault maps around.
constexpr uint64_t kFaultAroundPages = (64 * 1024) >> kPageShift;

// do_fault_around + filemap_map_pages (shmem's vm_ops->map_pages): before a read fault of a
// file mapping calls ->fault, it maps the pages of the surrounding window that the page cache
// already holds, so that a sequential reader takes one fault per window. The window starts at
// the fault_around_bytes-aligned address at or below addr, or at the VMA's start if that is
// later, and spans fault_around_bytes, clipped to the VMA, to the PTE table and to the file's
// size; only entries that are none get a page (next_uptodate_folio also skips pages
// that are not uptodate, locked or truncated: cached pages are always uptodate here, nobody
// else locks a page that is still cached, and the size recheck under the PTE lock covers
// truncation, whose unmap comes after the size changes). The pages are mapped as a read fault
// maps them, read-only in a private mapping; the rmap counts them like any fault's. Returns
// whether addr itself got mapped (VM_FAULT_NOPAGE: then ->fault is not called).
//
// One rule depends on whether Linux would have a PTE table here (pmd_none): it allocates
// tables lazily, when it maps something, and a regular file's fault-around whose first page
// holds the end of the file installs none. The model allocates the table at every fault, so
// a table with no entry stands for none (table_is_empty; a table emptied by a zap, which
// Linux keeps, is taken as none too). The table is scanned only in that rare case.
bool do_fault_around(Vma* vma, uint64_t addr, pte_t* ptep) {
  Mm* mm = vma->vm_mm;
  ShmemInode* inode = vma->vm_file->inode;
  const uint64_t pte_off = index_at(addr, kPteShift);
  const uint64_t vma_off = (addr - vma->vm_start) >> kPageShift;
  const uint64_t from = std::max(pte_off & ~(kFaultAroundPages - 1), pte_off - std::min(pte_off, vma_off));
  const uint64_t to = std::min({from + kFaultAroundPages, uint64_t{kPtrsPerTable}, pte_off + vma->pages() - vma_off});
  const uint64_t first_pgoff = vma->linear_page_index(addr) - (pte_off - from);
  pte_t* base = ptep - pte_off;
  SpinGuard g(pte_lockptr(mm, ptep));
  const uint64_t end_pgoff = file_end_pgoff(inode);
  bool first = true;
  for (uint64_t i = from; i < to; i++) {
    const uint64_t pgoff = first_pgoff + (i - from);
    if (pgoff >= end_pgoff) break;
    if (!pte_none(ptep_get(base + i))) continue;  // filemap_map_order0_folio leaves it alone
    // filemap_map_pages: pages in memory only; a swapped-out one is left to ->fault.
    Page* page = inode->filemap_get_folio(pgoff);  // the reference the PTE will hold
    if (!page) continue;
    // filemap_map_pages does not let a regular file's page that holds the end of the file
    // be mapped with a PMD (SIGBUS semantics; shmem is exempt): when that is the first page
    // it finds, it skips filemap_map_pmd, which is also what installs a new PTE table, so
    // with no table before the fault nothing is mapped.
    if (first && inode->is_regular() && pgoff + 1 == end_pgoff && table_is_empty(base)) {
      mem_of(vma).put_page(page);
      break;
    }
    first = false;
    set_file_pte(vma, base + i, page, 0);
  }
  return !pte_none(ptep_get(ptep));
}

// do_sync_mmap_readahead for a fault that misses a regular file's page cache. The host
// runner maps regular files with MADV_RANDOM (VM_RAND_READ: no readahead), but Linux 6.18
// still reads ahead for an executable mapping when the faulting page is not in the cache:
// from it on, up to readahead_max_pages pages, the end of the VMA or the end of the file
// (whichever comes first), skipping pages already cached. Before both, a VM_HUGEPAGE
// mapping (MADV_HUGEPAGE) reads "even if readahead is disabled" the PMD-sized window around
// the page: the 512 pages from its 2 MiB-aligned file offset, up to the end of the file.
void filemap_fault_readahead(Vma* vma, ShmemInode* inode, uint64_t pgoff) {
  // A page in the cache, even one not uptodate, is read by the fault itself.
  if (!inode->is_regular() || inode->has_folio(pgoff)) return;
  if (vma->vm_flags & VM_HUGEPAGE) {
    constexpr uint64_t kPmdPages = kPmdSize >> kPageShift;
    force_page_cache_ra(inode, pgoff & ~(kPmdPages - 1), kPmdPages);
    return;
  }
  if (!(vma->vm_flags & VM_EXEC)) return;
  const uint64_t vma_end = vma->vm_pgoff + vma->pages();
  force_page_cache_ra(inode, pgoff, vma_end - pgoff);
}

// do_fault for a shared-memory file mapping: do_read_fault (fault-around first), do_cow_fault
// (private write) or do_shared_fault (shared write). Writes do no fault-around.
unsigned do_shmem_fault(Vma* vma, uint64_t addr, pte_t* ptep, unsigned flags) {
  PhysMem& mem = mem_of(vma);
  ShmemInode* inode = vma->vm_file->inode;
  const uint64_t pgoff = vma->linear_page_index(addr);
  const bool write = flags & FAULT_FLAG_WRITE;

  if (write && !(vma->vm_flags & VM_SHARED)) {
    // do_cow_fault: a private copy of the file page. The anon_vma comes first, so a write
    // beyond the end of the file leaves the VMA faulted even though it gets SIGBUS.
    if (unsigned r = vmf_anon_prepare(vma, flags)) return r;
    if (pgoff >= file_end_pgoff(inode)) return VM_FAULT_SIGBUS;
    filemap_fault_readahead(vma, inode, pgoff);
    Page* src = inode->find_or_create_page(pgoff);
    if (!src) return VM_FAULT_OOM;
    Page* page = mem.alloc_page(Zero::kNo, Gfp::kUser);
    if (!page) {
      mem.put_page(src);
      return VM_FAULT_OOM;
    }
    MM_TSAN_IGNORE_BEGIN();  // the source may be written through a shared mapping meanwhile
    std::memcpy(mem.page_address(page), mem.page_address(src), kPageSize);
    MM_TSAN_IGNORE_END();
    mem.put_page(src);
    pteval_t entry = pte_mkwrite(pte_mkdirty(pfn_pte(mem.page_to_pfn(page), vma->vm_page_prot)));
    install_new_anon_page(vma, addr, ptep, page, entry);
    return VM_FAULT_OK;
  }

  // do_read_fault maps the cached neighbours (and addr itself, when cached) before ->fault,
  // even when addr lies beyond the end of the file and the fault ends in SIGBUS.
  if (!write && do_fault_around(vma, addr, ptep)) return VM_FAULT_OK;
  if (pgoff >= file_end_pgoff(inode)) return VM_FAULT_SIGBUS;
  filemap_fault_readahead(vma, inode, pgoff);
  bool major = false;
  Page* page = inode->find_or_create_page(pgoff, &major);  // the reference the PTE will hold
  if (!page) return VM_FAULT_OOM;
  if (major && inode->is_regular()) mem.events().count(PGMAJFAULT);  // filemap_fault read it
  if (!write && inode->is_regular() && do_fault_around(vma, addr, ptep)) {
    // The fault-around above found no uptodate page at addr, so filemap_fault had to read: it
    // dropped the mmap_lock for the I/O (maybe_unlock_mmap_for_io) and returned
    // VM_FAULT_RETRY. The retried fault (FAULT_FLAG_TRIED) starts with fault-around again,
    // which now maps this page and what the read brought in with it (an executable
    // mapping's readahead) in the same window.
    mem.put_page(page);
    return VM_FAULT_OK;
  }
  // ->fault returns the page locked (filemap_fault's VM_FAULT_LOCKED), and finish_fault maps
  // it before it is unlocked. A page that truncation or a punched hole took from the cache
  // meanwhile (release_cache_page clears its mapping under the page lock) is not mapped: the
  // access retries. One that is still there when the PTE is set is mapped before the
  // removal, whose unmap that follows it then takes the PTE away again. Without the lock, a
  // page looked up before a hole was punched could be mapped after the hole's last unmap:
  // a mapped page that is in no cache, which no reverse-map walk finds.
  // do_shared_fault: a write-notify mapping's ->page_mkwrite marks the page dirty under the
  // same lock, held until the PTE is writable (writeback, holding the lock, then sees either
  // a clean page with no writable PTE or the dirty one).
  const bool mkwrite = write && vma_wants_writenotify(vma);
  lock_page(page);
  if (page->mapping != inode) {
    unlock_page(page);
    mem.put_page(page);
    return VM_FAULT_OK;
  }
  if (write) page->set(PG_dirty);  // fault_dirty_shared_page (folio_mark_dirty)
  unsigned ret = VM_FAULT_OK;
  bool mapped = false;
  {
    SpinGuard g(pte_lockptr(vma->vm_mm, ptep));
    // Recheck the size under the PTE lock: a truncate that shrank the file either finished
    // its unmap before we took the lock (then we see the new size) or will remove this entry.
    if (pgoff >= file_end_pgoff(inode)) {
      ret = VM_FAULT_SIGBUS;
    } else if (pte_still_none(vma, ptep)) {
      set_file_pte(vma, ptep, page, flags);  // finish_fault
      mapped = true;
    }
  }
  unlock_page(page);
  if (mkwrite) balance_dirty_pages_ratelimited(vma->vm_mm->sys());
  if (!mapped) mem.put_page(page);
  return ret;
}

// wp_page_reuse: the write-protected PTE becomes writable, dirty and young in place, and
// the secondary TLBs that may cache it read-only are told (mmu_notifier_pte_upgrade). Called
// with the PTE lock held.
void wp_page_reuse(Mm* mm, uint64_t addr, pte_t* ptep) {
  ptep->fetch_or(_PAGE_RW | _PAGE_DIRTY | _PAGE_ACCESSED, std::memory_order_acq_rel);
  mmu_notifier_pte_upgrade(mm, addr);
}

// wp_page_shared for a write-notify mapping: the write-protected PTE maps a clean page (or
// one writeback cleaned). do_page_mkwrite marks the page dirty under the page lock, then the
// PTE becomes writable and dirty if it is still the one that faulted (wp_page_reuse). Called
// with the PTE lock held; returns with it released.
unsigned wp_page_shared(Vma* vma, uint64_t addr, pte_t* ptep, pteval_t orig, SpinLock& ptl, Page* page)
    RELEASE(ptl) {
  PhysMem& mem = mem_of(vma);
  mem.get_page(page);
  ptl.unlock();
  lock_page(page);  // ranks above the PTE lock: taken with it released
  if (page->mapping == vma->vm_file->inode) {
    page->set(PG_dirty);
    SpinGuard g(ptl);
    if (ptep_get(ptep) == orig) wp_page_reuse(vma->vm_mm, addr, ptep);
  }
  unlock_page(page);
  mem.put_page(page);
  balance_dirty_pages_ratelimited(vma->vm_mm->sys());
  return VM_FAULT_OK;
}

// do_wp_page: a write to a present, write-protected PTE of a writable VMA. Called with the
// PTE lock held; returns with it released (the guard is the caller's, passed by reference).
//
// With FAULT_FLAG_UNSHARE (a read pin of a shared anonymous page) the page becomes exclusive
// to this mapping the same way, reused or copied, but the PTE stays read-only.
unsigned do_wp_page(Vma* vma, uint64_t addr, pte_t* ptep, pteval_t orig, SpinLock& ptl, unsigned flags)
    RELEASE(ptl) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mem_of(vma);
  Page* old = vm_normal_page(vma, orig);
  const bool unshare = flags & FAULT_FLAG_UNSHARE;
  // wp_page_reuse, or only the exclusivity for an unshare fault.
  auto reuse = [&] {
    if (!unshare) wp_page_reuse(vma->vm_mm, addr, ptep);
  };

  if (vma->vm_flags & VM_SHARED) {
    if (unshare) {
      ptl.unlock();
      return VM_FAULT_OK;
    }
    if (old && vma_wants_writenotify(vma)) return wp_page_shared(vma, addr, ptep, orig, ptl, old);
    // wp_page_shared: shared memory needs no copy; make the entry writable and dirty.
    if (old) old->set(PG_dirty);
    wp_page_reuse(vma->vm_mm, addr, ptep);
    ptl.unlock();
    return VM_FAULT_OK;
  }
  if (old && old->test(PG_anon)) {
    // wp_can_reuse_anon_folio: an exclusive page, or one nobody else references.
    if (!old->test(PG_anon_exclusive) && !old->test(PG_lru)) lru_add_drain(mem);  // an add batch's reference
    if (old->test(PG_anon_exclusive) || folio_ref_count(old) == 1) {
      old->set(PG_anon_exclusive);
      reuse();
      ptl.unlock();
      return VM_FAULT_OK;
    }
  }
  if (old) mem.get_page(old);  // keep the source alive while copying unlocked
  ptl.unlock();
  if (old && old->test(PG_anon) && old->test(PG_swapcache) && folio_ref_count(old) == 3) {
    // Referenced by this PTE, the swap cache and us only: wp_can_reuse_anon_folio drops a
    // swap-cache copy that no swap PTE needs and then reuses the page. The page lock that
    // takes ranks above the PTE lock, so it is taken here, and the entry rechecked after.
    lock_page(old);
    if (old->test(PG_swapcache)) folio_free_swap(mm->sys(), old);
    unlock_page(old);
    SpinGuard g(ptl);
    if (ptep_get(ptep) != orig) {
      mem.put_page(old);
      return VM_FAULT_OK;  // changed meanwhile: the access retries
    }
    if (folio_ref_count(old) == 2) {  // this PTE's and ours
      old->set(PG_anon_exclusive);
      reuse();
      mem.put_page(old);
      return VM_FAULT_OK;
    }
  }

  // wp_page_copy.
  unsigned ret = VM_FAULT_OK;
  Page* page = nullptr;
  if (unsigned r = vmf_anon_prepare(vma, flags)) {
    ret = r;
  } else if (!(page = mem.alloc_page(old ? Zero::kNo : Zero::kYes, Gfp::kUser))) {
    ret = VM_FAULT_OOM;
  } else {
    if (old) {
      MM_TSAN_IGNORE_BEGIN();  // other mappings of the old page may write it meanwhile
      std::memcpy(mem.page_address(page), mem.page_address(old), kPageSize);
      MM_TSAN_IGNORE_END();
    }
    pteval_t entry = pfn_pte(mem.page_to_pfn(page), vma->vm_page_prot);
    if (!unshare) entry = pte_mkwrite(pte_mkdirty(entry));
    // The old translation (a shared page, the zero page) is replaced by the copy.
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, addr & kPageMask, (addr & kPageMask) + kPageSize);
    SpinGuard g(ptl);
    if (ptep_get(ptep) == orig) {
      // ptep_clear_flush, then the new entry.
      pteval_t was = ptep_get_and_clear(ptep);
      mmu_checker_pte_change(mm, addr, was, 0);
      flush_tlb_page(mm, addr);
      page_add_new_anon_rmap(page, vma, addr);
      folio_add_lru_vma(mem, page, vma);
      if (!old) {
        mm->add_rss(MM_ANONPAGES, 1);
      } else if (!old->test(PG_anon)) {
        mm->add_rss(MM_SHMEMPAGES, -1);
        mm->add_rss(MM_ANONPAGES, 1);
      }
      set_pte(ptep, entry);
      page = nullptr;
      if (old) {
        if (pte_dirty(was) && old->test(PG_shmem)) old->set(PG_dirty);
        old->mapcount.fetch_sub(1, std::memory_order_relaxed);
        munlock_vma_folio(mem, old, vma);  // folio_remove_rmap_pte
        mem.put_page(old);  // the old PTE's reference
      }
    }
  }
  if (page) mem.put_page(page);  // not mapped
  if (old) mem.put_page(old);
  return ret;
}

// should_try_to_free_swap: after a swap-in, whether the swap-cache copy should go (it can
// only if no other swap PTE references the slot; folio_free_swap checks that). Always after
// an exclusive write fault (the page is about to diverge from its slot), otherwise only when
// swap is more than half full or the VMA is locked.
bool should_try_to_free_swap(System* sys, const Vma* vma, unsigned flags, bool exclusive) {
  if (vm_swap_full(sys) || (vma->vm_flags & VM_LOCKED)) return true;
  return (flags & FAULT_FLAG_WRITE) && exclusive;
}

// do_swap_page: the PTE holds a swap entry of a swap device. The page comes from the swap
// cache or is read into it; exactly one page exists per entry, because a reader first claims
// the entry's SWAP_HAS_CACHE (swapcache_prepare) and a second fault that finds it claimed
// waits until the page is in the cache. The page is mapped under its page lock once the PTE
// is found unchanged under the PTE lock; a fault that finds it changed backs out.
unsigned do_swap_page(Vma* vma, uint64_t addr, pte_t* ptep, pteval_t orig, unsigned flags) {
  Mm* mm = vma->vm_mm;
  System* sys = mm->sys();
  PhysMem& mem = mem_of(vma);
  const pteval_t entry = pte_to_swp_entry(orig);
  auto pte_unchanged = [&] {
    SpinGuard g(pte_lockptr(mm, ptep));
    return ptep_get(ptep) == orig;
  };
  SwapInfo* si = get_swap_device(sys, entry);
  if (!si) return pte_unchanged() ? VM_FAULT_SIGBUS : VM_FAULT_OK;  // a stale or bad entry
  bool major = false;
  Page* page = nullptr;
  for (;;) {
    const SwapinStatus st = read_swap_cache_locked(sys, si, entry, Gfp::kUser, &page, &major);
    if (st == SwapinStatus::kOk) break;
    if (st == SwapinStatus::kBusy && pte_unchanged()) {
      explore_hook::wait_yield();  // wait for the other swap-in of this entry
      continue;
    }
    put_swap_device(si);
    switch (st) {
      case SwapinStatus::kNoMem: return VM_FAULT_OOM;
      case SwapinStatus::kIoError: return VM_FAULT_SIGBUS;
      default: return VM_FAULT_OK;  // the PTE changed, or the slot no longer holds the entry
    }
  }
  put_swap_device(si);  // the page's HAS_CACHE use keeps the device on from here

  bool mapped = false;
  {
    SpinGuard g(pte_lockptr(mm, ptep));
    if (ptep_get(ptep) == orig) {
      const bool exclusive = pte_swp_exclusive(orig);
      swap_free(sys, entry);
      // The cache copy goes first when it may (folio_free_swap refuses while another swap
      // PTE references the slot); then Linux's rule: the page is ours alone when the swap
      // PTE said exclusive, or when nobody but this fault holds a reference.
      if (should_try_to_free_swap(sys, vma, flags, exclusive)) folio_free_swap(sys, page);
      const bool reuse = exclusive || folio_ref_count(page) == 1;
      pteval_t pte = pfn_pte(mem.page_to_pfn(page), vma->vm_page_prot);
      if (reuse && (vma->vm_flags & VM_WRITE)) {
        pte = pte_mkwrite(pte);
        if (flags & FAULT_FLAG_WRITE) pte = pte_mkdirty(pte);
      }
      if (!page->test(PG_anon)) {
        // __folio_set_anon: a page not exclusive to this VMA takes the oldest anon_vma.
        AnonVma* av = vma->anon_vma.load(std::memory_order_acquire);
        MM_BUG_ON(!av);  // a swap entry is only ever installed in a VMA with an anon_vma
        page->mapping = reuse ? av : av->root;
        page->index = vma->linear_page_index(addr);
        page->set(PG_anon);
      }
      if (reuse) page->set(PG_anon_exclusive);
      else page->clear(PG_anon_exclusive);
      page->mapcount.fetch_add(1, std::memory_order_relaxed);
      mm->add_rss(MM_ANONPAGES, 1);
      mm->add_rss(MM_SWAPENTS, -1);
      set_pte(ptep, pte);  // was a swap entry: nothing was accessible through it
      mlock_vma_folio(mem, page, vma);  // folio_add_anon_rmap_ptes
      mapped = true;
    }
  }
  // A fault that lost the race tries to free the cache copy too, so that a page whose last
  // swap PTE went meanwhile does not stay cached for nothing.
  if (!mapped) folio_free_swap(sys, page);
  unlock_page(page);
  if (!mapped) mem.put_page(page);  // else the PTE holds the fault's reference
  if (major) mem.events().count(PGMAJFAULT);
  return VM_FAULT_OK;
}

// do_swap_page's device-private case: the entry names a page of device memory the CPU cannot
// access. The page's driver moves it back (migrate_to_ram) with the page locked and a
// reference held, and the access retries. A page whose lock is taken (its migration is under
// way) is waited for instead. migrate_to_ram needs the mmap_lock: under the VMA lock the
// fault retries under it, as Linux 6.18 does.
unsigned do_device_private_fault(Vma* vma, uint64_t addr, pte_t* ptep, pteval_t orig, unsigned flags) {
  if (flags & FAULT_FLAG_VMA_LOCK) return VM_FAULT_RETRY;
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mem_of(vma);
  Page* page = mem.pfn_to_page(device_private_entry_pfn(orig));
  {
    SpinGuard g(pte_lockptr(mm, ptep));
    if (ptep_get(ptep) != orig) return VM_FAULT_OK;  // changed meanwhile: retry
    // A trylock under the PTE lock, as Linux takes it (trylock_page_batch: the migration
    // this lock is held for holds the locks of a batch of pages).
    if (!trylock_page_batch(page)) {
      page = nullptr;
    } else {
      mem.get_page(page);  // the entry holds one, so the page cannot be freed meanwhile
    }
  }
  if (!page) {
    // Locked by a migration: wait for it as for a migration entry, then retry.
    const Page* p = mem.pfn_to_page(device_private_entry_pfn(orig));
    while (p->flags.load(std::memory_order_acquire) & PG_locked) explore_hook::wait_yield();
    return VM_FAULT_OK;
  }
  DevPagemap* pgmap = page_pgmap(page);
  DeviceFault vmf;
  vmf.mm = mm;
  vmf.vma = vma;
  vmf.address = addr;
  vmf.pfn = mem.page_to_pfn(page);
  vmf.write = flags & FAULT_FLAG_WRITE;
  const Errno err = pgmap->ops->migrate_to_ram(pgmap, vmf);
  unlock_page(page);
  mem.put_page(page);
  if (err == Errno::kOk) return VM_FAULT_OK;
  return err == Errno::kNoMem ? VM_FAULT_OOM : VM_FAULT_SIGBUS;
}

// remove_device_exclusive_entry: a CPU access to a page a device holds exclusively
// (make_device_exclusive) takes it back. The page is locked (waiting for a
// make_device_exclusive or migration that holds it), the device is told with an invalidation
// of the page (MMU_NOTIFY_CLEAR, no owner, so that its driver does not filter it out), and
// the PTE comes back if the entry is still there; then the access retries. The reference
// taken first keeps the page from being freed (and the lock from being taken on a reused
// frame for nothing) while its entry may be zapped meanwhile.
unsigned remove_device_exclusive_entry(Vma* vma, uint64_t addr, pte_t* ptep, pteval_t orig) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mem_of(vma);
  Page* page = mem.pfn_to_page(device_exclusive_entry_pfn(orig));
  if (!PhysMem::get_page_unless_zero(page)) return VM_FAULT_OK;  // gone meanwhile: retry
  lock_page(page);  // ranks below the mmap_lock and the VMA lock, above nothing held here
  {
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, mm, addr, addr + kPageSize);
    SpinGuard g(pte_lockptr(mm, ptep));
    if (ptep_get(ptep) == orig) restore_exclusive_pte(vma, page, addr, ptep, orig);
  }
  unlock_page(page);
  mem.put_page(page);
  return VM_FAULT_OK;
}

}  // namespace

Errno vm_insert_page(Vma* vma, uint64_t addr, uint64_t pfn) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mem_of(vma);
  if (addr < vma->vm_start || addr >= vma->vm_end || offset_in_page(addr)) return Errno::kFault;
  if (!mem.valid_pfn(pfn)) return Errno::kInval;
  Page* page = mem.pfn_to_page(pfn);
  // validate_page_before_insert: a page with no reference (free), an anonymous page, a page
  // of some page cache, a page table, device memory or the zero page cannot be a driver's.
  const uint32_t f = page->flags.load(std::memory_order_acquire);
  if (page->refcount.load(std::memory_order_acquire) <= 0 ||
      (f & (PG_free | PG_anon | PG_shmem | PG_pgtable | PG_reserved)) || is_zone_device_page(page))
    return Errno::kInval;
  // The first insertion makes the VMA a mixed map; the caller holds the mmap_lock for
  // write (vm_flags_set's rule), as an mmap hook does.
  if (!(vma->vm_flags & VM_MIXEDMAP)) {
    mmap_assert_write_locked(mm);
    MM_BUG_ON(vma->vm_flags & VM_PFNMAP);
    vma_add_flags(vma, VM_MIXEDMAP);
  }
  pte_t* ptep = pte_alloc(mm, addr, Gfp::kUser);
  if (!ptep) return Errno::kNoMem;
  // insert_page_into_pte_locked: mk_pte with the VMA's protection; the PTE holds a
  // reference and a file mapcount (folio_add_file_rmap_pte), counted as a file page.
  const pgprot_t prot = std::atomic_ref<pgprot_t>(vma->vm_page_prot).load(std::memory_order_relaxed);
  SpinGuard g(pte_lockptr(mm, ptep));
  if (!pte_none(ptep_get(ptep))) return Errno::kBusy;
  mem.get_page(page);
  page->set(PG_driver);
  page->mapcount.fetch_add(1, std::memory_order_relaxed);
  mm->add_rss(MM_SHMEMPAGES, 1);
  set_pte(ptep, pfn_pte(pfn, prot));
  return Errno::kOk;
}

void restore_exclusive_pte(Vma* vma, Page* page, uint64_t addr, pte_t* ptep, pteval_t orig) {
  MM_BUG_ON(!page->test(PG_locked));
  PhysMem& mem = mem_of(vma);
  const pgprot_t prot = std::atomic_ref<pgprot_t>(vma->vm_page_prot).load(std::memory_order_relaxed);
  pteval_t pte = pte_mkold(pfn_pte(mem.page_to_pfn(page), prot));
  // Writable again only if the VMA still is (mprotect leaves the entry alone) and the page is
  // still this mapping's alone (can_change_pte_writable).
  if ((vma->vm_flags & VM_WRITE) && can_change_pte_writable(vma, pte)) {
    if (page->test(PG_dirty)) pte = pte_mkdirty(pte);
    pte = pte_mkwrite(pte);
  }
  set_pte(ptep, pte);  // was not present: nothing to flush
  mmu_checker_pte_change(vma->vm_mm, addr, orig, pte);
}

bool access_error(const Vma* vma, bool write) {
  Mm* mm = vma->vm_mm;
  if (mm->sys()->config().exec_only_pkey && vma_pkey_of(vma->vm_flags) != 0 &&
      (vma->vm_flags & VM_ACCESS_FLAGS) == VM_EXEC) {
    return true;  // the execute-only key disables data access
  }
  if (write) return !(vma->vm_flags & VM_WRITE);
  return !vma->is_accessible();
}

unsigned handle_mm_fault(Vma* vma, uint64_t addr, unsigned flags) {
  Mm* mm = vma->vm_mm;
  addr &= kPageMask;
  pte_t* ptep = pte_alloc(mm, addr, Gfp::kUser);
  if (!ptep) return VM_FAULT_OOM;
  pteval_t v = ptep_get(ptep);
  // Test-only: a test may hold the fault here, after the unlocked read (System::FaultGate).
  if (const System::FaultGate& gate = mm->sys()->debug_fault_gate()) gate(addr);
  if (pte_none(v)) {
    if (vma->is_anonymous()) return do_anonymous_page(vma, addr, ptep, flags);
    // do_fault: a device file's VMA has no ->fault (its driver filled it at mmap time), so
    // an address it did not fill, or whose page was zapped, is a bus error.
    if (vma->vm_file->inode->is_device()) return VM_FAULT_SIGBUS;
    return do_shmem_fault(vma, addr, ptep, flags);
  }
  // handle_pte_marker: a guard marker is a hole the process asked for.
  if (is_guard_pte_marker(v)) return VM_FAULT_SIGSEGV;
  if (is_swap_pte(v) && !non_swap_entry(v)) return do_swap_page(vma, addr, ptep, v, flags);
  if (is_migration_entry(v)) {
    migration_entry_wait(mm, ptep, v);  // then the access retries
    return VM_FAULT_OK;
  }
  if (is_device_private_entry(v)) return do_device_private_fault(vma, addr, ptep, v, flags);
  if (is_device_exclusive_entry(v)) return remove_device_exclusive_entry(vma, addr, ptep, v);
  SpinLock& ptl = pte_lockptr(mm, ptep);
  ptl.lock();
  pteval_t cur = ptep_get(ptep);
  if (cur != v || !pte_present(cur)) {
    ptl.unlock();
    return VM_FAULT_OK;  // changed under us, or a non-present entry later issues handle: retry
  }
  if (pte_protnone(cur)) {
    // Only a PROT_NONE VMA has PROT_NONE entries here; access_error() stopped that access.
    ptl.unlock();
    return VM_FAULT_SIGSEGV;
  }
  if ((flags & (FAULT_FLAG_WRITE | FAULT_FLAG_UNSHARE)) && !pte_write(cur))
    return do_wp_page(vma, addr, ptep, cur, ptl, flags);
  // A spurious fault (the entry already allows the access): mark it young (and dirty).
  ptep->fetch_or(_PAGE_ACCESSED | ((flags & FAULT_FLAG_WRITE) ? _PAGE_DIRTY : 0), std::memory_order_acq_rel);
  ptl.unlock();
  return VM_FAULT_OK;
}

// The x86 user fault entry (do_user_addr_fault): the per-VMA lock path first
// (lock_vma_under_rcu), then the mmap_lock path (lock_mm_and_find_vma), which also expands
// stacks and rebuilds the lockless lookup's snapshot.
unsigned do_user_addr_fault(Mm* mm, uint64_t addr, bool write) {
  if (addr >= kTaskSize) return VM_FAULT_SIGSEGV;
  mm->mem().events().count(PGFAULT);
  const unsigned flags = write ? unsigned{FAULT_FLAG_WRITE} : 0u;
  if (Vma* vma = mm->lock_vma_under_rcu(addr)) {
    unsigned ret = access_error(vma, write) ? unsigned{VM_FAULT_SIGSEGV}
                                            : handle_mm_fault(vma, addr, flags | FAULT_FLAG_VMA_LOCK);
    vma_end_read(vma);
    if (!(ret & VM_FAULT_RETRY)) return ret;
  }
  {
    MmapReadGuard g(mm);
    mm->refresh_snapshot();
    Vma* vma = mm->find_vma(addr);
    if (vma && vma->vm_start <= addr)
      return access_error(vma, write) ? unsigned{VM_FAULT_SIGSEGV} : handle_mm_fault(vma, addr, flags);
    if (!vma || !(vma->vm_flags & VM_GROWSDOWN)) return VM_FAULT_SIGSEGV;
  }
  // Stack expansion needs mmap_lock for write: drop, retake and look again.
  MmapWriteGuard g(mm);
  Vma* vma = mm->find_vma(addr);
  if (!vma) return VM_FAULT_SIGSEGV;
  mmap_assert_write_locked(vma->vm_mm);  // the same mm, reached through the VMA
  if (vma->vm_start > addr &&
      (!(vma->vm_flags & VM_GROWSDOWN) || expand_stack_locked(vma, addr) != Errno::kOk))
    return VM_FAULT_SIGSEGV;
  return access_error(vma, write) ? unsigned{VM_FAULT_SIGSEGV} : handle_mm_fault(vma, addr, flags);
}

namespace {

// The swap-cache work of a zap, done once its locks are released: the page lock it needs
// ranks above the PTE lock and above the i_mmap lock that unmap_mapping_range holds.
struct ZapSwapCache {
  // Entries whose last swap PTE went while the swap cache still holds their page
  // (free_swap_and_cache's second half).
  std::vector<pteval_t> entries;
  // Swap-cache pages whose last mapping went (free_pages_and_swap_cache's free_swap_cache),
  // each with a reference of ours.
  std::vector<Page*> pages;
};

void zap_swap_cache(System* sys, ZapSwapCache& zc) {
  for (pteval_t entry : zc.entries) try_to_reclaim_swap(sys, entry);
  for (Page* page : zc.pages) {
    free_swap_cache(sys, page);
    sys->mem().put_page(page);
  }
  zc.entries.clear();
  zc.pages.clear();
}

// should_zap_folio for a zap of the shared pages only (truncation): a file page goes, mapped
// or migrating; a private copy (anonymous, swapped out or migrating), or the zero page, stays.
bool zap_shared_only_wants(const Vma* vma, pteval_t v) {
  if (is_migration_entry(v)) return migration_entry_rss(mem_of(vma), v) == MM_SHMEMPAGES;
  if (!pte_present(v)) return false;
  Page* p = vm_normal_page(vma, v);
  return p && !p->test(PG_anon);
}

void zap_pte_range(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, ZapCows cows, ZapMarkers markers,
                   ZapSwapCache& zc) {
  Mm* mm = vma->vm_mm;
  int64_t anon = 0, shmem = 0, swapents = 0;
  // Read as the rmap walks read it: an unmap_mapping_range of a file zaps without the mmap_lock.
  const bool locked = vma_flags_racy(vma) & VM_LOCKED;
  walk_pte_tables(mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
    SpinGuard g(table->ptl);
    bool any = false;
    for (; addr < stop; addr += kPageSize, ptep++) {
      pteval_t cur = ptep->load(std::memory_order_relaxed);
      if (pte_none(cur)) continue;
      // Guard markers go only with the mapping (ZAP_FLAG_DROP_MARKER of unmap_vmas).
      if (is_pte_marker(cur) && markers == ZapMarkers::kKeep) continue;
      if (cows == ZapCows::kSharedOnly && !zap_shared_only_wants(vma, cur)) continue;
      pteval_t v = ptep_get_and_clear(ptep);
      mmu_checker_pte_change(mm, addr, v, 0);
      if (!pte_present(v)) {
        // A migration entry stands for its page in rss (the page itself is the migration's).
        if (is_migration_entry(v)) {
          if (migration_entry_rss(mem_of(vma), v) == MM_ANONPAGES) anon++;
          else shmem++;
          continue;
        }
        // zap_nonpresent_ptes' device-private and device-exclusive cases: the entry held a
        // mapping and a reference of the page, dropped after the flush like a present page's.
        if (is_device_page_entry(v)) {
          Page* page = mem_of(vma).pfn_to_page(device_private_entry_pfn(v));
          anon++;
          page->mapcount.fetch_sub(1, std::memory_order_relaxed);
          tlb.remove_page(page);
          continue;
        }
        // A swap entry: its slot loses this reference (free_swap_and_cache).
        if (!non_swap_entry(v)) {
          swapents++;
          if (swap_free(mm->sys(), pte_to_swp_entry(v))) zc.entries.push_back(pte_to_swp_entry(v));
        }
        continue;
      }
      // tlb_remove_tlb_entry: the range grows before the page is queued, since a full batch
      // flushes and frees at once (pages of this table included).
      if (!any) tlb.flush_range(start, end);
      any = true;
      Page* page = vm_normal_page(vma, v);
      if (!page) continue;
      if (page->test(PG_anon)) {
        anon++;
      } else {
        shmem++;
        if (pte_dirty(v)) page->set(PG_dirty);
      }
      if (locked) munlock_folio(mem_of(vma), page);  // folio_remove_rmap_ptes
      if (page->mapcount.fetch_sub(1, std::memory_order_relaxed) == 1 && page->test(PG_swapcache)) {
        mem_of(vma).get_page(page);
        zc.pages.push_back(page);
      }
      tlb.remove_page(page);
    }
  });
  if (anon) mm->add_rss(MM_ANONPAGES, -anon);
  if (shmem) mm->add_rss(MM_SHMEMPAGES, -shmem);
  if (swapents) mm->add_rss(MM_SWAPENTS, -swapents);
}

}  // namespace

void zap_page_range(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, ZapCows cows, ZapMarkers markers) {
  ZapSwapCache zc;
  zap_pte_range(tlb, vma, start, end, cows, markers, zc);
  zap_swap_cache(vma->vm_mm->sys(), zc);
}

void unmap_mapping_range(ShmemInode* inode, uint64_t first, ZapCows cows, uint64_t last) {
  ZapSwapCache zc;
  System* sys = nullptr;
  inode->for_each_mapping([&](Vma* vma) {
    const uint64_t vfirst = vma->vm_pgoff, vlast = vma->vm_pgoff + vma->pages();
    if (vlast <= first || vfirst >= last) return;
    const uint64_t start = vma->vm_start + ((first > vfirst ? first - vfirst : 0) << kPageShift);
    const uint64_t end = last < vlast ? vma->vm_start + ((last - vfirst) << kPageShift) : vma->vm_end;
    // zap_page_range_single's bracket (MMU_NOTIFY_CLEAR), under the i_mmap lock.
    MmuNotifierBracket bracket(MmuNotifyEvent::kClear, vma->vm_mm, start, end);
    MmuGather tlb(vma->vm_mm);
    sys = vma->vm_mm->sys();
    zap_pte_range(tlb, vma, start, end, cows, ZapMarkers::kKeep, zc);
  });
  if (sys) zap_swap_cache(sys, zc);  // after the i_mmap lock
}

namespace {

// copy_nonpresent_pte's migration-entry case: a write entry of a COW mapping becomes a read
// entry in the parent and in the child, so that neither maps the new page writable (and
// exclusive) when the migration ends: the page is shared from now on, and the first write
// copies. (Copying it unchanged was a COW hole: both would get a writable PTE to one page.)
// The caller holds the parent's PTE lock.
void copy_migration_entry(const Vma* src, pte_t* sptep, pteval_t* v, bool cow) {
  if (!is_writable_migration_entry(*v) || !cow) return;
  if (src->vm_mm->sys()->debug_broken(System::DebugBreak::kForkCopiesWriteMigration)) return;
  *v = migration_entry_retype(*v, kSwpMigrationRead);
  set_pte(sptep, *v);
}

// copy_nonpresent_pte's device-private case: the child gets a reference and a mapping of
// the device page, which is no longer exclusive (folio_try_dup_anon_rmap_pte: such pages
// cannot be pinned, so it cannot fail); a writable entry of a COW mapping becomes readable on
// both sides, so that the first write of either faults the page back and copies it.
void copy_device_private_entry(const Vma* src, pte_t* sptep, pteval_t* v, bool cow) {
  Page* page = mem_of(src).pfn_to_page(device_private_entry_pfn(*v));
  mem_of(src).get_page(page);
  page->mapcount.fetch_add(1, std::memory_order_relaxed);
  page->clear(PG_anon_exclusive);
  if (!is_writable_device_private_entry(*v) || !cow) return;
  *v = make_readable_device_private_entry(*v);
  set_pte(sptep, *v);
}

// folio_needs_cow_for_dma for an anonymous page: an exclusive page that may be pinned (a
// device may be writing it) cannot be shared copy-on-write by a fork: the first write of
// either process would move that process away from the page the device sees.
bool folio_needs_cow_for_dma(const Page* page) {
  return page->test(PG_anon) && page->test(PG_anon_exclusive) && folio_maybe_dma_pinned(page);
}

// copy_present_page: the child's own copy of page at addr, mapped like a fault's new page
// (dirty, writable if the VMA is). The caller holds both PTE locks; false when no frame is
// free without waiting.
bool copy_present_page(Vma* dst, uint64_t addr, pte_t* dptep, Page* page) {
  PhysMem& mem = mem_of(dst);
  Page* copy = mem.alloc_page(Zero::kNo, Gfp::kNowait);
  if (!copy) return false;
  MM_TSAN_IGNORE_BEGIN();  // a device (the pin's owner) may write the source meanwhile
  std::memcpy(mem.page_address(copy), mem.page_address(page), kPageSize);
  MM_TSAN_IGNORE_END();
  page_add_new_anon_rmap(copy, dst, addr);
  folio_add_lru_vma(mem, copy, dst);
  pteval_t pte = pte_mkdirty(pfn_pte(mem.page_to_pfn(copy), dst->vm_page_prot));
  if (dst->vm_flags & VM_WRITE) pte = pte_mkwrite(pte);
  set_pte(dptep, pte);
  return true;
}

}  // namespace

Errno copy_page_range(Vma* dst, Vma* src) {
  // vma_needs_copy: only VMAs with anon pages are copied; the rest refault in the child.
  // VM_COPY_ON_FORK (a VMA that may hold guard markers) is copied too, so that the child
  // gets the markers.
  if (!src->anon_vma && !(src->vm_flags & (VM_PFNMAP | VM_MIXEDMAP | VM_COPY_ON_FORK))) return Errno::kOk;
  Mm* dst_mm = dst->vm_mm;
  Mm* src_mm = src->vm_mm;
  const bool cow = is_cow_mapping(src->vm_flags);
  Errno err = Errno::kOk;
  int64_t anon = 0, shmem = 0, swapents = 0;
  // The parent's writable entries become read-only: a per-page protection change
  // (MMU_NOTIFY_PROTECTION_PAGE, as Linux's copy_page_range reports it).
  std::optional<MmuNotifierBracket> bracket;
  if (cow) bracket.emplace(MmuNotifyEvent::kProtectionPage, src_mm, src->vm_start, src->vm_end);
  walk_pte_tables(src_mm, src->vm_start, src->vm_end,
                  [&](pte_t* sptep, uint64_t addr, uint64_t stop, Page* stable) {
    if (err != Errno::kOk) return;
    // The child maps the same addresses, so one destination table covers [addr, stop).
    // Allocate it (outside the locks) only if the source has an entry here.
    pte_t* dbase = nullptr;
    {
      const pte_t* p = sptep;
      for (uint64_t a = addr; a < stop; a += kPageSize, p++) {
        if (pte_none(p->load(std::memory_order_relaxed))) continue;
        pte_t* d = pte_alloc(dst_mm, a);
        if (!d) {
          err = Errno::kNoMem;
          return;
        }
        dbase = d - index_at(a, kPteShift);
        break;
      }
    }
    if (!dbase) return;
    SpinGuard g(stable->ptl);
    NestedSpinGuard dg(pte_lockptr(dst_mm, dbase));  // the child's table, inside the parent's
    for (; addr < stop; addr += kPageSize, sptep++) {
      pteval_t v = ptep_get(sptep);
      if (pte_none(v)) continue;
      pte_t* dptep = dbase + index_at(addr, kPteShift);
      if (is_device_exclusive_entry(v)) {
        // copy_nonpresent_pte's device-exclusive case (try_restore_exclusive_pte): the
        // parent's PTE comes back (the device was told by this fork's invalidation), then it
        // is copied as a present one. The page lock is only tried, under the PTE locks; a
        // page locked by someone else fails the fork, as Linux's copy_pte_range does.
        Page* page = src_mm->mem().pfn_to_page(device_exclusive_entry_pfn(v));
        if (!trylock_page_batch(page)) {
          err = Errno::kNoMem;
          return;
        }
        restore_exclusive_pte(src, page, addr, sptep, v);
        unlock_page(page);
        v = ptep_get(sptep);
      }
      if (!pte_present(v)) {
        // copy_nonpresent_pte: a swap entry gains the child's reference, and neither side
        // may map the page exclusively when it comes back.
        if (is_migration_entry(v)) {
          copy_migration_entry(src, sptep, &v, cow);
          if (migration_entry_rss(src_mm->mem(), v) == MM_ANONPAGES) anon++;
          else shmem++;
        } else if (is_device_private_entry(v)) {
          copy_device_private_entry(src, sptep, &v, cow);
          anon++;
        } else if (!non_swap_entry(v)) {
          if (swap_duplicate(src_mm->sys(), pte_to_swp_entry(v)) != Errno::kOk) {
            err = Errno::kNoMem;
            return;
          }
          if (pte_swp_exclusive(v)) {
            v = pte_to_swp_entry(v);
            set_pte(sptep, v);
          }
          swapents++;
        }
        set_pte(dptep, v);
        continue;
      }
      Page* page = pte_present(v) ? vm_normal_page(src, v) : nullptr;
      if (page && folio_needs_cow_for_dma(page)) {
        // folio_try_dup_anon_rmap_pte refuses a pinned exclusive page: the child gets a copy
        // now (copy_present_page), and the parent keeps the page and its PTE as they are.
        if (!copy_present_page(dst, addr, dptep, page)) {
          err = Errno::kNoMem;
          return;
        }
        anon++;
        continue;
      }
      if (page) {
        // folio_try_dup_anon_rmap_pte: the page is now shared by two processes.
        src_mm->mem().get_page(page);
        page->mapcount.fetch_add(1, std::memory_order_relaxed);
        if (page->test(PG_anon)) {
          page->clear(PG_anon_exclusive);
          anon++;
        } else {
          shmem++;
        }
      }
      if (cow && pte_write(v)) {
        ptep_set_wrprotect(sptep);
        const pteval_t now = ptep_get(sptep);
        mmu_checker_pte_change(src_mm, addr, v, now);
        v = pte_wrprotect(now);
      }
      if (src->vm_flags & VM_SHARED) v = pte_mkclean(v);
      v = pte_mkold(v);
      set_pte(dptep, v);
    }
  });
  if (anon) dst_mm->add_rss(MM_ANONPAGES, anon);
  if (shmem) dst_mm->add_rss(MM_SHMEMPAGES, shmem);
  if (swapents) dst_mm->add_rss(MM_SWAPENTS, swapents);
  return err;
}

}  // namespace mirrormm
