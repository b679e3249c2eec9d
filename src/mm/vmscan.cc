// Page reclaim (mm/vmscan.c): taking pages away from their users when memory runs short.
//
// The scanner works on the machine's LRU lists (lru.h). The active lists are aged into the
// inactive ones (shrink_active_list); the inactive lists' oldest pages are looked at once
// more (folio_check_references: a page whose mappings, or a secondary MMU through
// mmu_notifier_clear_flush_young, used it since the last look gets a second chance or is
// promoted) and the rest are reclaimed (shrink_folio_list): an anonymous page is given a swap
// slot and a place in the swap cache, unmapped from every process through the reverse map
// (try_to_unmap, each mapping bracketed by invalidate_range_start/end), written to its slot,
// and freed; a clean shmem page unmapped the same way leaves the page cache and is freed.
// Without a swap device anonymous and shmem pages are not scanned (there is nowhere to put
// them), as Linux's get_scan_count decides.
//
// Who reclaims: kswapd, a thread per machine woken when an allocation finds the free frames
// below the low watermark, reclaims until they are above the high one; an allocation that
// finds no frame reclaims directly (try_to_free_pages) and, when that makes no progress, the
// OOM killer (oom_kill.cc) picks a victim. `reclaim` (System::reclaim, memory.reclaim's
// role) and madvise(MADV_PAGEOUT) reclaim on request.
//
// Locking: reclaim holds no lock across the scan; it takes the LRU lock to isolate and put
// back batches, the page lock of one page at a time (trylock: a locked page is skipped), and
// under it the rmap locks and PTE locks of try_to_unmap. It must run without any lock of the
// fault path held (the allocator's slow path is entered only from sites that hold at most the
// mmap_lock for read or a VMA read lock, mm/lock_order.h).
#include "mm/vmscan.h"

#include <algorithm>
#include <chrono>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "mirrormm/mmu_notifier.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/rmap.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/system_internal.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

constexpr int kDefPriority = 12;  // DEF_PRIORITY: scan size >> priority of each list

enum class FolioReferences { kActivate, kKeep, kReclaim, kReclaimClean };

// folio_check_references: what the look at a locked page on the inactive list decides.
FolioReferences folio_check_references(System* sys, Page* page) {
  bool vm_locked = false;
  const int referenced_ptes = folio_referenced(sys, page, PageLocked::kYes, &vm_locked);
  // Mapped by a VM_LOCKED VMA: the page, now mlocked, goes to the unevictable list.
  if (vm_locked) return FolioReferences::kActivate;
  const bool referenced_folio = (page->flags.fetch_and(~static_cast<uint32_t>(PG_referenced),
                                                       std::memory_order_relaxed) &
                                 PG_referenced) != 0;
  if (referenced_ptes) {
    // Every mapped page starts with young PTEs from the fault that mapped it: a second look
    // that sees it used again (or used through more than one mapping) promotes it, one use
    // earns it another trip around the inactive list.
    page->set(PG_referenced);
    if (referenced_folio || referenced_ptes > 1) return FolioReferences::kActivate;
    return FolioReferences::kKeep;
  }
  if (referenced_folio && folio_is_file_lru(page)) return FolioReferences::kReclaimClean;
  return FolioReferences::kReclaim;
}

void count_scan(VmEvents& ev, const ScanControl& sc, LruList lru, uint64_t n) {
  if (!n) return;
  if (sc.who == ScanControl::Who::kKswapd)
    ev.count(PGSCAN_KSWAPD, static_cast<int64_t>(n));
  else
    ev.count(PGSCAN_DIRECT, static_cast<int64_t>(n));
  ev.count(lru >= LRU_INACTIVE_FILE ? PGSCAN_FILE : PGSCAN_ANON, static_cast<int64_t>(n));
}

void count_steal(VmEvents& ev, const ScanControl& sc, bool file, uint64_t n) {
  if (!n) return;
  if (sc.who == ScanControl::Who::kKswapd)
    ev.count(PGSTEAL_KSWAPD, static_cast<int64_t>(n));
  else
    ev.count(PGSTEAL_DIRECT, static_cast<int64_t>(n));
  ev.count(file ? PGSTEAL_FILE : PGSTEAL_ANON, static_cast<int64_t>(n));
}

}  // namespace

bool swap_has_room(System* sys) {
  SwapTable& table = swap_table_of(sys);
  for (unsigned t = 0; t < kMaxSwapFiles; t++) {
    SwapInfo* si = table.info(t);
    if (si->state() == SwapInfo::State::kActive && si->inuse() + 1 < si->max()) return true;
  }
  return false;
}

bool swap_entry_writable(System* sys, pteval_t entry) {
  SwapInfo* si = swap_table_of(sys).info(swp_type(entry));
  return si && si->state() == SwapInfo::State::kActive;
}

bool try_to_unmap(System* sys, Page* page, unsigned flags, bool* lent) {
  RmapWalkControl rwc;
  rwc.sys = sys;
  rwc.rmap_one = [flags, lent](Page* p, Vma* vma, uint64_t address) {
    return try_to_unmap_one(p, vma, address, flags, lent);
  };
  rwc.done = [lent](Page* p) { return (lent && *lent) || !folio_mapped(p); };
  rmap_walk(page, rwc);
  return (lent && *lent) || !folio_mapped(page);
}

uint64_t shrink_folio_list(System* sys, std::vector<Page*>& folios, ScanControl& sc, std::vector<Page*>* keep) {
  PhysMem& mem = sys->mem();
  VmEvents& ev = mem.events();
  uint64_t reclaimed = 0;
  for (Page* page : folios) {
    // The caller isolated the page: it holds a reference and PG_lru is clear.
    if (!trylock_page(page)) {
      keep->push_back(page);
      continue;
    }
    bool activate = false;
    bool ok = true;
    if (page->test(PG_unevictable) || page->test(PG_mlocked)) {  // !folio_evictable
      ok = false;
    } else if (!sc.ignore_references) {
      switch (folio_check_references(sys, page)) {
        case FolioReferences::kActivate:
          activate = true;
          ok = false;
          break;
        case FolioReferences::kKeep:
          ok = false;
          break;
        case FolioReferences::kReclaim:
        case FolioReferences::kReclaimClean:
          break;
      }
    }
    const bool anon = page->test(PG_anon);
    const bool shmem = page->test(PG_shmem);
    // A lazily freed (MADV_FREE) or droppable anonymous page is not swap-backed: it needs no
    // swap, try_to_unmap drops it (or, written again since, gives it back PG_swapbacked and
    // refuses), and there is nothing to write.
    const bool lazyfree = anon && !page->test(PG_swapbacked);
    // An anonymous page goes to swap: a slot and a place in the swap cache first.
    if (ok && anon && !lazyfree && !page->test(PG_swapcache)) {
      if (!sc.may_swap || !add_to_swap(sys, page)) {
        activate = true;  // nowhere to put it
        ok = false;
      }
    }
    // A page that is none of these (being set up or torn down) is left alone. A shmem page
    // already written to swap (PG_swapcache, out of its file's cache) is freed like an
    // anonymous one.
    if (ok && !anon && !shmem && !page->test(PG_swapcache)) ok = false;
    // Unmap it from every process (try_to_unmap, each mapping bracketed).
    if (ok && folio_mapped(page)) {
      // The re-injected kUnmapPutBeforeEnd: reclaim relies on the mappings' references for a
      // lazily freed page, whose discard needs nothing else, and lends the unmap its own.
      bool lent = false;
      const bool lend = lazyfree && sys->debug_broken(System::DebugBreak::kUnmapPutBeforeEnd);
      const bool file_lru = folio_is_file_lru(page);  // read before the page may be gone
      if (!try_to_unmap(sys, page, 0, lend ? &lent : nullptr)) {
        activate = true;  // a mapping could not be removed (a swap count, a racing fault)
        ok = false;
      } else if (lent) {
        count_steal(ev, sc, file_lru, 1);  // freed by the unmap: gone
        reclaimed++;
        continue;
      } else {
        mmu_rmap_notify_page(&mem, page);  // remote mappers of the page hear it went
      }
    }
    // A swap-cache copy on a device that swapoff is emptying stays in memory (its slot is on
    // its way out; writing the page back there would undo swapoff's work).
    if (ok && page->test(PG_swapcache) && !swap_entry_writable(sys, page->swap)) {
      activate = true;
      ok = false;
    }
    // Write it out: an anonymous page to its slot; a dirty shmem page to a slot of its own
    // (shmem_writeout moves it from the page cache to the swap cache), or, without swap, it
    // stays (AOP_WRITEPAGE_ACTIVATE). A clean shmem page holds nothing a new zero page would
    // not: it simply leaves the cache. Reclaim does not write regular files' pages (Linux
    // 6.18's pageout writes only shmem and swap): a dirty one stays, marked PG_reclaim, and
    // the flusher is woken to clean it (wakeup_flusher_threads); a clean one leaves the cache
    // as a clean shmem page does, its data being on the disk.
    if (ok && !lazyfree && page->test(PG_dirty)) {
      if (anon) {
        if (swap_writepage(sys, page) != Errno::kOk) ok = false;
      } else if (page->test(PG_shmem) && !page->test(PG_swapbacked)) {
        page->set(PG_reclaim);
        if (sc.who != ScanControl::Who::kProactive) sys->wakeup_flusher();  // not for madvise
        activate = true;
        ok = false;
      } else if (!sc.may_swap || !shmem_writeout(sys, page)) {
        activate = true;
        ok = false;
      }
    }
    // Free it: out of the swap cache or the page cache, if nobody else holds it.
    bool locked = true;
    if (ok) {
      if (page->test(PG_swapcache)) {
        ok = __remove_mapping(sys, page);
      } else if (page->test(PG_shmem)) {
        // remove_clean_page takes the page lock itself; an inode reference keeps the inode
        // (which the page lock kept until now) while it does. igrab: an inode whose last
        // reference is gone is being destroyed, and frees this page itself.
        auto* inode = static_cast<ShmemInode*>(page->mapping);
        if (inode->tryget()) {
          unlock_page(page);
          locked = false;
          ok = inode->remove_clean_page(page->index, page);
          inode->put();
        } else {
          ok = false;
        }
      } else {
        ok = folio_ref_count(page) == 1;
      }
    }
    if (!ok) {
      // activate_locked: a swap-cache copy is not worth keeping when swap is short.
      if (activate && page->test(PG_swapcache) && vm_swap_full(sys) && !folio_mapped(page))
        (void)folio_free_swap(sys, page);
      if (activate && !page->test(PG_unevictable) && !page->test(PG_active)) {
        page->set(PG_active);
        ev.count(PGACTIVATE);
      }
      if (locked) unlock_page(page);
      keep->push_back(page);
      continue;
    }
    if (locked) unlock_page(page);
    // Checker: reclaim never frees a locked page (try_to_unmap_one and folio_referenced
    // refuse every VM_LOCKED mapping and mlock the page instead).
    if (page->test(PG_mlocked))
      sys->report_violation("locked page reclaimed",
                            fmt::format("reclaim freed mlocked pfn {:#x}", mem.page_to_pfn(page)));
    count_steal(ev, sc, folio_is_file_lru(page), 1);
    mem.put_page(page);  // the isolation reference was the last one: the frame is free
    reclaimed++;
  }
  return reclaimed;
}

namespace {

// shrink_inactive_list: reclaims from the oldest nr_to_scan pages of an inactive list.
void shrink_inactive_list(System* sys, LruList lru, uint64_t nr_to_scan, ScanControl& sc) {
  PhysMem& mem = sys->mem();
  std::vector<Page*> isolated, keep;
  size_t scanned = 0;
  isolate_lru_folios(mem.lruvec(), lru, nr_to_scan, &isolated, &scanned);
  count_scan(mem.events(), sc, lru, scanned);
  if (isolated.empty()) return;
  sc.nr_reclaimed += shrink_folio_list(sys, isolated, sc, &keep);
  move_folios_to_lru(mem.lruvec(), keep.data(), keep.size());
}

// shrink_active_list: ages the oldest nr_to_scan pages of an active list into the inactive
// one. Their young bits (and the secondary MMUs' through clear_flush_young) are cleared on
// the way, so that the inactive list's look sees only uses made after this one.
void shrink_active_list(System* sys, LruList lru, uint64_t nr_to_scan) {
  PhysMem& mem = sys->mem();
  std::vector<Page*> isolated;
  size_t scanned = 0;
  isolate_lru_folios(mem.lruvec(), lru, nr_to_scan, &isolated, &scanned);
  mem.events().count(PGREFILL, static_cast<int64_t>(scanned));
  uint64_t deactivated = 0;
  for (Page* page : isolated) {
    if (folio_mapped(page)) (void)folio_referenced(sys, page, PageLocked::kNo);
    page->clear(PG_active);
    page->set(PG_workingset);
    deactivated++;
  }
  mem.events().count(PGDEACTIVATE, static_cast<int64_t>(deactivated));
  move_folios_to_lru(mem.lruvec(), isolated.data(), isolated.size());
}

// shrink_lruvec at one priority (get_scan_count + shrink_lruvec): each evictable list's share
// is its size >> priority, scanned SWAP_CLUSTER_MAX pages at a time until the share is done
// or enough was freed; an active list is aged first when its inactive list is the smaller
// (inactive_is_low, with the ratio of a small machine). Over the priorities from
// DEF_PRIORITY to 0 the scan adds up to about twice each list, so a page whose first look
// gave it a second chance gets its second look within one reclaim run.
void shrink_lruvec(System* sys, ScanControl& sc) {
  PhysMem& mem = sys->mem();
  lru_add_drain_all(mem);
  const std::array<uint64_t, NR_LRU_LISTS> size = mem.lruvec().sizes();
  for (int type = 0; type < 2; type++) {
    const LruList inactive = type == 0 ? LRU_INACTIVE_ANON : LRU_INACTIVE_FILE;
    const LruList active = static_cast<LruList>(inactive + 1);
    if (type == 0 && !sc.may_swap) continue;
    uint64_t nr_active = size[active] >> sc.priority;
    uint64_t nr_inactive = size[inactive] >> sc.priority;
    if (size[inactive] < size[active]) {
      while (nr_active > 0) {
        const uint64_t batch = std::min(nr_active, kSwapClusterMax);
        shrink_active_list(sys, active, batch);
        nr_active -= batch;
      }
    }
    while (nr_inactive > 0 && sc.nr_reclaimed < sc.nr_to_reclaim) {
      const uint64_t batch = std::min(nr_inactive, kSwapClusterMax);
      shrink_inactive_list(sys, inactive, batch, sc);
      nr_inactive -= batch;
    }
    if (sc.nr_reclaimed >= sc.nr_to_reclaim) return;
  }
}

}  // namespace

uint64_t do_try_to_free_pages(System* sys, ScanControl& sc) {
  sc.may_swap = sc.may_swap && swap_has_room(sys);
  for (sc.priority = kDefPriority; sc.priority >= 0; sc.priority--) {
    shrink_lruvec(sys, sc);
    if (sc.nr_reclaimed >= sc.nr_to_reclaim) break;
  }
  return sc.nr_reclaimed;
}

uint64_t try_to_free_pages(System* sys, uint64_t nr_pages) {
  ScanControl sc;
  sc.who = ScanControl::Who::kDirect;
  sc.nr_to_reclaim = std::max<uint64_t>(nr_pages, kSwapClusterMax);
  sys->mem().events().count(ALLOCSTALL);
  return do_try_to_free_pages(sys, sc);
}

uint64_t reclaim_pages(System* sys, std::vector<Page*>& isolated) {
  ScanControl sc;
  sc.who = ScanControl::Who::kProactive;
  sc.ignore_references = true;
  sc.may_swap = swap_has_room(sys);
  std::vector<Page*> keep;
  const uint64_t n = shrink_folio_list(sys, isolated, sc, &keep);
  move_folios_to_lru(sys->mem().lruvec(), keep.data(), keep.size());
  return n;
}


// ---- kswapd ----

Kswapd::Kswapd(System* sys) : sys_(sys) {}
Kswapd::~Kswapd() { stop(); }

void Kswapd::stop() {
  {
    MutexGuard g(lock_);
    stopping_ = true;
  }
  wq_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Kswapd::wakeup() {
  if (failures_.load(std::memory_order_relaxed) >= kMaxReclaimRetries) return;
  // Cheap when kswapd is already awake: one exchange.
  if (woken_.exchange(true, std::memory_order_acq_rel)) return;
  {
    MutexGuard g(lock_);
    if (stopping_) return;
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  }
  wq_.notify_all();
}

void Kswapd::pause() {
  MutexGuard g(lock_);
  paused_++;
  while (running_) wq_.wait(lock_);
}

bool Kswapd::wait_pass() {
  MutexGuard g(lock_);
  if (!running_) return false;
  while (running_) wq_.wait(lock_);
  return true;
}

void Kswapd::resume() {
  {
    MutexGuard g(lock_);
    paused_--;
  }
  wq_.notify_all();
}

void Kswapd::run() {
  PhysMem& mem = sys_->mem();
  for (;;) {
    {
      MutexGuard g(lock_);
      running_ = false;
      wq_.notify_all();
      while ((!woken_.load(std::memory_order_acquire) || paused_) && !stopping_) wq_.wait(lock_);
      if (stopping_) return;
      running_ = true;
    }
    woken_.store(false, std::memory_order_release);
    // balance_pgdat: reclaim in batches until the free frames are above the high watermark,
    // or a pass makes no progress (nothing left that can go).
    mem.events().count(PAGEOUTRUN);
    while (mem.nr_free_global() < mem.wmark_high()) {
      {
        MutexGuard g(lock_);
        if (stopping_ || paused_) break;
      }
      ScanControl sc;
      sc.who = ScanControl::Who::kKswapd;
      sc.nr_to_reclaim = kSwapClusterMax;
      runs_.fetch_add(1, std::memory_order_relaxed);
      if (do_try_to_free_pages(sys_, sc) == 0) {
        failures_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      failures_.store(0, std::memory_order_relaxed);
    }
  }
}

// ---- the allocator's slow path ----

MachineReclaim::MachineReclaim(System* sys) : sys_(sys), kswapd_(sys), oom_(sys) { sys->mem().set_pressure(this); }

MachineReclaim::~MachineReclaim() { stop(); }

void MachineReclaim::stop() {
  sys_->mem().set_pressure(nullptr);
  kswapd_.stop();
  oom_.stop();
}

void MachineReclaim::wakeup_kswapd() { kswapd_.wakeup(); }

void MachineReclaim::pause() {
  kswapd_.pause();
  oom_.pause();
}

void MachineReclaim::resume() {
  oom_.resume();
  kswapd_.resume();
}

namespace {
thread_local bool tls_oom_origin = false;
}  // namespace

ScopedOomOrigin::ScopedOomOrigin() : was_(tls_oom_origin) { tls_oom_origin = true; }
ScopedOomOrigin::~ScopedOomOrigin() { tls_oom_origin = was_; }
bool current_is_oom_origin() { return tls_oom_origin; }

bool MachineReclaim::alloc_slowpath(int attempt) {
  if (attempt == 0) kswapd_.wakeup();
  // The OOM killer chose the caller's own process: its fault fails (it is dying).
  if (Process* cur = current_process(); cur && cur->oom_killed()) return false;
  if (attempt < kMaxProgressRetries && try_to_free_pages(sys_, kSwapClusterMax) > 0) {
    kswapd_.reset_failures();  // reclaim works again: kswapd may help
    return true;
  }
  // kswapd holds the pages its pass isolated (a reference each): direct reclaim found the
  // lists short of them, and when the pass ends they are back or free. Wait for it before
  // calling the OOM killer, as Linux throttles direct reclaim while too_many_isolated.
  if (attempt < kMaxProgressRetries && kswapd_.wait_pass()) return true;
  // No progress: a victim gives its memory back (or is already doing so).
  if (current_is_oom_origin()) return false;
  if (attempt >= kMaxOomWaits || !oom_.out_of_memory()) return false;
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  return true;
}

}  // namespace mirrormm
