// The swap cache (mm/swap_state.c), and the page I/O to swap slots (mm/page_io.c's
// swap_writepage and swap_read_folio). Contracts and the locking protocol are in swapfile.h.
#include <cstring>

#include "mirrormm/base/tsan.h"
#include "mirrormm/system.h"
#include "mm/lru.h"
#include "mm/swapfile.h"
#include "mm/vmstat.h"

namespace mirrormm {

// ---- the per-device cache array ----

Page* SwapInfo::cache_lookup_get(uint64_t offset, PhysMem& mem) {
  SpinGuard g(cache_lock_);
  if (!cache_) return nullptr;
  Page* page = cache_[offset];
  // The cache's own reference keeps the page allocated while we hold the lock.
  if (page) mem.get_page(page);
  return page;
}

void SwapInfo::cache_insert(uint64_t offset, Page* page) {
  SpinGuard g(cache_lock_);
  MM_BUG_ON(cache_[offset] != nullptr);
  cache_[offset] = page;
  nr_cached_.fetch_add(1, std::memory_order_relaxed);
}

bool SwapInfo::cache_remove(uint64_t offset, Page* page) {
  SpinGuard g(cache_lock_);
  if (cache_[offset] != page) return false;
  cache_[offset] = nullptr;
  nr_cached_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool SwapInfo::cache_remove_frozen(uint64_t offset, Page* page, int32_t expected) {
  SpinGuard g(cache_lock_);
  if (cache_[offset] != page) return false;
  // folio_ref_freeze: new references come only through a lookup (which takes the cache
  // lock, held here) or through a mapping (there is none), so a successful exchange means
  // nobody else can reach the page from now on.
  int32_t c = expected;
  if (!page->refcount.compare_exchange_strong(c, expected - 1, std::memory_order_acq_rel)) return false;
  cache_[offset] = nullptr;
  nr_cached_.fetch_sub(1, std::memory_order_relaxed);
  return true;
}

bool SwapInfo::cache_replace(uint64_t offset, Page* page, Page* newpage, int32_t expected) {
  SpinGuard g(cache_lock_);
  if (cache_[offset] != page) return false;
  // folio_ref_freeze, as in cache_remove_frozen: references come only through a lookup,
  // which this lock excludes, and the holders of the expected ones drop none meanwhile.
  int32_t c = expected;
  if (!page->refcount.compare_exchange_strong(c, 0, std::memory_order_acq_rel)) return false;
  newpage->refcount.fetch_add(1, std::memory_order_relaxed);
  cache_[offset] = newpage;
  page->refcount.store(expected - 1, std::memory_order_release);  // folio_ref_unfreeze
  return true;
}

Page* SwapInfo::debug_cache_peek(uint64_t offset) {
  SpinGuard g(cache_lock_);
  return cache_ ? cache_[offset] : nullptr;
}

// ---- entry-level operations ----

Page* swap_cache_get_folio(System* sys, pteval_t entry) {
  SwapInfo* si = get_swap_device(sys, entry);
  if (!si) return nullptr;
  Page* page = si->cache_lookup_get(swp_offset(entry), sys->mem());
  put_swap_device(si);
  return page;
}

Page* swap_cache_peek(System* sys, pteval_t entry) {
  SwapInfo* si = get_swap_device(sys, entry);
  if (!si) return nullptr;
  Page* page = si->debug_cache_peek(swp_offset(entry));
  put_swap_device(si);
  return page;
}

bool add_to_swap(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked) || !page->test(PG_anon) || page->test(PG_swapcache));
  SwapTable& t = swap_table_of(sys);
  for (unsigned type = 0; type < kMaxSwapFiles; type++) {
    SwapInfo* si = t.info(type);
    if (!si->get(1)) continue;
    const uint64_t off = si->alloc_slot();  // map = SWAP_HAS_CACHE
    if (off) {
      const pteval_t entry = swp_entry(type, off);
      sys->mem().get_page(page);  // the cache's reference
      page->swap = entry;
      page->set(PG_swapbacked);
      page->set(PG_swapcache);
      si->cache_insert(off, page);
      // The page's data exists only in memory until written: it is dirty (folio_mark_dirty).
      page->set(PG_dirty);
      put_swap_device(si);
      return true;
    }
    put_swap_device(si);
  }
  return false;
}

Errno swap_writepage(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked) || !page->test(PG_swapcache));
  SwapInfo* si = get_swap_device(sys, page->swap);
  MM_BUG_ON(!si);  // HAS_CACHE keeps the device on
  page->clear(PG_dirty);
  // A page still mapped writable elsewhere may change while it is copied (Linux writes it
  // back the same way; the dirty bit of such a mapping makes it written again later).
  MM_TSAN_IGNORE_BEGIN();
  const Errno e = si->write_slot(swp_offset(page->swap), sys->mem().page_address(page));
  MM_TSAN_IGNORE_END();
  put_swap_device(si);
  if (e != Errno::kOk) {
    page->set(PG_dirty);
    return e;
  }
  sys->mem().events().count(PSWPOUT);
  return Errno::kOk;
}

Errno swap_read_folio(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked) || !page->test(PG_swapcache));
  SwapInfo* si = get_swap_device(sys, page->swap);
  MM_BUG_ON(!si);
  const Errno e = si->read_slot(swp_offset(page->swap), sys->mem().page_address(page));
  put_swap_device(si);
  if (e == Errno::kOk) {
    sys->mem().events().count(PSWPIN);
    // workingset_refault: the page was evicted and is needed again. (Linux keeps a shadow
    // entry per evicted page to tell how recently; every page read back from swap here is
    // such a refault, and all swapped pages are on the anon lists.)
    sys->mem().events().count(WORKINGSET_REFAULT_ANON);
  }
  return e;
}

void delete_from_swap_cache(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked) || !page->test(PG_swapcache));
  const pteval_t entry = page->swap;
  SwapInfo* si = swap_table_of(sys).info(swp_type(entry));
  // Out of the array first, then HAS_CACHE (the order swapfile.h states).
  MM_BUG_ON(!si->cache_remove(swp_offset(entry), page));
  page->clear(PG_swapcache);
  page->swap = 0;
  si->cache_clear(swp_offset(entry));
  sys->mem().put_page(page);  // the cache's reference
}

bool folio_free_swap(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked));
  if (!page->test(PG_swapcache) || page->test(PG_writeback)) return false;
  if (__swap_count(sys, page->swap) != 0) return false;
  delete_from_swap_cache(sys, page);
  // The only copy of the data is now in memory: it must not be dropped as clean.
  page->set(PG_dirty);
  return true;
}

void free_swap_cache(System* sys, Page* page) {
  if (!page->test(PG_swapcache) || page->mapcount.load(std::memory_order_acquire) != 0) return;
  if (!trylock_page(page)) return;
  if (page->test(PG_swapcache)) folio_free_swap(sys, page);
  unlock_page(page);
}

bool __remove_mapping(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked) || !page->test(PG_swapcache));
  if (page->test(PG_dirty) || page->mapcount.load(std::memory_order_acquire) != 0) return false;
  const pteval_t entry = page->swap;
  SwapInfo* si = swap_table_of(sys).info(swp_type(entry));
  // Refcount exactly the cache's plus the caller's.
  if (!si->cache_remove_frozen(swp_offset(entry), page, 2)) return false;
  page->clear(PG_swapcache);
  page->swap = 0;
  si->cache_clear(swp_offset(entry));  // the slot stays while swap PTEs reference it
  return true;
}

SwapinStatus read_swap_cache_locked(System* sys, SwapInfo* si, pteval_t entry, Gfp gfp, Page** pagep, bool* read) {
  PhysMem& mem = sys->mem();
  *read = false;
  for (;;) {
    if (Page* page = swap_cache_get_folio(sys, entry)) {
      lock_page(page);
      // folio_swap_cache check: it may have left the cache before we locked it.
      if (page->test(PG_swapcache) && page->swap == entry) {
        *pagep = page;
        return SwapinStatus::kOk;
      }
      unlock_page(page);
      mem.put_page(page);
      continue;
    }
    const Errno e = swapcache_prepare(sys, entry);
    if (e == Errno::kExist) return SwapinStatus::kBusy;  // another swap-in is reading it
    if (e != Errno::kOk) return SwapinStatus::kGone;     // the slot was freed
    Page* page = mem.alloc_page(Zero::kNo, gfp);
    if (!page) {
      swapcache_clear(sys, entry);
      return SwapinStatus::kNoMem;
    }
    const bool locked = trylock_page(page);  // a new page: nobody else can hold it
    MM_BUG_ON(!locked);
    page->flags.fetch_or(PG_swapbacked | PG_swapcache, std::memory_order_relaxed);
    page->swap = entry;
    if (swap_read_folio(sys, page) != Errno::kOk) {
      page->clear(PG_swapcache);
      page->swap = 0;
      swapcache_clear(sys, entry);
      unlock_page(page);
      mem.put_page(page);
      return SwapinStatus::kIoError;
    }
    mem.get_page(page);  // the swap cache's reference
    si->cache_insert(swp_offset(entry), page);
    folio_add_lru(mem, page);  // a new swap-cache page joins the LRU (swapin's lru add)
    *pagep = page;
    *read = true;
    return SwapinStatus::kOk;
  }
}

}  // namespace mirrormm
