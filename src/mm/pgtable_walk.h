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
// for each skipped range (mincore needs them).
template <class Fn, class Hole>
void walk_pte_tables(Mm* mm, uint64_t start, uint64_t end, Fn&& fn, Hole&& hole) {
  PhysMem& mem = mm->mem();
  pte_t* pgd = pgd_table(mm);
  uint64_t addr = start;
  while (addr < end) {
    pteval_t pgde = ptep_get(&pgd[index_at(addr, kPgdShift)]);
    uint64_t pgd_next = std::min(end, (addr + kPgdSize) & ~(kPgdSize - 1));
    if (pgd_next == 0) pgd_next = end;
    if (pte_none(pgde)) { hole(addr, pgd_next); addr = pgd_next; continue; }
    pte_t* pud = table_of(mem, pgde);
    while (addr < pgd_next) {
      pteval_t pude = ptep_get(&pud[index_at(addr, kPudShift)]);
      uint64_t pud_next = std::min(pgd_next, (addr + kPudSize) & ~(kPudSize - 1));
      if (pte_none(pude)) { hole(addr, pud_next); addr = pud_next; continue; }
      pte_t* pmd = table_of(mem, pude);
      while (addr < pud_next) {
        pteval_t pmde = ptep_get(&pmd[index_at(addr, kPmdShift)]);
        uint64_t pmd_next = std::min(pud_next, (addr + kPmdSize) & kPmdMask);
        if (pte_none(pmde)) { hole(addr, pmd_next); addr = pmd_next; continue; }
        pte_t* pte = table_of(mem, pmde);
        fn(&pte[index_at(addr, kPteShift)], addr, pmd_next, mem.pfn_to_page(pte_pfn(pmde)));
        addr = pmd_next;
      }
    }
  }
}

template <class Fn>
void walk_pte_tables(Mm* mm, uint64_t start, uint64_t end, Fn&& fn) {
  walk_pte_tables(mm, start, end, std::forward<Fn>(fn), [](uint64_t, uint64_t) {});
}

}  // namespace mirrormm
