// The two calls that the layers below the address-space mechanisms make into the notifier
// layer: the frame allocator tells the coherence checker a frame is being freed, and the page
// cache tells rmap notifiers a page lost its primary mappings for good. A leaf header (forward
// declarations only), so that physmem and shmem do not depend on the notifier internals.
#pragma once

#include <atomic>
#include <cstdint>

namespace mirrormm {

class PhysMem;
struct Page;

namespace notifier_internal {
// Whether the coherence checker runs (mmu_checker_enable). A relaxed load on every hook.
extern std::atomic<bool> checker_on;
}  // namespace notifier_internal

// A frame of mem is being freed (its last reference went).
void mmu_checker_frame_freed_slow(const void* mem, uint64_t pfn);
inline void mmu_checker_frame_freed(const void* mem, uint64_t pfn) {
  if (notifier_internal::checker_on.load(std::memory_order_relaxed)) mmu_checker_frame_freed_slow(mem, pfn);
}

// page lost its primary PTEs for good (truncation, reclaim of a clean cache page); the caller
// holds the page lock. Calls the rmap notifiers when the page is PG_external_rmap.
void mmu_rmap_notify_page(PhysMem* mem, Page* page);

}  // namespace mirrormm
