// Shared memory files: the per-inode page cache, its swap entries (shmem_writeout,
// shmem_swapin_folio, shmem_unuse) and the shmem swaplist. Contracts are in shmem.h.
#include "mm/shmem.h"
#include "mm/vmstat.h"

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "mirrormm/base/tsan.h"
#include "mirrormm/system.h"
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/notifier_hooks.h"
#include "mm/swapfile.h"

namespace mirrormm {

// ---- shmem_swaplist ----

ShmemSwaplist::~ShmemSwaplist() {
  MutexGuard g(lock_);
  MM_BUG_ON(!inodes_.empty());  // every inode left it when its last swap entry went
}

void ShmemSwaplist::add(ShmemInode* inode) {
  MutexGuard g(lock_);
  inodes_.insert(inode);
}

void ShmemSwaplist::remove(ShmemInode* inode) {
  MutexGuard g(lock_);
  inodes_.erase(inode);
}

std::vector<ShmemInode*> ShmemSwaplist::get_all() {
  std::vector<ShmemInode*> out;
  MutexGuard g(lock_);
  // An inode whose last reference went is still listed until its destructor removes it
  // (under this lock, before the memory goes): tryget skips it.
  for (ShmemInode* inode : inodes_)
    if (inode->tryget()) out.push_back(inode);
  return out;
}

// ---- the inode ----

namespace {
// shmem_free_swap: drops the map count an inode slot held (the slot already left the inode),
// and the entry's swap-cache copy once nothing else references the slot. Unlike a zap's
// free_swap_and_cache it waits for the copy's page lock: a swap-in that lost its slot to
// truncation may hold it, and backs out without freeing the copy while this count is still
// there. Callers hold no lock ranked at or after the page lock.
void shmem_free_swap(System* sys, uint64_t entry) {
  if (!swap_free(sys, entry)) return;
  Page* page = swap_cache_get_folio(sys, entry);
  if (!page) return;  // a swap-in still reading it frees it when it finds its slot gone
  lock_page(page);
  if (page->test(PG_swapcache) && page->swap == entry) folio_free_swap(sys, page);
  unlock_page(page);
  sys->mem().put_page(page);
}

// A page that left the cache for good (the caller removed it from its slot and holds the
// cache's reference): PG_shmem and mapping are cleared under the page lock, which is what
// a page-lock holder (reclaim) relies on to find the page's inode alive; the rmap notifiers
// hear of it with the page locked; then the cache's reference goes. Callers hold no lock
// ranked at or after the page lock.
void release_cache_page(PhysMem* mem, Page* p) {
  lock_page(p);
  p->clear(PG_shmem);
  p->mapping = nullptr;
  if (p->test(PG_external_rmap)) mmu_rmap_notify_page(mem, p);
  unlock_page(p);
  mem->put_page(p);
}
}  // namespace

ShmemInode::ShmemInode(System* sys, std::string name, uint64_t size, InodeKind kind)
    : sys_(sys),
      mem_(&sys->mem()),
      name_(std::move(name)),
      kind_(kind),
      disk_(kind == InodeKind::kRegular ? std::make_unique<DiskBlocks>() : nullptr),
      size_(size) {}

ShmemInode::~ShmemInode() {
  std::vector<Page*> pages;
  std::vector<uint64_t> entries;
  {
    MutexGuard g(lock_);
    for (auto& [idx, chunk] : chunks_) {
      for (Slot s : chunk->slots) {
        if (!s) continue;
        if (xa_is_value(s))
          entries.push_back(xa_to_value(s));
        else
          pages.push_back(slot_page(s));
      }
    }
    chunks_.clear();
    not_uptodate_.clear();
    if (nr_swapped_) sys_->shmem_swaplist().remove(this);
    nr_swapped_ = 0;
    nr_pages_ = 0;
  }
  // truncate_inode_pages_final: each page leaves under its lock, so a reclaimer holding it
  // (shmem_writeout) still finds this inode alive and the page no longer in its cache.
  for (Page* p : pages) release_cache_page(mem_, p);
  // The inode's map counts go, with their swap-cache copies when unused.
  for (uint64_t entry : entries) shmem_free_swap(sys_, entry);
}

ShmemInode::Slot* ShmemInode::slot_locked(uint64_t pgoff) {
  auto it = chunks_.find(pgoff >> kChunkShift);
  return it == chunks_.end() ? nullptr : &it->second->slots[pgoff & ((1 << kChunkShift) - 1)];
}

void ShmemInode::slot_cleared_locked(uint64_t pgoff) {
  auto it = chunks_.find(pgoff >> kChunkShift);
  MM_BUG_ON(it == chunks_.end());
  if (--it->second->used == 0) chunks_.erase(it);
}

void ShmemInode::swapped_inc_locked() {
  if (nr_swapped_++ == 0) sys_->shmem_swaplist().add(this);
}

void ShmemInode::swapped_dec_locked() {
  MM_BUG_ON(nr_swapped_ == 0);
  if (--nr_swapped_ == 0) sys_->shmem_swaplist().remove(this);
}

Page* ShmemInode::filemap_get_folio(uint64_t pgoff) {
  MutexGuard g(lock_);
  Slot* s = slot_locked(pgoff);
  Page* p = s ? slot_page(*s) : nullptr;
  if (p && not_uptodate_.count(pgoff)) return nullptr;
  if (p) mem_->get_page(p);
  return p;
}

bool ShmemInode::has_folio(uint64_t pgoff) {
  MutexGuard g(lock_);
  Slot* s = slot_locked(pgoff);
  return s && *s;
}

Page* ShmemInode::find_get_page(uint64_t pgoff) {
  Result<Page*> r = shmem_get_folio(pgoff, Sgp::kRead);
  return r.ok() ? r.value() : nullptr;
}

Page* ShmemInode::find_or_create_page(uint64_t pgoff, bool* read_in) {
  Result<Page*> r = shmem_get_folio(pgoff, Sgp::kCreate, read_in);
  return r.ok() ? r.value() : nullptr;
}

std::vector<Page*> ShmemInode::dirty_pages(uint64_t first, uint64_t last) {
  std::vector<Page*> out;
  MutexGuard g(lock_);
  for (auto& [idx, chunk] : chunks_) {
    const uint64_t base = idx << kChunkShift;
    if (base > last || base + (1 << kChunkShift) <= first) continue;
    for (int i = 0; i < (1 << kChunkShift); i++) {
      Page* p = slot_page(chunk->slots[i]);
      if (!p || base + i < first || base + i > last || !p->test(PG_dirty)) continue;
      mem_->get_page(p);
      out.push_back(p);
    }
  }
  std::sort(out.begin(), out.end(), [](const Page* a, const Page* b) { return a->index < b->index; });
  return out;
}

Result<Page*> ShmemInode::shmem_get_folio(uint64_t pgoff, Sgp sgp, bool* read_in) {
  if (read_in) *read_in = false;
  for (;;) {
    uint64_t entry = 0;
    {
      MutexGuard g(lock_);
      if (Slot* s = slot_locked(pgoff); s && *s) {
        if (Page* p = slot_page(*s)) {
          mem_->get_page(p);  // under lock_: a writeout sees it (refcount) and refuses
          // A read of a page that is not uptodate makes it so (filemap_read_folio); its data
          // is already the disk's.
          if (sgp == Sgp::kCreate && not_uptodate_.erase(pgoff) && read_in) *read_in = true;
          return p;
        }
        entry = xa_to_value(*s);
      } else if (sgp == Sgp::kRead) {
        return static_cast<Page*>(nullptr);
      }
    }
    if (entry) {
      Page* page = nullptr;
      switch (shmem_swapin_folio(pgoff, entry, &page)) {
        case Swapin::kOk:
          return page;
        case Swapin::kNoMem:
          return Errno::kNoMem;
        case Swapin::kRetry:
          continue;
      }
    }
    // shmem_alloc_and_add_folio: the frame is allocated with no lock held and inserted under
    // lock_; a racing fault that filled the slot first wins, and this page goes back.
    // A regular file's page is read from its block (filemap_read_folio; a hole reads as
    // zeros), with no lock held: the block changes only by writeback of a cached page or by
    // truncation, which first removes the page from every mapping.
    Page* p = mem_->alloc_page(is_regular() ? Zero::kNo : Zero::kYes, Gfp::kUser);  // may reclaim
    if (!p) return Errno::kNoMem;
    if (is_regular()) disk_->read(pgoff, mem_->page_address(p));
    // A swap-backed page (shmem) goes on the anon LRU lists once in the cache; a regular
    // file's on the file lists.
    if (add_to_page_cache(p, pgoff, is_regular() ? 0u : uint32_t{PG_swapbacked}, /*uptodate=*/true, /*caller_ref=*/true)) {
      if (read_in) *read_in = true;
      return p;
    }
  }
}

bool ShmemInode::add_to_page_cache(Page* p, uint64_t pgoff, uint32_t flags, bool uptodate, bool caller_ref) {
  p->set(static_cast<PageFlags>(PG_shmem | flags));
  p->mapping = this;
  p->index = pgoff;
  {
    MutexGuard g(lock_);
    auto& chunk = chunks_[pgoff >> kChunkShift];
    if (!chunk) chunk = std::make_unique<Chunk>();
    Slot& slot = chunk->slots[pgoff & ((1 << kChunkShift) - 1)];
    if (!slot) {
      slot = page_slot(p);  // the cache's reference
      chunk->used++;
      nr_pages_++;
      if (!uptodate) not_uptodate_.insert(pgoff);
      folio_add_lru(*mem_, p);  // the lru add of filemap_add_folio / shmem_alloc_and_add_folio
      if (caller_ref) mem_->get_page(p);
      return true;
    }
  }
  p->clear(static_cast<PageFlags>(PG_shmem | flags));
  p->mapping = nullptr;
  mem_->put_page(p);
  return false;
}

ShmemInode::Swapin ShmemInode::shmem_swapin_folio(uint64_t pgoff, uint64_t entry, Page** out) {
  System* sys = sys_;
  SwapInfo* si = get_swap_device(sys, entry);
  if (!si) return Swapin::kRetry;  // swapoff finished: the slot no longer holds this entry
  Page* page = nullptr;
  bool read = false;
  switch (read_swap_cache_locked(sys, si, entry, Gfp::kUser, &page, &read)) {
    case SwapinStatus::kOk:
      if (read) mem_->events().count(PGMAJFAULT);  // the data came from the swap device
      break;
    case SwapinStatus::kBusy:
      // Another swap-in of this entry is reading it, or its page is still on its way into or
      // out of the swap cache: wait, unless the slot moved on meanwhile.
      put_swap_device(si);
      explore_hook::wait_yield();
      return Swapin::kRetry;
    case SwapinStatus::kGone:  // the slot was freed: the inode no longer holds this entry
      put_swap_device(si);
      return Swapin::kRetry;
    case SwapinStatus::kNoMem:
    case SwapinStatus::kIoError:
      put_swap_device(si);
      return Swapin::kNoMem;
  }
  // The page is locked and is the entry's swap-cache page: into the page cache, if the slot
  // still holds the entry (a truncation may have freed it meanwhile).
  bool added = false;
  {
    MutexGuard g(lock_);
    Slot* s = slot_locked(pgoff);
    if (s && *s == xa_mk_value(entry)) {
      page->set(PG_shmem);
      page->mapping = this;
      page->index = pgoff;
      mem_->get_page(page);  // the page cache's reference
      *s = page_slot(page);
      nr_pages_++;
      swapped_dec_locked();
      added = true;
    }
  }
  if (!added) {
    // The swap-cache copy goes when nothing references its slot any more; otherwise the
    // truncation that took the slot frees it after this page lock (shmem_free_swap).
    folio_free_swap(sys, page);
    unlock_page(page);
    mem_->put_page(page);
    put_swap_device(si);
    return Swapin::kRetry;
  }
  // The inode's map count first, then out of the swap cache (HAS_CACHE cleared): the slot is
  // free. In the other order a lookup that read the entry before the slot changed could
  // claim the slot between the two (swapcache_prepare on a count without HAS_CACHE) and read
  // it a second time; in this one it finds the page in the cache or the slot busy or free.
  swap_free(sys, entry);
  delete_from_swap_cache(sys, page);
  // The only copy of the data is in memory now: reclaim must write it again.
  page->set(PG_dirty);
  unlock_page(page);
  put_swap_device(si);
  *out = page;  // the caller's reference, from the lookup or the allocation
  return Swapin::kOk;
}

bool ShmemInode::is_resident(uint64_t pgoff) {
  uint64_t entry = 0;
  {
    MutexGuard g(lock_);
    Slot* s = slot_locked(pgoff);
    if (!s || !*s) return false;
    if (not_uptodate_.count(pgoff)) return false;  // mincore_page: folio_test_uptodate
    if (!xa_is_value(*s)) return true;
    entry = xa_to_value(*s);
  }
  // filemap_get_incore_folio: a swapped-out page is in core while the swap cache holds it.
  Page* page = swap_cache_get_folio(sys_, entry);
  if (!page) return false;
  mem_->put_page(page);
  return true;
}

uint64_t ShmemInode::nr_pages() {
  MutexGuard g(lock_);
  return nr_pages_;
}

uint64_t ShmemInode::nr_swapped() {
  MutexGuard g(lock_);
  return nr_swapped_;
}

uint64_t ShmemInode::partial_swap_usage(uint64_t start, uint64_t end) {
  uint64_t swapped = 0;
  MutexGuard g(lock_);
  // The cache is sparse: visit the chunks that exist rather than every index of the range.
  for (const auto& [idx, chunk] : chunks_) {
    const uint64_t first = idx << kChunkShift, last = first + (1u << kChunkShift);
    if (last <= start || first >= end) continue;
    for (uint64_t i = std::max(first, start); i < std::min(last, end); i++)
      if (xa_is_value(chunk->slots[i - first])) swapped++;
  }
  return swapped << kPageShift;
}

bool ShmemInode::zero_cached_tail(uint64_t from) {
  Page* p = find_get_page(from >> kPageShift);
  if (!p) return false;
  p->set(PG_dirty);
  uint8_t* d = mem_->page_address(p);
  MM_TSAN_IGNORE_BEGIN();  // mappings may access the page meanwhile, as on Linux
  std::memset(d + offset_in_page(from), 0, kPageSize - offset_in_page(from));
  MM_TSAN_IGNORE_END();
  mem_->put_page(p);
  return true;
}

void ShmemInode::zero_partial_block(uint64_t from) {
  MM_BUG_ON(!is_regular());
  const uint64_t pgoff = from >> kPageShift;
  disk_->zero_tail(from);
  // A block that is a hole has no mapped buffer: __ext4_block_zero_page_range leaves the page
  // alone (clean, its tail already zeroes). A block is mapped once written back (it is on the
  // disk) or once dirtied (page_mkwrite's delayed-allocation reservation).
  if (Page* p = find_get_page(pgoff)) {
    const bool mapped = p->test(PG_dirty) || disk_->has_block(pgoff);
    mem_->put_page(p);
    if (!mapped || zero_cached_tail(from)) return;
  }
  Page* p = mem_->alloc_page(Zero::kNo, Gfp::kUser);  // no lock held: may reclaim
  if (!p) return;  // the page cache is only an optimisation here
  const bool has_block = disk_->read_if_present(pgoff, mem_->page_address(p));
  if (!has_block) std::memset(mem_->page_address(p), 0, kPageSize);
  add_to_page_cache(p, pgoff, has_block ? uint32_t{PG_dirty} : 0u, /*uptodate=*/false, /*caller_ref=*/false);
}

void ShmemInode::zero_eof_tail(uint64_t old_size) {
  MM_BUG_ON(!is_regular());
  if (offset_in_page(old_size)) zero_partial_block(old_size);
}

void ShmemInode::truncate_pages(uint64_t size) {
  const uint64_t first = page_align(size) >> kPageShift;
  if (offset_in_page(size)) {
    // shmem_undo_range marks the partial page dirty before truncate_inode_partial_folio
    // zeroes its tail: the zeroes exist only in memory now, so reclaim must keep the page.
    // This holds for a "resize" to the current size too (shmem_setattr truncates whenever
    // the size does not grow). A swapped-out partial page is brought back to be zeroed; the
    // reference held here keeps reclaim from writing it out before it is. A regular file's
    // blocks are truncated first, then its partial block zeroed (ext4_truncate).
    if (is_regular()) {
      disk_->truncate(size);
      zero_partial_block(size);
    } else {
      zero_cached_tail(size);
    }
  } else if (is_regular()) {
    disk_->truncate(size);
  }
  remove_cache_range(first, UINT64_MAX);
}

void ShmemInode::punch_hole(uint64_t first, uint64_t last) {
  // shmem_fallocate / ext4_punch_hole: the shared mappings of the range go first (private
  // copies stay), then its pages, swap entries and disk blocks; a second unmap catches a
  // fault that mapped a page between the two.
  unmap_mapping_range(this, first, ZapCows::kSharedOnly, last);
  if (is_regular()) disk_->punch(first, last);
  remove_cache_range(first, last);
  unmap_mapping_range(this, first, ZapCows::kSharedOnly, last);
}

void ShmemInode::remove_cache_range(uint64_t first, uint64_t last) {
  std::vector<Page*> removed;
  std::vector<uint64_t> entries;
  {
    MutexGuard g(lock_);
    for (auto it = chunks_.begin(); it != chunks_.end();) {
      Chunk& c = *it->second;
      const uint64_t base = it->first << kChunkShift;
      for (int i = 0; i < (1 << kChunkShift); i++) {
        if (!c.slots[i] || base + i < first || base + i >= last) continue;
        const Slot s = c.slots[i];
        c.slots[i] = 0;
        c.used--;
        if (xa_is_value(s)) {
          entries.push_back(xa_to_value(s));
          swapped_dec_locked();
          continue;
        }
        nr_pages_--;
        not_uptodate_.erase(base + i);
        removed.push_back(slot_page(s));
      }
      if (c.used == 0) it = chunks_.erase(it); else ++it;
    }
  }
  for (Page* p : removed) release_cache_page(mem_, p);
  // The inode's map counts, and the swap-cache copies nothing else uses.
  for (uint64_t entry : entries) shmem_free_swap(sys_, entry);
}

bool ShmemInode::remove_clean_page(uint64_t pgoff, Page* page) {
  {
    MutexGuard g(lock_);
    Slot* s = slot_locked(pgoff);
    // A swap entry in the slot is not `page` (which is then not this cache's any more).
    if (!s || *s != page_slot(page) || page->test(PG_dirty) || page->test(PG_writeback) ||
        page->mapcount.load(std::memory_order_acquire) != 0)
      return false;
    // __remove_mapping's folio_ref_freeze: only the cache's reference and the caller's may be
    // left. A fault (or fault-around) that found the page takes its reference under lock_ and
    // maps the page afterwards; removing it meanwhile would map a page the cache no longer has.
    if (folio_ref_count(page) != 2) return false;
    *s = 0;
    nr_pages_--;
    not_uptodate_.erase(pgoff);
    slot_cleared_locked(pgoff);
  }
  release_cache_page(mem_, page);
  return true;
}

Errno ShmemInode::migrate_folio_mapping(Page* page, Page* newpage, int32_t expected) {
  MutexGuard g(lock_);
  Slot* s = slot_locked(page->index);
  if (!s || *s != page_slot(page)) return Errno::kAgain;
  int32_t c = expected;
  if (!page->refcount.compare_exchange_strong(c, 0, std::memory_order_acq_rel)) return Errno::kAgain;
  newpage->mapping = this;
  newpage->index = page->index;
  newpage->set(PG_shmem);
  newpage->refcount.fetch_add(1, std::memory_order_relaxed);  // the cache's
  *s = page_slot(newpage);
  page->refcount.store(expected - 1, std::memory_order_release);
  return Errno::kOk;
}

bool ShmemInode::writeout(Page* page) {
  // folio_alloc_swap: a free slot (map = HAS_CACHE) on the first device with room.
  SwapTable& t = swap_table_of(sys_);
  SwapInfo* si = nullptr;
  uint64_t off = 0;
  for (unsigned type = 0; type < kMaxSwapFiles && !off; type++) {
    si = t.info(type);
    if (!si->get(1)) continue;
    off = si->alloc_slot();
    if (!off) put_swap_device(si);
  }
  if (!off) return false;
  const uint64_t entry = swp_entry(si->type(), off);
  // swap_shmem_alloc: the count the inode's slot will hold, taken before the entry is
  // published (a lookup of the entry must find its slot referenced). The slot's lock ranks
  // below lock_, so this happens outside it.
  MM_BUG_ON(si->duplicate(off) != Errno::kOk);
  bool moved = false;
  {
    MutexGuard g(lock_);
    Slot* s = slot_locked(page->index);
    // Lookups take their references under lock_, so with the refcount at the cache's and the
    // caller's, nobody can reach the page any more once the slot holds the entry.
    if (s && *s == page_slot(page) && page->mapcount.load(std::memory_order_acquire) == 0 &&
        folio_ref_count(page) == 2) {
      // The cache's reference moves from the page cache to the swap cache.
      page->swap = entry;
      page->set(PG_swapbacked);
      page->set(PG_swapcache);
      si->cache_insert(off, page);
      *s = xa_mk_value(entry);
      nr_pages_--;
      swapped_inc_locked();
      page->clear(PG_shmem);
      page->mapping = nullptr;
      moved = true;
    }
  }
  if (!moved) {
    (void)si->free_one(off);
    si->cache_clear(off);  // the slot is free again
    put_swap_device(si);
    return false;
  }
  put_swap_device(si);  // the page's HAS_CACHE use keeps the device on from here
  page->set(PG_dirty);  // its data exists only in memory until written
  return swap_writepage(sys_, page) == Errno::kOk;
}

bool ShmemInode::unuse(unsigned type) {
  std::vector<uint64_t> pgoffs;
  {
    MutexGuard g(lock_);
    for (auto& [idx, chunk] : chunks_)
      for (int i = 0; i < (1 << kChunkShift); i++)
        if (xa_is_value(chunk->slots[i]) && swp_type(xa_to_value(chunk->slots[i])) == type)
          pgoffs.push_back((idx << kChunkShift) + i);
  }
  // No entry of the device appears after the scan: swapoff made it kDying, and alloc_slot
  // hands out no slot of a device that is not kActive.
  for (uint64_t pgoff : pgoffs) {
    Result<Page*> r = shmem_get_folio(pgoff, Sgp::kRead);
    if (!r.ok()) return false;
    if (r.value()) mem_->put_page(r.value());
  }
  return true;
}

bool shmem_writeout(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load() & PG_locked) || !page->test(PG_shmem) || page->test(PG_swapcache));
  (void)sys;  // the inode knows its machine
  if (page->mapcount.load(std::memory_order_acquire) != 0 || folio_ref_count(page) != 2)
    return false;
  // PG_shmem and mapping change only under the page lock (release_cache_page, swap-in), so
  // the inode is alive: its destruction waits for this lock before it returns.
  auto* inode = static_cast<ShmemInode*>(page->mapping);
  MM_BUG_ON(!inode);
  return inode->writeout(page);
}

bool shmem_unuse(System* sys, unsigned type) {
  bool ok = true;
  for (ShmemInode* inode : sys->shmem_swaplist().get_all()) {
    if (ok) ok = inode->unuse(type);
    inode->put();
  }
  return ok;
}

void ShmemInode::i_mmap_insert(Vma* vma) {
  MutexGuard g(i_mmap_lock_);
  i_mmap_insert_locked(vma);
}

void ShmemInode::i_mmap_remove(Vma* vma) {
  MutexGuard g(i_mmap_lock_);
  i_mmap_remove_locked(vma);
}

void ShmemInode::i_mmap_insert_locked(Vma* vma) {
  Vma::IMmapNode& n = vma->shared;
  n.vma = vma;
  n.start = vma->vm_pgoff;
  n.last = vma->vm_pgoff + vma->pages() - 1;
  i_mmap_.insert(&n);
}

void ShmemInode::i_mmap_remove_locked(Vma* vma) {
  if (vma->shared.in_tree) i_mmap_.erase(&vma->shared);
}

File* open_file(ShmemInode* inode, bool writable) {
  File* f = new File();
  inode->get();
  f->inode = inode;
  f->writable = writable;
  return f;
}

}  // namespace mirrormm
