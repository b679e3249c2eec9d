// /proc/PID/maps and /proc/PID/smaps (fs/proc/task_mmu.c): the VMA list of an address space
// as users see it, and the memory statistics of each VMA.
#include <fmt/format.h>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/memremap.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/task_mmu.h"

namespace mirrormm {

namespace {

// The name shmem_zero_setup (mmap.cc) gives the file of a shared anonymous mapping.
constexpr const char* kSharedAnonFile = "dev/zero";

// show_map_vma: one VMA, read under the mmap_lock.
MapsEntry show_map_vma(const Vma* v) {
  MapsEntry e;
  e.start = v->vm_start;
  e.end = v->vm_end;
  e.read = v->vm_flags & VM_READ;
  e.write = v->vm_flags & VM_WRITE;
  e.exec = v->vm_flags & VM_EXEC;
  e.shared = v->vm_flags & VM_MAYSHARE;
  if (v->vm_file) {
    const std::string& name = v->vm_file->inode->name();
    e.backing = name == kSharedAnonFile ? MapsEntry::Backing::kSharedAnon : MapsEntry::Backing::kFile;
    if (e.backing == MapsEntry::Backing::kFile) e.file = name;
    e.offset = v->vm_pgoff << kPageShift;
  }
  return e;
}

// The VMAs of mm in address order, each as show.entry(mm, vma) describes it under the
// mmap_lock for read: one consistent snapshot. mm is get_task_mm's answer (nullptr: -ESRCH);
// that reference (proc_maps_open's) keeps the address space while it is read and is dropped
// here.
template <class Entry, class Show>
Result<std::vector<Entry>> show_each_vma(Mm* mm, Show show) {
  if (!mm) return Errno::kSrch;
  std::vector<Entry> out;
  {
    MmapReadGuard g(mm);
    for (Vma* v = mm->find_vma(0); v; v = mm->vma_next(v)) out.push_back(show.entry(mm, v));
  }
  mmput_ref(mm);
  return out;
}

}  // namespace

Result<std::vector<MapsEntry>> System::proc_maps(Process* p) {
  struct ShowMap {
    MapsEntry entry(Mm*, const Vma* v) const { return show_map_vma(v); }
  };
  return show_each_vma<MapsEntry>(get_task_mm(p), ShowMap{});
}

// ---- /proc/PID/smaps ----
//
// The rules are those of Linux's smaps_pte_entry and smaps_account:
//   - a present PTE counts the page vm_normal_page returns: the zero page and special
//     mappings count nowhere (not even in Rss);
//   - a page is private when its refcount is 1 (only this PTE can reference it) or when fewer
//     than two PTEs map it; otherwise it is shared and its Pss is divided by its mapcount;
//   - it is dirty when the PTE is dirty or the page has PG_dirty;
//   - a swap entry adds to Swap, and to SwapPss divided by the slot's swap count;
//   - other non-present entries that name a page (migration entries) count their page as
//     "maybe shared": shared, with its whole size in Pss (smaps_account's present=false path);
//   - a shmem file's swapped-out pages count in Swap through the inode (shmem_swap_usage),
//     except in a private writable mapping with swap in its range, where the walk counts the
//     file's swap entries only at the holes of the page tables (COW copies hide the rest).

namespace {

using Stats = SmapsEntry;

// Whether the entry that names a page maps it (present) or is a non-present entry that still
// names it (a migration entry).
enum class Entry { kPresent, kNotPresent };

// smaps_page_accumulate: one page (size bytes, pss its proportional share << kPssShift).
void smaps_page_accumulate(Stats* mss, uint32_t flags, uint64_t size, uint64_t pss, bool dirty, bool is_private) {
  mss->pss += pss;
  if (flags & PG_anon)
    mss->pss_anon += pss;
  else if (flags & PG_swapbacked)
    mss->pss_shmem += pss;
  else
    mss->pss_file += pss;
  if (dirty || (flags & PG_dirty)) {
    mss->pss_dirty += pss;
    (is_private ? mss->private_dirty : mss->shared_dirty) += size;
  } else {
    (is_private ? mss->private_clean : mss->shared_clean) += size;
  }
}

// smaps_account for one small page. Called under the PTE lock of the entry that names it,
// which keeps the page from being freed; its counts are one snapshot, as in Linux.
void smaps_account(Stats* mss, const Page* page, bool young, bool dirty, Entry entry) {
  const bool present = entry == Entry::kPresent;
  const uint32_t flags = page->flags.load(std::memory_order_relaxed);
  const uint64_t size = kPageSize;
  if (flags & PG_anon) {
    mss->anonymous += size;
    if (!(flags & PG_swapbacked) && !dirty && !(flags & PG_dirty)) mss->lazyfree += size;
  }
  mss->resident += size;
  if (young || (flags & PG_referenced)) mss->referenced += size;
  // A non-present entry's page may be mapped elsewhere how often nobody can say: shared, whole.
  if (folio_ref_count(page) == 1 || !present) {
    smaps_page_accumulate(mss, flags, size, size << Stats::kPssShift, dirty, present);
    return;
  }
  const int mapcount = page->mapcount.load(std::memory_order_relaxed);
  uint64_t pss = size << Stats::kPssShift;
  if (mapcount >= 2) pss /= static_cast<uint64_t>(mapcount);
  smaps_page_accumulate(mss, flags, size, pss, dirty, mapcount < 2);
}

// smaps_pte_entry for a swap entry of a swap device.
void smaps_swap_entry(System* sys, Stats* mss, pteval_t v) {
  mss->swap += kPageSize;
  const uint64_t count = __swap_count(sys, pte_to_swp_entry(v));
  uint64_t pss = kPageSize << Stats::kPssShift;
  if (count >= 2) pss /= count;
  mss->swap_pss += pss;
}

// Whether vma maps a shmem file (shmem_mapping(vma->vm_file->f_mapping)): a memfd or shared
// anonymous memory, not a regular file of the model disk.
bool vma_maps_shmem(const Vma* vma) {
  return vma->vm_file != nullptr && vma->vm_file->inode->kind() == InodeKind::kShmem;
}

// shmem_swap_usage: the bytes of the file's swapped-out pages inside the VMA's range.
uint64_t shmem_swap_usage(const Vma* vma) {
  ShmemInode* inode = vma->vm_file->inode;
  const uint64_t swapped = inode->nr_swapped();
  if (swapped == 0) return 0;
  if (vma->vm_pgoff == 0 && vma->vm_end - vma->vm_start >= inode->size()) return swapped << kPageShift;
  return inode->partial_swap_usage(vma->vm_pgoff, vma->vm_pgoff + ((vma->vm_end - vma->vm_start) >> kPageShift));
}

// smap_gather_stats: walks vma's page tables under the mmap_lock (held by the caller) and each
// table's PTE lock.
void smap_gather_stats(System* sys, Mm* mm, const Vma* vma, Stats* mss) REQUIRES_SHARED(mm->mmap_lock_) {
  PhysMem& mem = mm->mem();
  // smaps_shmem_walk_ops: the file's swap is counted at the holes of the walk instead.
  bool shmem_holes = false;
  if (vma_maps_shmem(vma)) {
    const uint64_t shmem_swapped = shmem_swap_usage(vma);
    if (shmem_swapped == 0 || (vma->vm_flags & VM_SHARED) || !(vma->vm_flags & VM_WRITE))
      mss->swap += shmem_swapped;
    else
      shmem_holes = true;
  }
  auto hole = [&](uint64_t addr, uint64_t end) {
    if (shmem_holes && addr < end)
      mss->swap += vma->vm_file->inode->partial_swap_usage(vma->linear_page_index(addr), vma->linear_page_index(end));
  };
  walk_pte_tables(
      mm, vma->vm_start, vma->vm_end,
      [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page* table) {
        SpinGuard ptl(table->ptl);
        // smaps_pte_hole_lookup, for a run of empty PTEs at once.
        uint64_t holes_from = addr;
        for (; addr < stop; addr += kPageSize, ptep++) {
          const pteval_t v = ptep_get(ptep);
          if (pte_none(v)) continue;
          hole(holes_from, addr);
          holes_from = addr + kPageSize;
          if (pte_present(v)) {
            // vm_normal_page: the zero page and other special mappings have no page to count.
            if (pte_special(v)) continue;
            smaps_account(mss, mem.pfn_to_page(pte_pfn(v)), pte_young(v), pte_dirty(v), Entry::kPresent);
          } else if (!non_swap_entry(v)) {
            smaps_swap_entry(sys, mss, v);
          } else if (is_migration_entry(v)) {
            // is_pfn_swap_entry: the page a migration entry stands for counts as "maybe
            // shared" (its mapcount is meaningless meanwhile); smaps_pte_entry passes no young
            // or dirty bit for it (try_to_migrate moved a dirty PTE's bit to the page).
            smaps_account(mss, mem.pfn_to_page(migration_entry_pfn(v)), false, false, Entry::kNotPresent);
          } else if (is_device_exclusive_entry(v)) {
            // is_pfn_swap_entry: a page a device holds exclusively is accounted like a
            // migrating one (not present: only device-private entries are "fake-present").
            smaps_account(mss, mem.pfn_to_page(device_exclusive_entry_pfn(v)), false, false, Entry::kNotPresent);
          } else if (is_device_private_entry(v)) {
            // smaps_pte_entry counts a device-private page as present (its mapcount is
            // exact), with no young or dirty bit.
            smaps_account(mss, mem.pfn_to_page(device_private_entry_pfn(v)), false, false, Entry::kPresent);
          }
        }
        hole(holes_from, stop);
      },
      hole);
}

// show_smap: one VMA with its statistics.
struct ShowSmap {
  System* sys;
  SmapsEntry entry(Mm* mm, const Vma* v) const REQUIRES_SHARED(mm->mmap_lock_) {
    SmapsEntry e;
    e.vma = show_map_vma(v);
    smap_gather_stats(sys, mm, v, &e);
    // show_smap's Locked: and VmFlags' lo/lf.
    e.vm_locked = v->vm_flags & VM_LOCKED;
    e.vm_lockonfault = v->vm_flags & VM_LOCKONFAULT;
    e.vm_flags = show_smap_vma_flags(v->vm_flags);
    if (e.vm_locked) e.pss_locked = e.pss;
    return e;
  }
};

}  // namespace

std::string show_smap_vma_flags(vm_flags_t flags) {
  // Linux's mnemonics, by bit, for the flags the model has. Measured on the 6.18 host:
  // MADV_HUGEPAGE "hg", MADV_NOHUGEPAGE and MAP_STACK "nh", mseal "sl", MADV_GUARD_INSTALL
  // "gu" (VM_MAYBE_GUARD, the VMA is not split), MAP_DROPPABLE "nr wf dd dp" (never "ac"),
  // mlock "lo", mlock2(MLOCK_ONFAULT) "lo lf".
  struct Mnemonic {
    vm_flags_t flag;
    const char* name;
  };
  static constexpr Mnemonic kMnemonics[] = {
      {VM_READ, "rd"},         {VM_WRITE, "wr"},        {VM_EXEC, "ex"},         {VM_SHARED, "sh"},
      {VM_MAYREAD, "mr"},      {VM_MAYWRITE, "mw"},     {VM_MAYEXEC, "me"},      {VM_MAYSHARE, "ms"},
      {VM_GROWSDOWN, "gd"},    {VM_PFNMAP, "pf"},       {VM_MAYBE_GUARD, "gu"},  {VM_LOCKED, "lo"},
      {VM_IO, "io"},           {VM_SEQ_READ, "sr"},     {VM_RAND_READ, "rr"},    {VM_DONTCOPY, "dc"},
      {VM_DONTEXPAND, "de"},   {VM_LOCKONFAULT, "lf"},  {VM_ACCOUNT, "ac"},      {VM_NORESERVE, "nr"},
      {VM_HUGETLB, "ht"},      {VM_WIPEONFORK, "wf"},   {VM_DONTDUMP, "dd"},     {VM_MIXEDMAP, "mm"},
      {VM_HUGEPAGE, "hg"},     {VM_NOHUGEPAGE, "nh"},   {VM_MERGEABLE, "mg"},    {VM_DROPPABLE, "dp"},
      {VM_SEALED, "sl"},
  };
  std::string out;
  for (const Mnemonic& m : kMnemonics) {
    if (m.flag == VM_NONE || !(flags & m.flag)) continue;
    out += m.name;
    out += ' ';
  }
  return out;
}

Result<std::vector<SmapsEntry>> System::smaps(Process* p) {
  return show_each_vma<SmapsEntry>(get_task_mm(p), ShowSmap{this});
}

std::string format_smaps_entry(const SmapsEntry& e) {
  return fmt::format("{:x}-{:x} Rss={} Pss={} Shared_Clean={} Shared_Dirty={} Private_Clean={} Private_Dirty={} "
                     "Anonymous={} Swap={}",
                     e.vma.start, e.vma.end, e.resident >> 10, e.pss >> SmapsEntry::kPssShift >> 10,
                     e.shared_clean >> 10, e.shared_dirty >> 10, e.private_clean >> 10, e.private_dirty >> 10,
                     e.anonymous >> 10, e.swap >> 10);
}

std::string format_mlock_entry(const SmapsEntry& e) {
  const char* lock = e.vm_locked ? (e.vm_lockonfault ? "lo+lf" : "lo") : (e.vm_lockonfault ? "lf" : "-");
  return fmt::format("{:x}-{:x} {} Locked={}", e.vma.start, e.vma.end, lock, e.pss_locked >> SmapsEntry::kPssShift >> 10);
}

std::string format_maps_entry(const MapsEntry& e) {
  std::string out = fmt::format("{:x}-{:x} {}{}{}{}", e.start, e.end, e.read ? 'r' : '-', e.write ? 'w' : '-',
                                e.exec ? 'x' : '-', e.shared ? 's' : 'p');
  switch (e.backing) {
    case MapsEntry::Backing::kAnon: break;
    case MapsEntry::Backing::kSharedAnon: out += fmt::format(" {:x} shmem", e.offset); break;
    case MapsEntry::Backing::kFile: out += fmt::format(" {:x} {}", e.offset, e.file); break;
  }
  return out;
}

}  // namespace mirrormm
