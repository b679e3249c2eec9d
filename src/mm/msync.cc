// msync(2) (mm/msync.c).
//
// MS_ASYNC does nothing since Linux 2.6.19 (dirty pages are tracked, and the flusher writes
// them); MS_INVALIDATE has nothing to invalidate with a unified page cache and only refuses
// a locked mapping; MS_SYNC writes back the file range that each shared file mapping of the
// range maps, and waits for it. A part of the range that nothing maps makes the call fail
// with -ENOMEM after the mapped parts were handled, except with plain MS_ASYNC, which stops
// at the first hole.
#include "mirrormm/mman.h"
#include "mm/filemap.h"
#include "mm/mm.h"
#include "mm/shmem.h"

namespace mirrormm {

namespace {
constexpr uint64_t kMsAsync = 1;
constexpr uint64_t kMsInvalidate = 2;
constexpr uint64_t kMsSync = 4;
}  // namespace

Errno do_msync(Mm* mm, uint64_t start, uint64_t len, uint64_t flags) {
  if (flags & ~(kMsAsync | kMsInvalidate | kMsSync)) return Errno::kInval;
  if (offset_in_page(start)) return Errno::kInval;
  if ((flags & kMsAsync) && (flags & kMsSync)) return Errno::kInval;
  len = page_align(len);
  const uint64_t end = start + len;
  if (end < start) return Errno::kNoMem;
  if (end == start) return Errno::kOk;
  Errno unmapped_error = Errno::kOk;
  // One VMA per round, the mmap_lock dropped around the write (vfs_fsync_range sleeps on
  // I/O): the next VMA is looked up again from the end of this one.
  for (;;) {
    File* file = nullptr;
    uint64_t fstart = 0, fend = 0;
    {
      MmapReadGuard g(mm);
      Vma* vma = mm->find_vma(start);
      if (!vma) return Errno::kNoMem;
      if (start < vma->vm_start) {
        if (flags == kMsAsync) return Errno::kNoMem;
        start = vma->vm_start;
        if (start >= end) return Errno::kNoMem;
        unmapped_error = Errno::kNoMem;
      }
      if ((flags & kMsInvalidate) && (vma->vm_flags & VM_LOCKED)) return Errno::kBusy;
      fstart = (start - vma->vm_start) + (vma->vm_pgoff << kPageShift);
      fend = fstart + (std::min(end, vma->vm_end) - start) - 1;
      start = vma->vm_end;
      if ((flags & kMsSync) && vma->vm_file && (vma->vm_flags & VM_SHARED)) {
        file = vma->vm_file;
        get_file(file);
      } else if (start >= end) {
        return unmapped_error;
      }
    }
    if (file) {
      const Errno e = vfs_fsync_range(file->inode, fstart, fend);
      fput(file);
      if (e != Errno::kOk) return e;
      if (start >= end) return unmapped_error;
    }
  }
}

}  // namespace mirrormm
