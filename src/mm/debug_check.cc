// Whole-system validators (the model's CONFIG_DEBUG_VM): rss counters, mapcounts and
// refcounts against the page tables and page caches, run at quiescent points.
#include <unordered_map>

#include <fmt/format.h>

#include "mm/internal.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
#include "mm/system_internal.h"

namespace mirrormm {

void System::report_violation(const std::string& what) {
  violations_.fetch_add(1, std::memory_order_relaxed);
  std::lock_guard<std::mutex> g(violations_lock_);
  if (violation_messages_.size() < 20) violation_messages_.push_back(what);
}

std::vector<std::string> System::violation_messages() {
  std::lock_guard<std::mutex> g(violations_lock_);
  return violation_messages_;
}

bool System::debug_file_page_dirty(const std::string& name, uint64_t pgoff) {
  ShmemInode* inode;
  {
    std::lock_guard<std::mutex> g(files_lock_);
    auto it = files_.find(name);
    if (it == files_.end()) return false;
    inode = it->second;
  }
  Page* page = inode->find_get_page(pgoff);
  if (!page) return false;
  bool dirty = page->test(PG_dirty);
  mem_->put_page(page);
  return dirty;
}

uint64_t System::debug_check_consistency() NO_THREAD_SAFETY_ANALYSIS {
  uint64_t found = 0;
  auto bad = [&](const std::string& what) {
    found++;
    report_violation("consistency check", what);
  };
  std::unordered_map<Page*, int> mapped;  // PTEs seen per page
  std::unordered_map<Page*, std::string> where;  // and where
  std::vector<Mm*> mms;
  {
    std::lock_guard<std::mutex> g(procs_lock_);
    for (auto& p : procs_)
      if (Mm* mm = p->mm()) mms.push_back(mm);
  }
  for (Mm* mm : mms) {
    ReadGuard rg(mm->mmap_lock_);
    int64_t anon = 0, shmem = 0;
    for (auto& entry : mm->vmas_) {
      Vma* vma = entry.second;  // (a structured binding cannot be captured by clang 14)
      walk_pte_tables(mm, vma->vm_start, vma->vm_end, [&](pte_t* ptep, uint64_t addr, uint64_t stop, Page*) {
        for (; addr < stop; addr += kPageSize, ptep++) {
          pteval_t v = ptep_get(ptep);
          if (!pte_present(v) || pte_special(v)) continue;
          Page* page = mem_->pfn_to_page(pte_pfn(v));
          if (page->test(PG_free)) {
            bad(fmt::format("mm {} maps freed frame {} at {:#x}", mm->id(), pte_pfn(v), addr));
            continue;
          }
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
        for (; addr < stop; addr += kPageSize, ptep++)
          if (!pte_none(ptep_get(ptep)))
            bad(fmt::format("mm {}: entry {:#x} at {:#x} outside every VMA", mm->id(), ptep_get(ptep), addr));
      });
    };
    for (auto& [start, vma] : mm->vmas_) {
      outside(last_end, vma->vm_start);
      last_end = vma->vm_end;
    }
    outside(last_end, kTaskSize);
    if (anon != mm->rss(MM_ANONPAGES))
      bad(fmt::format("mm {}: rss anon {} but {} anonymous pages mapped", mm->id(), mm->rss(MM_ANONPAGES), anon));
    if (shmem != mm->rss(MM_SHMEMPAGES))
      bad(fmt::format("mm {}: rss shmem {} but {} shmem pages mapped", mm->id(), mm->rss(MM_SHMEMPAGES), shmem));
  }
  for (auto& [page, n] : mapped) {
    const int mc = page->mapcount.load(std::memory_order_relaxed);
    const int rc = page->refcount.load(std::memory_order_relaxed);
    if (mc != n)
      bad(fmt::format("frame {}: mapcount {} but {} mappings (flags {:#x}, refcount {}):{}", mem_->page_to_pfn(page), mc,
                      n, page->flags.load(), page->refcount.load(), where[page]));
    const int cache_ref = page->test(PG_shmem) ? 1 : 0;
    if (rc < n + cache_ref)
      bad(fmt::format("frame {}: refcount {} below {} mappings + {} cache", mem_->page_to_pfn(page), rc, n, cache_ref));
  }
  return found;
}

}  // namespace mirrormm
