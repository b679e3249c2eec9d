// What one user address maps and the state of its page (fs/proc/page.c and the pagemap half
// of fs/proc/task_mmu.c: /proc/PID/pagemap, /proc/kpagecount, /proc/kpagemapcount,
// /proc/kpageflags, folded into one answer per address).
#include <fmt/format.h>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/pgtable.h"
#include "mm/shmem.h"

namespace mirrormm {

namespace {

// The flags pageinfo names, in the order it lists them.
struct FlagName {
  PageFlags flag;
  const char* name;
};
constexpr FlagName kFlagNames[] = {
    {PG_locked, "locked"},         {PG_anon, "anon"},
    {PG_anon_exclusive, "anon_exclusive"}, {PG_shmem, "shmem"},
    {PG_dirty, "dirty"},           {PG_lru, "lru"},
    {PG_active, "active"},         {PG_referenced, "referenced"},
    {PG_workingset, "workingset"}, {PG_swapbacked, "swapbacked"},
    {PG_swapcache, "swapcache"},   {PG_unevictable, "unevictable"},
    {PG_writeback, "writeback"},   {PG_reclaim, "reclaim"},
    {PG_external_rmap, "external_rmap"},   {PG_mlocked, "mlocked"},
};

// The page a present PTE maps, described under the PTE lock (the PTE's reference keeps the
// page allocated; lru_lock makes PG_lru and the list it selects one consistent reading).
void describe_page(PhysMem& mem, Page* page, PageInfo* info) {
  info->node = mem.page_to_nid(page);
  info->mapcount = page->mapcount.load(std::memory_order_relaxed);
  info->refcount = folio_ref_count(page);  // Linux's count: a queued page's batch reference included
  uint32_t flags;
  {
    Lruvec& lruvec = mem.lruvec();
    SpinGuard g(lruvec.lru_lock);
    flags = page->flags_snapshot();
    if (flags & PG_lru) info->lru = std::string(kLruListNames[folio_lru_list(page)]);
  }
  for (const FlagName& f : kFlagNames)
    if (flags & f.flag) info->flags.emplace_back(f.name);
  if (flags & PG_swapcache) {
    info->in_swapcache = true;
    info->swapcache_type = swp_type(page->swap);
    info->swapcache_offset = swp_offset(page->swap);
  }
  if (flags & PG_anon) {
    info->owner = "anon";
  } else if ((flags & PG_shmem) && page->mapping) {
    info->owner = "file " + static_cast<const ShmemInode*>(page->mapping)->name();
  }
}

}  // namespace

Result<PageInfo> System::pageinfo(Process* p, uint64_t addr) {
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  Result<PageInfo> result = Errno::kFault;
  {
    MmapReadGuard g(mm);
    if (mm->vma_lookup(addr)) {
      PageInfo info;
      if (pte_t* ptep = pte_offset(mm, addr)) {
        SpinGuard pg(pte_lockptr(mm, ptep));
        const pteval_t v = ptep_get(ptep);
        if (pte_present(v)) {
          info.entry = PageInfo::Entry::kPresent;
          info.pfn = pte_pfn(v);
          info.writable = pte_write(v);
          info.dirty = pte_dirty(v);
          info.young = pte_young(v);
          if (mem_->is_zero_pfn(pte_pfn(v))) info.zero_page = true;
          else if (!pte_special(v)) describe_page(*mem_, mem_->pfn_to_page(pte_pfn(v)), &info);
        } else if (is_swap_pte(v)) {
          info.entry = PageInfo::Entry::kSwap;
          info.swap_type = swp_type(v);
          info.swap_offset = swp_offset(v);
        }
      }
      result = std::move(info);
    }
  }
  mmput_ref(mm);
  return result;
}

std::string format_pageinfo(const PageInfo& info) {
  switch (info.entry) {
    case PageInfo::Entry::kNone: return "none";
    case PageInfo::Entry::kSwap: return fmt::format("swap={}:{}", info.swap_type, info.swap_offset);
    case PageInfo::Entry::kPresent: break;
  }
  if (info.zero_page) return "zero";
  std::string flags;
  for (const std::string& f : info.flags) {
    if (!flags.empty()) flags += ',';
    flags += f;
  }
  std::string owner = info.owner;
  if (owner.rfind("file ", 0) == 0) owner[4] = ':';
  std::string out = fmt::format("pfn={:#x} node={} pte={}{}{} map={} ref={} flags={} lru={} owner={}", info.pfn,
                                info.node, info.writable ? 'w' : '-', info.dirty ? 'd' : '-', info.young ? 'y' : '-',
                                info.mapcount, info.refcount, flags.empty() ? "none" : flags, info.lru, owner);
  if (info.in_swapcache) out += fmt::format(" swapcache={}:{}", info.swapcache_type, info.swapcache_offset);
  return out;
}

}  // namespace mirrormm
