// The two calls that the layers below the address-space mechanisms make into the notifier
// layer: the frame allocator tells the coherence checker a frame is being freed, and the page
// cache tells rmap notifiers a page lost its primary mappings for good. Depends only on the
// frame allocator's header, so that physmem and shmem do not depend on the notifier internals.
#pragma once

#include <cstdint>

#include "mm/physmem.h"

namespace mirrormm {

// A frame of mem is being freed (its last reference went). The frame allocator calls it only
// while the checker watches the machine (PhysMem::mmu_checker_on).
void mmu_checker_frame_freed_slow(const PhysMem* mem, uint64_t pfn);

// page lost its primary PTEs for good (truncation, reclaim of a clean cache page); the caller
// holds the page lock. Calls the rmap notifiers when the page is PG_external_rmap.
void mmu_rmap_notify_page(PhysMem* mem, Page* page);

}  // namespace mirrormm
