// Whole-system validators (the model's CONFIG_DEBUG_VM): rss counters, mapcounts and
// refcounts against the page tables and page caches, every frame's references accounted for,
// anon_vma chains, the CPUs' TLBs against the page tables, and the LRU lists, run at
// quiescent points.
#include <unordered_map>
#include <unordered_set>

#include <fmt/format.h>

#include "mm/cpu.h"
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/memremap.h"
#include "mm/rmap.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/lru.h"
#include "mm/system_internal.h"
#include "mm/tlb.h"

namespace mirrormm {

// rmap.cc: whether vma->anon_vma is in vma's own anon_vma_chain (reports it when not).
bool anon_vma_chain_check(const Vma* vma);

namespace {
// Counts every page-table frame reachable from table (level 4: the PGD; 1: a PTE table).
void count_tables(PhysMem& mem, Page* table, int level, std::unordered_map<Page*, int>& tables) {
  tables[table]++;
  if (level == 1) return;
  const pte_t* t = reinterpret_cast<const pte_t*>(mem.page_address(table));
  for (int i = 0; i < kPtrsPerTable; i++) {
    const pteval_t v = ptep_get(&t[i]);
    if (!pte_none(v)) count_tables(mem, mem.pfn_to_page(pte_pfn(v)), level - 1, tables);
  }
}
}  // namespace

void System::report_violation(const std::string& what) {
  violations_.fetch_add(1, std::memory_order_relaxed);
  MutexGuard g(violations_lock_);
  if (violation_messages_.size() < 20) violation_messages_.push_back(what);
}

std::vector<std::string> System::violation_messages() {
  MutexGuard g(violations_lock_);
  return violation_messages_;
}

bool System::debug_file_page_dirty(const std::string& name, uint64_t pgoff) {
  ShmemInode* inode;
  {
    MutexGuard g(files_lock_);
    auto it = files_.find(name);
    if (it == files_.end()) return false;
    inode = it->second;
  }
  Page* page = inode->filemap_get_folio(pgoff);  // a swapped-out page is clean in memory terms
  if (!page) return false;
  bool dirty = page->test(PG_dirty);
  mem_->put_page(page);
  return dirty;
}

uint64_t System::debug_check_consistency() {
  // kswapd and the OOM reaper work on their own: they finish their step and wait, so that
  // their isolation references and half-done reaps are not taken for leaks.
  struct ReclaimPause {
    explicit ReclaimPause(System* sys) : sys_(sys) { sys_->debug_pause_reclaim(); }
    ~ReclaimPause() { sys_->debug_resume_reclaim(); }
    System* sys_;
  } pause(this);
  uint64_t found = 0;
  auto bad = [&](const std::string& what) {
    found++;
    report_violation("consistency check", what);
  };
  std::unordered_map<Page*, int> mapped;  // PTEs seen per page
  std::unordered_set<Page*> writable_anon;  // anonymous pages some PTE maps writable
  std::unordered_map<Page*, int> stray;   // PTEs outside every VMA, per page
  std::unordered_map<Page*, int> tables;  // links to each page-table frame (a PGD: its mm)
  std::unordered_map<Page*, std::string> where;  // and where
  std::unordered_set<ShmemInode*> inodes;  // live page caches
  std::unordered_map<uint64_t, int> swap_refs;  // swap entry -> swap PTEs and inode slots naming it
  std::vector<Mm*> mms;
  {
    MutexGuard g(procs_lock_);
    for (auto& p : procs_)
      if (Mm* mm = p->mm()) mms.push_back(mm);
  }
  {
    MutexGuard g(files_lock_);
    for (auto& [name, inode] : files_) inodes.insert(inode);
  }
  // Every flush has returned at a quiescent point: each CPU's TLB entries of a live address
  // space agree with its page tables (a missed shootdown leaves them behind).
  std::unordered_map<uint64_t, std::vector<std::pair<int, Cpu::DebugTlbEntry>>> tlb_entries;  // by mm id
  for (int c = 0; c < nr_cpus(); c++)
    for (const Cpu::DebugTlbEntry& e : cpus_[c]->debug_tlb_entries()) tlb_entries[e.mm_id].push_back({c, e});
  for (Mm* mm : mms) {
    MmapReadGuard rg(mm);
    count_tables(*mem_, mm->pgd_, 4, tables);
    for (auto& [c, e] : tlb_entries[mm->id()]) {
      pte_t* ptep = pte_offset(mm, e.addr);
      const pteval_t v = ptep ? ptep_get(ptep) : 0;
      if (e.stale) {
        bad(fmt::format("CPU {}'s TLB maps {:#x} (mm {}) to frame {}, freed since the entry was filled", c, e.addr,
                        mm->id(), e.pfn));
      } else if (!pte_hw_present(v) || !(v & _PAGE_USER) || pte_pfn(v) != e.pfn) {
        bad(fmt::format("CPU {}'s TLB maps {:#x} (mm {}) to frame {} but the PTE is {:#x}", c, e.addr, mm->id(), e.pfn,
                        v));
      } else if (e.writable && !pte_write(v)) {
        bad(fmt::format("CPU {}'s TLB maps {:#x} (mm {}) writable but the PTE {:#x} is read-only", c, e.addr,
                        mm->id(), v));
      }
    }
    int64_t anon = 0, shmem = 0, swapents = 0;
    for (auto& entry : mm->vmas_) {
      Vma* vma = entry.second;  // (a structured binding cannot be captured by clang 14)
      if (vma->vm_file) inodes.insert(vma->vm_file->inode);
      if (!anon_vma_chain_check(vma)) found++;
      walk_pte_tables(mm, vma->vm_start, vma->vm_end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page*) {
        for (; addr < stop; addr += kPageSize, ptep++) {
          pteval_t v = ptep_get(ptep);
          if (is_swap_pte(v) && !non_swap_entry(v)) {
            swapents++;
            SwapInfo* si = get_swap_device(this, pte_to_swp_entry(v));
            if (!si) {
              bad(fmt::format("mm {}: swap entry {:#x} at {:#x} names no device that is on", mm->id(), v, addr));
              continue;
            }
            swap_refs[pte_to_swp_entry(v)]++;
            if (__swap_count(this, pte_to_swp_entry(v)) == 0)
              bad(fmt::format("mm {}: swap entry {:#x} at {:#x} names a slot with no map count", mm->id(), v, addr));
            put_swap_device(si);
            continue;
          }
          // A migration ends (remove_migration_ptes) before its page is unlocked: none is left
          // at a quiescent point.
          if (is_migration_entry(v)) {
            bad(fmt::format("mm {}: migration entry {:#x} at {:#x} outlives its migration", mm->id(), v, addr));
            continue;
          }
          // A device-private entry names a page in use of a live device-private pgmap, and
          // stands for it as a mapping (rss, mapcount, reference, reverse map).
          if (is_device_private_entry(v)) {
            const pfn_t pfn = device_private_entry_pfn(v);
            Page* page = mem_->valid_pfn(pfn) ? mem_->pfn_to_page(pfn) : nullptr;
            if (!page || !is_device_private_page(page) || page->pgmap->sys != this ||
                page->refcount.load(std::memory_order_relaxed) <= 0) {
              bad(fmt::format("mm {}: device-private entry {:#x} at {:#x} names no device-private page in use",
                              mm->id(), v, addr));
              continue;
            }
            if (is_writable_device_private_entry(v) && !(vma->vm_flags & VM_WRITE))
              bad(fmt::format("mm {}: writable device-private entry {:#x} at {:#x} in a VMA without VM_WRITE",
                              mm->id(), v, addr));
            mapped[page]++;
            where[page] += fmt::format(" mm{}@{:#x}d", mm->id(), addr);
            anon++;
            continue;
          }
          // A device-exclusive entry stands for the PTE it replaced: an anonymous system page
          // in use, exclusive to this mapping (make_device_exclusive converts only a writable
          // PTE, and fork restores the PTE before it shares anything).
          if (is_device_exclusive_entry(v)) {
            const pfn_t pfn = device_exclusive_entry_pfn(v);
            Page* page = mem_->valid_pfn(pfn) ? mem_->pfn_to_page(pfn) : nullptr;
            if (!page || page->test(PG_free) || is_device_private_page(page) || !page->test(PG_anon) ||
                !page->test(PG_anon_exclusive)) {
              bad(fmt::format("mm {}: device-exclusive entry {:#x} at {:#x} names no exclusive anonymous page",
                              mm->id(), v, addr));
              continue;
            }
            writable_anon.insert(page);
            mapped[page]++;
            where[page] += fmt::format(" mm{}@{:#x}x", mm->id(), addr);
            anon++;
            continue;
          }
          if (!pte_present(v) || pte_special(v)) continue;
          // A writable PTE needs a VMA that allows writing (mprotect downgrades PTEs and
          // migration entries alike).
          if (pte_write(v) && !(vma->vm_flags & VM_WRITE))
            bad(fmt::format("mm {}: writable PTE {:#x} at {:#x} in a VMA without VM_WRITE", mm->id(), v, addr));
          Page* page = mem_->pfn_to_page(pte_pfn(v));
          if (page->test(PG_free)) {
            bad(fmt::format("mm {} maps freed frame {} at {:#x}", mm->id(), pte_pfn(v), addr));
            continue;
          }
          if (is_device_private_page(page)) {
            bad(fmt::format("mm {}: present PTE {:#x} at {:#x} maps device-private frame {}", mm->id(), v, addr,
                            pte_pfn(v)));
            continue;
          }
          if (pte_write(v) && page->test(PG_anon)) writable_anon.insert(page);
          // Write-notify (a shared mapping of a regular file): writeback write-protects every
          // PTE of a page before it cleans it (folio_mkclean), and a write makes the page
          // dirty before the PTE writable (page_mkwrite), so a writable PTE maps a dirty page.
          // Otherwise a write through it would be lost to the next writeback.
          if (pte_write(v) && !page->test(PG_anon) && !page->test(PG_dirty) && vma_wants_writenotify(vma))
            bad(fmt::format("mm {}: writable PTE {:#x} at {:#x} maps a clean page of a write-notify mapping",
                            mm->id(), v, addr));
          mapped[page]++;
          where[page] += fmt::format(" mm{}@{:#x}{}", mm->id(), addr, vma->vm_file ? "f" : "a");
          if (page->test(PG_anon)) anon++; else shmem++;
        }
      });
    }
    // Nothing may stay mapped outside the VMAs.
    uint64_t last_end = 0;
    auto outside = [&](uint64_t lo, uint64_t hi) {
      if (lo >= hi) return;
      walk_pte_tables(mm, lo, hi, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page*) {
        for (; addr < stop; addr += kPageSize, ptep++) {
          const pteval_t v = ptep_get(ptep);
          if (pte_none(v)) continue;
          bad(fmt::format("mm {}: entry {:#x} at {:#x} outside every VMA", mm->id(), v, addr));
          if (pte_present(v) && !pte_special(v) && mem_->valid_pfn(pte_pfn(v))) stray[mem_->pfn_to_page(pte_pfn(v))]++;
        }
      });
    };
    for (auto& [start, vma] : mm->vmas_) {
      outside(last_end, vma->vm_start);
      last_end = vma->vm_end;
    }
    outside(last_end, kTaskSize);
    if (anon != mm->rss(MM_ANONPAGES))
      bad(fmt::format("mm {}: rss anon {} but {} anonymous pages mapped", mm->id(), mm->rss(MM_ANONPAGES), anon));
    if (swapents != mm->rss(MM_SWAPENTS))
      bad(fmt::format("mm {}: rss swapents {} but {} swap entries", mm->id(), mm->rss(MM_SWAPENTS), swapents));
    if (shmem != mm->rss(MM_SHMEMPAGES))
      bad(fmt::format("mm {}: rss shmem {} but {} shmem pages mapped", mm->id(), mm->rss(MM_SHMEMPAGES), shmem));
  }
  for (auto& [page, n] : mapped) {
    // PG_anon_exclusive's rule: an anonymous page mapped writable is mapped by nobody else
    // (otherwise a write through one mapping shows in another: a COW hole).
    if (n > 1 && writable_anon.count(page))
      bad(fmt::format("frame {}: anonymous page mapped writable but shared by {} mappings:{}", mem_->page_to_pfn(page),
                      n, where[page]));
    const int mc = page->mapcount.load(std::memory_order_relaxed);
    const int rc = page->refcount.load(std::memory_order_relaxed);
    if (mc != n)
      bad(fmt::format("frame {}: mapcount {} but {} mappings (flags {:#x}, refcount {}):{}", mem_->page_to_pfn(page), mc,
                      n, page->flags_snapshot(), page->refcount.load(), where[page]));
    const int cache_ref = page->test(PG_shmem) ? 1 : 0;
    if (rc < n + cache_ref)
      bad(fmt::format("frame {}: refcount {} below {} mappings + {} cache", mem_->page_to_pfn(page), rc, n, cache_ref));
    // The reverse map: a walk from the page's anon_vma or file finds every PTE that maps it,
    // and every hit is one of them. A driver's page has no rmap identity: nothing to walk.
    if (page->test(PG_driver)) continue;
    int hits = 0;
    std::string found_at;
    RmapWalkControl rwc;
    rwc.sys = this;
    rwc.rmap_one = [&](Page* pg, Vma* vma, uint64_t address) {
      const pte_t* dptep = is_device_private_page(pg) ? pte_offset(vma->vm_mm, address) : nullptr;
      const bool device_hit = dptep && is_device_private_entry(ptep_get(dptep)) &&
                              device_private_entry_pfn(ptep_get(dptep)) == mem_->page_to_pfn(pg);
      if (device_hit || page_vma_mapped_pte(pg, vma, address)) {
        hits++;
        found_at += fmt::format(" mm{}@{:#x}", vma->vm_mm->id(), address);
      }
      return true;
    };
    lock_page(page);
    rmap_walk(page, rwc);
    unlock_page(page);
    if (hits != n)
      bad(fmt::format("frame {}: {} mappings but the reverse map finds {} (mapped at{}; rmap finds{})",
                      mem_->page_to_pfn(page), n, hits, where[page], found_at.empty() ? " nothing" : found_at));
  }
  // Leaked references: every reference on a frame in use is held by a PTE, the page cache
  // (or the swap cache), a link from the page-table level above (or its mm, for a PGD), a
  // gather under way, or a per-CPU mlock batch (the add batches hold none). A reference
  // nothing accounts for keeps the
  // frame from ever being freed. (References below the accounted number are the mapcount
  // check's business above.)
  std::unordered_map<Page*, int> gathered;
  MmuGather::debug_for_each_pending(this, [&](Page* p) { gathered[p]++; });
  std::unordered_map<Page*, int> batched;
  debug_for_each_lru_batched(*mem_, [&](Page* p) { batched[p]++; });
  // The LRU lists: well linked, and holding exactly the frames marked PG_lru.
  debug_check_lru(*mem_, bad);
  uint64_t nr_lru = 0;
  auto count_of = [](const std::unordered_map<Page*, int>& m, Page* p) {
    auto it = m.find(p);
    return it == m.end() ? 0 : it->second;
  };
  const pfn_t end = mem_->debug_pfn_end();
  for (pfn_t pfn = 2; pfn < end; pfn++) {
    Page* page = mem_->pfn_to_page(pfn);
    if (page->test(PG_free) || page->test(PG_reserved)) continue;
    // A device page's driver holds references the machine cannot see (its allocator, a
    // migration under way): only its mappings are checked, above.
    if (is_zone_device_page(page)) continue;
    const int rc = page->refcount.load(std::memory_order_relaxed);
    const int ptes = count_of(mapped, page) + count_of(stray, page);
    const int links = count_of(tables, page);
    const int pending = count_of(gathered, page) + count_of(batched, page);
    if (page->test(PG_lru)) nr_lru++;
    int cache = 0;
    if (page->test(PG_shmem)) {
      // Only a live inode is asked (a page whose inode is gone is accounted for by nothing).
      auto* inode = static_cast<ShmemInode*>(page->mapping);
      if (inodes.count(inode)) {
        if (Page* cached = inode->filemap_get_folio(page->index)) {
          cache = cached == page ? 1 : 0;
          mem_->put_page(cached);
        }
      }
    }
    // A swap-cache page: the cache holds one reference while the page is its entry's.
    if (page->test(PG_swapcache) && swap_cache_peek(this, page->swap) == page) cache++;
    // Pins (mirrormm/gup.h) are their drivers' business, like a device page's references:
    // whole multiples of the pin bias are taken as pins.
    const int pins = rc >= kGupPinCountingBias ? rc / kGupPinCountingBias * kGupPinCountingBias : 0;
    const int accounted = ptes + cache + links + pending + pins;
    if (rc > accounted)
      bad(fmt::format("frame {}: refcount {} but {} accounted for ({} PTE, {} page cache, {} page-table link, "
                      "{} pending gather or LRU batch; flags {:#x}): leaked reference",
                      pfn, rc, accounted, ptes, cache, links, pending, page->flags_snapshot()));
  }
  uint64_t listed = 0;
  for (uint64_t n : mem_->lruvec().sizes()) listed += n;
  if (listed != nr_lru) bad(fmt::format("{} frames are PG_lru but the LRU lists hold {}", nr_lru, listed));
  // Swap slots: each slot's map count is the number of swap PTEs and shmem cache slots that
  // name it, SWAP_HAS_CACHE is set exactly while the swap cache holds a page for it, and the
  // slots in use are those. Inodes are found through the file table, the mappings and the
  // shmem swaplist (a shared anonymous mapping's inode that holds swap entries).
  std::vector<ShmemInode*> swaplisted = shmem_swaplist().get_all();  // references, put below
  for (ShmemInode* inode : swaplisted) inodes.insert(inode);
  for (ShmemInode* inode : inodes) {
    inode->debug_for_each_swap_entry([&](uint64_t pgoff, uint64_t entry) {
      SwapInfo* si = get_swap_device(this, entry);
      if (!si) {
        bad(fmt::format("shmem {}: swap entry {:#x} at page {} names no device that is on", inode->name(), entry, pgoff));
        return;
      }
      put_swap_device(si);
      swap_refs[entry]++;
    });
  }
  for (unsigned type = 0; type < kMaxSwapFiles; type++) {
    SwapInfo* si = swap_->info(type);
    if (si->state() == SwapInfo::State::kOff || !si->get(1)) continue;
    uint64_t used = 0;
    for (uint64_t off = 1; off <= si->highest_bit(); off++) {
      const uint64_t entry = swp_entry(type, off);
      const swap_map_t m = si->map(off);
      const bool cached = si->debug_cache_peek(off) != nullptr;
      auto it = swap_refs.find(entry);
      const int refs = it == swap_refs.end() ? 0 : it->second;
      if (m) used++;
      if (swap_count(m) != static_cast<swap_map_t>(refs))
        bad(fmt::format("swap slot {}:{}: map count {} but {} swap PTEs and shmem slots name it", type, off,
                        swap_count(m), refs));
      if (((m & SWAP_HAS_CACHE) != 0) != cached)
        bad(fmt::format("swap slot {}:{}: SWAP_HAS_CACHE {} but the swap cache {} a page", type, off,
                        (m & SWAP_HAS_CACHE) != 0, cached ? "holds" : "has no"));
    }
    if (used != si->inuse())
      bad(fmt::format("swap device {}: {} slots in use but {} slots referenced", type, si->inuse(), used));
    put_swap_device(si);
  }
  for (ShmemInode* inode : swaplisted) inode->put();
  return found;
}

}  // namespace mirrormm
