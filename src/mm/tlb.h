// TLB shootdown and the mmu_gather (arch/x86/mm/tlb.c and mm/mmu_gather.c's roles).
//
// Protocol: whoever removes or downgrades a translation first changes the PTE (under the PTE
// lock, atomically), then flushes the TLBs of every CPU in the mm's cpumask, and only then
// frees what the old translation pointed to. A flush takes each target CPU's TLB lock, which
// that CPU holds for the whole of a TLB lookup, page walk and data copy; so once the flush has
// returned no CPU can still be using the old translation, and nothing freed afterwards is
// reachable.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "mm/mm_types.h"

namespace mirrormm {

// Flushes [start, end) of mm from every CPU that may cache it.
void flush_tlb_range(Mm* mm, uint64_t start, uint64_t end);
void flush_tlb_mm(Mm* mm);
// Flushes [start, end) of mm from the CPUs only, not from the secondary TLBs that share the page
// tables: the order of kernels in which those heard of a flush through a notifier call of its
// own (mmu_notifier_invalidate_range). Only a re-injected bug uses it (kUnmapPutBeforeEnd).
void flush_tlb_range_cpus(Mm* mm, uint64_t start, uint64_t end);
inline void flush_tlb_page(Mm* mm, uint64_t addr) { flush_tlb_range(mm, addr, addr + kPageSize); }

// Collects the TLB range to flush and the pages and page tables to free after the flush
// (tlb_gather_mmu ... tlb_finish_mmu). Used by zap, munmap, mprotect and exit.
//
// A gather lives on its caller's stack and is used by that thread only. While the checker is
// on, a gather is also entered in a registry (a leaf mutex) for its lifetime, so that the
// leaked-frame check can account for the references it holds.
class MmuGather {
 public:
  explicit MmuGather(Mm* mm);
  ~MmuGather();  // tlb_finish_mmu
  MmuGather(const MmuGather&) = delete;
  MmuGather& operator=(const MmuGather&) = delete;

  Mm* mm() const { return mm_; }
  // A translation of [start, end) changed: it must be flushed before the gather ends.
  void flush_range(uint64_t start, uint64_t end) {
    if (start < start_) start_ = start;
    if (end > end_) end_ = end;
  }
  // A page whose mapping was removed: its reference is dropped after the flush. A CPU-visible
  // mapping's range must have been added (flush_range) before: a full batch flushes and
  // frees at once.
  void remove_page(Page* page) {
    pages_.push_back(page);
    if (pages_.size() >= kBatch) flush();
  }
  // A page-table page that was unlinked: freed after the flush.
  void remove_table(Page* table) { tables_.push_back(table); }
  // Flushes what is pending and frees what was gathered (tlb_flush_mmu).
  void flush();

  // Checker (quiescent points, or while no gather of sys changes): calls fn for each page and
  // page-table page that a registered gather of sys holds a reference on.
  static void debug_for_each_pending(System* sys, const std::function<void(Page*)>& fn);

 private:
  void free_pages();

  static constexpr size_t kBatch = 4096;
  Mm* mm_;
  bool registered_ = false;  // in the checker's registry (decided at construction)
  uint64_t start_ = ~0ull, end_ = 0;
  std::vector<Page*> pages_;
  std::vector<Page*> tables_;
};

}  // namespace mirrormm
