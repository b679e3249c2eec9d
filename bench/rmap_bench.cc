// The reverse-map walk (src/mm/rmap.cc) of one anonymous page shared by N forked processes,
// N from 1 to 1,000, against its baseline in the same run: looking the same N PTEs up
// directly (pte_offset in each address space, knowing where the page is mapped), which is
// the work a walk cannot avoid. One iteration walks the page once (anon_vma lock, interval-
// tree query, each VMA's PTE checked); the summary prints the time per mapping of both and
// their ratio, and whether the walk stays linear in the mappings.
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/rmap.h"
#include "mm/system_internal.h"

namespace mirrormm {
namespace {

constexpr uint64_t kAddr = 0x200000000000ull;
constexpr int kMaxForks = 1000;

// One machine with a page mapped by 1 + kMaxForks - 1 processes would make every N share
// the same tree; each N gets its own machine instead, built on first use.
struct Shared {
  std::unique_ptr<System> sys;
  Page* page = nullptr;
  std::vector<Mm*> mms;
};

Shared& shared_for(int n) {
  static std::map<int, Shared> all;
  Shared& s = all[n];
  if (s.sys) return s;
  SystemConfig c;
  c.memory_bytes = 256ull << 20;
  s.sys = std::make_unique<System>(c);
  Process* p = s.sys->process(1);
  (void)s.sys->mmap(p, kAddr, 4096, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).value();
  s.sys->access(p, 0, kAddr, 4096, true, [](uint8_t* d, uint64_t, uint64_t len) {
    for (uint64_t i = 0; i < len; i++) d[i] = 1;
  });
  s.mms.push_back(p->mm());
  for (int i = 1; i < n; i++) s.mms.push_back(s.sys->fork(p).value()->mm());
  s.page = s.sys->mem().pfn_to_page(pte_pfn(ptep_get(pte_offset(p->mm(), kAddr))));
  return s;
}

void BM_RmapWalk(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Shared& s = shared_for(n);
  RmapWalkControl rwc;
  rwc.sys = s.sys.get();
  int hits = 0;
  rwc.rmap_one = [&hits](Page* page, Vma* vma, uint64_t address) {
    if (page_vma_mapped_pte(page, vma, address)) hits++;
    return true;
  };
  for (auto _ : state) {
    hits = 0;
    lock_page(s.page);
    rmap_walk(s.page, rwc);
    unlock_page(s.page);
    benchmark::DoNotOptimize(hits);
  }
  if (hits != n) state.SkipWithError("the walk missed mappings");
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_DirectPteLookup(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Shared& s = shared_for(n);
  const pfn_t pfn = s.sys->mem().page_to_pfn(s.page);
  int hits = 0;
  for (auto _ : state) {
    hits = 0;
    for (Mm* mm : s.mms) {
      pte_t* ptep = pte_offset(mm, kAddr);
      if (ptep && pte_pfn(ptep_get(ptep)) == pfn) hits++;
    }
    benchmark::DoNotOptimize(hits);
  }
  state.SetItemsProcessed(state.iterations() * n);
}

BENCHMARK(BM_RmapWalk)->Arg(1)->Arg(10)->Arg(100)->Arg(kMaxForks)->Repetitions(3)->ReportAggregatesOnly(true);
BENCHMARK(BM_DirectPteLookup)->Arg(1)->Arg(10)->Arg(100)->Arg(kMaxForks)->Repetitions(3)->ReportAggregatesOnly(true);

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nPer mapping (same run; medians)\n");
  for (const char* n : {"1", "10", "100", "1000"}) {
    auto a = rep.rate_.find(std::string("BM_RmapWalk/") + n + "/repeats:3_median");
    auto b = rep.rate_.find(std::string("BM_DirectPteLookup/") + n + "/repeats:3_median");
    if (a == rep.rate_.end() || b == rep.rate_.end()) continue;
    std::printf("%5s mapping(s): rmap walk %.1f ns, direct PTE lookup %.1f ns (walk / lookup: %.2fx)\n", n,
                1e9 / a->second, 1e9 / b->second, b->second / a->second);
  }
  return 0;
}
