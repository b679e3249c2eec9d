// mm_take_all_locks / mm_drop_all_locks (mm/vma.c in Linux 6.18): every rmap lock of an
// address space, so that nothing can reach its pages "obliquely" while the notifier state
// changes.
//
// Protocol: the caller holds the mmap_lock for write, so the VMA set cannot change between
// take and drop; every VMA is write-locked (per-VMA-lock faults are excluded), and then every
// mapped file's i_mmap lock and every anon_vma root's rwsem are taken in address order. An
// invalidation of the mm runs under the mmap_lock, a per-VMA lock or one of those rmap locks,
// so none is under way once this returns. One taker at a time (mm_all_locks_mutex, Linux's
// nest_lock): it makes holding any number of locks of one class safe, and the run-time
// lock checker allows it while nest_lock_depth is non-zero.
#include <algorithm>
#include <vector>

#include "mm/internal.h"
#include "mm/shmem.h"

namespace mirrormm {

Mutex mm_all_locks_mutex{lock_class::kAllLocks};

namespace {
// The distinct inodes and anon_vma roots mm's VMAs reach, sorted by address (the order both
// take and drop use).
struct RmapLocks {
  std::vector<ShmemInode*> inodes;
  std::vector<AnonVma*> roots;
};

RmapLocks collect_rmap_locks(Mm* mm) REQUIRES(mm->mmap_lock_) {
  RmapLocks l;
  for (auto& [start, vma] : mm->vmas_) {
    if (vma->vm_file) l.inodes.push_back(vma->vm_file->inode);
    for (AnonVmaChain* avc : vma->anon_vma_chain) l.roots.push_back(avc->anon_vma->root);
  }
  std::sort(l.inodes.begin(), l.inodes.end());
  l.inodes.erase(std::unique(l.inodes.begin(), l.inodes.end()), l.inodes.end());
  std::sort(l.roots.begin(), l.roots.end());
  l.roots.erase(std::unique(l.roots.begin(), l.roots.end()), l.roots.end());
  return l;
}
}  // namespace

void mm_take_all_locks(Mm* mm) {
  mmap_assert_write_locked(mm);
  mm_all_locks_mutex.lock();
  for (auto& [start, vma] : mm->vmas_) vma_start_write(vma);
  RmapLocks l = collect_rmap_locks(mm);
  ++lockdep::nest_lock_depth;
  for (ShmemInode* i : l.inodes) i->i_mmap_lock().lock_nest_lock(mm_all_locks_mutex);
  for (AnonVma* r : l.roots) r->rwsem.down_write_nest_lock(mm_all_locks_mutex);
}

// The same loop in reverse: the VMA set is what take saw (mmap_lock still held for write).
void mm_drop_all_locks(Mm* mm) {
  mmap_assert_write_locked(mm);
  RmapLocks l = collect_rmap_locks(mm);
  for (auto it = l.roots.rbegin(); it != l.roots.rend(); ++it) (*it)->rwsem.up_write_nest_lock(mm_all_locks_mutex);
  for (auto it = l.inodes.rbegin(); it != l.inodes.rend(); ++it)
    (*it)->i_mmap_lock().unlock_nest_lock(mm_all_locks_mutex);
  --lockdep::nest_lock_depth;
  mm_all_locks_mutex.unlock();
}

}  // namespace mirrormm
