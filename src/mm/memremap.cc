// Device memory (mm/memremap.c): dev_pagemap set-up and tear-down, device page allocation and
// the return of a device page to its driver when its last reference goes. The API is in
// mirrormm/memremap.h.
#include "mirrormm/memremap.h"

#include <cstring>

#include "mirrormm/base/tsan.h"
#include "mm/memremap.h"
#include "mm/system_internal.h"

namespace mirrormm {

Errno memremap_pages(System* sys, DevPagemap* pgmap) {
  if (!sys || !pgmap || pgmap->nr_pages == 0 || !pgmap->ops || !pgmap->ops->folio_free || pgmap->sys)
    return Errno::kInval;
  if (pgmap->type != MEMORY_DEVICE_PRIVATE && pgmap->type != MEMORY_DEVICE_COHERENT) return Errno::kInval;
  if (pgmap->type == MEMORY_DEVICE_PRIVATE && (!pgmap->ops->migrate_to_ram || !pgmap->owner)) return Errno::kInval;
  PhysMem& mem = sys->mem();
  std::vector<Page*> pages;
  pages.reserve(pgmap->nr_pages);
  for (uint64_t i = 0; i < pgmap->nr_pages; i++) {
    Page* page = mem.alloc_page(Zero::kYes);
    if (!page) {
      for (Page* p : pages) mem.put_page(p);
      return Errno::kNoMem;
    }
    pages.push_back(page);
  }
  pgmap->sys = sys;
  pgmap->pfns.clear();
  for (Page* page : pages) {
    // The frame leaves the allocator's hands: free as a device page (refcount 0), owned by
    // the pgmap. Nobody else holds a reference to a frame just allocated.
    page->flags.store(PG_zone_device, std::memory_order_relaxed);
    page->pgmap = pgmap;
    page->refcount.store(0, std::memory_order_release);
    pgmap->pfns.push_back(mem.page_to_pfn(page));
  }
  return Errno::kOk;
}

Errno memunmap_pages(DevPagemap* pgmap) {
  if (!pgmap || !pgmap->sys) return Errno::kInval;
  PhysMem& mem = pgmap->sys->mem();
  for (uint64_t pfn : pgmap->pfns)
    if (mem.pfn_to_page(static_cast<pfn_t>(pfn))->refcount.load(std::memory_order_acquire) != 0) return Errno::kBusy;
  for (uint64_t pfn : pgmap->pfns) {
    Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfn));
    page->pgmap = nullptr;
    page->flags.store(0, std::memory_order_relaxed);
    page->refcount.store(1, std::memory_order_release);
    mem.put_page(page);  // back to the free lists
  }
  pgmap->pfns.clear();
  pgmap->sys = nullptr;
  return Errno::kOk;
}

void free_zone_device_folio(Page* page) {
  DevPagemap* pgmap = page->pgmap;
  MM_BUG_ON(!pgmap || page->mapcount.load(std::memory_order_relaxed) != 0);
  MM_BUG_ON(page->test(PG_locked));
  // The anonymous identity goes with the last reference (free_zone_device_folio clears
  // folio->mapping and PG_anon_exclusive); the frame stays the device's.
  page->mapping = nullptr;
  page->index = 0;
  page->flags.store(PG_zone_device, std::memory_order_relaxed);
  pgmap->ops->folio_free(pgmap, pgmap->sys->mem().page_to_pfn(page));
}

void zone_device_page_init(DevPagemap* pgmap, uint64_t pfn) {
  Page* page = pgmap->sys->mem().pfn_to_page(static_cast<pfn_t>(pfn));
  MM_BUG_ON(page->pgmap != pgmap || page->refcount.load(std::memory_order_relaxed) != 0);
  page->refcount.store(1, std::memory_order_release);
  const bool locked = trylock_page_batch(page);  // a free page: nobody else can hold its lock
  MM_BUG_ON(!locked);
}

void put_device_page(System* sys, uint64_t pfn) { sys->mem().put_page(sys->mem().pfn_to_page(static_cast<pfn_t>(pfn))); }

void unlock_page_pfn(System* sys, uint64_t pfn) { unlock_page(sys->mem().pfn_to_page(static_cast<pfn_t>(pfn))); }

DevPagemap* pfn_pgmap(System* sys, uint64_t pfn) { return page_pgmap(sys->mem().pfn_to_page(static_cast<pfn_t>(pfn))); }

bool is_device_private_pfn(System* sys, uint64_t pfn) {
  return is_device_private_page(sys->mem().pfn_to_page(static_cast<pfn_t>(pfn)));
}

bool is_device_coherent_pfn(System* sys, uint64_t pfn) {
  return is_device_coherent_page(sys->mem().pfn_to_page(static_cast<pfn_t>(pfn)));
}

int page_ref_count_pfn(System* sys, uint64_t pfn) {
  return sys->mem().pfn_to_page(static_cast<pfn_t>(pfn))->refcount.load(std::memory_order_acquire);
}

int page_mapcount_pfn(System* sys, uint64_t pfn) {
  return sys->mem().pfn_to_page(static_cast<pfn_t>(pfn))->mapcount.load(std::memory_order_acquire);
}

uint8_t* page_address(System* sys, uint64_t pfn) { return sys->mem().pfn_to_virt(static_cast<pfn_t>(pfn)); }

void copy_highpage(System* sys, uint64_t dst_pfn, uint64_t src_pfn) {
  PhysMem& mem = sys->mem();
  MM_TSAN_IGNORE_BEGIN();  // simulated RAM: the pages are unmapped or locked for the copy
  std::memcpy(mem.pfn_to_virt(static_cast<pfn_t>(dst_pfn)), mem.pfn_to_virt(static_cast<pfn_t>(src_pfn)), kPageSize);
  MM_TSAN_IGNORE_END();
}

}  // namespace mirrormm
