// Walking ranges of page tables: the pgd/pud/pmd/pte loops of mm/memory.c folded into one
// helper that hands each existing PTE table of a range to a callback.
#pragma once

#include <algorithm>
#include <cstdint>

#include "mm/mm_types.h"

namespace mirrormm {

inline pte_t* table_of(PhysMem& mem, pteval_t entry) {
  return reinterpret_cast<pte_t*>(mem.pfn_to_virt(pte_pfn(entry)));
}
inline pte_t* pgd_table(Mm* mm) { return reinterpret_cast<pte_t*>(mm->mem().page_address(mm->pgd_)); }

// Calls fn(pte_t* ptep, uint64_t addr, uint64_t end, Page* table) for every existing PTE table
// overlapping [start, end): ptep is the slot of addr, and the slots up to end (exclusive,
// within this table) follow it. Holes at upper levels are skipped; hole(addr, end) is called
// for each skipped range (mincore needs them). fn and hole return a value of one type R;
// anything but R{} stops the walk and is returned (hmm_range_fault stops to fault).
template <class Fn, class Hole>
auto walk_pte_tables_until(Mm* mm, uint64_t start, uint64_t end, Fn&& fn, Hole&& hole) {
  using R = decltype(hole(start, end));
  PhysMem& mem = mm->mem();
  pte_t* pgd = pgd_table(mm);
  uint64_t addr = start;
  while (addr < end) {
    pteval_t pgde = ptep_get(&pgd[index_at(addr, kPgdShift)]);
    uint64_t pgd_next = std::min(end, (addr + kPgdSize) & ~(kPgdSize - 1));
    if (pgd_next == 0) pgd_next = end;
    if (pte_none(pgde)) {
      if (R r = hole(addr, pgd_next); r != R{}) return r;
      addr = pgd_next;
      continue;
    }
    pte_t* pud = table_of(mem, pgde);
    while (addr < pgd_next) {
      pteval_t pude = ptep_get(&pud[index_at(addr, kPudShift)]);
      uint64_t pud_next = std::min(pgd_next, (addr + kPudSize) & ~(kPudSize - 1));
      if (pte_none(pude)) {
        if (R r = hole(addr, pud_next); r != R{}) return r;
        addr = pud_next;
        continue;
      }
      pte_t* pmd = table_of(mem, pude);
      while (addr < pud_next) {
        pteval_t pmde = ptep_get(&pmd[index_at(addr, kPmdShift)]);
        uint64_t pmd_next = std::min(pud_next, (addr + kPmdSize) & kPmdMask);
        R r = pte_none(pmde) ? hole(addr, pmd_next)
                             : fn(&table_of(mem, pmde)[index_at(addr, kPteShift)], addr, pmd_next,
                                  mem.pfn_to_page(pte_pfn(pmde)));
        if (r != R{}) return r;
        addr = pmd_next;
      }
    }
  }
  return R{};
}

// The same walk to the end, for callbacks that return nothing.
template <class Fn, class Hole>
void walk_pte_tables(Mm* mm, uint64_t start, uint64_t end, Fn&& fn, Hole&& hole) {
  walk_pte_tables_until(
      mm, start, end,
      [&](pte_t* ptep, uint64_t addr, uint64_t next, Page* table) {
        fn(ptep, addr, next, table);
        return 0;
      },
      [&](uint64_t addr, uint64_t next) {
        hole(addr, next);
        return 0;
      });
}

template <class Fn>
void walk_pte_tables(Mm* mm, uint64_t start, uint64_t end, Fn&& fn) {
  walk_pte_tables(mm, start, end, std::forward<Fn>(fn), [](uint64_t, uint64_t) {});
}

}  // namespace mirrormm
