// Page migration (mm/migrate.c and try_to_migrate_one of mm/rmap.c); the protocol is in
// mm/migrate.h.
#include "mm/migrate.h"

#include <cstring>
#include <thread>

#include "mirrormm/base/tsan.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/memremap.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/notifier_hooks.h"
#include "mm/rmap.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/system_internal.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

void rmap_walk_pinned(Page* page, const RmapPin& pin, RmapWalkControl& rwc) {
  rwc.anon_vma = pin.anon_vma;
  rmap_walk(page, rwc);
}

// try_to_migrate_one: the mapping of `page` at address in vma becomes a migration entry.
bool try_to_migrate_one(Page* page, Vma* vma, uint64_t address, const void* owner) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  address &= kPageMask;
  pte_t* ptep = pte_offset(mm, address);
  if (!ptep) return true;
  const pfn_t pfn = mem.page_to_pfn(page);
  bool unmapped = false;
  {
    MmuNotifierBracket bracket(MmuNotifyEvent::kMigrate, mm, address, address + kPageSize, owner);
    SpinGuard g(pte_lockptr(mm, ptep));
    const pteval_t cur = ptep_get(ptep);
    // A device-private page is mapped by device-private entries (try_to_migrate_one's
    // folio_is_device_private case): nothing a CPU could have cached, no A/D bits.
    // So is a page a device holds exclusively (a device-exclusive entry, always writable):
    // the migration takes it back from the device, whose driver saw the invalidation above.
    const bool device = is_device_page_entry(cur) && device_private_entry_pfn(cur) == pfn;
    if (!device && (!pte_present(cur) || pte_special(cur) || pte_pfn(cur) != pfn)) return true;  // not ours (any more)
    const bool anon_exclusive = page->test(PG_anon) && page->test(PG_anon_exclusive);
    // folio_try_share_anon_rmap_pte refuses a page that may be pinned: the mapping stays,
    // and the migration fails. (Pins are taken under this PTE lock.)
    if (anon_exclusive && folio_maybe_dma_pinned(page)) return false;
    const pteval_t v = ptep_get_and_clear(ptep);
    if (!device) flush_tlb_page(mm, address);
    if (!device && pte_dirty(v)) page->set(PG_dirty);
    // The exclusivity moves from the page to the entry (folio_try_share_anon_rmap_pte).
    if (anon_exclusive) page->clear(PG_anon_exclusive);
    // A device-exclusive entry is writable whatever mprotect did since (it leaves such
    // entries alone): the VMA decides.
    const bool writable = !device                      ? pte_write(v)
                          : is_device_exclusive_entry(v) ? (vma_flags_racy(vma) & VM_WRITE) != 0
                                                         : is_writable_device_private_entry(v);
    const unsigned type = writable        ? kSwpMigrationWrite
                          : anon_exclusive ? kSwpMigrationReadExclusive
                                           : kSwpMigrationRead;
    const pteval_t entry = make_migration_entry(type, pfn, !device && pte_young(v), !device && pte_dirty(v));
    set_pte(ptep, entry);
    mmu_checker_pte_change(mm, address, v, entry);
    // rss stays: Linux counts a migration entry as the page it stands for.
    page->mapcount.fetch_sub(1, std::memory_order_relaxed);
    unmapped = true;
  }
  if (unmapped) mem.put_page(page);  // the PTE's reference, after invalidate_range_end
  return true;
}

}  // namespace

bool try_to_migrate(System* sys, Page* page, const RmapPin& pin, const void* owner) {
  RmapWalkControl rwc;
  rwc.sys = sys;
  rwc.rmap_one = [owner](Page* p, Vma* vma, uint64_t address) { return try_to_migrate_one(p, vma, address, owner); };
  rwc.done = [](Page* p) { return !folio_mapped(p); };
  rmap_walk_pinned(page, pin, rwc);
  return !folio_mapped(page);
}

// remove_migration_pte: every migration entry for src in vma's mapping of the page at address
// becomes a PTE mapping dst.
namespace {

void remove_migration_pte(Page* src, Page* dst, Vma* vma, uint64_t address) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  pte_t* ptep = pte_offset(mm, address & kPageMask);
  if (!ptep) return;
  SpinGuard g(pte_lockptr(mm, ptep));
  const pteval_t entry = ptep_get(ptep);
  if (!is_migration_entry(entry) || migration_entry_pfn(entry) != mem.page_to_pfn(src)) return;
  if (dst->test(PG_anon) && swp_type(entry) != kSwpMigrationRead) dst->set(PG_anon_exclusive);
  mem.get_page(dst);
  dst->mapcount.fetch_add(1, std::memory_order_relaxed);
  if (is_device_private_page(dst)) {
    // The CPU cannot map device-private memory: the page comes back as a device-private
    // entry with the migration entry's permission (remove_migration_pte's device case).
    set_pte(ptep, make_device_private_entry(mem.page_to_pfn(dst), is_writable_migration_entry(entry)));
    return;
  }
  const pgprot_t prot = std::atomic_ref<pgprot_t>(vma->vm_page_prot).load(std::memory_order_relaxed);
  pteval_t pte = pfn_pte(mem.page_to_pfn(dst), prot);
  // The entry's type decides, not the VMA: mprotect and fork downgrade entries for that.
  if (is_writable_migration_entry(entry)) pte = pte_mkwrite(pte);
  if (!is_migration_entry_young(entry)) pte = pte_mkold(pte);
  if (is_migration_entry_dirty(entry) && dst->test(PG_dirty)) pte = pte_mkdirty(pte);
  set_pte(ptep, pte);  // was not present: nothing to flush, no secondary MMU to tell
}

// remove_migration_ptes(src, dst): restores every migration entry for src to map dst (dst ==
// src: the migration failed and src comes back). One pass finds every entry, including those
// a fork copies meanwhile: a fork links the child's VMA into the rmap before it copies the
// parent's entries, and the walk visits it after the parent's (equal ranges keep their
// insertion order in the interval tree), so an entry copied before the walk reached the
// parent is found in the child, and one copied after it is a present PTE. mremap moves
// entries under the rmap locks (take_rmap_locks), so the walk never passes one in flight.
}  // namespace

void remove_migration_ptes(System* sys, Page* src, Page* dst, const RmapPin& pin) {
  RmapWalkControl rwc;
  rwc.sys = sys;
  rwc.rmap_one = [src, dst](Page*, Vma* vma, uint64_t address) {
    remove_migration_pte(src, dst, vma, address);
    return true;
  };
  rmap_walk_pinned(dst, pin, rwc);
}

void migrate_flags(Page* src, Page* dst) {
  constexpr uint32_t kCarried = PG_anon | PG_dirty | PG_active | PG_referenced | PG_workingset | PG_swapbacked |
                                PG_unevictable | PG_mlocked;
  dst->flags.fetch_or(src->flags.load(std::memory_order_relaxed) & kCarried, std::memory_order_relaxed);
  if (src->test(PG_anon)) {
    dst->mapping = src->mapping;
    dst->index = src->index;
  }
}

namespace {

// folio_migrate_mapping plus the swap cache: moves src's cache slot (page cache or swap
// cache) to dst if only the expected references are held.
Errno migrate_mapping(System* sys, Page* src, Page* dst) {
  if (src->test(PG_shmem)) return static_cast<ShmemInode*>(src->mapping)->migrate_folio_mapping(src, dst, 2);
  if (src->test(PG_swapcache)) {
    SwapInfo* si = get_swap_device(sys, src->swap);
    if (!si) return Errno::kAgain;
    const bool ok = si->cache_replace(swp_offset(src->swap), src, dst, 2);
    put_swap_device(si);
    if (!ok) return Errno::kAgain;
    dst->swap = src->swap;
    dst->set(PG_swapcache);
    return Errno::kOk;
  }
  // No cache: nobody can look the page up; only the isolation reference may be left.
  return folio_ref_count(src) == 1 ? Errno::kOk : Errno::kAgain;
}

}  // namespace

void migrate_release_src(Page* src) {
  src->flags.fetch_and(~static_cast<uint32_t>(PG_swapcache | PG_shmem | PG_anon_exclusive | PG_external_rmap),
                       std::memory_order_relaxed);
  src->swap = 0;
  src->mapping = nullptr;
}

RssCounter migration_entry_rss(PhysMem& mem, pteval_t entry) {
  // The page is locked and referenced by its migration until every entry is gone.
  return mem.pfn_to_page(migration_entry_pfn(entry))->test(PG_anon) ? MM_ANONPAGES : MM_SHMEMPAGES;
}

void migration_entry_wait(Mm* mm, pte_t* ptep, pteval_t entry) {
  PhysMem& mem = mm->mem();
  const Page* page;
  {
    SpinGuard g(pte_lockptr(mm, ptep));
    if (ptep_get(ptep) != entry) return;  // restored meanwhile
    page = mem.pfn_to_page(migration_entry_pfn(entry));
  }
  // migration_entry_wait_on_locked: wait for the lock bit without taking it, and without a
  // reference (one would make the migration's expected-refcount check fail: the waiters
  // would keep the migration they wait for from succeeding). Descriptors are never freed, so
  // the worst a page freed and reused meanwhile can cost is a wait for its new owner's lock.
  while (page->flags.load(std::memory_order_acquire) & PG_locked) explore_hook::wait_yield();
}

Errno migrate_folio(System* sys, Page* src, int nid, const void* owner) {
  PhysMem& mem = sys->mem();
  Page* dst = mem.alloc_page_node(nid, NodeFallback::kThisNode, Zero::kNo);
  if (!dst) return Errno::kNoMem;
  auto drop_dst = [&] {
    dst->flags.store(0, std::memory_order_relaxed);
    dst->mapping = nullptr;
    dst->swap = 0;
    mem.put_page(dst);
  };
  lock_page(src);
  const uint32_t flags = src->flags.load(std::memory_order_relaxed);
  // Only user pages that still belong to something; a page under writeback waits.
  Errno err = Errno::kOk;
  if (flags & PG_writeback) err = Errno::kBusy;
  else if (!(flags & (PG_anon | PG_shmem))) err = Errno::kBusy;
  RmapPin pin;
  if (err == Errno::kOk) {
    if (flags & PG_anon) {
      pin.anon_vma = folio_get_anon_vma(sys, src);
      if (!pin.anon_vma) err = Errno::kAgain;  // no longer mapped: nothing to move it for
    } else {
      pin.inode = static_cast<ShmemInode*>(src->mapping);
      if (!pin.inode || !pin.inode->tryget()) {
        pin.inode = nullptr;
        err = Errno::kAgain;
      }
    }
  }
  if (err != Errno::kOk) {
    unlock_page(src);
    drop_dst();
    return err;
  }
  const bool locked = trylock_page(dst);  // a new page: nobody else can hold it
  MM_BUG_ON(!locked);
  bool moved = false;
  if (try_to_migrate(sys, src, pin, owner)) {
    // Remote mappers of the page (rmap notifiers) hear it went, as reclaim tells them.
    if (src->test(PG_external_rmap)) mmu_rmap_notify_page(&mem, src);
    if (const System::MigrateGate& gate = sys->debug_migrate_gate()) gate(src);
    sys->debug_race_pause();
    // The data first (no mapping can change it now), then the state, then the slot: a
    // lookup that finds dst in its cache finds it complete.
    MM_TSAN_IGNORE_BEGIN();  // simulated RAM
    std::memcpy(mem.page_address(dst), mem.page_address(src), kPageSize);
    MM_TSAN_IGNORE_END();
    migrate_flags(src, dst);
    err = migrate_mapping(sys, src, dst);
    moved = err == Errno::kOk;
  } else {
    err = Errno::kAgain;  // a mapping could not be converted
  }
  if (moved) {
    remove_migration_ptes(sys, src, dst, pin);
    migrate_release_src(src);
    mem.events().count(PGMIGRATE_SUCCESS);
  } else {
    remove_migration_ptes(sys, src, src, pin);
    mem.events().count(PGMIGRATE_FAIL);
  }
  unlock_page(dst);
  unlock_page(src);
  if (pin.anon_vma) put_anon_vma(pin.anon_vma);
  if (pin.inode) pin.inode->put();
  if (!moved) {
    drop_dst();
    return err;
  }
  // dst joins the LRU on the list its flags select; the batch takes its own reference.
  folio_add_lru(mem, dst);
  mem.put_page(dst);
  return Errno::kOk;
}

}  // namespace mirrormm
