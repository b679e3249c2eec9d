// System-call-level entry points of the address-space mechanisms, as System calls them.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "mirrormm/errno.h"
#include "mm/mm_types.h"

namespace mirrormm {

// mm lifecycle (kernel/fork.c): a new, empty address space; nullptr when out of frames.
Mm* mm_alloc(System* sys);
// Frees an address space that exit_mmap() has emptied, after an RCU grace period (CPUs may
// still hold the pointer inside their read-side sections). Only mmdrop calls it.
void mm_free(Mm* mm);
// Drops a user reference; the last one tears the address space down (exit_mmap) and drops
// the users' structure reference.
void mmput(Mm* mm);
// Structure references (mm_count): the last mmdrop frees the Mm (mm_free).
void mmgrab(Mm* mm);
void mmdrop(Mm* mm);
// dup_mmap: the child's copy of oldmm.
Result<Mm*> dup_mm(Mm* oldmm);

// The system calls' entry points into the mechanisms. Every one has the same lock boundary:
// the caller (System) holds a user reference on mm and no mm lock; the entry point takes the
// mmap_lock itself, in the mode the call needs, and returns Linux's result.

// mmap.c: vm_mmap_pgoff and vm_munmap take the mmap_lock for write (then populate, without
// it, what MAP_POPULATE asks); do_mmap and do_munmap are the locked halves.
Result<uint64_t> vm_mmap_pgoff(Mm* mm, File* file, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                               uint64_t pgoff) EXCLUDES(mm->mmap_lock_);
Errno vm_munmap(Mm* mm, uint64_t start, uint64_t len) EXCLUDES(mm->mmap_lock_);
Result<uint64_t> do_mmap(Mm* mm, File* file, uint64_t addr, uint64_t len, uint64_t prot,
                         uint64_t flags, uint64_t pgoff, uint64_t* populate) REQUIRES(mm->mmap_lock_);
// __mm_populate: populates the VMAs of [start, start + len) one after the other under the
// mmap_lock for read (VM_IO/VM_PFNMAP ones are skipped). At a page that fails, kIgnore goes
// on with the next VMA (MAP_POPULATE, mlockall) and kReport stops and returns the error
// (mlock); holes are passed over either way.
enum class PopulateErrors { kIgnore, kReport };
Errno mm_populate_range(Mm* mm, uint64_t start, uint64_t len, PopulateErrors errors) EXCLUDES(mm->mmap_lock_);
inline void mm_populate(Mm* mm, uint64_t start, uint64_t len) EXCLUDES(mm->mmap_lock_) {
  (void)mm_populate_range(mm, start, len, PopulateErrors::kIgnore);
}
Errno do_munmap(Mm* mm, uint64_t start, uint64_t len) REQUIRES(mm->mmap_lock_);

// mprotect.c
Errno do_mprotect_pkey(Mm* mm, uint64_t start, uint64_t len, uint64_t prot, int pkey) EXCLUDES(mm->mmap_lock_);

// mremap.c
Result<uint64_t> do_mremap(Mm* mm, uint64_t addr, uint64_t old_len, uint64_t new_len, uint64_t flags,
                           uint64_t new_addr) EXCLUDES(mm->mmap_lock_);

// mlock.c: mlock/mlock2 (flags VM_LOCKED, with VM_LOCKONFAULT for MLOCK_ONFAULT), munlock,
// mlockall (MCL_* flags), munlockall; setrlimit/getrlimit of the process's limits; the
// address-space sizes of /proc/PID/status.
Errno do_mlock(Mm* mm, uint64_t start, uint64_t len, vm_flags_t flags) EXCLUDES(mm->mmap_lock_);
Errno do_munlock(Mm* mm, uint64_t start, uint64_t len) EXCLUDES(mm->mmap_lock_);
Errno do_mlockall(Mm* mm, uint64_t flags) EXCLUDES(mm->mmap_lock_);
Errno do_munlockall(Mm* mm) EXCLUDES(mm->mmap_lock_);
Errno do_setrlimit(Mm* mm, unsigned resource, uint64_t cur, uint64_t max) EXCLUDES(mm->mmap_lock_);
Result<std::pair<uint64_t, uint64_t>> do_getrlimit(Mm* mm, unsigned resource) EXCLUDES(mm->mmap_lock_);
VmCounts vm_counts(Mm* mm) EXCLUDES(mm->mmap_lock_);

// madvise.c
Errno do_madvise(Mm* mm, uint64_t start, uint64_t len, uint64_t behavior) EXCLUDES(mm->mmap_lock_);
// process_madvise with one iovec [start, start+len) from caller's process into target's:
// another process takes only MADV_COLD, MADV_PAGEOUT and MADV_WILLNEED (-EINVAL), its own
// any advice; LEN 0 advises nothing. Success is 0 (the syscall returns the bytes advised).
Errno do_process_madvise(Mm* caller, Mm* target, uint64_t start, uint64_t len, uint64_t behavior)
    EXCLUDES(target->mmap_lock_);
// mseal (mm/mseal.c): seals the VMAs of [start, start+len) (VM_SEALED, splitting at the
// ends). Flags other than 0 and an unaligned or wrapping range are -EINVAL, LEN 0 is 0; a
// hole anywhere in the range is -ENOMEM with nothing changed; a split at max_map_count is
// -ENOMEM after the VMAs before it were sealed.
Errno do_mseal(Mm* mm, uint64_t start, uint64_t len, uint64_t flags) EXCLUDES(mm->mmap_lock_);

// msync.c: msync(2), Linux 6.18's checks and order (System::msync).
Errno do_msync(Mm* mm, uint64_t start, uint64_t len, uint64_t flags) EXCLUDES(mm->mmap_lock_);

// mincore.c
Errno do_mincore_syscall(Mm* mm, uint64_t start, uint64_t len, std::vector<uint8_t>* vec) EXCLUDES(mm->mmap_lock_);

}  // namespace mirrormm
