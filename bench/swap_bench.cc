// The swap path (src/mm/vmscan.cc, madvise.cc, swap_state.cc, swapfile.cc) against its
// baseline in the same run: a memcpy of the same pages out to a buffer and back. One
// iteration swaps kPages anonymous pages out (madvise(MADV_PAGEOUT) over the range: each
// page is mapped once, so reclaim takes it regardless of references while swap has room) and
// writes every page again (swap-in through write faults: an exclusive swap entry maps
// writable and frees its slot). Each iteration checks through vmstat's pswpout and pswpin
// that every page really went out and came back. The summary prints pages per second of
// each (out + in counting as one page) and the ratio of their times per page.
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/mman.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 1024;
constexpr uint64_t kAddr = 0x200000000000ull;

uint64_t vmstat_value(System& sys, const std::string& name) {
  for (const auto& [n, v] : sys.vmstat())
    if (n == name) return v;
  return 0;
}

// Writes one byte per page (the whole page on the first pass), as the CPU the thread runs as.
bool write_pages(System& sys, Process* p, uint8_t value, bool whole) {
  for (uint64_t i = 0; i < kPages; i++) {
    const uint64_t len = whole ? kPage : 1;
    AccessResult r = sys.access(p, 0, kAddr + i * kPage, len, true, [value](uint8_t* d, uint64_t, uint64_t n) {
      std::memset(d, value, n);
    });
    if (r.kind != AccessResult::Kind::kOk) return false;
  }
  return true;
}

void BM_SwapOutIn(benchmark::State& state) {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  c.total_swap_pages = 4 * kPages;
  System sys(c);
  if (!sys.swapon(4 * kPages * kPage).ok()) {
    state.SkipWithError("swapon failed");
    return;
  }
  Process* p = sys.process(1);
  if (!sys.mmap(p, kAddr, kPages * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok() ||
      !write_pages(sys, p, 1, true)) {
    state.SkipWithError("setup failed");
    return;
  }
  uint8_t value = 2;
  for (auto _ : state) {
    const uint64_t out0 = vmstat_value(sys, "pswpout"), in0 = vmstat_value(sys, "pswpin");
    if (!sys.madvise(p, kAddr, kPages * kPage, kMadvPageout).ok()) {
      state.SkipWithError("madvise(MADV_PAGEOUT) failed");
      break;
    }
    if (vmstat_value(sys, "pswpout") - out0 != kPages) {
      state.SkipWithError("MADV_PAGEOUT did not swap every page out");
      break;
    }
    if (!write_pages(sys, p, value++, false)) {
      state.SkipWithError("swap-in access failed");
      break;
    }
    if (vmstat_value(sys, "pswpin") - in0 != kPages) {
      state.SkipWithError("the writes did not swap every page in");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * kPages);
}
BENCHMARK(BM_SwapOutIn)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

void BM_MemcpyOutIn(benchmark::State& state) {
  std::vector<uint8_t> pages(kPages * kPage, 1), store(kPages * kPage);
  for (auto _ : state) {
    for (uint64_t i = 0; i < kPages; i++) std::memcpy(&store[i * kPage], &pages[i * kPage], kPage);
    benchmark::ClobberMemory();
    for (uint64_t i = 0; i < kPages; i++) std::memcpy(&pages[i * kPage], &store[i * kPage], kPage);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations() * kPages);
}
BENCHMARK(BM_MemcpyOutIn)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nPer page, out and back in (same run; medians)\n");
  auto a = rep.rate_.find("BM_SwapOutIn/repeats:5/real_time_median");
  auto b = rep.rate_.find("BM_MemcpyOutIn/repeats:5/real_time_median");
  if (a != rep.rate_.end() && b != rep.rate_.end())
    std::printf("%llu pages: swap %.0f pages/s, memcpy %.0f pages/s (swap / memcpy time: %.2fx)\n",
                static_cast<unsigned long long>(mirrormm::kPages), a->second, b->second, b->second / a->second);
  return 0;
}
