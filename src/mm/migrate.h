// Page migration (mm/migrate.c, the migration half of mm/rmap.c): moving a page's data and
// state to a new frame while every process that maps it waits at a migration entry.
//
// Protocol for one page (migrate_folio; the caller isolated the page from the LRU):
//
//   allocate the target frame on the node (no fallback: __GFP_THISNODE)
//   lock_page(src)                       (rank: after the mmap_lock, before i_mmap/anon_vma)
//     pin the rmap: anon_vma reference (folio_get_anon_vma) or inode reference
//     try_to_migrate: rmap walk; per mapping (try_to_migrate_one):
//       invalidate_range_start(MIGRATE, owner)
//         PTE lock: present PTE -> migration entry (write / read-exclusive / read, young and
//         dirty kept); the dirty bit goes to the page; TLB flushed; mapcount and the PTE's
//         reference dropped; rss unchanged
//       invalidate_range_end
//     [test gate]
//     copy data and state to dst (locked); expected-refcount check and the page-cache or
//     swap-cache slot replacement (folio_migrate_mapping: -EAGAIN on an extra reference)
//     remove_migration_ptes(src, dst) through the rmap walk (or (src, src) on failure)
//   unlock dst, unlock src; dst to the LRU; src freed (or put back on failure)
//
// Waiters: a fault (CPU, GUP, device) that meets a migration entry reads the page the entry
// names under the PTE lock, drops the lock and waits until the page is unlocked
// (migration_entry_wait), then retries. It holds at most the mmap_lock for read or a VMA read
// lock, neither of which migration needs; migration holds no PTE lock while it copies, and
// its invalidations end before the copy, so a device fault's read_begin never waits for it.
#pragma once

#include <cstdint>

#include "mirrormm/errno.h"
#include "mm/mm_types.h"

namespace mirrormm {

// Moves the isolated page src (the caller holds the isolation reference, PG_lru clear) to node
// nid. kOk: src's mappings now map the new page and src is unmapped and out of every cache
// (the caller's reference is then the last). kAgain: extra references, a racing
// change, or the page was locked by someone else: retry later. kBusy: under writeback, or not
// a page migration handles. kNoMem: no free frame on the node. On failure src is mapped as before.
Errno migrate_folio(System* sys, Page* src, int nid, const void* owner);

// What keeps the page's reverse map alive while its mappings are migration entries (which
// mapcount does not count, so folio_lock_anon_vma_read's recheck would fail): a reference on
// the anon_vma, taken while the page was still mapped, or on the inode.
struct RmapPin {
  AnonVma* anon_vma = nullptr;
  ShmemInode* inode = nullptr;
};

// The steps of migrate_folio, for device migration (mm/migrate_device.c) to reuse. The page
// is locked by the caller.
// try_to_migrate: every mapping of page (present PTEs, and device-private entries of a
// device-private page) becomes a migration entry; true when none is left.
bool try_to_migrate(System* sys, Page* page, const RmapPin& pin, const void* owner);
// remove_migration_ptes(src, dst): every migration entry for src maps dst (a device-private
// entry when dst is device-private memory); dst == src restores.
void remove_migration_ptes(System* sys, Page* src, Page* dst, const RmapPin& pin);
// folio_migrate_flags: the state that travels with the data (and an anonymous page's
// mapping and index).
void migrate_flags(Page* src, Page* dst);
// The source after a successful move: out of its caches (its slot is dst's now), free to go.
void migrate_release_src(Page* src);

// migration_entry_wait: the fault found migration entry `entry` at ptep. Waits, without any
// page-table lock held, until the page it names is unlocked (its migration is over); the
// caller then retries the access.
void migration_entry_wait(Mm* mm, pte_t* ptep, pteval_t entry);

// The rss counter a migration entry counts in (the page's: anon or shmem).
RssCounter migration_entry_rss(PhysMem& mem, pteval_t entry);

}  // namespace mirrormm
