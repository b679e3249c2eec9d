// mprotect (mm/mprotect.c): do_mprotect_pkey, mprotect_fixup and change_protection.
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/migrate.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

// arch_override_mprotect_pkey for x86 with protection keys.
int override_mprotect_pkey(Mm* mm, const Vma* vma, uint64_t prot) REQUIRES(mm->mmap_lock_) {
  if (!mm->sys()->config().exec_only_pkey) return 0;
  if (prot == kProtExec) {
    if (mm->execute_only_pkey_ == -1) mm->execute_only_pkey_ = 1;
    return mm->execute_only_pkey_;
  }
  if ((vma->vm_flags & VM_ACCESS_FLAGS) == VM_EXEC && vma_pkey_of(vma->vm_flags) == mm->execute_only_pkey_)
    return 0;
  return vma_pkey_of(vma->vm_flags);
}

// change_pte_range's migration-entry case: a write entry becomes a read entry (read-exclusive
// for an anonymous page, whose exclusivity the write entry implied), on any protection
// change, so that the migration restores a read-only PTE and the next write faults and is
// checked against the VMA's new rights. The caller holds the PTE lock.
void downgrade_migration_entry(Vma* vma, pte_t* ptep, pteval_t v) {
  if (vma->vm_mm->sys()->debug_broken(System::DebugBreak::kMprotectKeepsWriteMigration)) return;
  const bool anon = migration_entry_rss(vma->vm_mm->mem(), v) == MM_ANONPAGES;
  set_pte(ptep, migration_entry_retype(v, anon ? kSwpMigrationReadExclusive : kSwpMigrationRead));
}

// Whether going from old to new needs a TLB flush: a hardware-visible right was removed or
// the frame changed.
bool pte_needs_flush(pteval_t old, pteval_t nw) {
  if (!pte_hw_present(old)) return false;
  if (!pte_hw_present(nw) || pte_pfn(old) != pte_pfn(nw)) return true;
  if (pte_write(old) && !pte_write(nw)) return true;
  if (!(old & _PAGE_NX) && (nw & _PAGE_NX)) return true;
  return false;
}

// vma_wants_manual_pte_write_upgrade: a shared mapping of shared memory has a writable
// vm_page_prot already; a write-notify one (a regular file) upgrades only dirty PTEs
// (can_change_pte_writable), so that a clean page never gets a writable PTE; private ones
// upgrade exclusive anonymous pages.
bool wants_manual_pte_write_upgrade(const Vma* vma) {
  if (vma->vm_flags & VM_SHARED) return vma_wants_writenotify(vma);
  return vma->vm_flags & VM_WRITE;
}

Errno mprotect_fixup(MmuGather& tlb, Mm* mm, Vma* vma, Vma** pprev, uint64_t start, uint64_t end,
                     vm_flags_t newflags) REQUIRES(mm->mmap_lock_) {
  const vm_flags_t oldflags = vma->vm_flags;
  const int64_t nrpages = static_cast<int64_t>((end - start) >> kPageShift);
  int64_t charged = 0;
  // A sealed VMA refuses even a change to what it already has.
  if (!can_modify_vma(vma)) return Errno::kPerm;
  if (newflags == oldflags) {
    *pprev = vma;
    return Errno::kOk;
  }
  if (newflags & VM_WRITE) {
    // Check space limits when the area turns into data.
    if (!may_expand_vm(mm, newflags, nrpages) && may_expand_vm(mm, oldflags, nrpages)) return Errno::kNoMem;
    if (!(oldflags & (VM_ACCOUNT | VM_WRITE | VM_HUGETLB | VM_SHARED | VM_NORESERVE))) {
      charged = nrpages;
      if (!vm_enough_memory(mm->sys(), charged)) return Errno::kNoMem;
      newflags |= VM_ACCOUNT;
    }
  } else if ((oldflags & VM_ACCOUNT) && vma->is_anonymous() && !vma->anon_vma) {
    newflags &= ~VM_ACCOUNT;
  }
  Result<Vma*> r = vma_modify_flags(mm, *pprev, vma, start, end, newflags);
  if (!r.ok()) {
    if (charged) vm_unacct_memory(mm->sys(), charged);
    return r.error();
  }
  vma = r.value();
  *pprev = vma;
  vma_set_flags(vma, newflags);
  vma_set_page_prot(vma);
  mmap_assert_write_locked(vma->vm_mm);
  change_protection(tlb, vma, start, end,
                    wants_manual_pte_write_upgrade(vma) ? unsigned{MM_CP_TRY_CHANGE_WRITABLE} : 0u);
  if ((oldflags & VM_ACCOUNT) && !(newflags & VM_ACCOUNT)) vm_unacct_memory(mm->sys(), nrpages);
  // A private locked VMA becoming writable breaks COW now, so that a write to locked memory
  // does not fault later (its pages are populated as mlock would).
  if ((oldflags & (VM_WRITE | VM_SHARED | VM_LOCKED)) == VM_LOCKED && (newflags & VM_WRITE))
    (void)populate_vma_page_range(vma, start, end);
  return Errno::kOk;
}

}  // namespace

bool can_change_pte_writable(Vma* vma, pteval_t pte) {
  if (pte_protnone(pte)) return false;
  if (!(vma->vm_flags & VM_SHARED)) {
    if (pte_special(pte)) return false;
    Page* page = vma->vm_mm->mem().pfn_to_page(pte_pfn(pte));
    return page->test(PG_anon) && page->test(PG_anon_exclusive);
  }
  return pte_dirty(pte);
}

// change_protection's PTE level: the entries of [start, end), under the caller's bracket.
long change_pte_tables(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, unsigned cp_flags);

// The range change_pud_range notifies for the top-level chunk [addr, chunk_end): from the
// first address whose PUD entry is populated to the chunk's end; empty when none is (Linux
// 6.18 invokes the notifier only once it meets a populated PUD, and ends it per chunk).
std::pair<uint64_t, uint64_t> protection_notify_range(Mm* mm, uint64_t addr, uint64_t chunk_end) {
  PhysMem& mem = mm->mem();
  const pteval_t pgde = ptep_get(&pgd_table(mm)[index_at(addr, kPgdShift)]);
  if (pte_none(pgde)) return {0, 0};
  const pte_t* pud = table_of(mem, pgde);
  for (uint64_t a = addr; a < chunk_end; a = (a + kPudSize) & ~(kPudSize - 1)) {
    if (!pte_none(ptep_get(&pud[index_at(a, kPudShift)]))) return {a, chunk_end};
    if (((a + kPudSize) & ~(kPudSize - 1)) == 0) break;
  }
  return {0, 0};
}

long change_protection(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, unsigned cp_flags) {
  Mm* mm = vma->vm_mm;
  // Nobody listens (no subscription, checker off): no range to compute. Registration cannot
  // start meanwhile: the caller holds the mmap_lock for write.
  if (!notifier_hooks_wanted(mm)) return change_pte_tables(tlb, vma, start, end, cp_flags);
  long pages = 0;
  for (uint64_t chunk = start; chunk < end;) {
    uint64_t chunk_end = (chunk + kPgdSize) & ~(kPgdSize - 1);
    if (chunk_end == 0 || chunk_end > end) chunk_end = end;
    auto [ns, ne] = protection_notify_range(mm, chunk, chunk_end);
    if (ns < ne) {
      MmuNotifierBracket bracket(MmuNotifyEvent::kProtectionVma, mm, ns, ne);
      pages += change_pte_tables(tlb, vma, chunk, chunk_end, cp_flags);
    }
    chunk = chunk_end;
  }
  return pages;
}

long change_pte_tables(MmuGather& tlb, Vma* vma, uint64_t start, uint64_t end, unsigned cp_flags) {
  Mm* mm = vma->vm_mm;
  const pgprot_t newprot = vma->vm_page_prot;
  long pages = 0;
  walk_pte_tables(mm, start, end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
    SpinGuard g(table->ptl);
    for (; addr < stop; addr += kPageSize, ptep++) {
      pteval_t v = ptep->load(std::memory_order_relaxed);
      if (is_migration_entry(v) && is_writable_migration_entry(v)) {
        downgrade_migration_entry(vma, ptep, v);
        pages++;
        continue;
      }
      // change_pte_range's device-private case: a write entry becomes a read entry on any
      // protection change, as a migration entry does; the next write faults the page back.
      if (is_device_private_entry(v) && is_writable_device_private_entry(v)) {
        set_pte(ptep, make_readable_device_private_entry(v));
        pages++;
        continue;
      }
      if (pte_none(v) || !pte_present(v)) continue;
      const pteval_t oldpte = ptep_modify_prot_start(ptep);
      pteval_t ptent = pte_modify(oldpte, newprot);
      if ((cp_flags & MM_CP_TRY_CHANGE_WRITABLE) && !pte_write(ptent) &&
          can_change_pte_writable(vma, ptent))
        ptent = pte_mkwrite(ptent);
      ptep_modify_prot_commit(ptep, ptent);
      mmu_checker_pte_change(mm, addr, oldpte, ptent);
      if (pte_needs_flush(oldpte, ptent)) tlb.flush_range(addr, addr + kPageSize);
      else if (pte_write(ptent) && !pte_write(oldpte)) mmu_notifier_pte_upgrade(mm, addr);
      pages++;
    }
  });
  return pages;
}

Errno do_mprotect_pkey(Mm* mm, uint64_t start, uint64_t len, uint64_t prot, int pkey) {
  const uint64_t grows = prot & (kProtGrowsDown | kProtGrowsUp);
  prot &= ~(kProtGrowsDown | kProtGrowsUp);
  if (grows == (kProtGrowsDown | kProtGrowsUp)) return Errno::kInval;
  if (offset_in_page(start)) return Errno::kInval;
  if (!len) return Errno::kOk;
  len = page_align(len);
  uint64_t end = start + len;
  if (end <= start) return Errno::kNoMem;
  if (prot & ~(kProtRead | kProtWrite | kProtExec | kProtSem)) return Errno::kInval;
  (void)pkey;

  MmapWriteGuard g(mm);
  Vma* vma = mm->find_vma_intersection(start, end);
  if (!vma) return Errno::kNoMem;
  if (grows & kProtGrowsDown) {
    if (vma->vm_start >= end) return Errno::kNoMem;
    start = vma->vm_start;
    if (!(vma->vm_flags & VM_GROWSDOWN)) return Errno::kInval;
  } else {
    if (vma->vm_start > start) return Errno::kNoMem;
    if (grows & kProtGrowsUp) {
      end = vma->vm_end;
      if (!(vma->vm_flags & VM_GROWSUP)) return Errno::kInval;
    }
  }
  Vma* prev = mm->vma_prev(vma);
  if (start > vma->vm_start) prev = vma;

  Errno error = Errno::kOk;
  uint64_t nstart = start;
  uint64_t tmp = vma->vm_start;
  {
    MmuGather tlb(mm);
    for (;;) {
      if (!vma || vma->vm_start >= end) break;
      if (vma->vm_start != tmp) {
        error = Errno::kNoMem;
        break;
      }
      const int new_pkey = override_mprotect_pkey(mm, vma, prot);
      vm_flags_t newflags = calc_vm_prot_bits(prot, new_pkey);
      newflags |= vma->vm_flags & ~(VM_ACCESS_FLAGS | VM_FLAGS_CLEAR);
      // newflags >> 4 shifts VM_MAY* onto VM_*: asking for a right whose VM_MAY* is missing.
      if ((newflags & ~(newflags >> 4)) & VM_ACCESS_FLAGS) {
        error = Errno::kAcces;
        break;
      }
      tmp = std::min(vma->vm_end, end);
      error = mprotect_fixup(tlb, mm, vma, &prev, nstart, tmp, newflags);
      if (error != Errno::kOk) break;
      // Continue after the range just changed: prev now covers up to at least tmp.
      tmp = prev->vm_end;
      nstart = tmp;
      vma = mm->find_vma(tmp);
    }
  }
  if constexpr (kDebugChecks) validate_mm(mm);
  if (error == Errno::kOk && tmp < end) error = Errno::kNoMem;
  return error;
}

}  // namespace mirrormm
