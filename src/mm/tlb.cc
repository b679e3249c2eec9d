#include "mm/tlb.h"

#include <algorithm>

#include "mirrormm/trace.h"
#include "mm/lru.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {
// The gathers under way while the checker is on (MmuGather's class comment). A leaf lock.
struct GatherRegistry {
  Mutex lock{lock_class::kGatherRegistry};
  std::vector<MmuGather*> live GUARDED_BY(lock);
};
GatherRegistry& gather_registry() {
  static GatherRegistry* r = new GatherRegistry();  // never destroyed: gathers may run at exit
  return *r;
}

template <class Fn>
void for_each_cpu_of(Mm* mm, Fn fn) {
  System* sys = mm->sys();
  uint64_t mask = mm->cpumask_.load(std::memory_order_seq_cst);
  while (mask) {
    int cpu = __builtin_ctzll(mask);
    mask &= mask - 1;
    if (cpu < sys->nr_cpus()) fn(sys->cpu(cpu));
  }
}

// The CPUs a shootdown of mm reaches (a trace span's argument).
uint32_t cpus_of(Mm* mm) {
  return static_cast<uint32_t>(__builtin_popcountll(mm->cpumask_.load(std::memory_order_relaxed)));
}
}  // namespace

void flush_tlb_range_cpus(Mm* mm, uint64_t start, uint64_t end) {
  if (start >= end) return;
  for_each_cpu_of(mm, [&](Cpu& c) { c.flush_range(mm->id(), start, end); });
}

// Both flushes end with the secondary TLBs that share the page tables (x86's
// flush_tlb_mm_range calls mmu_notifier_arch_invalidate_secondary_tlbs).
void flush_tlb_range(Mm* mm, uint64_t start, uint64_t end) {
  if (start >= end) return;
  trace::Span span(trace::Kind::kShootdown, nullptr, start, end);
  if (span.recording()) span.set_c(cpus_of(mm));  // the CPUs the shootdown reaches
  flush_tlb_range_cpus(mm, start, end);
  mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end);
}

void flush_tlb_mm(Mm* mm) {
  trace::Span span(trace::Kind::kShootdown, nullptr, 0, ~0ull);
  if (span.recording()) span.set_c(cpus_of(mm));  // the CPUs the shootdown reaches
  for_each_cpu_of(mm, [&](Cpu& c) { c.flush_mm(mm->id()); });
  mmu_notifier_arch_invalidate_secondary_tlbs(mm, 0, ~0ull);
}

MmuGather::MmuGather(Mm* mm) : mm_(mm) {
  if (!mmu_checker_on(mm)) return;
  registered_ = true;
  GatherRegistry& r = gather_registry();
  MutexGuard g(r.lock);
  r.live.push_back(this);
}

MmuGather::~MmuGather() {
  flush();
  if (!registered_) return;
  GatherRegistry& r = gather_registry();
  MutexGuard g(r.lock);
  r.live.erase(std::find(r.live.begin(), r.live.end(), this));
}

void MmuGather::free_pages() {
  // free_pages_and_swap_cache drains this CPU's batches first: their references (and the
  // munlocks the zap queued) are settled before the pages' own go.
  if (!pages_.empty()) lru_add_drain(mm_->mem());
  mm_->mem().put_pages(pages_.data(), pages_.size());
  pages_.clear();
}

void MmuGather::flush() {
  // The put-before-flush test switch frees the pages while other CPUs may still translate to
  // them (the free-time TLB check reports each such translation). Page tables still wait for
  // the flush: a CPU's paging-structure cache may point at them, and walking a freed table
  // would read whatever the frame holds next.
  const bool put_first = mm_->sys()->debug_broken(System::DebugBreak::kPutBeforeFlush);
  if (put_first) free_pages();
  if (start_ < end_) flush_tlb_range(mm_, start_, end_);
  start_ = ~0ull;
  end_ = 0;
  if (!put_first) free_pages();
  PhysMem& mem = mm_->mem();
  for (Page* t : tables_) {
    t->clear(PG_pgtable);
    mem.put_page(t);
  }
  tables_.clear();
}

void MmuGather::debug_for_each_pending(System* sys, const std::function<void(Page*)>& fn) {
  GatherRegistry& r = gather_registry();
  MutexGuard g(r.lock);
  for (MmuGather* tlb : r.live) {
    if (tlb->mm_->sys() != sys) continue;
    for (Page* p : tlb->pages_) fn(p);
    for (Page* t : tlb->tables_) fn(t);
  }
}

}  // namespace mirrormm
