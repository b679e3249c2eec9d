// Migration to and from device memory (mm/migrate_device.c): migrate_vma_setup (collect and
// unmap), migrate_vma_pages (commit), migrate_vma_finalize (remap and release), and the
// device-side eviction calls. The API and its rules are in mirrormm/migrate_device.h; the
// migration entries, their waiters and remove_migration_ptes are page migration's (mm/migrate.h).
//
// References and locks a collected source page carries from setup to finalize:
//   - its page lock (taken with trylock at collection; the fault page's is the faulting
//     thread's, not ours);
//   - one reference: the isolation reference for a system page (the collection reference is
//     dropped once the page is off the LRU), the collection reference for a device page;
//   - a reference on its anon_vma, taken while the page was still mapped, so that the rmap
//     walks of the restore can find its migration entries (RmapPin); it is found again from
//     page->mapping, which cannot change while the page is locked and unmapped.
#include "mirrormm/migrate_device.h"

#include <optional>

#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/memremap.h"
#include "mm/migrate.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/notifier_hooks.h"
#include "mm/pgtable_walk.h"
#include "mm/rmap.h"
#include "mm/swapfile.h"
#include "mm/system_internal.h"
#include "mm/tlb.h"

namespace mirrormm {

namespace {

Page* mpfn_page(PhysMem& mem, uint64_t mpfn) {
  const uint64_t pfn = migrate_pfn_to_pfn(mpfn);
  return pfn ? mem.pfn_to_page(static_cast<pfn_t>(pfn)) : nullptr;
}

bool vma_is_private_anon(const Vma* vma) { return vma->is_anonymous() && !(vma->vm_flags & VM_SHARED); }

// A reference on the anon_vma of a page that a PTE (or device-private entry) maps right now,
// under that PTE's lock: the mapping VMA's chain keeps the anon_vma alive, so its count is
// above zero and may be raised directly.
void pin_mapped_anon_vma(Page* page) {
  auto* av = static_cast<AnonVma*>(page->mapping);
  const int old = av->refcount.fetch_add(1, std::memory_order_acq_rel);
  MM_BUG_ON(old <= 0);
}

RmapPin pin_of(Page* page) { return RmapPin{folio_anon_vma(page), nullptr}; }

// Drops what a collected page holds (its lock unless it is the fault page, its reference)
// after its entries were restored or moved. A system page goes back to the LRU unless it
// moved (then the reference is its last).
void release_src(PhysMem& mem, Page* page, Page* fault_page, bool moved) {
  if (page != fault_page) unlock_page(page);
  if (is_zone_device_page(page) || moved) mem.put_page(page);
  else folio_putback_lru(mem, page);
}

// The expected references of an unmapped source (migrate_vma_check_page): ours, and the
// faulting thread's for the fault page.
bool check_page(const Page* page, const Page* fault_page) {
  const int expected = 1 + (page == fault_page ? 1 : 0);
  return folio_ref_count(page) == expected;
}

// migrate_vma_collect_pmd for one PTE table: fills src for [addr, stop).
void collect_ptes(MigrateVma* args, Vma* vma, pte_t* ptep, uint64_t addr, uint64_t stop, Page* table,
                  Page* fault_page) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  SpinGuard g(table->ptl);
  for (; addr < stop; addr += kPageSize, ptep++) {
    uint64_t& src = args->src[(addr - args->start) >> kPageShift];
    src = 0;
    const pteval_t v = ptep_get(ptep);
    if (pte_none(v)) {
      if (vma_is_private_anon(vma)) {
        src = MIGRATE_PFN_MIGRATE;
        args->cpages++;
      }
      continue;
    }
    Page* page = nullptr;
    bool writable = false;
    if (!pte_present(v)) {
      if (!is_device_private_entry(v)) continue;  // swap, migration: not collected
      page = mem.pfn_to_page(device_private_entry_pfn(v));
      if (!(args->flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE) || page_pgmap(page)->owner != args->pgmap_owner)
        continue;
      writable = is_writable_device_private_entry(v);
    } else {
      if (pte_protnone(v)) continue;
      if (!(args->flags & MIGRATE_VMA_SELECT_SYSTEM) && !is_zone_device_page(mem.pfn_to_page(pte_pfn(v)))) continue;
      if (mem.is_zero_pfn(pte_pfn(v))) {
        if (vma_is_private_anon(vma)) {
          src = MIGRATE_PFN_MIGRATE;
          args->cpages++;
        }
        continue;
      }
      if (pte_special(v)) continue;
      page = mem.pfn_to_page(pte_pfn(v));
      if (is_device_coherent_page(page) && (!(args->flags & MIGRATE_VMA_SELECT_DEVICE_COHERENT) ||
                                            page_pgmap(page)->owner != args->pgmap_owner))
        continue;
      writable = pte_write(v);
    }
    // Only anonymous pages move to or from a device: those of private anonymous memory, and
    // the copies that writes made in a private file mapping (migrate_vma_pages refuses
    // pages with a file mapping, as shared memory's).
    if (!page->test(PG_anon)) continue;
    mem.get_page(page);  // mapped: the entry holds a reference
    if (page != fault_page && !trylock_page_batch(page)) {  // under the PTE lock, as Linux
      mem.put_page(page);  // the PTE's reference keeps it from being freed: not the last
      continue;
    }
    pin_mapped_anon_vma(page);
    const bool anon_exclusive = page->test(PG_anon_exclusive);
    if (anon_exclusive) page->clear(PG_anon_exclusive);  // moves into the entry's type
    pteval_t old = ptep_get_and_clear(ptep);
    bool young = false, dirty = false;
    if (pte_present(old)) {
      flush_tlb_page(mm, addr);
      young = pte_young(old);
      dirty = pte_dirty(old);
      if (dirty) page->set(PG_dirty);
    }
    const unsigned type = writable ? kSwpMigrationWrite : anon_exclusive ? kSwpMigrationReadExclusive : kSwpMigrationRead;
    const pteval_t entry = make_migration_entry(type, mem.page_to_pfn(page), young, dirty);
    set_pte(ptep, entry);
    mmu_checker_pte_change(mm, addr, old, entry);
    // folio_remove_rmap_pte and the entry's reference (rss stays: the migration entry counts).
    page->mapcount.fetch_sub(1, std::memory_order_relaxed);
    mem.put_page(page);  // ours (taken above) remains
    src = migrate_pfn(mem.page_to_pfn(page)) | MIGRATE_PFN_MIGRATE | (writable ? MIGRATE_PFN_WRITE : 0);
    args->cpages++;
  }
}

// migrate_device_unmap: isolates each collected page, unmaps its other mappings and checks
// its references; a page that fails is restored (src 0). Returns the entries still migrating.
uint64_t migrate_device_unmap(System* sys, uint64_t* src, uint64_t npages, Page* fault_page) {
  PhysMem& mem = sys->mem();
  bool allow_drain = true;
  uint64_t unmapped = 0;
  for (uint64_t i = 0; i < npages; i++) {
    if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
    Page* page = mpfn_page(mem, src[i]);
    if (!page) {
      unmapped++;
      continue;
    }
    if (!is_zone_device_page(page)) {
      // Pages still in a per-CPU add batch are not on a list yet (migrate_prep).
      if (!page->test(PG_lru) && allow_drain) {
        lru_add_drain_all(mem);
        allow_drain = false;
      }
      const bool isolated = folio_isolate_lru(mem, page);
      if (isolated) mem.put_page(page);  // the isolation reference replaces ours
      // A swap-cache copy would keep a reference the device cannot take over
      // (migrate_vma_pages: folio_free_swap, or the page stays).
      if (!isolated || (page->test(PG_swapcache) && !folio_free_swap(sys, page))) {
        RmapPin pin = pin_of(page);
        remove_migration_ptes(sys, page, page, pin);
        if (page != fault_page) unlock_page(page);
        if (isolated) folio_putback_lru(mem, page);
        else mem.put_page(page);
        put_anon_vma(pin.anon_vma);
        src[i] = 0;
        continue;
      }
    }
    RmapPin pin = pin_of(page);
    if (folio_mapped(page)) (void)try_to_migrate(sys, page, pin, nullptr);
    if (folio_mapped(page) || !check_page(page, fault_page)) {
      remove_migration_ptes(sys, page, page, pin);
      release_src(mem, page, fault_page, false);
      put_anon_vma(pin.anon_vma);
      src[i] = 0;
      continue;
    }
    unmapped++;
  }
  return unmapped;
}

// migrate_vma_insert_page: maps new page dst at addr, where setup found none or the zero page,
// if that is still so. False when something else is mapped there now.
bool migrate_vma_insert_page(MigrateVma* args, Vma* vma, uint64_t addr, Page* dst) {
  Mm* mm = vma->vm_mm;
  PhysMem& mem = mm->mem();
  if (!vma_is_private_anon(vma)) return false;
  if (!vma->anon_vma.load(std::memory_order_acquire)) {
    mmap_assert_locked(vma->vm_mm);  // migrate_vma_setup's contract: the caller holds the mmap_lock
    if (anon_vma_prepare(vma) != Errno::kOk) return false;
  }
  pte_t* ptep = pte_alloc(mm, addr, Gfp::kUser);
  if (!ptep) return false;
  pteval_t entry;
  const pfn_t pfn = mem.page_to_pfn(dst);
  const bool write = vma->vm_flags & VM_WRITE;
  if (is_device_private_page(dst)) {
    entry = make_device_private_entry(pfn, write);
  } else {
    entry = pfn_pte(pfn, vma->vm_page_prot);
    if (write) entry = pte_mkwrite(pte_mkdirty(entry));
  }
  SpinGuard g(pte_lockptr(mm, ptep));
  const pteval_t cur = ptep_get(ptep);
  const bool zero = pte_present(cur) && mem.is_zero_pfn(pte_pfn(cur));
  if (!pte_none(cur) && !zero) return false;  // a CPU fault won the race
  (void)args;
  dst->mapping = vma->anon_vma.load(std::memory_order_acquire);
  dst->index = vma->linear_page_index(addr);
  dst->set(static_cast<PageFlags>(PG_anon | PG_anon_exclusive | PG_swapbacked));
  dst->mapcount.store(1, std::memory_order_relaxed);
  mem.get_page(dst);  // the mapping's
  if (!is_zone_device_page(dst)) folio_add_lru_vma(mem, dst, vma);
  mm->add_rss(MM_ANONPAGES, 1);
  if (zero) {
    ptep_get_and_clear(ptep);
    flush_tlb_page(mm, addr);
  }
  set_pte(ptep, entry);
  mmu_checker_pte_change(mm, addr, cur, entry);
  return true;
}

// __migrate_device_pages: commits each entry. For the VMA path (args set) sources without a
// page are inserted, under one MMU_NOTIFY_MIGRATE bracket over the rest of the range.
void migrate_device_pages_common(System* sys, uint64_t* src, uint64_t* dst, uint64_t npages, MigrateVma* args,
                                 Vma* vma) {
  PhysMem& mem = sys->mem();
  Page* fault_page = args && args->fault_page ? mem.pfn_to_page(static_cast<pfn_t>(args->fault_page)) : nullptr;
  std::optional<MmuNotifierBracket> bracket;
  for (uint64_t i = 0; i < npages; i++) {
    Page* newpage = mpfn_page(mem, dst[i]);
    Page* page = mpfn_page(mem, src[i]);
    if (!newpage) {
      src[i] &= ~MIGRATE_PFN_MIGRATE;
      continue;
    }
    if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
    if (!page) {
      const uint64_t addr = args ? args->start + (i << kPageShift) : 0;
      if (!args || !vma) {
        src[i] &= ~MIGRATE_PFN_MIGRATE;
        continue;
      }
      if (!bracket) bracket.emplace(MmuNotifyEvent::kMigrate, vma->vm_mm, addr, args->end, args->pgmap_owner);
      if (!migrate_vma_insert_page(args, vma, addr, newpage)) src[i] &= ~MIGRATE_PFN_MIGRATE;
      continue;
    }
    // Device memory takes anonymous pages only; a device page goes to system RAM or to
    // device memory of the same kind.
    if (is_zone_device_page(newpage) && !page->test(PG_anon)) {
      src[i] &= ~MIGRATE_PFN_MIGRATE;
      continue;
    }
    // folio_migrate_mapping with no mapping: only the expected references may remain.
    if (!check_page(page, fault_page)) {
      src[i] &= ~MIGRATE_PFN_MIGRATE;
      continue;
    }
    migrate_flags(page, newpage);
  }
}

// __migrate_device_finalize: remaps and releases every page of the migration.
void migrate_device_finalize_common(System* sys, uint64_t* src, uint64_t* dst, uint64_t npages, Page* fault_page) {
  PhysMem& mem = sys->mem();
  for (uint64_t i = 0; i < npages; i++) {
    Page* page = mpfn_page(mem, src[i]);
    Page* newpage = mpfn_page(mem, dst[i]);
    if (!page) {
      if (newpage) {
        unlock_page(newpage);
        mem.put_page(newpage);  // the driver's; an inserted page keeps its mapping's
      }
      continue;
    }
    const bool moved = (src[i] & MIGRATE_PFN_MIGRATE) && newpage;
    if (!moved && newpage) {
      unlock_page(newpage);
      mem.put_page(newpage);  // the driver's: the unused destination is freed
    }
    Page* target = moved ? newpage : page;
    RmapPin pin = pin_of(page);
    remove_migration_ptes(sys, page, target, pin);
    // No PGMIGRATE_* event: migrate_pages counts those, device migration does not.
    if (moved) migrate_release_src(page);
    release_src(mem, page, fault_page, moved);
    put_anon_vma(pin.anon_vma);
    if (moved) {
      unlock_page(newpage);
      if (!is_zone_device_page(newpage)) folio_add_lru(mem, newpage);
      mem.put_page(newpage);  // the driver's; the mappings hold theirs
    }
  }
}

Errno find_vma_of(MigrateVma* args, Vma** out) {
  Vma* vma = args->vma;
  if (!vma) {
    mmap_assert_locked(args->mm);
    vma = args->mm->vma_lookup(args->start);
  }
  if (!vma || args->start < vma->vm_start || args->end > vma->vm_end) return Errno::kInval;
  if (vma->vm_flags & VM_SPECIAL) return Errno::kInval;
  *out = vma;
  return Errno::kOk;
}

}  // namespace

Errno migrate_vma_setup(MigrateVma* args) {
  if (!args || !args->mm || !args->src || !args->dst) return Errno::kInval;
  const uint64_t start = args->start, end = args->end;
  if (offset_in_page(start) || offset_in_page(end) || start >= end) return Errno::kInval;
  constexpr unsigned kSelect =
      MIGRATE_VMA_SELECT_SYSTEM | MIGRATE_VMA_SELECT_DEVICE_PRIVATE | MIGRATE_VMA_SELECT_DEVICE_COHERENT;
  if (!(args->flags & kSelect) || (args->flags & ~kSelect)) return Errno::kInval;
  Vma* vma = nullptr;
  if (Errno e = find_vma_of(args, &vma); e != Errno::kOk) return e;
  Mm* mm = args->mm;
  PhysMem& mem = mm->mem();
  Page* fault_page = nullptr;
  if (args->fault_page) {
    if (!mem.valid_pfn(static_cast<pfn_t>(args->fault_page))) return Errno::kInval;
    fault_page = mem.pfn_to_page(static_cast<pfn_t>(args->fault_page));
    if (!is_device_private_page(fault_page) || !(args->flags & MIGRATE_VMA_SELECT_DEVICE_PRIVATE)) return Errno::kInval;
  }
  args->npages = (end - start) >> kPageShift;
  args->cpages = 0;
  for (uint64_t i = 0; i < args->npages; i++) args->src[i] = args->dst[i] = 0;
  {
    // migrate_vma_collect: one invalidation of the range, the driver's own ignored.
    MmuNotifierBracket bracket(MmuNotifyEvent::kMigrate, mm, start, end, args->pgmap_owner);
    walk_pte_tables(
        mm, start, end,
        [&](pte_t* ptep, uint64_t a, uint64_t stop, Page* table) {
          collect_ptes(args, vma, ptep, a, stop, table, fault_page);
        },
        [&](uint64_t a, uint64_t stop) {
          // migrate_vma_collect_hole: no table, so nothing mapped; anonymous memory may be
          // populated by the device.
          if (!vma_is_private_anon(vma)) return;
          for (; a < stop; a += kPageSize) {
            args->src[(a - start) >> kPageShift] = MIGRATE_PFN_MIGRATE;
            args->cpages++;
          }
        });
  }
  if (args->cpages) args->cpages = migrate_device_unmap(mm->sys(), args->src, args->npages, fault_page);
  return Errno::kOk;
}

void migrate_vma_pages(MigrateVma* args) {
  Vma* vma = nullptr;
  if (find_vma_of(args, &vma) != Errno::kOk) vma = nullptr;
  migrate_device_pages_common(args->mm->sys(), args->src, args->dst, args->npages, args, vma);
}

void migrate_vma_finalize(MigrateVma* args) {
  PhysMem& mem = args->mm->mem();
  Page* fault_page = args->fault_page ? mem.pfn_to_page(static_cast<pfn_t>(args->fault_page)) : nullptr;
  migrate_device_finalize_common(args->mm->sys(), args->src, args->dst, args->npages, fault_page);
}

Errno migrate_device_pfns(System* sys, uint64_t* src_pfns, uint64_t npages) {
  PhysMem& mem = sys->mem();
  for (uint64_t i = 0; i < npages; i++) {
    const uint64_t pfn = src_pfns[i];
    src_pfns[i] = 0;
    if (!mem.valid_pfn(static_cast<pfn_t>(pfn))) continue;
    Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfn));
    if (!is_zone_device_page(page) || !PhysMem::get_page_unless_zero(page)) continue;  // free
    // Locked by someone else (a fault moving it back, another migration): left for the
    // driver's next pass.
    if (!trylock_page_batch(page)) {
      mem.put_page(page);
      continue;
    }
    // Only a page some process maps has anything to move; the anon_vma is pinned while
    // the page is still mapped (folio_get_anon_vma rechecks that).
    AnonVma* av = page->test(PG_anon) ? folio_get_anon_vma(sys, page) : nullptr;
    if (!av) {
      unlock_page(page);
      mem.put_page(page);
      continue;
    }
    src_pfns[i] = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE;
  }
  (void)migrate_device_unmap(sys, src_pfns, npages, nullptr);
  return Errno::kOk;
}

void migrate_device_pages(System* sys, uint64_t* src_pfns, uint64_t* dst_pfns, uint64_t npages) {
  migrate_device_pages_common(sys, src_pfns, dst_pfns, npages, nullptr, nullptr);
}

void migrate_device_finalize(System* sys, uint64_t* src_pfns, uint64_t* dst_pfns, uint64_t npages) {
  migrate_device_finalize_common(sys, src_pfns, dst_pfns, npages, nullptr);
}

Errno migrate_device_coherent_page(System* sys, uint64_t pfn) {
  PhysMem& mem = sys->mem();
  Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfn));
  // The destination first: no allocation (and its reclaim) under the source's lock.
  const uint64_t dpfn = alloc_migrate_page(sys);
  auto drop_dst = [&] {
    if (!dpfn) return;
    unlock_page_pfn(sys, dpfn);
    mem.put_page(mem.pfn_to_page(static_cast<pfn_t>(dpfn)));
  };
  lock_page(page);
  // The restore walks of the migration find the page through its anon_vma, pinned here while
  // the page is still mapped (migrate_device_pfns does the same).
  AnonVma* av = page->test(PG_anon) ? folio_get_anon_vma(sys, page) : nullptr;
  if (!av) {
    unlock_page(page);
    mem.put_page(page);
    drop_dst();
    return Errno::kOk;  // not mapped any more: the caller's next walk sees what is
  }
  uint64_t src = migrate_pfn(pfn) | MIGRATE_PFN_MIGRATE;
  (void)migrate_device_unmap(sys, &src, 1, nullptr);
  if (!(src & MIGRATE_PFN_MIGRATE)) {
    drop_dst();
    return Errno::kBusy;
  }
  uint64_t dst = dpfn ? migrate_pfn(dpfn) : 0;
  migrate_device_pages(sys, &src, &dst, 1);
  if (src & MIGRATE_PFN_MIGRATE) copy_highpage(sys, dpfn, pfn);
  migrate_device_finalize(sys, &src, &dst, 1);
  return (src & MIGRATE_PFN_MIGRATE) ? Errno::kOk : Errno::kBusy;
}

uint64_t alloc_migrate_page(System* sys) {
  PhysMem& mem = sys->mem();
  Page* page = mem.alloc_page(Zero::kYes, Gfp::kUser);
  if (!page) return 0;
  const bool locked = trylock_page_batch(page);  // new: nobody else can hold it
  MM_BUG_ON(!locked);
  return mem.page_to_pfn(page);
}

}  // namespace mirrormm
