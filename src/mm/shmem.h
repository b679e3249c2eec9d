// Shared memory files (mm/shmem.c's role): a page cache per inode, used by MAP_SHARED
// anonymous memory (one inode per mmap, as shmem_zero_setup makes) and by memfd files.
//
// Lifecycle: an inode is referenced by its Files (and by a name table for memfds); it frees its
// pages when the last reference goes. Pages in the cache hold one reference each and carry
// PG_shmem with mapping = the inode and index = the page offset.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"
#include "mm/mm_types.h"
#include "mm/physmem.h"

namespace mirrormm {

class ShmemInode {
 public:
  ShmemInode(PhysMem* mem, std::string name, uint64_t size);
  ~ShmemInode();

  const std::string& name() const { return name_; }
  uint64_t size() const { return size_.load(std::memory_order_acquire); }
  void set_size(uint64_t size) { size_.store(size, std::memory_order_release); }

  // The cached page at pgoff, or nullptr. The returned page carries a new reference.
  Page* find_get_page(uint64_t pgoff) EXCLUDES(lock_);
  // The page at pgoff, allocating a zeroed one if absent; nullptr when out of frames. The
  // returned page carries a new reference.
  Page* find_or_create_page(uint64_t pgoff) EXCLUDES(lock_);
  // Whether a page is cached at pgoff (mincore).
  bool is_resident(uint64_t pgoff) EXCLUDES(lock_);
  uint64_t nr_pages() EXCLUDES(lock_);

  // The page-cache pages wholly beyond `size` leave the cache (truncate_inode_pages); the part
  // of the page holding byte `size` beyond it is zeroed and the page marked dirty
  // (shmem_undo_range, truncate_inode_partial_folio).
  void truncate_pages(uint64_t size) EXCLUDES(lock_);

  // Reclaim of a clean page: removes `page` from the cache at pgoff unless it is dirty, mapped
  // or referenced by anyone but the cache and the caller (remove_mapping). Returns whether it
  // was removed.
  bool remove_clean_page(uint64_t pgoff, Page* page) EXCLUDES(lock_);

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
  void put() {
    if (refcount_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

 private:
  static constexpr int kChunkShift = 9;
  struct Chunk {
    Page* slots[1 << kChunkShift] = {};
    int used = 0;
  };

  PhysMem* mem_;            // written once
  const std::string name_;  // written once
  std::atomic<uint64_t> size_;
  std::atomic<int> refcount_{1};
  Mutex lock_{lock_class::kInode};
  // pgoff >> kChunkShift -> 512 slots; 8 bytes of index per cached page.
  std::unordered_map<uint64_t, std::unique_ptr<Chunk>> chunks_ GUARDED_BY(lock_);
  uint64_t nr_pages_ GUARDED_BY(lock_) = 0;
  // i_mmap_rwsem's role: nests outside the PTE locks (truncate zaps under it).
  Mutex i_mmap_lock_{lock_class::kIMmap};
  IntervalTree<Vma::IMmapNode> i_mmap_ GUARDED_BY(i_mmap_lock_);
};

inline void get_file(File* f) { f->refcount.fetch_add(1, std::memory_order_relaxed); }
inline void fput(File* f) {
  if (f->refcount.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    f->inode->put();
    delete f;
  }
}

// A new open file description of inode (takes an inode reference).
File* open_file(ShmemInode* inode, bool writable);

}  // namespace mirrormm
