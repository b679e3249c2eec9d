#include "mm/shmem.h"

#include "mirrormm/base/tsan.h"
#include "mm/lru.h"
#include "mm/notifier_hooks.h"

#include <cstring>
#include <vector>

namespace mirrormm {

ShmemInode::ShmemInode(PhysMem* mem, std::string name, uint64_t size)
    : mem_(mem), name_(std::move(name)), size_(size) {}

ShmemInode::~ShmemInode() {
  MutexGuard g(lock_);
  for (auto& [idx, chunk] : chunks_) {
    for (Page* p : chunk->slots) {
      if (!p) continue;
      p->clear(PG_shmem);
      p->mapping = nullptr;
      mem_->put_page(p);
    }
  }
}

Page* ShmemInode::find_get_page(uint64_t pgoff) {
  MutexGuard g(lock_);
  auto it = chunks_.find(pgoff >> kChunkShift);
  if (it == chunks_.end()) return nullptr;
  Page* p = it->second->slots[pgoff & ((1 << kChunkShift) - 1)];
  if (p) mem_->get_page(p);
  return p;
}

Page* ShmemInode::find_or_create_page(uint64_t pgoff) {
  MutexGuard g(lock_);
  auto& chunk = chunks_[pgoff >> kChunkShift];
  if (!chunk) chunk = std::make_unique<Chunk>();
  Page*& slot = chunk->slots[pgoff & ((1 << kChunkShift) - 1)];
  if (!slot) {
    Page* p = mem_->alloc_page(Zero::kYes);
    if (!p) {
      if (chunk->used == 0) chunks_.erase(pgoff >> kChunkShift);
      return nullptr;
    }
    // shmem_alloc_and_add_folio: a swap-backed page, on the anon LRU lists once in the cache.
    p->flags.fetch_or(PG_shmem | PG_swapbacked, std::memory_order_relaxed);
    p->mapping = this;
    p->index = pgoff;
    slot = p;  // the cache's reference
    folio_add_lru(*mem_, p);
    chunk->used++;
    nr_pages_++;
  }
  mem_->get_page(slot);
  return slot;
}

bool ShmemInode::is_resident(uint64_t pgoff) {
  MutexGuard g(lock_);
  auto it = chunks_.find(pgoff >> kChunkShift);
  return it != chunks_.end() && it->second->slots[pgoff & ((1 << kChunkShift) - 1)] != nullptr;
}

uint64_t ShmemInode::nr_pages() {
  MutexGuard g(lock_);
  return nr_pages_;
}

namespace {
// A page that left the cache (and every mapping) for good: the rmap notifiers hear of it
// with the page locked, then the cache's reference goes.
void release_cache_page(PhysMem* mem, Page* p) {
  if (p->test(PG_external_rmap)) {
    lock_page(p);
    mmu_rmap_notify_page(mem, p);
    unlock_page(p);
  }
  mem->put_page(p);
}
}  // namespace

void ShmemInode::truncate_pages(uint64_t size) {
  const uint64_t first = page_align(size) >> kPageShift;
  std::vector<Page*> removed;
  {
  MutexGuard g(lock_);
  if (offset_in_page(size)) {
    const uint64_t pgoff = size >> kPageShift;
    auto it = chunks_.find(pgoff >> kChunkShift);
    if (it != chunks_.end()) {
      if (Page* p = it->second->slots[pgoff & ((1 << kChunkShift) - 1)]) {
        // shmem_undo_range marks the partial page dirty before truncate_inode_partial_folio
        // zeroes its tail: the zeroes exist only in memory now, so reclaim must keep the page.
        // This holds for a "resize" to the current size too (shmem_setattr truncates whenever
        // the size does not grow).
        p->set(PG_dirty);
        uint8_t* d = mem_->page_address(p);
        MM_TSAN_IGNORE_BEGIN();  // mappings may access the page meanwhile, as on Linux
        std::memset(d + offset_in_page(size), 0, kPageSize - offset_in_page(size));
        MM_TSAN_IGNORE_END();
      }
    }
  }
  for (auto it = chunks_.begin(); it != chunks_.end();) {
    Chunk& c = *it->second;
    const uint64_t base = it->first << kChunkShift;
    for (int i = 0; i < (1 << kChunkShift); i++) {
      if (!c.slots[i] || base + i < first) continue;
      Page* p = c.slots[i];
      c.slots[i] = nullptr;
      c.used--;
      nr_pages_--;
      p->clear(PG_shmem);
      p->mapping = nullptr;
      removed.push_back(p);
    }
    if (c.used == 0) it = chunks_.erase(it); else ++it;
  }
  }
  for (Page* p : removed) release_cache_page(mem_, p);
}

bool ShmemInode::remove_clean_page(uint64_t pgoff, Page* page) {
  {
  MutexGuard g(lock_);
  auto it = chunks_.find(pgoff >> kChunkShift);
  if (it == chunks_.end()) return false;
  Page*& slot = it->second->slots[pgoff & ((1 << kChunkShift) - 1)];
  if (slot != page || page->test(PG_dirty) || page->mapcount.load(std::memory_order_acquire) != 0) return false;
  // __remove_mapping's folio_ref_freeze: only the cache's reference and the caller's may be
  // left. A fault (or fault-around) that found the page takes its reference under lock_ and
  // maps the page afterwards; removing it meanwhile would map a page the cache no longer has.
  if (page->refcount.load(std::memory_order_acquire) != 2) return false;
  slot = nullptr;
  nr_pages_--;
  if (--it->second->used == 0) chunks_.erase(it);
  page->clear(PG_shmem);
  page->mapping = nullptr;
  }
  release_cache_page(mem_, page);
  return true;
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
