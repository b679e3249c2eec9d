// Shared memory files (mm/shmem.c's role): a page cache per inode, used by MAP_SHARED
// anonymous memory (one inode per mmap, as shmem_zero_setup makes) and by memfd files.
//
// The same page cache serves regular files on the model disk (InodeKind::kRegular, a disk
// file system's inode; filemap.h has their I/O): a page not in the cache is read from the
// inode's DiskBlocks (a hole reads as zeros), its pages are not swap-backed (they live on
// the file LRU lists and never go to swap), and a dirty page is written back to the disk
// (filemap.h: writeback, page_mkclean) instead of to swap. PG_shmem marks a page of either
// kind's cache ("mapping is a ShmemInode").
//
// Lifecycle: an inode is referenced by its Files (and by a name table for memfds); it frees its
// pages and swap entries when the last reference goes. Pages in the cache hold one reference
// each and carry PG_shmem with mapping = the inode and index = the page offset.
//
// Swap (shmem_writeout, shmem_swapin_folio): a cache slot holds either a page or, once reclaim
// wrote the page to swap, the page's swap entry as a tagged value (Linux's xa_value in the
// i_pages xarray). The entry holds one map count of its swap slot (swap_shmem_alloc), which
// the inode drops when the page comes back, is truncated or the inode dies. Every lookup that
// meets an entry brings the page back first (find_get_page, find_or_create_page); only
// fault-around (filemap_map_pages) and the checkers skip entries (filemap_get_folio).
//
//   shmem_writeout (page locked, unmapped)        shmem_swapin_folio
//   slot allocated: map = HAS_CACHE               entry read from the slot under lock_
//   map count +1 (the inode's, before publishing)  swap-cache page found, or swapcache_prepare
//   under lock_: slot still the page, refcount 2?    + new page + swap_read_folio + into the
//     page -> swap cache (PG_swapcache, swap),       swap cache (-EEXIST: wait and look again)
//     slot = entry, PG_shmem and mapping cleared   P, recheck PG_swapcache && swap == entry
//   swap_writepage                                under lock_: slot still the entry? slot =
//   caller: __remove_mapping, put_page              page (PG_shmem, mapping, index, a ref);
//                                                    else back out (folio_free_swap)
//                                                  swap_free (the inode's count), then
//                                                    delete_from_swap_cache, PG_dirty
//
// Frames are allocated and read with no inode lock held: the allocator may reclaim, and
// reclaim takes inode locks. lock_ (kInode) ranks below the swap device's slot lock
// (kSwapInfo), so map counts change outside lock_; the swap cache's lock nests inside it.
//
// An inode holding swap entries is on its System's ShmemSwaplist (shmem_swaplist), from which
// swapoff finds the entries of anonymous shared mappings too (they have no name).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mm/lock_order.h"
#include "mm/mm_types.h"
#include "mm/physmem.h"

namespace mirrormm {

class DiskBlocks;
class ShmemInode;
class System;

// What backs an inode's page cache: swap (shared memory) or the model disk (a regular file).
// A character device's inode (kDevice) has an i_mmap tree for its mappings but no page
// cache: its pages are the driver's, inserted by its mmap (vm_insert_page).
enum class InodeKind : uint8_t { kShmem, kRegular, kDevice };

// shmem_swaplist: the inodes of one System that hold swap entries, for swapoff. An inode is on
// it exactly while it holds at least one swap entry (ShmemInode::nr_swapped_ > 0): it adds and
// removes itself while holding its own lock_, inside which the swaplist's lock nests.
class ShmemSwaplist {
 public:
  ShmemSwaplist() = default;
  ShmemSwaplist(const ShmemSwaplist&) = delete;
  ShmemSwaplist& operator=(const ShmemSwaplist&) = delete;
  ~ShmemSwaplist();

  void add(ShmemInode* inode) EXCLUDES(lock_);
  void remove(ShmemInode* inode) EXCLUDES(lock_);
  // The listed inodes, each with a new reference (the caller puts it); an inode whose last
  // reference is already gone (being destroyed) is skipped.
  std::vector<ShmemInode*> get_all() EXCLUDES(lock_);

 private:
  // A leaf (lock_order.h): nothing is taken inside it.
  Mutex lock_{lock_class::kShmemSwaplist};
  std::unordered_set<ShmemInode*> inodes_ GUARDED_BY(lock_);
};

class ShmemInode {
 public:
  ShmemInode(System* sys, std::string name, uint64_t size, InodeKind kind = InodeKind::kShmem);
  ~ShmemInode();

  const std::string& name() const { return name_; }
  InodeKind kind() const { return kind_; }
  bool is_regular() const { return kind_ == InodeKind::kRegular; }
  bool is_device() const { return kind_ == InodeKind::kDevice; }
  // A regular file's blocks on the model disk; nullptr for shared memory.
  DiskBlocks* disk() const { return disk_.get(); }
  System* sys() const { return sys_; }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  void set_size(uint64_t size) { size_.store(size, std::memory_order_release); }
  // ext4's EXT4_STATE_DA_ALLOC_CLOSE (the auto_da_alloc mount option, on by default): a
  // truncate that leaves a regular file empty sets it; the next release of one of the
  // file's open file descriptions takes it (file_release).
  void set_da_alloc_close() { da_alloc_close_.store(true, std::memory_order_relaxed); }
  bool test_clear_da_alloc_close() { return da_alloc_close_.exchange(false, std::memory_order_relaxed); }

  // The page at pgoff, brought back from swap if it was swapped out; nullptr for a hole (or
  // when a swap-in runs out of frames). The returned page carries a new reference. Takes the
  // page lock when it swaps in: call it with no lock ranked at or after the page lock held.
  Page* find_get_page(uint64_t pgoff) EXCLUDES(lock_);
  // The page at pgoff, brought back from swap or allocated zeroed if absent (a regular file's
  // page is read from the disk: filemap_fault's read, filemap_read's); nullptr when out of
  // frames. The returned page carries a new reference; *read_in (if given) says whether the
  // page had to be brought in (a major fault). Locking as find_get_page.
  Page* find_or_create_page(uint64_t pgoff, bool* read_in = nullptr) EXCLUDES(lock_);
  // The pages of [first, last] marked dirty, each with a new reference, in index order (the
  // xarray's PAGECACHE_TAG_DIRTY walk of write_cache_pages).
  std::vector<Page*> dirty_pages(uint64_t first, uint64_t last) EXCLUDES(lock_);
  // filemap_get_folio: the page in memory at pgoff with a new reference, or nullptr for a hole
  // or a swap entry, or a regular file's page that is not uptodate (next_uptodate_folio).
  // Never sleeps or allocates: fault-around (under the PTE lock) and the checkers use it.
  Page* filemap_get_folio(uint64_t pgoff) EXCLUDES(lock_);
  // Whether the cache holds a page at pgoff, uptodate or not (readahead skips such indexes).
  bool has_folio(uint64_t pgoff) EXCLUDES(lock_);
  // Whether the page at pgoff is in memory (mincore; filemap_get_incore_folio): in the page
  // cache, or swapped out with its page still in the swap cache.
  bool is_resident(uint64_t pgoff) EXCLUDES(lock_);
  // Pages in memory in the cache (shmem's nrpages), and swap entries (info->swapped).
  uint64_t nr_pages() EXCLUDES(lock_);
  uint64_t nr_swapped() EXCLUDES(lock_);
  // shmem_partial_swap_usage: bytes of the swap entries in the slots [start, end).
  uint64_t partial_swap_usage(uint64_t start, uint64_t end) EXCLUDES(lock_);

  // shmem_writeout's work for this inode; see the free function below. Page locked, in this
  // cache, unmapped.
  bool writeout(Page* page) EXCLUDES(lock_);
  // shmem_unuse_inode: brings back every page of this inode that swap device `type` holds.
  // False when a swap-in ran out of frames.
  bool unuse(unsigned type) EXCLUDES(lock_);
  // Checkers: fn(pgoff, entry) for every swap entry in the cache, called without lock_.
  template <class Fn>
  void debug_for_each_swap_entry(Fn fn) EXCLUDES(lock_) {
    std::vector<std::pair<uint64_t, uint64_t>> entries;
    {
      MutexGuard g(lock_);
      for (auto& [idx, chunk] : chunks_)
        for (int i = 0; i < (1 << kChunkShift); i++)
          if (xa_is_value(chunk->slots[i])) entries.push_back({(idx << kChunkShift) + i, xa_to_value(chunk->slots[i])});
    }
    for (auto& [pgoff, entry] : entries) fn(pgoff, entry);
  }

  // The page-cache pages wholly beyond `size` leave the cache (truncate_inode_pages); the part
  // of the page holding byte `size` beyond it is zeroed and the page marked dirty
  // (shmem_undo_range, truncate_inode_partial_folio). A regular file's disk blocks beyond
  // `size` are freed and the tail of its last block zeroed (ext4_truncate); its partial page
  // is zeroed only when cached (ext4 reads no block to zero it).
  void truncate_pages(uint64_t size) EXCLUDES(lock_);
  // Punches the hole [first, last) (page offsets) into the file, keeping its size
  // (fallocate(FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE), MADV_REMOVE): the shared mappings
  // of the range are zapped (each under its own invalidation), and its pages, swap entries
  // and disk blocks freed; it reads as zeros from now on. Private copies stay.
  void punch_hole(uint64_t first, uint64_t last) EXCLUDES(lock_);
  // A regular file grows from old_size: the bytes of the old last page beyond old_size,
  // which a shared mapping may have written, read as zeros from now on (ext4's setattr zeroes
  // the block at the old end of file; writeback zeroes them too). The page, if cached, is
  // zeroed there and marked dirty.
  void zero_eof_tail(uint64_t old_size) EXCLUDES(lock_);

  // Reclaim of a clean page: removes `page` from the cache at pgoff unless it is dirty, mapped
  // or referenced by anyone but the cache and the caller (remove_mapping). Returns whether it
  // was removed. A slot holding a swap entry is left alone. Takes the page lock to clear the
  // page's cache state: call it with the page unlocked and no lock ranked after the page lock.
  bool remove_clean_page(uint64_t pgoff, Page* page) EXCLUDES(lock_);

  // Migration's page-cache step (folio_migrate_mapping): replaces `page` by `newpage` in the
  // slot at page->index, provided the slot still holds page and page's refcount is exactly
  // `expected` (the cache's, the migration's isolation reference, nothing else): the count is
  // frozen at zero for the exchange, so no lookup (they take references under lock_) and no
  // speculative get_page_unless_zero gets one meanwhile. The cache's reference moves to
  // newpage, which takes page's mapping and index and PG_shmem. -EAGAIN, nothing changed,
  // when someone else holds a reference or the page left the cache. Both pages are locked.
  // Regular files built on this class migrate through the same call.
  Errno migrate_folio_mapping(Page* page, Page* newpage, int32_t expected) EXCLUDES(lock_);

  // i_mmap: the VMAs that map this file, in an interval tree keyed by each VMA's page-offset
  // range (the reverse map for file pages). Maintained by vma_link/vma_unlink and re-keyed by
  // vma_set_range; unmap_mapping_range and rmap_walk_file walk it. mm_take_all_locks holds
  // every mapped file's i_mmap lock.
  Mutex& i_mmap_lock() RETURN_CAPABILITY(i_mmap_lock_) { return i_mmap_lock_; }
  void i_mmap_insert(Vma* vma) EXCLUDES(i_mmap_lock_);
  void i_mmap_remove(Vma* vma) EXCLUDES(i_mmap_lock_);
  void i_mmap_insert_locked(Vma* vma) REQUIRES(i_mmap_lock_);
  void i_mmap_remove_locked(Vma* vma) REQUIRES(i_mmap_lock_);
  // Calls fn(vma) for every mapping VMA with i_mmap_lock_ held: the VMAs cannot go away
  // meanwhile (unlinking one takes the lock).
  template <class Fn>
  void for_each_mapping(Fn fn) EXCLUDES(i_mmap_lock_) {
    MutexGuard g(i_mmap_lock_);
    i_mmap_.for_each([&](Vma::IMmapNode* n) { fn(n->vma); });
  }
  // vma_interval_tree_foreach: fn(vma) for every VMA mapping a page offset in [first, last];
  // the caller holds the i_mmap lock.
  template <class Fn>
  void for_each_mapping_of_locked(uint64_t first, uint64_t last, Fn fn) REQUIRES(i_mmap_lock_) {
    i_mmap_.for_each_overlap(first, last, [&](Vma::IMmapNode* n) {
      fn(n->vma);
      return true;
    });
  }

  void get() { refcount_.fetch_add(1, std::memory_order_relaxed); }
  // igrab: a new reference unless the last one is already gone.
  bool tryget() {
    int c = refcount_.load(std::memory_order_relaxed);
    while (c > 0)
      if (refcount_.compare_exchange_weak(c, c + 1, std::memory_order_acquire, std::memory_order_relaxed)) return true;
    return false;
  }
  void put() {
    if (refcount_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  // Removes the cached pages and swap entries of [first, last) (page offsets).
  void remove_cache_range(uint64_t first, uint64_t last) EXCLUDES(lock_);
  static constexpr int kChunkShift = 9;
  // A cache slot: 0 (a hole), a Page* (aligned, so bit 0 is clear), or xa_mk_value(entry).
  using Slot = uintptr_t;
  static bool xa_is_value(Slot s) { return s & 1; }
  static Slot xa_mk_value(uint64_t entry) { return (entry << 1) | 1; }  // swap entries use bits 12..62
  static uint64_t xa_to_value(Slot s) { return s >> 1; }
  static Page* slot_page(Slot s) { return xa_is_value(s) ? nullptr : reinterpret_cast<Page*>(s); }
  static Slot page_slot(Page* p) { return reinterpret_cast<Slot>(p); }
  struct Chunk {
    Slot slots[1 << kChunkShift] = {};
    int used = 0;  // slots that are not holes
  };
  // The slot at pgoff, or nullptr when its chunk does not exist.
  Slot* slot_locked(uint64_t pgoff) REQUIRES(lock_);
  // Counts a slot that became a hole, freeing its chunk when it was the last one in use.
  void slot_cleared_locked(uint64_t pgoff) REQUIRES(lock_);
  void swapped_inc_locked() REQUIRES(lock_);
  void swapped_dec_locked() REQUIRES(lock_);

  // shmem_get_folio: the page at pgoff (swapped in if needed; allocated when `create`), with a
  // reference; nullptr for a hole when not `create`; -ENOMEM when out of frames.
  enum class Sgp { kRead, kCreate };
  Result<Page*> shmem_get_folio(uint64_t pgoff, Sgp sgp, bool* read_in = nullptr) EXCLUDES(lock_);
  // shmem_swapin_folio: brings the page of `entry`, read from slot pgoff, back into the cache.
  // kRetry: the slot changed meanwhile (look again).
  enum class Swapin { kOk, kRetry, kNoMem };
  Swapin shmem_swapin_folio(uint64_t pgoff, uint64_t entry, Page** out) EXCLUDES(lock_);

  // filemap_add_folio (shmem_add_to_page_cache): inserts the new page p, allocated by the
  // caller with no lock held, at pgoff with PG_shmem and `flags`; the caller's reference
  // becomes the cache's and the LRU add batch gets one of its own. With `caller_ref` the
  // caller keeps a reference too; with !uptodate the page is recorded as not uptodate. When a
  // racing insertion filled the slot first, p is undone and freed, and the result is false.
  bool add_to_page_cache(Page* p, uint64_t pgoff, uint32_t flags, bool uptodate, bool caller_ref) EXCLUDES(lock_);
  // Zeroes [from, end of its page) in the cached page at from's index, if any, and marks
  // it dirty. Returns whether there was a page.
  bool zero_cached_tail(uint64_t from) EXCLUDES(lock_);
  // ext4's partial-block zeroing (__ext4_block_zero_page_range) at byte `from` of a regular
  // file: the cached page's tail is zeroed and the page dirtied; an uncached page gets a page
  // in the cache that is not uptodate (the folio that the zeroing creates without reading it):
  // mincore reports it absent, fault-around and readahead skip it, and the first read of it
  // (a fault, pread) makes it uptodate. It holds the disk's data (whose tail the truncation
  // zeroed) and is dirty when the disk has a block there (the zeroed buffer is dirty).
  void zero_partial_block(uint64_t from) EXCLUDES(lock_);

  System* const sys_;       // written once; the machine outlives its inodes
  PhysMem* const mem_;      // written once: sys_'s frames
  const std::string name_;  // written once
  const InodeKind kind_;    // written once
  const std::unique_ptr<DiskBlocks> disk_;  // written once; regular files only
  std::atomic<uint64_t> size_;
  std::atomic<bool> da_alloc_close_{false};  // atomic: set by truncates, taken by releases
  std::atomic<int> refcount_{1};
  Mutex lock_{lock_class::kInode};
  // pgoff >> kChunkShift -> 512 slots; 8 bytes of index per cached page or swap entry.
  std::unordered_map<uint64_t, std::unique_ptr<Chunk>> chunks_ GUARDED_BY(lock_);
  uint64_t nr_pages_ GUARDED_BY(lock_) = 0;
  uint64_t nr_swapped_ GUARDED_BY(lock_) = 0;  // swap entries in the slots (info->swapped)
  // A regular file's cached pages that are not uptodate (!PG_uptodate), by page offset; an
  // entry goes when its page does or when a read makes the page uptodate.
  std::unordered_set<uint64_t> not_uptodate_ GUARDED_BY(lock_);
  // i_mmap_rwsem's role: nests outside the PTE locks (truncate zaps under it).
  Mutex i_mmap_lock_{lock_class::kIMmap};
  IntervalTree<Vma::IMmapNode> i_mmap_ GUARDED_BY(i_mmap_lock_);
};

// file_release (filemap.cc): what the last put of an open file description does to its
// inode before dropping it (ext4_release_file; nothing for shared memory).
void file_release(ShmemInode* inode);

inline void get_file(File* f) { f->refcount.fetch_add(1, std::memory_order_relaxed); }
inline void fput(File* f) {
  if (f->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    file_release(f->inode);
    f->inode->put();
    delete f;
  }
}

// A new open file description of inode (takes an inode reference).
File* open_file(ShmemInode* inode, bool writable);

// shmem_writeout: reclaim's write of a shmem page to swap. `page` is locked, a page-cache page
// (PG_shmem), mapped by no PTE (try_to_unmap ran), and referenced exactly by its cache and by
// the caller (reclaim's isolation reference). Allocates a swap slot, moves the page from its
// inode's cache into the swap cache (the inode's slot now holds the swap entry, which holds
// one map count of the slot; the page gets PG_swapcache and page->swap, and loses PG_shmem
// and its mapping, as a folio leaving the page cache does), writes it (swap_writepage,
// PSWPOUT) and returns true. The caller then frees it as an anonymous swap-cache page:
// __remove_mapping (with the page still locked), unlock_page, put_page.
// False with nothing changed when no device has a free slot, or when the page is mapped, no
// longer in its inode's cache, or referenced by anyone else. False also when the write failed: the page then
// stays in the swap cache, dirty, and a lookup of its slot brings it back.
bool shmem_writeout(System* sys, Page* page);

// shmem_unuse: swapoff's pass over every inode on the swaplist. False when out of frames.
bool shmem_unuse(System* sys, unsigned type);

}  // namespace mirrormm
