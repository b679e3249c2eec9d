// host_safe(): which commands may run in a worker that shares its layout with the runner.
//
// The argument is about where each system call can act, following the order of the checks
// in Linux 6.18 (mm/mmap.c, mm/vma.c, mm/mprotect.c, mm/madvise.c, mm/mremap.c): a call is
// safe when every range it can act on lies inside the window, or when a check that runs
// before any mapping is touched rejects it.
#include "mirrormm/host.h"

namespace mirrormm::host {
namespace {

constexpr uint64_t kPageSize = 4096;

// PAGE_ALIGN(len); false when it overflows (the kernel sees 0).
bool page_align(uint64_t len, uint64_t* out) {
  if (len > ~uint64_t{0} - (kPageSize - 1)) return false;
  *out = (len + kPageSize - 1) & ~(kPageSize - 1);
  return true;
}

bool in_window(uint64_t addr, uint64_t len) {
  return addr >= script::kWindowStart && addr <= script::kWindowEnd && len <= script::kWindowEnd - addr;
}

bool unaligned(uint64_t addr) { return (addr & (kPageSize - 1)) != 0; }

// The shared early exits of mprotect and madvise: unaligned start (EINVAL), len 0 (returns
// 0), PAGE_ALIGN overflow or end wrap (ENOMEM / EINVAL), nothing mapped at or above TASK_SIZE.
bool range_call_safe(uint64_t addr, uint64_t len) {
  uint64_t alen = 0;
  if (unaligned(addr) || len == 0 || !page_align(len, &alen) || alen == 0) return true;
  if (addr + alen < addr) return true;  // end <= start
  if (addr >= kTaskSize) return true;   // no VMA at or above TASK_SIZE
  return in_window(addr, alen);
}

bool mmap_safe(const script::Command& c) {
  if (!(c.map_flags & (script::kMapFixed | script::kMapNoreplace))) return true;  // only free space
  uint64_t alen = 0;
  if (c.len == 0 || !page_align(c.len, &alen)) return true;  // EINVAL / ENOMEM
  if (alen > kTaskSize) return true;                           // len > TASK_SIZE: ENOMEM
  if (c.addr >= kTaskSize || c.addr > kTaskSize - alen) return true;  // addr > TASK_SIZE - len
  return in_window(c.addr, alen);
}

bool munmap_safe(const script::Command& c) {
  uint64_t alen = 0;
  if (unaligned(c.addr) || c.addr > kTaskSize) return true;
  if (!page_align(c.len, &alen) || alen == 0) return true;  // len > TASK_SIZE - start or len 0
  if (alen > kTaskSize - c.addr) return true;
  return in_window(c.addr, alen);
}

bool mremap_safe(const script::Command& c) {
  using script::kRemapDontunmap;
  using script::kRemapFixed;
  using script::kRemapMaymove;
  uint64_t new_alen = 0, old_alen = 0;
  // check_mremap_params(): all of these fail before the mmap lock is taken.
  if (unaligned(c.addr)) return true;
  if (!page_align(c.new_len, &new_alen) || new_alen == 0) return true;
  bool fixed = c.remap_flags & kRemapFixed;
  if ((c.remap_flags & (kRemapFixed | kRemapDontunmap)) && !(c.remap_flags & kRemapMaymove)) return true;
  if (fixed || (c.remap_flags & kRemapDontunmap)) {
    if (new_alen > kTaskSize || c.new_addr > kTaskSize - new_alen) return true;
    if (fixed && unaligned(c.new_addr)) return true;
  }
  if ((c.remap_flags & kRemapDontunmap) && c.len != c.new_len) return true;
  // vma_lookup(addr) / the moved range: nothing is mapped at or above TASK_SIZE.
  if (c.addr >= kTaskSize) return true;
  if (!page_align(c.len, &old_alen)) return false;
  uint64_t span = old_alen > new_alen ? old_alen : new_alen;
  if (!in_window(c.addr, span)) return false;
  return !fixed || in_window(c.new_addr, new_alen);
}

// mlock and munlock round the start down and the length up to pages (no EINVAL for an
// unaligned start); an end that wraps is EINVAL, a length that rounds to 0 changes nothing.
bool lock_range_safe(uint64_t addr, uint64_t len) {
  const uint64_t start = addr & ~(kPageSize - 1);
  const uint64_t off = addr - start;
  if (len > ~uint64_t{0} - off) return true;  // len + offset wraps: PAGE_ALIGN(...) is 0 or tiny
  uint64_t alen = 0;
  if (!page_align(len + off, &alen) || alen == 0) return true;
  if (start + alen < start) return true;  // EINVAL
  if (start >= kTaskSize) return true;    // no VMA there: ENOMEM
  return in_window(start, alen);
}

// setrlimit changes only the limits, but a limit the runner itself cannot live with would
// make it fail on its own schedule: an absolute RLIMIT_AS or RLIMIT_DATA (the runner's own
// mappings count, so only `+N` or `inf` compares with the model) and an RLIMIT_STACK below
// 1 MiB (the worker's stack must still grow). A soft RLIMIT_DATA of 0 is the exception
// (ignore_rlimit_data's rule lets data grow up to the hard limit then).
bool setrlimit_safe(const script::Command& c) {
  auto relative_or_inf = [](const script::RlimitValue& v) { return v.relative || v.infinite; };
  switch (c.rlimit) {
    case script::Rlimit::kAs: return relative_or_inf(c.rlim_soft) && relative_or_inf(c.rlim_hard);
    case script::Rlimit::kData:
      return (relative_or_inf(c.rlim_soft) || c.rlim_soft.value == 0) && relative_or_inf(c.rlim_hard);
    case script::Rlimit::kStack:
      return (c.rlim_soft.infinite || c.rlim_soft.value >= (1ull << 20)) &&
             (c.rlim_hard.infinite || c.rlim_hard.value >= (1ull << 20));
    case script::Rlimit::kMemlock: return true;
  }
  return false;
}

// write and read touch bytes [addr, addr+len) in ascending order (and may expand a
// MAP_GROWSDOWN mapping above them); the first address at or above TASK_SIZE faults.
bool access_safe(const script::Command& c) {
  return c.len == 0 || c.addr >= kTaskSize || in_window(c.addr, c.len);
}

}  // namespace

bool host_safe(const script::Command& c) {
  switch (c.op) {
    case script::Op::kMmap: return mmap_safe(c);
    case script::Op::kMunmap: return munmap_safe(c);
    case script::Op::kMprotect:
      if ((c.prot & script::kProtGrowsDown) && (c.prot & script::kProtGrowsUp)) return true;  // EINVAL
      return range_call_safe(c.addr, c.len);
    case script::Op::kMadvise:
    case script::Op::kMseal:
    case script::Op::kPmadvise: return range_call_safe(c.addr, c.len);
    case script::Op::kMremap: return mremap_safe(c);
    case script::Op::kWrite:
    case script::Op::kRead: return access_safe(c);
    case script::Op::kMincore:
    case script::Op::kMaps:
    case script::Op::kSmaps:
    case script::Op::kFork:
    case script::Op::kExit:
    case script::Op::kMemfd:
    case script::Op::kTruncate:
    case script::Op::kFile:
    case script::Op::kFsync:
    case script::Op::kPread: return true;
    case script::Op::kMlock:
    case script::Op::kMunlock: return lock_range_safe(c.addr, c.len);
    // mlockall and munlockall change the lock state of the runner's own mappings too, but
    // neither their contents nor the layout (each VMA is locked whole; none merges that was
    // not already mergeable).
    case script::Op::kMlockall:
    case script::Op::kMunlockall:
    case script::Op::kMlocked: return true;
    case script::Op::kSetrlimit: return setrlimit_safe(c);
    // msync acts on the VMAs of its range (a runner mapping outside the window would answer
    // differently from the model), unless a check before the lookup rejects it.
    case script::Op::kMsync:
      if ((c.msync_flags & script::kMsyncSync) && (c.msync_flags & script::kMsyncAsync)) return true;  // EINVAL
      return range_call_safe(c.addr, c.len);
  }
  return false;
}

}  // namespace mirrormm::host
