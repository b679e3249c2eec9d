#include "mm/tlb.h"

#include "mm/mmu_notifier_internal.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {
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
}  // namespace

// Both flushes end with the secondary TLBs that share the page tables (x86's
// flush_tlb_mm_range calls mmu_notifier_arch_invalidate_secondary_tlbs).
void flush_tlb_range(Mm* mm, uint64_t start, uint64_t end) {
  if (start >= end) return;
  for_each_cpu_of(mm, [&](Cpu& c) { c.flush_range(mm->id(), start, end); });
  mmu_notifier_arch_invalidate_secondary_tlbs(mm, start, end);
}

void flush_tlb_mm(Mm* mm) {
  for_each_cpu_of(mm, [&](Cpu& c) { c.flush_mm(mm->id()); });
  mmu_notifier_arch_invalidate_secondary_tlbs(mm, 0, ~0ull);
}

MmuGather::MmuGather(Mm* mm) : mm_(mm) {}

MmuGather::~MmuGather() { flush(); }

void MmuGather::flush() {
  if (start_ < end_) flush_tlb_range(mm_, start_, end_);
  start_ = ~0ull;
  end_ = 0;
  PhysMem& mem = mm_->sys()->mem();
  mem.put_pages(pages_.data(), pages_.size());
  pages_.clear();
  for (Page* t : tables_) {
    t->clear(PG_pgtable);
    mem.put_page(t);
  }
  tables_.clear();
}

}  // namespace mirrormm
