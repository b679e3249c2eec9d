// The software CPU's access path: TLB lookup, hardware-style page walk, fault.
#include "mm/cpu.h"

#include <fmt/format.h>

#include "mirrormm/base/tsan.h"
#include "mirrormm/trace.h"
#include "mm/internal.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"

namespace mirrormm {

unsigned do_user_addr_fault(Mm* mm, uint64_t addr, bool write);  // memory.cc

void Cpu::drop_stale_entry_locked(TlbEntry& e) {
  // Checker: a TLB entry whose frame was freed since it was filled is a translation that
  // a shootdown should have removed.
  // The access is refused after the report, so that a broken kernel (the test switch) cannot
  // corrupt frames that now belong to someone else, page tables included.
  sys_->report_violation("stale TLB entry", "stale TLB entry: access to a freed frame");
  e.vpn = ~0ull;
}

void Cpu::report_pte_to_free_frame() {
  sys_->report_violation("PTE to a freed frame", "page table maps a freed frame");
}

uint8_t* Cpu::translate_locked(Mm* mm, uint64_t addr, bool write) {
  const uint64_t vpn = addr >> kPageShift;
  TlbEntry& e = tlb_[vpn & (kTlbEntries - 1)];
  if (e.vpn == vpn && e.mm_id == mm->id() && (!write || e.dirty)) {
    hits_.store(hits_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    if (e.page->gen.load(std::memory_order_relaxed) == e.gen && !e.page->test(PG_free)) [[likely]]
      return e.data;
    drop_stale_entry_locked(e);
  }
  misses_.store(misses_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  // The page walk, as hardware does it: no locks, acquire loads, A/D set by CAS.
  if (addr >= kTaskSize || mm->state() != Mm::State::kAlive) return nullptr;
  pte_t* ptep;
  if (ptc_pmd_ == (addr >> kPmdShift) && ptc_mm_id_ == mm->id()) {
    ptep = ptc_table_ + index_at(addr, kPteShift);
  } else {
    ptep = pte_offset(mm, addr);
    if (!ptep) return nullptr;
    ptc_mm_id_ = mm->id();
    ptc_pmd_ = addr >> kPmdShift;
    ptc_table_ = ptep - index_at(addr, kPteShift);
  }
  for (;;) {
    pteval_t v = ptep_get(ptep);
    if (!pte_hw_present(v) || !(v & _PAGE_USER)) return nullptr;
    if (write && !pte_write(v)) return nullptr;
    pteval_t nv = pte_mkyoung(v);
    if (write) nv = pte_mkdirty(nv);
    if (nv != v && !ptep->compare_exchange_weak(v, nv, std::memory_order_acq_rel)) continue;
    e.vpn = vpn;
    e.mm_id = mm->id();
    e.data = mem_->pfn_to_virt(pte_pfn(nv));
    e.page = mem_->pfn_to_page(pte_pfn(nv));
    e.gen = e.page->gen.load(std::memory_order_relaxed);
    if (e.page->test(PG_free)) [[unlikely]] report_pte_to_free_frame();
    e.writable = pte_write(nv);
    e.dirty = pte_write(nv) && pte_dirty(nv);
    return e.data;
  }
}

AccessResult Cpu::access(Mm* mm, uint64_t addr, uint64_t len, bool write, const AccessChunkFn& fn) {
  // switch_mm: be in the mm's cpumask before the first walk, so that shootdowns reach us.
  const uint64_t bit = 1ull << id_;
  if (!(mm->cpumask_.load(std::memory_order_relaxed) & bit))
    mm->cpumask_.fetch_or(bit, std::memory_order_seq_cst);

  // Per-CPU structures (frame caches, rss slots) follow the CPU this thread runs as.
  struct CpuScope {
    int saved;
    explicit CpuScope(int id) : saved(tls_this_cpu) { tls_this_cpu = id; }
    ~CpuScope() { tls_this_cpu = saved; }
  } scope(id_);

  uint64_t done = 0;
  while (done < len) {
    const uint64_t a = addr + done;
    if (a < addr) return {AccessResult::Kind::kSegv, a};  // wrapped around
    const uint64_t n = std::min(len - done, kPageSize - offset_in_page(a));
    bool ok;
    {
      SpinGuard g(tlb_lock_);
      uint8_t* data = translate_locked(mm, a, write);
      ok = data != nullptr;
      if (ok) {
        MM_TSAN_IGNORE_BEGIN();  // the simulated RAM (see mirrormm/base/tsan.h)
        fn(data + offset_in_page(a), a, n);
        MM_TSAN_IGNORE_END();
      }
    }
    if (ok) {
      done += n;
      continue;
    }
    trace::Span span(trace::Kind::kCpuFault, nullptr, a, write);
    unsigned fault = do_user_addr_fault(mm, a, write);
    span.set_c(fault);
    if (fault & VM_FAULT_OOM) return {AccessResult::Kind::kOom, a};
    if (fault & VM_FAULT_SIGBUS) return {AccessResult::Kind::kBus, a};
    if (fault & VM_FAULT_SIGSEGV) return {AccessResult::Kind::kSegv, a};
    // Fixed (or raced): retry the same page.
  }
  return {};
}

bool Cpu::debug_keeps_stale_entries() const {
  if (sys_->debug_broken(System::DebugBreak::kShootdown)) return true;
  // The initiating CPU is the one the flushing thread runs as (-1, none, flushes no CPU).
  return id_ != tls_this_cpu && sys_->debug_broken(System::DebugBreak::kShootdownLocal);
}

void Cpu::flush_range(uint64_t mm_id, uint64_t start, uint64_t end) {
  SpinGuard g(tlb_lock_);
  if (ptc_mm_id_ == mm_id) ptc_pmd_ = ~0ull;
  // The broken-shootdown test switches leave the data translations in place (the paging
  // structure cache still goes, so walks never read freed tables).
  if (debug_keeps_stale_entries()) return;
  const uint64_t first = start >> kPageShift, last = (end - 1) >> kPageShift;
  if (last - first >= kTlbEntries) {
    for (TlbEntry& e : tlb_)
      if (e.mm_id == mm_id) e.vpn = ~0ull;
    return;
  }
  for (uint64_t vpn = first; vpn <= last; vpn++) {
    TlbEntry& e = tlb_[vpn & (kTlbEntries - 1)];
    if (e.vpn == vpn && e.mm_id == mm_id) e.vpn = ~0ull;
  }
}

void Cpu::flush_mm(uint64_t mm_id) {
  SpinGuard g(tlb_lock_);
  if (ptc_mm_id_ == mm_id) ptc_pmd_ = ~0ull;
  if (debug_keeps_stale_entries()) return;
  for (TlbEntry& e : tlb_)
    if (e.mm_id == mm_id) e.vpn = ~0ull;
}

void Cpu::debug_check_frame_free(pfn_t pfn) {
  PhysMem& mem = sys_->mem();
  const Page* page = mem.pfn_to_page(pfn);
  const uint32_t gen = page->gen.load(std::memory_order_relaxed);
  std::vector<std::string> found;
  {
    SpinGuard g(tlb_lock_);
    // Entries filled before an earlier free of this frame (an older generation) were
    // reported by that free.
    for (const TlbEntry& e : tlb_)
      if (e.vpn != ~0ull && e.page == page && e.gen == gen)
        found.push_back(fmt::format("frame {} freed while CPU {}'s TLB maps it at {:#x} (mm {}{})", pfn, id_,
                                    e.vpn << kPageShift, e.mm_id, e.writable ? ", writable" : ""));
    if (ptc_pmd_ != ~0ull && ptc_table_ == reinterpret_cast<pte_t*>(mem.pfn_to_virt(pfn))) {
      found.push_back(fmt::format("frame {} freed while CPU {}'s paging-structure cache holds it as the PTE table of "
                                  "{:#x} (mm {})",
                                  pfn, id_, ptc_pmd_ << kPmdShift, ptc_mm_id_));
      ptc_pmd_ = ~0ull;
    }
  }
  // Reported outside the TLB lock (report_violation takes a leaf mutex of its own).
  for (const std::string& m : found) sys_->report_violation("frame freed under a TLB entry", m);
}

std::vector<Cpu::DebugTlbEntry> Cpu::debug_tlb_entries() {
  PhysMem& mem = sys_->mem();
  std::vector<DebugTlbEntry> out;
  SpinGuard g(tlb_lock_);
  for (const TlbEntry& e : tlb_) {
    if (e.vpn == ~0ull) continue;
    const bool stale = e.page->gen.load(std::memory_order_relaxed) != e.gen || e.page->test(PG_free);
    out.push_back({e.vpn << kPageShift, e.mm_id, mem.page_to_pfn(e.page), e.writable, e.dirty, stale});
  }
  return out;
}

}  // namespace mirrormm
