// Regular files on the model disk: block I/O, reads, folio_mkclean and writeback. The
// protocol is described in filemap.h.
#include "mm/filemap.h"

#include <algorithm>
#include <cstring>

#include "mirrormm/base/tsan.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/rmap.h"
#include "mm/shmem.h"
#include "mm/system_internal.h"

namespace mirrormm {

// ---- the blocks ----

void DiskBlocks::read(uint64_t index, uint8_t* dst) {
  MutexGuard g(lock_);
  auto it = blocks_.find(index);
  if (it == blocks_.end())
    std::memset(dst, 0, kPageSize);
  else
    std::memcpy(dst, it->second.get(), kPageSize);
}

bool DiskBlocks::read_if_present(uint64_t index, uint8_t* dst) {
  MutexGuard g(lock_);
  auto it = blocks_.find(index);
  if (it == blocks_.end()) return false;
  std::memcpy(dst, it->second.get(), kPageSize);
  return true;
}

bool DiskBlocks::has_block(uint64_t index) {
  MutexGuard g(lock_);
  return blocks_.count(index) != 0;
}

void DiskBlocks::write(uint64_t index, const uint8_t* src) {
  MutexGuard g(lock_);
  auto& b = blocks_[index];
  if (!b) b = std::make_unique<uint8_t[]>(kPageSize);
  MM_TSAN_IGNORE_BEGIN();  // a mapping may read the page being written, as on Linux
  std::memcpy(b.get(), src, kPageSize);
  MM_TSAN_IGNORE_END();
  writes_++;
}

void DiskBlocks::truncate(uint64_t size) {
  const uint64_t first = page_align(size) >> kPageShift;
  {
    MutexGuard g(lock_);
    for (auto it = blocks_.begin(); it != blocks_.end();) {
      if (it->first >= first) it = blocks_.erase(it); else ++it;
    }
  }
  if (offset_in_page(size)) zero_tail(size);
}

void DiskBlocks::punch(uint64_t first, uint64_t last) {
  MutexGuard g(lock_);
  for (auto it = blocks_.begin(); it != blocks_.end();) {
    if (it->first >= first && it->first < last) it = blocks_.erase(it); else ++it;
  }
}

void DiskBlocks::zero_tail(uint64_t from) {
  MutexGuard g(lock_);
  auto it = blocks_.find(from >> kPageShift);
  if (it != blocks_.end()) std::memset(it->second.get() + offset_in_page(from), 0, kPageSize - offset_in_page(from));
}

uint64_t DiskBlocks::nr_blocks() {
  MutexGuard g(lock_);
  return blocks_.size();
}

uint64_t DiskBlocks::nr_writes() {
  MutexGuard g(lock_);
  return writes_;
}

// ---- write-notify ----

bool vma_wants_writenotify(const Vma* vma) {
  if ((vma->vm_flags & (VM_WRITE | VM_SHARED)) != (VM_WRITE | VM_SHARED)) return false;
  return vma->vm_file && vma->vm_file->inode->is_regular();
}

// ---- folio_mkclean ----

namespace {

// page_mkclean_one for the one PTE that may map `page` at `address` in `vma`.
bool page_mkclean_one(Page* page, Vma* vma, uint64_t address, int* cleaned) {
  Mm* mm = vma->vm_mm;
  pte_t* ptep = page_vma_mapped_pte(page, vma, address);
  if (!ptep) return true;
  // The bracket comes before the PTE lock (a subscriber's start callback may sleep); the
  // entry is looked at again under the lock.
  MmuNotifierBracket bracket(MmuNotifyEvent::kProtectionPage, mm, address, address + kPageSize);
  SpinGuard g(pte_lockptr(mm, ptep));
  const pteval_t cur = ptep_get(ptep);
  if (!pte_present(cur) || pte_special(cur) || pte_pfn(cur) != mm->mem().page_to_pfn(page)) return true;
  if (!pte_write(cur) && !pte_dirty(cur)) return true;
  // ptep_clear_flush, then the clean read-only entry: no CPU may keep a writable TLB entry
  // across the write to the disk.
  const pteval_t was = ptep_get_and_clear(ptep);
  flush_tlb_page(mm, address);
  const pteval_t now = pte_mkclean(pte_wrprotect(was));
  set_pte(ptep, now);
  mmu_checker_pte_change(mm, address, was, now);
  if (pte_dirty(was)) page->set(PG_dirty);
  (*cleaned)++;
  return true;
}

}  // namespace

int folio_mkclean(System* sys, Page* page) {
  MM_BUG_ON(!(page->flags.load(std::memory_order_relaxed) & PG_locked));
  if (!folio_mapped(page)) return 0;
  int cleaned = 0;
  RmapWalkControl rwc;
  rwc.sys = sys;
  rwc.rmap_one = [&cleaned](Page* p, Vma* vma, uint64_t address) {
    return page_mkclean_one(p, vma, address, &cleaned);
  };
  rmap_walk(page, rwc);
  return cleaned;
}

// ---- writeback ----

bool writeback_locked_page(ShmemInode* inode, Page* page) {
  MM_BUG_ON(!(page->flags.load(std::memory_order_relaxed) & PG_locked));
  // Truncated (or reclaimed) since the caller found it: nothing to write.
  if (page->mapping != inode || !page->test(PG_shmem)) return false;
  // folio_clear_dirty_for_io: the PTEs first, so that a write after this point faults (and
  // waits for the page lock) instead of dirtying the page unseen.
  if (folio_mkclean(inode->sys(), page)) page->set(PG_dirty);
  if (!(page->flags.fetch_and(~static_cast<uint32_t>(PG_dirty), std::memory_order_acq_rel) & PG_dirty)) return false;
  page->set(PG_writeback);
  PhysMem& mem = inode->sys()->mem();
  uint8_t* d = mem.page_address(page);
  // block_write_full_folio: the part of the last page beyond the end of the file is zeroed
  // in the page itself before it is written.
  const uint64_t size = inode->size();
  const uint64_t start = page->index << kPageShift;
  if (size < start + kPageSize) {
    const uint64_t keep = size > start ? size - start : 0;
    MM_TSAN_IGNORE_BEGIN();
    std::memset(d + keep, 0, kPageSize - keep);
    MM_TSAN_IGNORE_END();
  }
  inode->disk()->write(page->index, d);
  // folio_end_writeback: a page reclaim wanted gone is no longer held back by its data.
  page->clear(PG_reclaim);
  page->clear(PG_writeback);
  return true;
}

uint64_t filemap_write_and_wait_range(ShmemInode* inode, uint64_t first, uint64_t last) {
  if (!inode->is_regular()) return 0;
  uint64_t written = 0;
  PhysMem& mem = inode->sys()->mem();
  for (Page* page : inode->dirty_pages(first, last)) {
    lock_page(page);
    if (writeback_locked_page(inode, page)) written++;
    unlock_page(page);
    mem.put_page(page);
  }
  return written;
}

Errno vfs_fsync_range(ShmemInode* inode, uint64_t start, uint64_t end) {
  if (inode->is_device()) return Errno::kInval;  // a character device has no ->fsync
  if (start > end) return Errno::kOk;
  (void)filemap_write_and_wait_range(inode, start >> kPageShift, end >> kPageShift);
  return Errno::kOk;
}

void file_release(ShmemInode* inode) {
  if (!inode->is_regular() || !inode->test_clear_da_alloc_close()) return;
  // ext4_alloc_da_blocks: when some dirty page still waits for its block (delayed allocation
  // reserved it; a page whose block exists needs none), filemap_flush starts writeback of
  // every dirty page of the file. Writes are synchronous here.
  PhysMem& mem = inode->sys()->mem();
  bool reserved = false;
  for (Page* page : inode->dirty_pages(0, ~0ull)) {
    reserved = reserved || !inode->disk()->has_block(page->index);
    mem.put_page(page);
  }
  if (reserved) (void)filemap_write_and_wait_range(inode, 0, ~0ull);
}

uint64_t count_dirty_pages(ShmemInode* inode) {
  PhysMem& mem = inode->sys()->mem();
  std::vector<Page*> pages = inode->dirty_pages(0, ~0ull);
  for (Page* p : pages) mem.put_page(p);
  return pages.size();
}

// ---- reads ----

void force_page_cache_ra(ShmemInode* inode, uint64_t first, uint64_t nr) {
  nr = std::min(nr, inode->sys()->config().readahead_max_pages);
  const uint64_t end = std::min(first + nr, page_align(inode->size()) >> kPageShift);
  PhysMem& mem = inode->sys()->mem();
  for (uint64_t pgoff = first; pgoff < end; pgoff++) {
    if (inode->has_folio(pgoff)) continue;  // page_cache_ra_unbounded skips present folios
    Page* page = inode->find_or_create_page(pgoff);
    if (!page) return;
    mem.put_page(page);
  }
}

Result<std::vector<uint8_t>> filemap_read(ShmemInode* inode, uint64_t pos, uint64_t len) {
  std::vector<uint8_t> out;
  const uint64_t size = inode->size();
  if (pos >= size || len == 0) return out;
  const uint64_t end = pos + std::min(len, size - pos);
  out.reserve(end - pos);
  PhysMem& mem = inode->sys()->mem();
  for (uint64_t off = pos; off < end;) {
    const uint64_t pgoff = off >> kPageShift;
    const uint64_t n = std::min(end, (pgoff + 1) << kPageShift) - off;
    // A regular file reads through the page cache, bringing the page in; shared memory
    // reads a hole as zeros (shmem_file_read_iter's SGP_READ).
    Page* page = inode->is_regular() ? inode->find_or_create_page(pgoff) : inode->find_get_page(pgoff);
    if (!page && inode->is_regular()) {
      if (out.empty()) return Errno::kNoMem;
      break;  // a short read: what was read so far
    }
    if (page) {
      const uint8_t* src = mem.page_address(page) + offset_in_page(off);
      MM_TSAN_IGNORE_BEGIN();  // mappings may write the page meanwhile, as on Linux
      out.insert(out.end(), src, src + n);
      MM_TSAN_IGNORE_END();
      mem.put_page(page);
    } else {
      out.insert(out.end(), n, 0);
    }
    off += n;
  }
  return out;
}

}  // namespace mirrormm
