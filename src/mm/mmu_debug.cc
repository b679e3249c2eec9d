// The notifier layer's switches for tests and benchmarks: deliberately dropped brackets (a
// broken kernel for the coherence checker), a failing mm_take_all_locks, and hooks switched
// off (the benchmarks' "as before notifiers" baseline). Process-wide: they model a kernel
// build, not one machine's state.
#include "mirrormm/mmu_notifier.h"
#include "mm/mmu_notifier_internal.h"

namespace mirrormm {

namespace notifier_internal {
std::atomic<unsigned> skipped_brackets{0};
std::atomic<bool> fail_take_all_locks{false};
}  // namespace notifier_internal

namespace {
std::atomic<uint64_t> breakages{0};
}  // namespace

void mmu_debug_drop_bracket(int event) {
  if (event < 0) {
    notifier_internal::skipped_brackets.fetch_and(notifier_internal::kAllBrackets, std::memory_order_relaxed);
  } else {
    breakages.fetch_add(1, std::memory_order_relaxed);
    notifier_internal::skipped_brackets.fetch_or(1u << event, std::memory_order_relaxed);
  }
}

void mmu_debug_broken_driver() { breakages.fetch_add(1, std::memory_order_relaxed); }

bool mmu_debug_bracket_used(MmuNotifyEvent event) {
  switch (event) {
    case MmuNotifyEvent::kUnmap:           // munmap, mremap, exit (mmap.cc, mremap.cc)
    case MmuNotifyEvent::kClear:           // madvise, COW, truncate (madvise.cc, memory.cc)
    case MmuNotifyEvent::kProtectionVma:   // mprotect (mprotect.cc)
    case MmuNotifyEvent::kProtectionPage:  // fork's write-protect (memory.cc)
      return true;
    default:
      return false;
  }
}

uint64_t mmu_debug_breakages() { return breakages.load(std::memory_order_relaxed); }
void mmu_debug_fail_take_all_locks(bool fail) { notifier_internal::fail_take_all_locks.store(fail); }
void mmu_debug_hooks_off(bool off) {
  if (off) {
    notifier_internal::skipped_brackets.fetch_or(notifier_internal::kAllBrackets, std::memory_order_relaxed);
  } else {
    notifier_internal::skipped_brackets.fetch_and(~notifier_internal::kAllBrackets, std::memory_order_relaxed);
  }
}

}  // namespace mirrormm
