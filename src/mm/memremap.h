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

}  // namespace mirrormm
