// Address-space lifecycle and fork's copy (kernel/fork.c's mm part and dup_mmap).
#include <algorithm>
#include <iterator>

#include "mirrormm/base/rcu.h"
#include "mirrormm/mman.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/mm.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/system_internal.h"

namespace mirrormm {

// rmap.cc: vma->anon_vma must be in vma's own anon_vma_chain; the repair reports a missing
// link and adds it.
void anon_vma_chain_repair(Vma* vma);

Mm::Mm(System* sys, uint64_t id) : sys_(sys), mem_(&sys->mem()), id_(id) {}

Mm::~Mm() { MM_BUG_ON(pgd_ != nullptr); }

Mm* mm_alloc(System* sys) {
  Page* pgd = sys->mem().alloc_page(Zero::kYes);
  if (!pgd) return nullptr;
  pgd->set(PG_pgtable);
  Mm* mm = new Mm(sys, sys->next_mm_id());
  mm->pgd_ = pgd;
  {
    // The first process's limits (a fork child's are overwritten with its parent's).
    MmapWriteGuard g(mm);
    const SystemConfig& cfg = sys->config();
    mm->rlim_[kRlimitStack].cur = cfg.stack_rlimit;
    mm->rlim_[kRlimitMemlock] = {cfg.memlock_rlimit, cfg.memlock_rlimit};
  }
  return mm;
}

void mm_free(Mm* mm) {
  MM_BUG_ON(mm->pgd_ != nullptr || mm->state() != Mm::State::kDead);
  mmu_notifier_subscriptions_destroy(mm);
  rcu_call([mm] {
    delete mm->snapshot_.exchange(nullptr);
    delete mm;
  });
}

void mmgrab(Mm* mm) {
  int old = mm->mm_count_.fetch_add(1, std::memory_order_relaxed);
  MM_BUG_ON(old <= 0);
}

void mmdrop(Mm* mm) {
  int old = mm->mm_count_.fetch_sub(1, std::memory_order_acq_rel);
  MM_BUG_ON(old <= 0);
  if (old == 1) mm_free(mm);
}

void mmput(Mm* mm) {
  if (mm->mm_users_.fetch_sub(1, std::memory_order_acq_rel) != 1) return;
  exit_mmap(mm);
  mmdrop(mm);
}

Result<Mm*> dup_mm(Mm* oldmm) {
  Mm* mm = mm_alloc(oldmm->sys());
  if (!mm) return Errno::kNoMem;
  Errno err = Errno::kOk;
  {
    MmapWriteGuard og(oldmm);
    mmap_write_lock_nested(mm);  // the child's, inside the parent's
    mm->execute_only_pkey_ = oldmm->execute_only_pkey_;
    std::copy(std::begin(oldmm->rlim_), std::end(oldmm->rlim_), std::begin(mm->rlim_));  // def_flags_ stays 0
    for (auto& [start, mpnt] : oldmm->vmas_) {
      if (mpnt->vm_flags & VM_DONTCOPY) continue;
      vma_start_write(mpnt);  // no faults on the parent's VMA while it is copied
      if (mpnt->vm_flags & VM_ACCOUNT) {
        if (!vm_enough_memory(mm->sys(), static_cast<int64_t>(mpnt->pages()))) {
          err = Errno::kNoMem;
          break;
        }
      }
      Vma* tmp = vm_area_dup(mpnt);
      tmp->vm_mm = mm;
      tmp->vm_flags &= ~(VM_LOCKED | VM_LOCKONFAULT);
      if (tmp->vm_flags & VM_WIPEONFORK) {
        tmp->anon_vma = nullptr;
      } else if (anon_vma_fork(tmp, mpnt) != Errno::kOk) {
        vm_area_free(tmp);
        err = Errno::kNoMem;
        break;
      }
      vma_link(mm, tmp);
      if (!(tmp->vm_flags & VM_WIPEONFORK)) {
        err = copy_page_range(tmp, mpnt);
        if (err != Errno::kOk) break;
      }
    }
    // The parent's writable entries were write-protected: flush them.
    flush_tlb_mm(oldmm);
    // Checker: each child VMA's anon_vma is in its own chain. Without that link nothing
    // counts the child's use of it, and a VMA that links it later frees it on its way out
    // while the child still points at it; the link is added after the report, so that a
    // broken fork (the test switch) leaves a consistent child.
    if (kDebugChecks || mmu_checker_on(mm))
      for (auto& [start, vma] : mm->vmas_) anon_vma_chain_repair(vma);
    mmap_write_unlock(mm);
  }
  if (err != Errno::kOk) {
    exit_mmap(mm);
    mmdrop(mm);
    return err;
  }
  return mm;
}

}  // namespace mirrormm
