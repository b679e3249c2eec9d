// Device memory (include/linux/memremap.h, Linux 6.18): a driver hands a range of its
// device's memory to the memory manager as a dev_pagemap, and gets one page descriptor per
// device page, so that device pages can be mapped, migrated and referenced like system RAM.
//
// Two kinds (enum memory_type):
//   MEMORY_DEVICE_PRIVATE   memory the CPU cannot access. A process's page that lives there
//                           is mapped by a device-private entry, never by a present PTE; a
//                           CPU access to it faults into the pgmap's migrate_to_ram, which
//                           moves it back to system RAM (migrate_vma_*), and the access
//                           retries.
//   MEMORY_DEVICE_COHERENT  memory the CPU can access coherently: its pages are mapped by
//                           ordinary present PTEs, but belong to the pgmap.
//
// Page lifecycle: memremap_pages takes nr_pages frames for the device; each starts free
// (refcount 0). The driver allocates one with zone_device_page_init (refcount 1, locked) and
// passes it as a migration destination (mirrormm/migrate_device.h). When the last reference
// to a device page goes (its mapping was zapped, or it was migrated back), the pgmap's
// folio_free is called with the page at refcount 0: the driver puts it back on its free list.
// memunmap_pages returns the frames once every page is free again (a driver evicts what is
// still in use first: migrate_device_pfns).
//
// Device-private data: the CPU never maps a device-private page, but the model keeps its
// bytes in the frame like any other page; the driver reads and writes them through
// page_address (its "device memory"), and copies between pages with copy_highpage.
#pragma once

#include <cstdint>
#include <vector>

#include "mirrormm/errno.h"

namespace mirrormm {

class System;
class Mm;
struct Vma;
struct DevPagemap;

// enum memory_type (the kinds the model has; Linux's numbering).
enum MemoryType : int {
  MEMORY_DEVICE_PRIVATE = 1,
  MEMORY_DEVICE_COHERENT = 2,
};

// What migrate_to_ram is told about the faulting access (struct vm_fault's fields it uses).
// The faulting thread holds the page locked and a reference to it, and the mm's mmap_lock
// for read or the VMA's read lock; vma may be passed on as MigrateVma::vma.
struct DeviceFault {
  Mm* mm = nullptr;
  Vma* vma = nullptr;
  uint64_t address = 0;  // page aligned
  uint64_t pfn = 0;      // vmf->page: the device-private page the entry names
  bool write = false;
};

// struct dev_pagemap_ops.
struct DevPagemapOps {
  // The last reference to device page pfn went (refcount 0): the driver takes it back.
  // Called from wherever the reference was dropped, possibly under page-table locks: it must
  // not sleep or take locks other than the driver's own allocator spinlock.
  void (*folio_free)(DevPagemap* pgmap, uint64_t pfn) = nullptr;
  // A CPU fault on a device-private entry (MEMORY_DEVICE_PRIVATE only): migrate the page back
  // to system RAM (migrate_vma_setup with fault_page, SELECT_DEVICE_PRIVATE and the pgmap's
  // owner) and return kOk; kNoMem makes the fault VM_FAULT_OOM and any other error
  // VM_FAULT_SIGBUS. After kOk the access is retried (and faults again if the page stayed).
  Errno (*migrate_to_ram)(DevPagemap* pgmap, const DeviceFault& vmf) = nullptr;
};

// struct dev_pagemap. The driver fills type, nr_pages, ops, owner (and driver_data); the rest
// is memremap_pages's. It must stay at the same address until memunmap_pages returns.
struct DevPagemap {
  MemoryType type = MEMORY_DEVICE_PRIVATE;
  uint64_t nr_pages = 0;
  const DevPagemapOps* ops = nullptr;
  // Identifies the driver: migrate_vma selects device-private pages of this owner, and
  // hmm_range_fault reports (rather than faults) pages whose owner is dev_private_owner.
  const void* owner = nullptr;
  void* driver_data = nullptr;

  // Set by memremap_pages: the machine and the device's frames, one pfn per page.
  System* sys = nullptr;
  std::vector<uint64_t> pfns;
};

// memremap_pages: takes pgmap->nr_pages frames from the machine's memory for the device and
// fills pgmap->sys and pgmap->pfns. -EINVAL: no pages, no ops, an unknown type, a
// device-private pgmap without migrate_to_ram, no folio_free, or a pgmap already in use;
// -ENOMEM: not enough free frames (none are taken then).
Errno memremap_pages(System* sys, DevPagemap* pgmap);
// memunmap_pages: gives the frames back. -EBUSY while any page is still referenced (the driver
// must migrate its pages back first); nothing changes then.
Errno memunmap_pages(DevPagemap* pgmap);

// zone_device_page_init: allocates free device page pfn for the driver: refcount 1, locked
// (the state a migration destination must be in). The page must be free (refcount 0).
void zone_device_page_init(DevPagemap* pgmap, uint64_t pfn);
// Drops a reference the driver holds on a device page (put_page); the last calls folio_free.
void put_device_page(System* sys, uint64_t pfn);
// The page lock (folio_unlock) of any page, for a driver that locked one and did not pass it
// on to a migration.
void unlock_page_pfn(System* sys, uint64_t pfn);

// page_pgmap / is_device_private_page / is_device_coherent_page / is_zone_device_page, by pfn.
DevPagemap* pfn_pgmap(System* sys, uint64_t pfn);
bool is_device_private_pfn(System* sys, uint64_t pfn);
bool is_device_coherent_pfn(System* sys, uint64_t pfn);
// The page's reference count and number of mappings (page_ref_count, folio_mapcount).
int page_ref_count_pfn(System* sys, uint64_t pfn);
int page_mapcount_pfn(System* sys, uint64_t pfn);

// The bytes of page pfn as the driver's copy engine sees them (device-private data lives
// here). Valid while the caller holds a reference or the page lock.
uint8_t* page_address(System* sys, uint64_t pfn);
// Copies one page's data (copy_highpage).
void copy_highpage(System* sys, uint64_t dst_pfn, uint64_t src_pfn);

}  // namespace mirrormm
