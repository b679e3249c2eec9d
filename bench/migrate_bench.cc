// Page migration (src/mm/migrate.c's role: src/mm/migrate.cc, mempolicy.cc) against its
// baseline in the same run: a memcpy of the same 2 MiB. One iteration migrates the kPages
// mapped anonymous pages of a range to the other node (migrate_pages over the range:
// isolation, try_to_migrate through the reverse map, the copy, remove_migration_ptes), the
// next one back; each iteration checks that every page moved. The summary prints pages per
// second of both and the ratio of the rates (target: migration at least half memcpy's rate).
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "mirrormm/mman.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 512;
constexpr uint64_t kAddr = 0x200000000000ull;

void BM_MigratePages(benchmark::State& state) {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  c.nodes = 2;
  System sys(c);
  Process* p = sys.process(1);
  if (!sys.mmap(p, kAddr, kPages * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok() ||
      !sys.access(p, 0, kAddr, kPages * kPage, true, [](uint8_t* d, uint64_t, uint64_t n) { std::memset(d, 1, n); })
           .ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  int node = 1;
  for (auto _ : state) {
    Result<uint64_t> r = sys.migrate_pages(p, kAddr, kPages * kPage, node);
    if (!r.ok() || r.value() != kPages) {
      state.SkipWithError("not every page moved");
      break;
    }
    node ^= 1;
  }
  state.SetItemsProcessed(state.iterations() * kPages);
}
BENCHMARK(BM_MigratePages)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

void BM_Memcpy2MiB(benchmark::State& state) {
  std::vector<uint8_t> a(kPages * kPage, 1), b(kPages * kPage);
  for (auto _ : state) {
    for (uint64_t i = 0; i < kPages; i++) std::memcpy(&b[i * kPage], &a[i * kPage], kPage);
    benchmark::ClobberMemory();
    std::swap(a, b);
  }
  state.SetItemsProcessed(state.iterations() * kPages);
}
BENCHMARK(BM_Memcpy2MiB)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nPer page, %llu pages (same run; medians)\n", static_cast<unsigned long long>(mirrormm::kPages));
  double migrate, memcpy;
  if (rep.rates("BM_MigratePages/repeats:5/real_time_median", "BM_Memcpy2MiB/repeats:5/real_time_median", &migrate,
                &memcpy))
    std::printf("migrate %.0f pages/s, memcpy %.0f pages/s (migrate / memcpy rate: %.2f, target >= 0.50)\n",
                migrate, memcpy, migrate / memcpy);
  return 0;
}
