// NUMA nodes of the machine and the system calls that move pages between them: migrate_pages
// (mm/mempolicy.c's do_migrate_pages with MPOL_MF_MOVE_ALL, for one range) and move_pages
// (mm/migrate.c's do_pages_move and do_pages_stat). The mechanism is mm/migrate.h's.
#include <vector>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/migrate.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

// NR_MAX_MIGRATE_PAGES_RETRY: attempts per page while it answers -EAGAIN.
constexpr int kMigrateRetries = 10;

// migrate_pages_batch for one isolated page: retried while it answers -EAGAIN. The page is
// freed (moved) or put back on the LRU (not moved) on return.
Errno migrate_isolated(System* sys, Page* page, int nid) {
  Errno e = Errno::kAgain;
  for (int attempt = 0; attempt < kMigrateRetries && e == Errno::kAgain; attempt++) e = migrate_folio(sys, page, nid, sys);
  if (e == Errno::kOk) sys->mem().put_page(page);  // the isolation reference, the last one
  else folio_putback_lru(sys->mem(), page);
  return e;
}

// A user reference on p's address space for a call (as the System's other calls hold one).
struct TaskMm {
  explicit TaskMm(Process* p) : mm(p && !p->oom_killed() ? get_task_mm(p) : nullptr) {}
  ~TaskMm() {
    if (mm) mmput_ref(mm);
  }
  TaskMm(const TaskMm&) = delete;
  TaskMm& operator=(const TaskMm&) = delete;
  Mm* mm;
};

}  // namespace

Status System::set_nodes(int n) {
  if (n < 1 || n > PhysMem::kMaxNodes) return Errno::kInval;
  {
    MutexGuard g(files_lock_);
    if (!files_.empty()) return Errno::kBusy;
  }
  {
    MutexGuard g(procs_lock_);
    for (auto& p : procs_) {
      Mm* mm = p->mm();
      if (!mm) continue;
      MmapReadGuard rg(mm);
      if (!mm->vmas_.empty()) return Errno::kBusy;
    }
  }
  lru_add_drain_all();
  const Errno e = mem_->set_nodes(mem_->even_node_split(n), nr_cpus());
  if (e != Errno::kOk) return e;
  return kSuccess;
}

int System::nr_nodes() { return mem_->nr_nodes(); }

Result<uint64_t> System::migrate_pages(Process* p, uint64_t addr, uint64_t len, int node) {
  if (node < 0 || node >= mem_->nr_nodes()) return Errno::kInval;
  if (offset_in_page(addr)) return Errno::kInval;
  TaskMm ref(p);
  Mm* mm = ref.mm;
  if (!mm) return Errno::kSrch;
  len = page_align(len);
  const uint64_t end = addr + len;
  if (end < addr) return Errno::kInval;
  if (len == 0) return uint64_t{0};
  uint64_t moved = 0;
  // do_migrate_pages holds the mmap_lock for read across the queueing and the migration.
  MmapReadGuard g(mm);
  for (uint64_t a = addr; a < end;) {
    const Vma* vma = mm->vma_lookup(a);
    if (!vma) return Errno::kFault;  // queue_pages_range: a hole in the range
    a = vma->vm_end;
  }
  // Pages still in a per-CPU LRU add batch cannot be isolated (migrate_prep).
  lru_add_drain_all();
  std::vector<Page*> isolated;
  // queue_folios_pte_range: every page a present PTE maps, not yet on the node, isolated
  // from the LRU (a page isolated by someone else, or already queued through another PTE,
  // fails the isolation).
  walk_pte_tables(mm, addr, end, [&](pte_t* ptep, uint64_t a, uint64_t stop, Page* table) {
    SpinGuard pg(table->ptl);
    for (; a < stop; a += kPageSize, ptep++) {
      const pteval_t v = ptep_get(ptep);
      if (!pte_present(v) || pte_special(v)) continue;
      Page* page = mem_->pfn_to_page(pte_pfn(v));
      if (mem_->page_to_nid(page) == node) continue;
      if (folio_isolate_lru(*mem_, page)) isolated.push_back(page);
    }
  });
  for (Page* page : isolated)
    if (migrate_isolated(this, page, node) == Errno::kOk) moved++;
  return moved;
}

Status System::move_pages(Process* p, const std::vector<uint64_t>& addrs, const std::vector<int>& nodes,
                          std::vector<int>* status) {
  if (!nodes.empty() && nodes.size() != addrs.size()) return Errno::kInval;
  for (int n : nodes)
    if (n < 0 || n >= mem_->nr_nodes()) return Errno::kNoDev;
  TaskMm ref(p);
  Mm* mm = ref.mm;
  if (!mm) return Errno::kSrch;
  status->assign(addrs.size(), 0);
  MmapReadGuard g(mm);
  if (!nodes.empty()) lru_add_drain_all();
  for (size_t i = 0; i < addrs.size(); i++) {
    const uint64_t addr = addrs[i] & kPageMask;
    int& st = (*status)[i];
    if (!mm->vma_lookup(addr)) {
      st = -static_cast<int>(Errno::kFault);
      continue;
    }
    // folio_walk_start with FW_ZEROPAGE: the page present at addr, with a reference; the
    // zero page answers -EFAULT (as the host's move_pages does), nothing present -ENOENT.
    Page* page = nullptr;
    bool zero = false;
    if (pte_t* ptep = pte_offset(mm, addr)) {
      SpinGuard pg(pte_lockptr(mm, ptep));
      const pteval_t v = ptep_get(ptep);
      if (pte_present(v) && pte_special(v)) {
        zero = true;
      } else if (pte_present(v)) {
        page = mem_->pfn_to_page(pte_pfn(v));
        mem_->get_page(page);
      }
    }
    if (!page) {
      st = -static_cast<int>(zero ? Errno::kFault : Errno::kNoEnt);
      continue;
    }
    const int target = nodes.empty() ? -1 : nodes[i];
    if (target < 0 || mem_->page_to_nid(page) == target) {
      st = mem_->page_to_nid(page);
      mem_->put_page(page);
      continue;
    }
    const bool isolated = folio_isolate_lru(*mem_, page);
    mem_->put_page(page);
    if (!isolated) {
      st = -static_cast<int>(Errno::kBusy);
      continue;
    }
    const Errno e = migrate_isolated(this, page, target);
    st = e == Errno::kOk ? target : -static_cast<int>(e);
  }
  return kSuccess;
}

}  // namespace mirrormm
