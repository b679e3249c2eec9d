// Page-table allocation, lookup and freeing.
#include "mm/internal.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

// Returns the next-level table of entry slot e, allocating it when alloc is set.
pte_t* next_table(Mm* mm, pte_t* e, bool alloc, Gfp gfp) {
  PhysMem& mem = mm->mem();
  pteval_t v = ptep_get(e);
  if (!pte_none(v)) return table_of(mem, v);
  if (!alloc) return nullptr;
  Page* t = mem.alloc_page(Zero::kYes, gfp);
  if (!t) return nullptr;
  t->set(PG_pgtable);
  {
    SpinGuard g(mm->page_table_lock_);
    v = ptep_get(e);
    if (pte_none(v)) {
      set_pte(e, pfn_pte(mem.page_to_pfn(t), kTableEntry));
      return reinterpret_cast<pte_t*>(mem.page_address(t));
    }
  }
  t->clear(PG_pgtable);
  mem.put_page(t);  // somebody else installed one first
  return table_of(mem, v);
}

pte_t* walk(Mm* mm, uint64_t addr, bool alloc, Gfp gfp = Gfp::kNowait) {
  pte_t* pgd = pgd_table(mm);
  pte_t* pud = next_table(mm, &pgd[index_at(addr, kPgdShift)], alloc, gfp);
  if (!pud) return nullptr;
  pte_t* pmd = next_table(mm, &pud[index_at(addr, kPudShift)], alloc, gfp);
  if (!pmd) return nullptr;
  pte_t* pte = next_table(mm, &pmd[index_at(addr, kPmdShift)], alloc, gfp);
  if (!pte) return nullptr;
  return &pte[index_at(addr, kPteShift)];
}

bool table_empty(const pte_t* t) {
  for (int i = 0; i < kPtrsPerTable; i++)
    if (!pte_none(t[i].load(std::memory_order_relaxed))) return false;
  return true;
}

void free_table_tree(PhysMem& mem, pteval_t entry, int level) {
  pte_t* t = table_of(mem, entry);
  if (level > 1) {
    for (int i = 0; i < kPtrsPerTable; i++) {
      pteval_t v = t[i].load(std::memory_order_relaxed);
      if (!pte_none(v)) free_table_tree(mem, v, level - 1);
    }
  }
  Page* p = mem.pfn_to_page(pte_pfn(entry));
  p->clear(PG_pgtable);
  mem.put_page(p);
}

uint64_t count_tree(PhysMem& mem, pteval_t entry, int level) {
  pte_t* t = table_of(mem, entry);
  uint64_t n = 1;
  if (level > 1) {
    for (int i = 0; i < kPtrsPerTable; i++) {
      pteval_t v = t[i].load(std::memory_order_relaxed);
      if (!pte_none(v)) n += count_tree(mem, v, level - 1);
    }
  }
  return n;
}

}  // namespace

pte_t* pte_offset(Mm* mm, uint64_t addr) { return walk(mm, addr, false); }
pte_t* pte_alloc(Mm* mm, uint64_t addr, Gfp gfp) { return walk(mm, addr, true, gfp); }

Page* pte_table_page(Mm* mm, const pte_t* pte) {
  PhysMem& mem = mm->mem();
  // Tables are frames of the pool: the frame number of the slot's address is the table's pfn.
  uint64_t off = reinterpret_cast<const uint8_t*>(pte) - mem.pfn_to_virt(0);
  return mem.pfn_to_page(static_cast<pfn_t>(off >> kPageShift));
}

void free_pgd_range(MmuGather& tlb, uint64_t start, uint64_t end, uint64_t floor, uint64_t ceiling) {
  // A table can go when no VMA can overlap what it maps: everything it maps lies in
  // [floor, ceiling) (the gap between the surviving neighbours) and it overlaps [start, end).
  Mm* mm = tlb.mm();
  PhysMem& mem = mm->mem();
  pte_t* pgd = pgd_table(mm);
  auto free_level = [&](auto& self, pte_t* table, uint64_t base, int shift, uint64_t lo, uint64_t hi) -> void {
    const uint64_t span = 1ull << shift;
    for (uint64_t a = lo & ~(span - 1); a < hi; a += span) {
      pte_t* e = &table[index_at(a, shift)];
      pteval_t v = ptep_get(e);
      if (pte_none(v)) continue;
      const uint64_t next_span_end = a + span;
      if (shift > kPmdShift) {
        // Descend: free lower tables inside, then this one if it became empty.
        pte_t* child = table_of(mem, v);
        self(self, child, a, shift - 9, std::max(lo, a), std::min(hi, next_span_end));
      }
      if (a >= floor && next_span_end <= ceiling && table_empty(table_of(mem, v))) {
        pte_clear(e);
        Page* p = mem.pfn_to_page(pte_pfn(v));
        tlb.flush_range(a, next_span_end);
        tlb.remove_table(p);
      }
      if (next_span_end == 0) break;
    }
    (void)base;
  };
  if (start >= end) return;
  // PGD entries are kept (the PGD is freed at exit); their PUD tables may go.
  for (uint64_t a = start & ~(kPgdSize - 1); a < end; a += kPgdSize) {
    pteval_t v = ptep_get(&pgd[index_at(a, kPgdShift)]);
    if (pte_none(v)) continue;
    free_level(free_level, table_of(mem, v), a, kPudShift, std::max(start, a), std::min(end, a + kPgdSize));
  }
}

void free_all_pgtables(Mm* mm) {
  PhysMem& mem = mm->mem();
  pte_t* pgd = pgd_table(mm);
  for (int i = 0; i < kPtrsPerTable; i++) {
    pteval_t v = pgd[i].load(std::memory_order_relaxed);
    if (!pte_none(v)) free_table_tree(mem, v, 3);
    pgd[i].store(0, std::memory_order_relaxed);
  }
  mm->pgd_->clear(PG_pgtable);
  mem.put_page(mm->pgd_);
  mm->pgd_ = nullptr;
}

uint64_t count_pgtables(Mm* mm) {
  PhysMem& mem = mm->mem();
  pte_t* pgd = pgd_table(mm);
  uint64_t n = 1;
  for (int i = 0; i < kPtrsPerTable; i++) {
    pteval_t v = pgd[i].load(std::memory_order_relaxed);
    if (!pte_none(v)) n += count_tree(mem, v, 3);
  }
  return n;
}

}  // namespace mirrormm

