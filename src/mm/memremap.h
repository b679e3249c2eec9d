// The memory manager's view of device pages (include/linux/memremap.h's inline helpers):
// which pgmap a page belongs to and what kind it is. The driver API is mirrormm/memremap.h.
#pragma once

#include "mirrormm/memremap.h"
#include "mm/physmem.h"

namespace mirrormm {

inline bool is_zone_device_page(const Page* page) { return page->test(PG_zone_device); }
// page_pgmap: nullptr for a system page.
inline DevPagemap* page_pgmap(const Page* page) { return is_zone_device_page(page) ? page->pgmap : nullptr; }
inline bool is_device_private_page(const Page* page) {
  const DevPagemap* pgmap = page_pgmap(page);
  return pgmap && pgmap->type == MEMORY_DEVICE_PRIVATE;
}
inline bool is_device_coherent_page(const Page* page) {
  const DevPagemap* pgmap = page_pgmap(page);
  return pgmap && pgmap->type == MEMORY_DEVICE_COHERENT;
}

// The page lock of a page held as one of a batch (migrate_vma and migrate_device hold the
// locks of every page they move at once, and device and migration destinations are handed
// out locked): only ever a trylock, which cannot deadlock, and not recorded by the lock-order
// checker, whose same-class nesting is one level deep (Linux's page lock is a bit lock that
// lockdep does not track either). unlock_page releases it.
inline bool trylock_page_batch(Page* page) {
  return !(page->flags.fetch_or(PG_locked, std::memory_order_acquire) & PG_locked);
}

}  // namespace mirrormm
