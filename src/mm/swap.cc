// The LRU lists (mm/swap.c's role: per-CPU add batches, list moves, the release of a freed
// page; and the list half of mm/vmscan.c: isolation and putback). The rules are in mm/lru.h.
#include <algorithm>
#include <unordered_map>

#include <fmt/format.h>

#include "mm/lru.h"
#include "mm/mm_types.h"
#include "mm/vmstat.h"

namespace mirrormm {

// ---- Lruvec: the lists ----

void Lruvec::link(Page* page, LruList lru, bool at_head) {
  List& l = lists[lru];
  const pfn_t pfn = mem->page_to_pfn(page);
  MM_DEBUG_ON(page->lru_prev != 0 || page->lru_next != 0);
  if (l.head == 0) {
    page->lru_prev = page->lru_next = 0;
    l.head = l.tail = pfn;
  } else if (at_head) {
    page->lru_prev = 0;
    page->lru_next = l.head;
    mem->pfn_to_page(l.head)->lru_prev = pfn;
    l.head = pfn;
  } else {
    page->lru_next = 0;
    page->lru_prev = l.tail;
    mem->pfn_to_page(l.tail)->lru_next = pfn;
    l.tail = pfn;
  }
  l.nr++;
}

void Lruvec::add_folio(Page* page) { link(page, folio_lru_list(page), true); }

void Lruvec::add_folio_tail(Page* page) { link(page, folio_lru_list(page), false); }

void Lruvec::del_folio(Page* page) {
  List& l = lists[folio_lru_list(page)];
  // The flags that select the list must not have changed while the page was on it.
  if constexpr (kDebugChecks) {
    const pfn_t pfn = mem->page_to_pfn(page);
    MM_BUG_ON(page->lru_prev == 0 ? l.head != pfn : mem->pfn_to_page(page->lru_prev)->lru_next != pfn);
    MM_BUG_ON(page->lru_next == 0 ? l.tail != pfn : mem->pfn_to_page(page->lru_next)->lru_prev != pfn);
  }
  MM_BUG_ON(l.nr == 0);
  if (page->lru_prev) mem->pfn_to_page(page->lru_prev)->lru_next = page->lru_next;
  else l.head = page->lru_next;
  if (page->lru_next) mem->pfn_to_page(page->lru_next)->lru_prev = page->lru_prev;
  else l.tail = page->lru_prev;
  page->lru_prev = page->lru_next = 0;
  l.nr--;
}

std::array<uint64_t, NR_LRU_LISTS> Lruvec::sizes() {
  std::array<uint64_t, NR_LRU_LISTS> out{};
  SpinGuard g(lru_lock);
  for (int i = 0; i < NR_LRU_LISTS; i++) out[i] = lists[i].nr;
  return out;
}

namespace {

// lru_add: a page from an add batch joins the list its flags select. Whether it is
// evictable is decided here, from PG_mlocked as it is now: an mlocked page goes to the
// unevictable list without PG_active (that list has no active half) and with mlock_count 0,
// since the lock that mlocked it may or may not have been counted already (its mlock batch
// entry, applied later, counts it if it was not); reclaim corrects an undercount.
//
// In the common case, a page neither mlocked nor unevictable, no bit of flags changes and
// setting PG_lru is a plain store (Page::lru_state); otherwise PG_unevictable and PG_active
// change in one atomic read-modify-write (others may set flags of the page meanwhile).
void lru_add(Lruvec& lruvec, Page* page) REQUIRES(lruvec.lru_lock) {
  MM_BUG_ON(page->test(PG_lru));
  uint32_t old = page->flags.load(std::memory_order_relaxed);
  if (old & (PG_mlocked | PG_unevictable)) [[unlikely]] {
    uint32_t nf;
    do {
      nf = old & ~static_cast<uint32_t>(PG_unevictable);
      if (nf & PG_mlocked) nf = (nf & ~static_cast<uint32_t>(PG_active)) | PG_unevictable;
    } while (nf != old && !page->flags.compare_exchange_weak(old, nf, std::memory_order_relaxed));
    if (nf & PG_unevictable) page->mlock_count = 0;
  }
  page->set(PG_lru);
  lruvec.add_folio(page);
}

// folio_batch_move_lru for the add batch: the pages join their lists under one lru_lock
// hold. A page orphaned while it waited (its last reference went: page_cache_release, which
// takes lru_lock too, marked it) is freed instead, after the lock is released.
void lru_add_batch(PhysMem& mem, Page* const* pages, int n) {
  Lruvec& lruvec = mem.lruvec();
  Page* dying[kFolioBatchSize];
  size_t ndying = 0;
  {
    SpinGuard g(lruvec.lru_lock);
    for (int i = 0; i < n; i++) {
      Page* page = pages[i];
      const uint8_t state = page->lru_state.load(std::memory_order_relaxed);
      if (state == kLruOrphaned) [[unlikely]] {
        page->lru_state.store(kLruNone, std::memory_order_relaxed);
        dying[ndying++] = page;
        continue;
      }
      MM_DEBUG_ON(state != kLruQueued);
      lru_add(lruvec, page);
    }
  }
  if (ndying) mem.free_unref_pages(dying, ndying);
}

}  // namespace

size_t drop_batch_refs_locked(Lruvec& lruvec, Page* const* pages, int n, Page** dying) {
  size_t ndying = 0;
  for (int i = 0; i < n; i++) {
    Page* page = pages[i];
    const int32_t old = page->refcount.fetch_sub(1, std::memory_order_acq_rel);
    MM_BUG_ON(old <= 0);
    if (old != 1) continue;
    if (page->test(PG_lru)) {
      lruvec.del_folio(page);
      page->clear(PG_lru);
    }
    dying[ndying++] = page;
  }
  return ndying;
}

namespace {

// Empties one CPU's add batch into the lists, then applies its mlock batch (lru_add_drain_cpu
// and mlock_drain_local, in that order). The batch is copied out under the slot's lock
// and moved after releasing it (the slot lock and lru_lock share a rank and never nest).
void drain_slot(PhysMem& mem, LruAddBatches::Slot& s) {
  if (s.nr.load(std::memory_order_relaxed) != 0) {
    Page* pages[kFolioBatchSize];
    int n;
    {
      SpinGuard g(s.lock);
      n = s.nr.load(std::memory_order_relaxed);
      std::copy(s.pages, s.pages + n, pages);
      s.nr.store(0, std::memory_order_relaxed);
    }
    if (n) lru_add_batch(mem, pages, n);
  }
  mlock_drain_slot(mem, s);
}

// __lru_cache_activate_folio: a page not on a list may be waiting in this CPU's add batch;
// if it is, it is marked active there and the drain puts it on the active list. (A page in
// another CPU's batch is left alone, as in Linux: the hint is per CPU.)
void lru_cache_activate_folio(PhysMem& mem, Page* page) {
  LruAddBatches::Slot& s = mem.lru_add_batches().this_cpu();
  SpinGuard g(s.lock);
  for (int i = s.nr.load(std::memory_order_relaxed) - 1; i >= 0; i--) {
    if (s.pages[i] == page) {
      page->set(PG_active);
      return;
    }
  }
}

}  // namespace

// ---- mm/swap.c ----

void lru_add_batch_full(PhysMem& mem, LruAddBatches::Slot& s) {
  Page* full[kFolioBatchSize];
  std::copy(s.pages, s.pages + kFolioBatchSize, full);
  s.nr.store(0, std::memory_order_relaxed);
  s.lock.unlock();
  lru_add_batch(mem, full, kFolioBatchSize);
}

void lru_add_drain(PhysMem& mem) {
  if (tls_this_cpu < 0) lru_add_drain_all(mem);
  else drain_slot(mem, mem.lru_add_batches().this_cpu());
}

void lru_add_drain_all(PhysMem& mem) {
  for (int i = 0; i < LruAddBatches::kSlots; i++) drain_slot(mem, mem.lru_add_batches().slot(i));
}

void folio_mark_accessed(PhysMem& mem, Page* page) {
  if (!page->test(PG_referenced)) {
    page->set(PG_referenced);
  } else if (page->test(PG_unevictable)) {
    // The unevictable list is never rotated: nothing to record.
  } else if (!page->test(PG_active)) {
    // On a list: activate it there. Otherwise it is probably in this CPU's add batch.
    if (page->test(PG_lru)) folio_activate(mem, page);
    else lru_cache_activate_folio(mem, page);
    page->clear(PG_referenced);
  } else {
    // Active and referenced: nothing changes (Linux sets nothing either).
  }
}

void folio_activate(PhysMem& mem, Page* page) {
  if (page->test(PG_active) || page->test(PG_unevictable)) return;
  Lruvec& lruvec = mem.lruvec();
  SpinGuard g(lruvec.lru_lock);
  // Rechecked under the lock: isolation or another activation may have come first.
  if (!page->test(PG_lru) || page->test(PG_active) || page->test(PG_unevictable)) return;
  lruvec.del_folio(page);
  page->set(PG_active);
  lruvec.add_folio(page);
  mem.events().count(PGACTIVATE);
}

void folio_deactivate(PhysMem& mem, Page* page) {
  if (!page->test(PG_lru) || !page->test(PG_active) || page->test(PG_unevictable)) return;
  Lruvec& lruvec = mem.lruvec();
  SpinGuard g(lruvec.lru_lock);
  if (!page->test(PG_lru) || !page->test(PG_active) || page->test(PG_unevictable)) return;
  lruvec.del_folio(page);
  page->clear(PG_active);
  page->clear(PG_referenced);
  lruvec.add_folio(page);
  mem.events().count(PGDEACTIVATE);
}

void folio_mark_lazyfree(PhysMem& mem, Page* page) {
  constexpr uint32_t kMust = PG_lru | PG_anon | PG_swapbacked;
  auto eligible = [page] {
    const uint32_t f = page->flags_snapshot();
    return (f & kMust) == kMust && !(f & (PG_swapcache | PG_unevictable));
  };
  if (!eligible()) return;
  Lruvec& lruvec = mem.lruvec();
  SpinGuard g(lruvec.lru_lock);
  if (!eligible()) return;
  lruvec.del_folio(page);
  page->clear(PG_active);
  page->clear(PG_referenced);
  page->clear(PG_swapbacked);
  lruvec.add_folio(page);
}

// ---- mm/vmscan.c ----

bool folio_isolate_lru(PhysMem& mem, Page* page) {
  if (!page->test(PG_lru)) return false;
  if (!PhysMem::get_page_unless_zero(page)) return false;  // being freed
  Lruvec& lruvec = mem.lruvec();
  {
    SpinGuard g(lruvec.lru_lock);
    if (page->test(PG_lru)) {
      lruvec.del_folio(page);
      page->clear(PG_lru);
      return true;
    }
  }
  mem.put_page(page);  // somebody isolated it first (outside lru_lock: this may free it)
  return false;
}

void folio_putback_lru(PhysMem& mem, Page* page) { move_folios_to_lru(mem.lruvec(), &page, 1); }

size_t isolate_lru_folios(Lruvec& lruvec, LruList lru, size_t nr_to_scan, std::vector<Page*>* dst,
                          size_t* nr_scanned) {
  size_t scanned = 0, taken = 0;
  {
    SpinGuard g(lruvec.lru_lock);
    Lruvec::List& l = lruvec.lists[lru];
    // A page rotated to the head is not looked at twice: at most the list's length is scanned.
    const size_t limit = std::min<size_t>(nr_to_scan, l.nr);
    while (scanned < limit && l.tail != 0) {
      Page* page = lruvec.mem->pfn_to_page(l.tail);
      scanned++;
      MM_DEBUG_ON(!page->test(PG_lru) || folio_lru_list(page) != lru);
      lruvec.del_folio(page);
      if (!PhysMem::get_page_unless_zero(page)) {
        // Its last reference went: the free path is waiting for lru_lock to unlink it.
        lruvec.add_folio(page);
        continue;
      }
      page->clear(PG_lru);
      dst->push_back(page);
      taken++;
    }
  }
  if (nr_scanned) *nr_scanned = scanned;
  return taken;
}

size_t move_folios_to_lru(Lruvec& lruvec, Page* const* pages, size_t n) {
  std::vector<Page*> to_free;
  size_t moved = 0;
  {
    SpinGuard g(lruvec.lru_lock);
    for (size_t i = 0; i < n; i++) {
      Page* page = pages[i];
      MM_BUG_ON(page->test(PG_lru));
      // A page mlocked while it was isolated (reclaim finding a locked mapping, an mlock
      // batch entry that found it off the LRU) goes to the unevictable list uncounted, as
      // Linux's putback through lru_add does.
      if (page->test(PG_mlocked) && !page->test(PG_unevictable)) {
        page->clear(PG_active);
        page->set(PG_unevictable);
        page->mlock_count = 0;
      }
      // Linked before the isolation reference goes, so that a concurrent last put (which
      // then waits for lru_lock) finds the page PG_lru and unlinks it.
      page->set(PG_lru);
      lruvec.add_folio(page);
      if (page->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        // That was the last reference: the page leaves the list again and is freed below.
        lruvec.del_folio(page);
        page->clear(PG_lru);
        to_free.push_back(page);
        continue;
      }
      moved++;
    }
  }
  if (!to_free.empty()) lruvec.mem->free_unref_pages(to_free.data(), to_free.size());
  return moved;
}

// ---- the free path ----

size_t page_cache_release(Lruvec& lruvec, Page** pages, size_t n) {
  auto on_lru = [](const Page* p) { return p->lru_state.load(std::memory_order_relaxed) != kLruNone; };
  if (std::none_of(pages, pages + n, on_lru)) return n;
  SpinGuard g(lruvec.lru_lock);
  size_t left = 0;
  for (size_t i = 0; i < n; i++) {
    Page* page = pages[i];
    MM_DEBUG_ON(page->refcount.load(std::memory_order_relaxed) != 0);
    switch (page->lru_state.load(std::memory_order_relaxed)) {
      case kLruNone:
        break;
      case kLruListed:
        lruvec.del_folio(page);
        page->clear(PG_lru);
        break;
      case kLruQueued:
        page->lru_state.store(kLruOrphaned, std::memory_order_relaxed);  // the drain frees it
        continue;
      default:
        MM_BUG_ON(true);  // orphaned twice: a reference dropped after the last
    }
    pages[left++] = page;
  }
  return left;
}

// ---- checkers ----

void debug_check_lru(PhysMem& mem, const std::function<void(const std::string&)>& bad) {
  // The add batches (their locks, taken one at a time, never nest with lru_lock): each entry
  // a page queued, or orphaned while it waited, and each page so marked in exactly one entry.
  auto batch_state_name = [](uint8_t state) -> const char* {
    return state == kLruQueued ? "queued" : state == kLruOrphaned ? "orphaned" : nullptr;
  };
  std::unordered_map<const Page*, int> queued;
  for (int i = 0; i < LruAddBatches::kSlots; i++) {
    LruAddBatches::Slot& s = mem.lru_add_batches().slot(i);
    SpinGuard sg(s.lock);
    const int nr = s.nr.load(std::memory_order_relaxed);
    for (int k = 0; k < nr; k++) {
      const Page* page = s.pages[k];
      const pfn_t pfn = mem.page_to_pfn(page);
      if (queued[page]++ == 1) bad(fmt::format("add batches: frame {} is queued twice", pfn));
      const uint8_t state = page->lru_state.load(std::memory_order_relaxed);
      const int32_t rc = page->refcount.load(std::memory_order_relaxed);
      if (!batch_state_name(state))
        bad(fmt::format("add batch {}: frame {} waits there with LRU state {}", i, pfn, state));
      else if (page->test(PG_free) || (state == kLruQueued ? rc <= 0 : rc != 0))
        bad(fmt::format("add batch {}: frame {} is {} with refcount {}{}", i, pfn, batch_state_name(state), rc,
                        page->test(PG_free) ? ", free" : ""));
    }
  }
  for (pfn_t pfn = 2, end = mem.debug_pfn_end(); pfn < end; pfn++) {
    const Page* page = mem.pfn_to_page(pfn);
    const uint8_t state = page->lru_state.load(std::memory_order_relaxed);
    if (batch_state_name(state) && !queued.count(page))
      bad(fmt::format("frame {} is marked {} but no add batch holds it", pfn, batch_state_name(state)));
  }

  Lruvec& lruvec = mem.lruvec();
  SpinGuard g(lruvec.lru_lock);
  for (int i = 0; i < NR_LRU_LISTS; i++) {
    const LruList lru = static_cast<LruList>(i);
    const Lruvec::List& l = lruvec.lists[lru];
    uint64_t count = 0;
    pfn_t prev = 0;
    for (pfn_t pfn = l.head; pfn != 0; pfn = mem.pfn_to_page(pfn)->lru_next) {
      if (!mem.valid_pfn(pfn) || ++count > l.nr) {
        bad(fmt::format("LRU list {}: more pages linked than its size {} (or a cycle)", kLruListNames[lru], l.nr));
        break;
      }
      const Page* page = mem.pfn_to_page(pfn);
      if (page->lru_prev != prev)
        bad(fmt::format("LRU list {}: frame {} links back to {}, not {}", kLruListNames[lru], pfn, page->lru_prev,
                        prev));
      if (page->test(PG_free) || page->refcount.load(std::memory_order_relaxed) <= 0)
        bad(fmt::format("LRU list {}: frame {} is free", kLruListNames[lru], pfn));
      if (!page->test(PG_lru))
        bad(fmt::format("LRU list {}: frame {} is linked without PG_lru", kLruListNames[lru], pfn));
      if (folio_lru_list(page) != lru)
        bad(fmt::format("LRU list {}: frame {} belongs on {}", kLruListNames[lru], pfn,
                        kLruListNames[folio_lru_list(page)]));
      prev = pfn;
    }
    if (prev != l.tail) bad(fmt::format("LRU list {}: tail {} but the last page linked is {}", kLruListNames[lru], l.tail, prev));
    if (count != l.nr) bad(fmt::format("LRU list {}: size {} but {} pages linked", kLruListNames[lru], l.nr, count));
  }
}

}  // namespace mirrormm
