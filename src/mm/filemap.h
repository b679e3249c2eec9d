// Regular files on the model disk: their blocks, reads (filemap_read), dirty tracking and
// writeback (mm/filemap.c, mm/page-writeback.c, folio_mkclean of mm/rmap.c), msync and fsync.
//
// A regular file is a ShmemInode of InodeKind::kRegular (shmem.h): the page cache is the
// same; what differs is the backing store. Its pages come from its DiskBlocks, and a page
// written through a mapping must reach the disk again before reclaim may drop it.
//
// Dirty tracking (write-notify, as vma_wants_writenotify arranges for a shared writable
// mapping of a file with writeback):
//   - a shared writable VMA of a regular file maps its pages write-protected
//     (vma_set_page_prot); the first write to a clean page faults and goes through
//     do_page_mkwrite: under the page lock the page is marked dirty, then the PTE becomes
//     writable and dirty;
//   - a dirty PTE that is zapped or unmapped carries its dirty bit to PG_dirty;
//   - writeback (folio_clear_dirty_for_io) takes the page lock, write-protects and cleans
//     every PTE mapping the page (folio_mkclean, each one bracketed by
//     invalidate_range_start/end(MMU_NOTIFY_PROTECTION_PAGE) so that secondary MMUs lose
//     write access too), clears PG_dirty, sets PG_writeback, writes the page to its block,
//     and clears PG_writeback, all before unlocking the page.
// Because the page-mkwrite path and writeback both hold the page lock, a write that faults
// after the page was cleaned finds it clean and dirties it again: no write is lost.
//
// Memory ordering: the copies between pages and blocks are plain byte copies; a user access
// racing with a copy is a data race the model allows, as Linux does (the access is through a
// PTE that is read-only during writeback, so only readers can race with it).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mm/lock_order.h"
#include "mm/mm_types.h"

namespace mirrormm {

struct Page;
class ShmemInode;
class System;

// The blocks of one regular file on the model disk: 4 KiB blocks indexed by file page
// offset, sparse (a block never written is a hole and reads as zeros). Kept in memory.
// Guarded by lock_, a leaf: the copies happen under it, never any mm work.
class DiskBlocks {
 public:
  DiskBlocks() = default;
  DiskBlocks(const DiskBlocks&) = delete;
  DiskBlocks& operator=(const DiskBlocks&) = delete;

  // Copies block `index` to dst (kPageSize bytes); zeros for a hole.
  void read(uint64_t index, uint8_t* dst) EXCLUDES(lock_);
  // Copies block `index` to dst if it exists; returns whether it did.
  bool read_if_present(uint64_t index, uint8_t* dst) EXCLUDES(lock_);
  // Whether block `index` is allocated (not a hole).
  bool has_block(uint64_t index) EXCLUDES(lock_);
  // Writes kPageSize bytes from src to block `index`, allocating it.
  void write(uint64_t index, const uint8_t* src) EXCLUDES(lock_);
  // Frees the blocks wholly at or beyond byte `size` and zeroes the rest of the block that
  // holds byte `size`.
  void truncate(uint64_t size) EXCLUDES(lock_);
  // Frees the blocks [first, last) (fallocate's FALLOC_FL_PUNCH_HOLE): they read as zeros.
  void punch(uint64_t first, uint64_t last) EXCLUDES(lock_);
  // Zeroes [from, end of its block) if that block exists.
  void zero_tail(uint64_t from) EXCLUDES(lock_);
  // Allocated blocks, and block writes so far.
  uint64_t nr_blocks() EXCLUDES(lock_);
  uint64_t nr_writes() EXCLUDES(lock_);

 private:
  Mutex lock_{lock_class::kDiskBlocks};
  std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> blocks_ GUARDED_BY(lock_);
  uint64_t writes_ GUARDED_BY(lock_) = 0;
};

// vma_wants_writenotify: a shared mapping with write permission of a file whose pages are
// written back (a regular file) maps clean pages read-only, so that the first write to each
// is seen. Shared memory has no writeback and is not write-notify.
bool vma_wants_writenotify(const Vma* vma);

// folio_mkclean: write-protects and cleans every PTE that maps `page` (locked, a page-cache
// page of a regular file), through the reverse map over the file's i_mmap. Each change is
// bracketed by invalidate_range_start/end(kProtectionPage) for the page's address, and a PTE
// that was dirty carries its dirty bit to the page. Returns the number of PTEs cleaned.
int folio_mkclean(System* sys, Page* page);

// Writes one locked page-cache page of a regular file back when it is dirty
// (folio_clear_dirty_for_io + the file system's writepage + folio_end_writeback): returns
// whether it wrote. The page stays locked throughout, so PG_writeback is visible only to
// lockless observers (pageinfo, reclaim's look).
bool writeback_locked_page(ShmemInode* inode, Page* page);

// filemap_write_and_wait_range over the page offsets [first, last]: writes back every dirty
// page of the range and waits for it (writes are synchronous). A no-op for shared memory.
// Returns the number of pages written.
uint64_t filemap_write_and_wait_range(ShmemInode* inode, uint64_t first, uint64_t last);

// vfs_fsync_range for the byte range [start, end] of a file: a regular file's dirty pages of
// the range are written back; shared memory's fsync does nothing (noop_fsync). Never fails
// on the model disk; a character device has no fsync (-EINVAL).
Errno vfs_fsync_range(ShmemInode* inode, uint64_t start, uint64_t end);

// read(2)/pread(2) of a file at byte offset pos (filemap_read, shmem_file_read_iter): up to
// len bytes, fewer at the end of the file, none at or beyond it. A regular file's pages are
// brought into the page cache (exactly the pages read: the host runner reads with
// POSIX_FADV_RANDOM); a hole of shared memory reads as zeros without allocating a page.
// -ENOMEM when a page cannot be allocated before anything was read.
Result<std::vector<uint8_t>> filemap_read(ShmemInode* inode, uint64_t pos, uint64_t len);

// balance_dirty_pages_ratelimited: a fault just dirtied a page of a regular file. Every
// kDirtyRatelimit calls the flusher is woken to compare the dirty pages with the background
// threshold (it starts writing back only above it).
void balance_dirty_pages_ratelimited(System* sys);

// force_page_cache_ra: reads the pages [first, first + nr) of a regular file that lie before
// its end into the page cache (POSIX_FADV_WILLNEED, MADV_WILLNEED), at most
// SystemConfig::readahead_max_pages of them. Stops early when out of frames.
void force_page_cache_ra(ShmemInode* inode, uint64_t first, uint64_t nr);

// The dirty pages of one inode's cache (a scan; for the flusher's threshold and tests).
uint64_t count_dirty_pages(ShmemInode* inode);

}  // namespace mirrormm
