// VMAs: the tree, splitting and merging (mm/vma.c).
//
// Merging follows Linux 6.18: vma_merge_new_range() for new ranges (mmap), and
// vma_merge_existing_range() for flag changes of an existing range (mprotect, madvise), with
// the 6.16+ anon_vma rules (an unfaulted and a faulted VMA may merge unless the faulted one is
// a fork child). Every function here runs with mmap_lock held for write.
#include <algorithm>
#include <iterator>
#include <mutex>
#include <new>
#include <vector>

#include <fmt/format.h>

#include "mirrormm/base/rcu.h"

#include "mm/internal.h"
#include "mm/rmap.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/shmem.h"
#include "mm/slab.h"
#include "mm/system_internal.h"

namespace mirrormm {

// rmap.cc: whether vma->anon_vma is in vma's own anon_vma_chain (reports it when not).
bool anon_vma_chain_check(const Vma* vma);

// ---- allocation and the tree ----

// vm_area_cachep: VMAs come from an object cache, so that splitting and merging do not pay
// for cross-thread malloc frees (a VMA's grace period ends on liburcu's thread). Not
// TYPESAFE_BY_RCU: lockless lookups may hold a VMA's pointer until a grace period has passed,
// so vm_area_free frees after one (kfree_rcu's use). Cache-line aligned, as Linux's
// SLAB_HWCACHE_ALIGN, so that vm_refcnt keeps its line.
KmemCache& vm_area_cachep() {
  static KmemCache* cache =  // never destroyed: RCU callbacks may free into it at exit
      new KmemCache("vm_area_struct", sizeof(Vma), std::max<size_t>(alignof(Vma), 64), SlabFlags::kNone);
  return *cache;
}

namespace {
void* vma_storage_alloc() { return vm_area_cachep().alloc(); }
void vma_storage_free(void* p) {
  static_cast<Vma*>(p)->~Vma();
  vm_area_cachep().free(p);
}
}  // namespace

Vma* vm_area_alloc(Mm* mm) {
  Vma* v = new (vma_storage_alloc()) Vma();
  v->vm_mm = mm;
  return v;
}

Vma* vm_area_dup(const Vma* orig) {
  Vma* v = new (vma_storage_alloc()) Vma();
  v->vm_start = orig->vm_start;
  v->vm_end = orig->vm_end;
  v->vm_pgoff = orig->vm_pgoff;
  v->vm_flags = orig->vm_flags;
  v->vm_page_prot = orig->vm_page_prot;
  v->vm_mm = orig->vm_mm;
  v->anon_vma = orig->anon_vma.load();
  v->vm_file = orig->vm_file;
  if (v->vm_file) get_file(v->vm_file);
  return v;
}

void vm_area_free(Vma* vma) {
  MM_BUG_ON(!vma->anon_vma_chain.empty());
  MM_BUG_ON(!vma->detached.load(std::memory_order_relaxed));
  if (vma->vm_file) fput(vma->vm_file);
  vma->vm_file = nullptr;
  // Lockless lookups may still hold the pointer: reuse only after a grace period.
  rcu_free_later(vma_storage_free, vma);
}

void vma_start_write(Vma* vma) {
  const uint64_t seq = vma->vm_mm->mmap_lock_.seq();
  MM_DEBUG_ON((seq & 1) == 0);  // the mmap_lock must be held for write
  if (vma->vm_lock_seq.load(std::memory_order_relaxed) == seq) return;
  vma->vm_lock_seq.store(seq, std::memory_order_seq_cst);
  while (vma->vm_refcnt.load(std::memory_order_seq_cst) != 0) {
    if (explore_hook::exploring() && explore_hook::wait_for_progress()) [[unlikely]]
      continue;
    MM_CPU_RELAX();
  }
}

bool vma_start_read(Vma* vma) {
  MmapLock& l = vma->vm_mm->mmap_lock_;
  if (vma->vm_lock_seq.load(std::memory_order_seq_cst) == l.seq()) return false;
  vma->vm_refcnt.fetch_add(1, std::memory_order_seq_cst);
  if (vma->detached.load(std::memory_order_seq_cst) ||
      vma->vm_lock_seq.load(std::memory_order_seq_cst) == l.seq()) {
    vma_end_read(vma);
    return false;
  }
  return true;
}

void Mm::add_rss(RssCounter c, int64_t n) {
  std::atomic<int64_t>& v = rss_[this_cpu_slot(kRssSlots)].v[c];
  v.fetch_add(n, std::memory_order_relaxed);
}

void Mm::refresh_snapshot() {
  VmaSnapshot* cur = snapshot_.load(std::memory_order_acquire);
  const uint64_t seq = mmap_lock_.seq();
  if (cur && cur->seq == seq) return;
  MutexGuard g(snapshot_lock_);
  cur = snapshot_.load(std::memory_order_acquire);
  if (cur && cur->seq == seq) return;
  auto* snap = new VmaSnapshot();
  snap->seq = seq;
  snap->starts.reserve(vmas_.size());
  snap->ends.reserve(vmas_.size());
  snap->vmas.reserve(vmas_.size());
  for (auto& [start, v] : vmas_) {
    snap->starts.push_back(v->vm_start);
    snap->ends.push_back(v->vm_end);
    snap->vmas.push_back(v);
  }
  snapshot_.store(snap, std::memory_order_release);
  if (cur) rcu_delete_later(cur);
}

Vma* Mm::lock_vma_under_rcu(uint64_t addr) {
  RcuReadGuard rcu;
  VmaSnapshot* snap = snapshot_.load(std::memory_order_acquire);
  if (!snap || snap->seq != mmap_lock_.seq()) return nullptr;
  auto it = std::upper_bound(snap->starts.begin(), snap->starts.end(), addr);
  if (it == snap->starts.begin()) return nullptr;
  const size_t i = static_cast<size_t>(it - snap->starts.begin()) - 1;
  if (addr >= snap->ends[i]) return nullptr;
  Vma* vma = snap->vmas[i];
  // The no-recheck test switch takes the read lock without vma_start_read's checks and
  // without the range recheck, as a kernel that trusted its lookup would.
  const bool recheck = !sys_->debug_broken(System::DebugBreak::kNoVmaLockRecheck);
  if (recheck) {
    if (!vma_start_read(vma)) return nullptr;
    // Read-locked: the fields are stable now; the snapshot's copy may be out of date.
    if (addr < vma->vm_start || addr >= vma->vm_end) {
      vma_end_read(vma);
      return nullptr;
    }
  } else {
    vma->vm_refcnt.fetch_add(1, std::memory_order_seq_cst);
  }
  // Checker: what the read lock must guarantee. Once vma_start_read has succeeded, a writer
  // that detaches or resizes the VMA waits for us, so "attached" and "contains addr" hold
  // exactly; a writer may write-lock it after our increment (and then waits), so
  // "not write-locked" is only an invariant of the lock taken without the recheck. Checked
  // while still inside the RCU read side, so a VMA freed meanwhile is still readable; on a
  // report the lock is refused and the fault retries under the mmap_lock.
  if (!recheck || mem().mmu_checker_on()) {
    const char* bad = nullptr;
    if (vma->detached.load(std::memory_order_seq_cst)) bad = "is detached";
    else if (addr < vma->vm_start || addr >= vma->vm_end) bad = "does not contain the address";
    else if (!recheck && vma->vm_lock_seq.load(std::memory_order_seq_cst) == mmap_lock_.seq()) bad = "is write-locked";
    if (bad) {
      sys_->report_violation(fmt::format("mm {}: lock_vma_under_rcu({:#x}) read-locked VMA [{:#x}, {:#x}), which {}",
                                         id_, addr, vma->vm_start, vma->vm_end, bad));
      vma_end_read(vma);
      return nullptr;
    }
  }
  return vma;
}

void vma_link(Mm* mm, Vma* vma) {
  auto [it, inserted] = mm->vmas_.emplace(vma->vm_start, vma);
  MM_BUG_ON(!inserted);
  (void)it;
  vma->detached.store(false, std::memory_order_release);
  mm->map_count_++;
  if (vma->vm_file && !vma->shared.in_tree) vma->vm_file->inode->i_mmap_insert(vma);
}

namespace {
// The mm-tree half of vma_unlink.
void vma_unlink_tree(Mm* mm, Vma* vma) REQUIRES(mm->mmap_lock_) {
  vma_start_write(vma);
  vma->detached.store(true, std::memory_order_seq_cst);
  auto it = mm->vmas_.find(vma->vm_start);
  MM_BUG_ON(it == mm->vmas_.end() || it->second != vma);
  mm->vmas_.erase(it);
  mm->map_count_--;
}
}  // namespace

void vma_unlink(Mm* mm, Vma* vma) {
  vma_unlink_tree(mm, vma);
  unlink_file_vma(vma);
}

void vma_set_range(Mm* mm, Vma* vma, uint64_t start, uint64_t end, uint64_t pgoff) {
  vma_start_write(vma);
  if (start != vma->vm_start) {
    auto it = mm->vmas_.find(vma->vm_start);
    MM_BUG_ON(it == mm->vmas_.end() || it->second != vma);
    mm->vmas_.erase(it);
    mm->vmas_.emplace(start, vma);
  }
  vma_adjust_rmap(vma, start, end, pgoff);
}

void vma_set_start(Mm* mm, Vma* vma, uint64_t start) {
  const uint64_t pgoff = start >= vma->vm_start ? vma->vm_pgoff + ((start - vma->vm_start) >> kPageShift)
                                                : vma->vm_pgoff - ((vma->vm_start - start) >> kPageShift);
  vma_set_range(mm, vma, start, vma->vm_end, pgoff);
}

void vma_set_end(Vma* vma, uint64_t end) {
  vma_start_write(vma);
  vma_adjust_rmap(vma, vma->vm_start, end, vma->vm_pgoff);
}

void remove_vma(Mm* mm, Vma* vma) {
  vma_unlink(mm, vma);
  unlink_anon_vmas(vma);
  vm_area_free(vma);
}

namespace {
// A merge removes a VMA in two steps around the change of the VMA that absorbs its range
// (Linux does all three under the rmap locks, vma_prepare/vma_complete): out of the mm's tree
// first, out of the reverse map (and freed) only once the absorbing VMA covers the range
// there. An rmap walk thus always finds some VMA for every mapped page; remove_migration_ptes
// relies on it (a migration entry in a range no VMA covered would be left behind).
void merge_remove_begin(Mm* mm, Vma* vma) REQUIRES(mm->mmap_lock_) { vma_unlink_tree(mm, vma); }
void merge_remove_end(Vma* vma) {
  unlink_file_vma(vma);
  unlink_anon_vmas(vma);
  vm_area_free(vma);
}
}  // namespace

// ---- lookups ----

Vma* Mm::find_vma(uint64_t addr) {
  auto it = vmas_.upper_bound(addr);
  if (it != vmas_.begin()) {
    auto p = std::prev(it);
    if (p->second->vm_end > addr) return p->second;
  }
  return it == vmas_.end() ? nullptr : it->second;
}

Vma* Mm::vma_lookup(uint64_t addr) {
  Vma* v = find_vma(addr);
  return (v && v->vm_start <= addr) ? v : nullptr;
}

Vma* Mm::find_vma_intersection(uint64_t start, uint64_t end) {
  Vma* v = find_vma(start);
  return (v && v->vm_start < end) ? v : nullptr;
}

Vma* Mm::vma_prev(const Vma* vma) {
  auto it = vmas_.find(vma->vm_start);
  if (it == vmas_.begin()) return nullptr;
  return std::prev(it)->second;
}

Vma* Mm::vma_next(const Vma* vma) {
  auto it = vmas_.find(vma->vm_start);
  ++it;
  return it == vmas_.end() ? nullptr : it->second;
}

Vma* Mm::find_vma_prev(uint64_t addr) {
  auto it = vmas_.upper_bound(addr);
  if (it == vmas_.begin()) return nullptr;
  Vma* v = std::prev(it)->second;
  if (v->vm_end > addr) {  // addr is inside v: its prev is the one before
    auto pit = std::prev(it);
    if (pit == vmas_.begin()) return nullptr;
    return std::prev(pit)->second;
  }
  return v;
}

// ---- splitting ----

Errno __split_vma(Mm* mm, Vma* vma, uint64_t addr, NewBelow new_below) {
  MM_BUG_ON(addr <= vma->vm_start || addr >= vma->vm_end || offset_in_page(addr));
  vma_start_write(vma);
  Vma* n = vm_area_dup(vma);
  if (new_below == NewBelow::kYes) {
    n->vm_end = addr;
  } else {
    n->vm_start = addr;
    n->vm_pgoff += (addr - vma->vm_start) >> kPageShift;
  }
  if (Errno e = anon_vma_clone(n, vma); e != Errno::kOk) {
    n->anon_vma = nullptr;
    vm_area_free(n);
    return e;
  }
  // The new VMA enters its file's reverse map before the old one shrinks (anon_vma_clone
  // did the same for the anon_vma side): a walk finds every mapped page covered meanwhile.
  if (n->vm_file) n->vm_file->inode->i_mmap_insert(n);
  if (new_below == NewBelow::kYes)
    vma_set_start(mm, vma, addr);
  else
    vma_set_end(vma, addr);
  vma_link(mm, n);
  return Errno::kOk;
}

Errno split_vma(Mm* mm, Vma* vma, uint64_t addr, NewBelow new_below) {
  if (mm->map_count_ >= mm->sys()->config().max_map_count) return Errno::kNoMem;
  return __split_vma(mm, vma, addr, new_below);
}

// ---- merge compatibility ----

namespace {

uint64_t range_pages(uint64_t start, uint64_t end) { return (end - start) >> kPageShift; }

bool is_mergeable_vma(const VmaMergeState& vmg, bool merge_next) {
  const Vma* tgt = merge_next ? vmg.next : vmg.prev;
  if ((tgt->vm_flags ^ vmg.vm_flags) & ~VM_IGNORE_MERGE) return false;
  if (tgt->vm_file != vmg.file) return false;
  return true;
}

bool is_mergeable_anon_vma(const VmaMergeState& vmg, bool merge_next) {
  const Vma* tgt = merge_next ? vmg.next : vmg.prev;
  const Vma* src = vmg.middle;
  AnonVma* tgt_anon = tgt->anon_vma;
  AnonVma* src_anon = vmg.anon_vma;
  // Case 1: src's anon_vma will be duplicated into tgt.
  if (!tgt_anon && src_anon) {
    if (vma_is_fork_child(src)) return false;
    if (vma_is_fork_child(vmg.copied_from)) return false;
    return true;
  }
  // Case 2: tgt's anon_vma will cover the range.
  if (tgt_anon && !src_anon) return !vma_is_fork_child(tgt);
  // Case 3: both set (must be the same) or both unset.
  return src_anon == tgt_anon;
}

bool can_vma_merge_after(const VmaMergeState& vmg) {
  return is_mergeable_vma(vmg, false) && is_mergeable_anon_vma(vmg, false) &&
         vmg.prev->vm_pgoff + vmg.prev->pages() == vmg.pgoff;
}

bool can_vma_merge_before(const VmaMergeState& vmg) {
  return is_mergeable_vma(vmg, true) && is_mergeable_anon_vma(vmg, true) &&
         vmg.next->vm_pgoff == vmg.pgoff + range_pages(vmg.start, vmg.end);
}

bool can_vma_merge_left(const VmaMergeState& vmg) {
  return vmg.prev && vmg.prev->vm_end == vmg.start && can_vma_merge_after(vmg);
}

bool are_anon_vmas_compatible(const Vma* a, const Vma* b) {
  return !a->anon_vma || !b->anon_vma || a->anon_vma == b->anon_vma;
}

bool can_vma_merge_right(const VmaMergeState& vmg, bool can_merge_left) {
  if (!vmg.next || vmg.end != vmg.next->vm_start || !can_vma_merge_before(vmg)) return false;
  if (!can_merge_left) return true;
  return are_anon_vmas_compatible(vmg.prev, vmg.next);
}

// vma_merge_existing_range: [start, end) lies in middle and touches at least one of its ends.
Vma* vma_merge_existing_range(VmaMergeState& vmg) REQUIRES(vmg.mm->mmap_lock_) {
  Mm* mm = vmg.mm;
  Vma* middle = vmg.middle;
  mmap_assert_write_locked(mm);
  Vma* prev = vmg.prev;
  const uint64_t start = vmg.start, end = vmg.end;
  const bool left_side = start == middle->vm_start;
  const bool right_side = end == middle->vm_end;

  if ((vmg.vm_flags & VM_SPECIAL) || (!left_side && !right_side)) return nullptr;

  bool merge_left = left_side && can_vma_merge_left(vmg);
  Vma* next = nullptr;
  bool merge_right = false;
  if (right_side) {
    next = vmg.next = mm->vma_next(middle);
    merge_right = can_vma_merge_right(vmg, merge_left);
  }
  if (!merge_left && !merge_right) return nullptr;
  vma_start_write(middle);
  if (merge_left) vma_start_write(prev);
  if (merge_right) vma_start_write(next);
  const bool remove_middle = left_side && right_side;
  const bool merge_both = merge_left && merge_right;

  // The sticky flags of every VMA the merge covers go to the one that survives.
  vm_flags_t sticky = (vmg.vm_flags | middle->vm_flags) & VM_STICKY;
  if (merge_left) sticky |= prev->vm_flags & VM_STICKY;
  if (merge_right) sticky |= next->vm_flags & VM_STICKY;
  if (merge_both) {
    // prev extends over middle and next; both are deleted.
    Errno e = dup_anon_vma(prev, next->anon_vma ? next : middle);
    if (e != Errno::kOk) return nullptr;
    vma_add_flags(prev, sticky);
    uint64_t new_end = next->vm_end;
    merge_remove_begin(mm, middle);
    merge_remove_begin(mm, next);
    vma_set_end(prev, new_end);
    merge_remove_end(middle);
    merge_remove_end(next);
    return prev;
  }
  if (merge_left) {
    // prev extends to end; middle shrinks from the left or is deleted.
    Errno e = dup_anon_vma(prev, middle);
    if (e != Errno::kOk) return nullptr;
    vma_add_flags(prev, sticky);
    // prev covers the range in the reverse map before middle stops covering it.
    if (remove_middle) merge_remove_begin(mm, middle);
    vma_set_end(prev, end);
    if (remove_middle)
      merge_remove_end(middle);
    else
      vma_set_start(mm, middle, end);
    return prev;
  }
  // merge_right: next extends down to start; middle shrinks from the right or is deleted.
  Errno e = dup_anon_vma(next, middle);
  if (e != Errno::kOk) return nullptr;
  vma_add_flags(next, sticky);
  if (remove_middle) merge_remove_begin(mm, middle);
  vma_set_start(mm, next, start);
  if (remove_middle)
    merge_remove_end(middle);
  else
    vma_set_end(middle, start);
  return next;
}

}  // namespace

Vma* vma_merge_new_range(VmaMergeState& vmg) {
  Mm* mm = vmg.mm;
  Vma* prev = vmg.prev;
  mmap_assert_write_locked(mm);
  Vma* next = vmg.next;
  if ((vmg.vm_flags & VM_SPECIAL) || (!prev && !next)) return nullptr;

  const bool can_merge_left = can_vma_merge_left(vmg);
  const bool can_merge_right = !vmg.just_expand && can_vma_merge_right(vmg, can_merge_left);
  uint64_t new_start = vmg.start, new_end = vmg.end, new_pgoff = vmg.pgoff;
  Vma* target = nullptr;
  if (can_merge_right) {
    new_end = next->vm_end;
    target = next;
  }
  if (can_merge_left) {
    new_start = prev->vm_start;
    new_pgoff = prev->vm_pgoff;
    target = prev;
  }
  if (!target) return nullptr;

  // vma_expand: target grows to [new_start, new_end); a next that is swallowed is removed
  // after target has taken its anon_vma.
  const bool remove_next = next && target != next && new_end == next->vm_end;
  vma_start_write(target);
  if (remove_next) vma_start_write(next);
  if (remove_next && dup_anon_vma(target, next) != Errno::kOk) return nullptr;
  if (vmg.copied_from && dup_anon_vma(target, vmg.copied_from) != Errno::kOk) return nullptr;
  vma_add_flags(target, (vmg.vm_flags | (remove_next ? next->vm_flags : 0)) & VM_STICKY);
  if (remove_next) merge_remove_begin(mm, next);
  vma_set_range(mm, target, new_start, new_end, new_pgoff);
  if (remove_next) merge_remove_end(next);
  return target;
}

Result<Vma*> vma_modify_flags(Mm* mm, Vma* prev, Vma* vma, uint64_t start, uint64_t end,
                              vm_flags_t newflags) {
  VmaMergeState vmg;
  vmg.mm = mm;
  vmg.prev = prev;
  vmg.middle = vma;
  vmg.start = start;
  vmg.end = end;
  vmg.pgoff = vma->linear_page_index(start);
  vmg.vm_flags = newflags;
  vmg.file = vma->vm_file;
  vmg.anon_vma = vma->anon_vma;
  mmap_assert_write_locked(vmg.mm);
  if (Vma* merged = vma_merge_existing_range(vmg)) return merged;

  if (vma->vm_start < start) {
    Errno e = split_vma(mm, vma, start, NewBelow::kYes);
    if (e != Errno::kOk) return e;
  }
  if (vma->vm_end > end) {
    Errno e = split_vma(mm, vma, end, NewBelow::kNo);
    if (e != Errno::kOk) return e;
  }
  return vma;
}

void validate_mm(Mm* mm) {
  uint64_t count = 0, last_end = 0;
  for (auto& [key, v] : mm->vmas_) {
    MM_BUG_ON(key != v->vm_start);
    MM_BUG_ON(v->vm_start >= v->vm_end);
    MM_BUG_ON(v->vm_start < last_end);
    MM_BUG_ON(offset_in_page(v->vm_start) || offset_in_page(v->vm_end));
    MM_BUG_ON(v->vm_mm != mm);
    MM_BUG_ON((v->anon_vma == nullptr) != v->anon_vma_chain.empty());
    // Reported rather than asserted, so that a broken fork (its test switch) shows as a report.
    (void)anon_vma_chain_check(v);
    last_end = v->vm_end;
    count++;
  }
  MM_BUG_ON(count != mm->map_count_);
}

}  // namespace mirrormm
