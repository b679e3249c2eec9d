// Migration to and from device memory (include/linux/migrate.h's migrate_vma API and
// mm/migrate_device.c, Linux 6.18).
//
// A driver moves a range of a process's private anonymous memory to its device (or back) in
// three steps, holding the mm's mmap_lock for read throughout:
//
//   MigrateVma args{.mm, .start, .end, .src, .dst, .pgmap_owner, .flags};
//   migrate_vma_setup(&args);      // collect and unmap: src[i] says what may move
//   for each i with src[i] & MIGRATE_PFN_MIGRATE:
//     allocate a destination page (zone_device_page_init for device memory: locked, one ref),
//     copy the data (src[i] may have no page: none or zero-page entries; the destination
//     starts zeroed then), dst[i] = migrate_pfn(new_pfn) (| MIGRATE_PFN_WRITE)
//   migrate_vma_pages(&args);      // commit: a page may still lose MIGRATE here
//   ...the driver may now update its own page tables for the pages that moved...
//   migrate_vma_finalize(&args);   // map the new pages (or restore the old), drop references
//
// Collection (migrate_vma_collect): one invalidate_range_start/end over [start, end) with
// MMU_NOTIFY_MIGRATE and owner = pgmap_owner (a driver's invalidate callback skips ranges of
// its own migration). Per page:
//   - none or the zero page, in an anonymous VMA, with SELECT_SYSTEM: MIGRATE with no source
//     page (migrate_vma_pages inserts the destination if the entry is still none or zero);
//   - a present PTE with SELECT_SYSTEM on a system page, or with SELECT_DEVICE_COHERENT on a
//     device-coherent page of pgmap_owner; a device-private entry with SELECT_DEVICE_PRIVATE
//     naming a page of pgmap_owner: the page is collected if it is anonymous (not shmem nor
//     file) and its lock can be taken without waiting; its PTE becomes a migration entry;
//   - anything else (other owners, swap entries, migration in progress, shared pages): src[i]
//     = 0, not migrated.
// Unmapping (migrate_device_unmap): each collected page leaves the LRU, its other mappings
// (after a fork) become migration entries through the rmap, and it must hold no reference
// beyond the expected ones (a GUP pin keeps it where it is): a page that fails any of this is
// restored (src[i] = 0). cpages is then the number of entries still marked MIGRATE.
//
// The MIGRATE_PFN_* encoding: pfn << MIGRATE_PFN_SHIFT | flags.
#pragma once

#include <cstdint>

#include "mirrormm/errno.h"
#include "mirrormm/memremap.h"

namespace mirrormm {

inline constexpr uint64_t MIGRATE_PFN_VALID = 1ull << 0;
inline constexpr uint64_t MIGRATE_PFN_MIGRATE = 1ull << 1;
inline constexpr uint64_t MIGRATE_PFN_WRITE = 1ull << 3;
inline constexpr unsigned MIGRATE_PFN_SHIFT = 6;

inline constexpr uint64_t migrate_pfn(uint64_t pfn) { return (pfn << MIGRATE_PFN_SHIFT) | MIGRATE_PFN_VALID; }
// migrate_pfn_to_page by pfn: 0 when the entry has no page.
inline constexpr uint64_t migrate_pfn_to_pfn(uint64_t mpfn) {
  return (mpfn & MIGRATE_PFN_VALID) ? mpfn >> MIGRATE_PFN_SHIFT : 0;
}

// enum migrate_vma_direction.
enum : unsigned {
  MIGRATE_VMA_SELECT_SYSTEM = 1u << 0,
  MIGRATE_VMA_SELECT_DEVICE_PRIVATE = 1u << 1,
  MIGRATE_VMA_SELECT_DEVICE_COHERENT = 1u << 2,
};

// struct migrate_vma. Linux passes the VMA; here the caller names the mm (and may pass the
// VMA it got from a DeviceFault), and setup finds the VMA containing start.
struct MigrateVma {
  Mm* mm = nullptr;
  Vma* vma = nullptr;  // optional: DeviceFault::vma
  uint64_t* src = nullptr;  // npages entries, filled by setup
  uint64_t* dst = nullptr;  // npages entries, zeroed by setup, filled by the driver
  uint64_t npages = 0;      // set by setup: (end - start) / page size
  uint64_t cpages = 0;      // set by setup: entries collected
  uint64_t start = 0, end = 0;
  const void* pgmap_owner = nullptr;
  unsigned flags = 0;
  // The device-private page migrate_to_ram was called for (DeviceFault::pfn), 0 otherwise:
  // the faulting thread holds its lock and a reference, so the migration neither locks nor
  // unlocks it and expects that reference.
  uint64_t fault_page = 0;
};

// migrate_vma_setup: -EINVAL when start or end is not page aligned, start >= end, [start,
// end) is not inside one VMA, the VMA is VM_SPECIAL (VM_IO / VM_PFNMAP / VM_MIXEDMAP), src or
// dst is missing, no selection flag is set, or fault_page is given but not selected; kOk
// otherwise (cpages may be 0). The caller holds the mm's mmap_lock for read (or the VMA lock
// of a DeviceFault) until migrate_vma_finalize returns.
Errno migrate_vma_setup(MigrateVma* args);
// migrate_vma_pages: commits each collected entry that has a destination (dst VALID): a page
// without a source is inserted now (MIGRATE cleared if a CPU fault mapped something there
// meanwhile); a source page's state moves to its destination. Entries without a destination
// lose MIGRATE.
void migrate_vma_pages(MigrateVma* args);
// migrate_vma_finalize: maps each migrated destination (a device-private entry for a
// device-private page, a present PTE otherwise) where the source's migration entries are,
// restores the others, unlocks and drops every page reference the migration holds (a source
// that moved is freed; a destination that did not is freed).
void migrate_vma_finalize(MigrateVma* args);

// The device side (a driver evicting its memory, e.g. when it goes away): collects device
// pages by pfn instead of by address. migrate_device_pfns: src_pfns[i] holds a device page's
// pfn on entry and its MIGRATE_PFN_* state on return; a page in use (refcount > 0) is locked,
// unmapped to migration entries everywhere and gets MIGRATE; a free one gets 0. Then the
// driver allocates system pages, copies, fills dst_pfns and calls migrate_device_pages and
// migrate_device_finalize. Needs no mmap_lock.
Errno migrate_device_pfns(System* sys, uint64_t* src_pfns, uint64_t npages);
void migrate_device_pages(System* sys, uint64_t* src_pfns, uint64_t* dst_pfns, uint64_t npages);
void migrate_device_finalize(System* sys, uint64_t* src_pfns, uint64_t* dst_pfns, uint64_t npages);

// make_device_exclusive (mm/rmap.c, Linux 6.15 and later): gives a device exclusive access to
// the anonymous page at addr of mm, for an atomic operation the device cannot do through the
// CPU's mapping. The page is faulted in writable first (a write fault: COW is broken, a page
// on another device comes back, an earlier device-exclusive entry is restored), then, inside an
// invalidate_range_start/end of [addr, addr + PAGE_SIZE) with MMU_NOTIFY_EXCLUSIVE and
// owner = owner (the caller's own invalidate callback filters that event out), its PTE becomes
// a device-exclusive entry: the CPU no longer maps the page, which keeps its reference, its
// mapcount and its rss (the PTE's dirty bit moves to the page). The next CPU access (a fault,
// a GUP, hmm_range_fault, fork) restores the PTE (remove_device_exclusive_entry): an
// invalidate_range_start/end with MMU_NOTIFY_CLEAR and no owner, which the driver sees and uses
// to drop its exclusive mapping, then the present PTE (writable if the VMA is and the page
// still exclusive to it, clean, old). mprotect leaves the entry as it is (it invalidates the
// range, and the PTE is restored with the new protection); a zap drops it like a PTE.
//
// Returns the pfn of the page now exclusively the device's, locked and with a reference the
// caller drops (unlock_page_pfn, put_page_pfn) once it has mapped the page in its own page
// table. Errors: those of the fault (-EFAULT: no VMA or one that cannot be written, -ENOMEM),
// -EOPNOTSUPP for a page that is not anonymous (a shared or file mapping). The caller holds
// mmap_read_lock(mm). When the PTE changes between the fault and the conversion, the whole
// sequence is retried.
Result<uint64_t> make_device_exclusive(Mm* mm, uint64_t addr, void* owner);

// A system page for a migration back to RAM (alloc_page + lock_page): locked, one reference,
// zeroed. 0 when memory is exhausted.
uint64_t alloc_migrate_page(System* sys);

}  // namespace mirrormm
