// The reverse map (include/linux/rmap.h's role): from a page to every PTE that maps it.
//
// An anonymous page points at its anon_vma (page->mapping with PG_anon) and knows its page
// offset (page->index, the linear page index of the VMA that first mapped it); the anon_vma's
// interval tree of anon_vma_chain links names every VMA that may map it, and each VMA maps
// offset pgoff at vm_start + ((pgoff - vm_pgoff) << PAGE_SHIFT). A page-cache page points at
// its inode, whose i_mmap interval tree does the same for file VMAs.
//
// Locking (mm/lock_order.h): a walk holds the page lock (or, for aging, a reference and the
// try-lock mode), then the anon_vma root's rwsem or the file's i_mmap lock for read, then
// each PTE lock in turn. Holding the rmap lock keeps every VMA in the tree alive and its range
// and page tables in place: VMA ranges change only under the same lock (vma_adjust_rmap),
// and munmap unlinks a VMA from the rmap before it frees the VMA's page tables.
//
// The anon_vma is reached "obliquely", from a page, with nothing pinning it: the anon_vma
// may be freed, and its memory reused for another anon_vma, at any moment. Its cache is
// SLAB_TYPESAFE_BY_RCU, so inside an RCU read-side section the memory stays an anon_vma and
// its root pointer, refcount and rwsem stay valid; folio_lock_anon_vma_read takes the root's
// rwsem and then rechecks that the page is still mapped, which proves the anon_vma is still
// the page's (a mapped page keeps its anon_vma alive: the VMA mapping it holds a link).
#pragma once

#include <cstdint>
#include <functional>

#include "mm/mm_types.h"

namespace mirrormm {

// What a reverse-map walk does (struct rmap_walk_control).
struct RmapWalkControl {
  System* sys = nullptr;  // the machine (its test switches and gates)
  // Called for each VMA that may map the page, with the address where it would map it (the
  // page may not be mapped there: rmap_one checks the PTE). Returns false to stop the walk.
  std::function<bool(Page* page, Vma* vma, uint64_t address)> rmap_one;
  // Checked after each VMA: true stops the walk (try_to_unmap: the page is no longer mapped).
  std::function<bool(Page* page)> done;
  // Aging without the page lock: never sleep for the rmap lock; a contended lock sets
  // `contended` and ends the walk.
  bool try_lock = false;
  bool contended = false;
  // Migration (rmap_walk_anon_lock's folio_get_anon_vma'd case): the anonymous page's
  // anon_vma, on which the caller holds a reference taken while the page was still mapped.
  // The walk then locks it directly, without the folio_mapped recheck: a page under migration
  // is mapped by migration entries only, which mapcount does not count.
  AnonVma* anon_vma = nullptr;
};

inline bool folio_mapped(const Page* page) { return page->mapcount.load(std::memory_order_acquire) > 0; }

// The anon_vma of an anonymous page, read racily (READ_ONCE(folio->mapping)); nullptr for a
// page that is not anonymous. Nothing pins the result.
AnonVma* folio_anon_vma(const Page* page);

// folio_get_anon_vma: the page's anon_vma with a reference (put_anon_vma drops it), or
// nullptr when the page is not anonymous or no longer mapped.
AnonVma* folio_get_anon_vma(System* sys, Page* page);
void put_anon_vma(AnonVma* av);

// folio_lock_anon_vma_read + anon_vma_unlock_read as one call: runs fn(anon_vma) with the
// page's anon_vma root's rwsem held for read, after the type-stable lookup and recheck
// described above. Returns false (fn not called) when the page is not anonymous, not mapped,
// or (rwc->try_lock) the lock was contended.
bool folio_lock_anon_vma_read(Page* page, RmapWalkControl* rwc, const std::function<void(AnonVma*)>& fn);

// The address at which vma maps page offset pgoff, or ~0 when pgoff is outside vma
// (vma_address).
uint64_t vma_address(const Vma* vma, uint64_t pgoff);

// page_vma_mapped_walk for one small page: the PTE at address in vma if it maps page (present,
// or a device-exclusive entry, with the same pfn), else nullptr. The caller holds the rmap lock that keeps vma's page tables in
// place and takes the PTE lock to act on the entry (and rechecks it under the lock).
pte_t* page_vma_mapped_pte(Page* page, Vma* vma, uint64_t address);

// rmap_walk: calls rwc.rmap_one for every VMA that may map the page (anon_vma tree for an
// anonymous page, i_mmap tree for a page-cache page). The caller holds the page lock, or a
// reference and sets rwc.try_lock.
void rmap_walk(Page* page, RmapWalkControl& rwc);

// folio_referenced: clears the young bit of every PTE that maps the page, and asks secondary
// MMUs (mmu_notifier_clear_flush_young) whether they used it since the last call; returns how
// many mappings were young. is_locked says whether the caller holds the page lock; without it
// the walk uses try-locks and a contended lock counts as referenced (the page is kept), as
// Linux does. A mapping in a VM_LOCKED VMA ends the walk: the page is mlocked (it had been
// missed, or its lock lost) and *vm_locked, when given, is set; reclaim then keeps it.
enum class PageLocked { kNo, kYes };
int folio_referenced(System* sys, Page* page, PageLocked is_locked, bool* vm_locked = nullptr);

// Re-keys vma's links in the rmap trees for a new range [start, end) at page offset pgoff and
// sets the fields (vma_prepare/vma_complete's rmap part): the changes happen under the file's
// i_mmap lock and the anon_vma root's rwsem, held for write, so a walk sees either the old
// range or the new one. The caller holds the mmap_lock for write and has write-locked the VMA.
void vma_adjust_rmap(Vma* vma, uint64_t start, uint64_t end, uint64_t pgoff);

// unlink_file_vma: takes vma out of its file's i_mmap tree (no-op when it is not in it).
void unlink_file_vma(Vma* vma);

// The anon_vma cache (SLAB_TYPESAFE_BY_RCU) and, for the checkers' tests, a cache with the
// same object layout without the type-stable mode (System::DebugBreak::kAnonVmaNotTypesafe).
KmemCache& anon_vma_cachep();

}  // namespace mirrormm
