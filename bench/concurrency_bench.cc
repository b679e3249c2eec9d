// Concurrency benchmarks: page-fault throughput of one thread against two threads faulting in
// one address space (on different VMAs, and on one VMA), and the cost of an uncontended RCU
// read-side section. Each figure is printed with its baseline from the same run.
//
//   build/release/bench/concurrency_bench
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "mirrormm/base/rcu.h"
#include "mirrormm/system.h"

namespace {

using namespace mirrormm;

constexpr uint64_t kW = 0x200000000000ull;
constexpr uint64_t kP = 4096;
constexpr uint64_t kPages = 256;  // 1 MiB per thread between zaps: the working set stays in cache

System* g_sys = nullptr;

// Each benchmark thread faults fresh pages: one byte per page, walking its range; at the end
// of the range it zaps it (MADV_DONTNEED, under the mmap_lock for read) and starts over.
// kDifferentVmas: thread t has its own VMA (1 GiB apart). kSameVma: one VMA, thread t takes
// its half.
enum Layout { kDifferentVmas, kSameVma };

void fault_loop(benchmark::State& state, Layout layout) {
  System& sys = *g_sys;
  Process* p = sys.process(1);
  const int t = state.thread_index();
  System::bind_thread_to_cpu(t);  // its madvise frees go to its own frame list
  uint64_t base;
  if (layout == kDifferentVmas) {
    base = kW + (static_cast<uint64_t>(t) << 30);
    (void)sys.mmap(p, base, kPages * kP, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed | kMapNoReserve);
  } else {
    // One VMA of 8 MiB mapped before the runs (main); thread t works 4 MiB into it, so the
    // two threads share the VMA (and its lock) but not a page table.
    base = kW + (1ull << 40) + static_cast<uint64_t>(t) * (4ull << 20);
  }
  auto touch = [](uint8_t* d, uint64_t, uint64_t) { d[0] = 1; };
  uint64_t i = 0;
  for (auto _ : state) {
    AccessResult r = sys.access(p, t, base + i * kP, 1, true, touch);
    if (!r.ok()) {
      state.SkipWithError("access faulted");
      break;
    }
    if (++i == kPages) {
      state.PauseTiming();
      (void)sys.madvise(p, base, kPages * kP, kMadvDontneed);
      state.ResumeTiming();
      i = 0;
    }
  }
  state.SetItemsProcessed(state.iterations());
  (void)sys.madvise(p, base, kPages * kP, kMadvDontneed);
}

void BM_FaultDifferentVmas(benchmark::State& state) { fault_loop(state, kDifferentVmas); }
void BM_FaultSameVma(benchmark::State& state) { fault_loop(state, kSameVma); }
// Medians of 5 repetitions: the machine is noisy.
BENCHMARK(BM_FaultDifferentVmas)->Threads(1)->Threads(2)->UseRealTime()->MinTime(0.3)->Repetitions(5)->ReportAggregatesOnly(true);
BENCHMARK(BM_FaultSameVma)->Threads(1)->Threads(2)->UseRealTime()->MinTime(0.3)->Repetitions(5)->ReportAggregatesOnly(true);

// Baseline for the scaling figures: what the machine itself gives two threads that zero
// 4 KiB pages (the memory traffic of a page fault), each over its own 1 MiB.
void BM_ZeroPages(benchmark::State& state) {
  static std::unique_ptr<uint8_t[]> buf[2];
  const int t = state.thread_index();
  if (!buf[t]) buf[t].reset(new uint8_t[kPages * kP]);
  uint64_t i = 0;
  for (auto _ : state) {
    std::memset(buf[t].get() + i * kP, 0, kP);
    benchmark::ClobberMemory();
    if (++i == kPages) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ZeroPages)->Threads(1)->Threads(2)->UseRealTime()->MinTime(0.3)->Repetitions(5)->ReportAggregatesOnly(true);

void BM_RcuReadSection(benchmark::State& state) {
  int x = 0;
  for (auto _ : state) {
    RcuReadGuard g;
    benchmark::DoNotOptimize(x);
  }
}
BENCHMARK(BM_RcuReadSection)->Repetitions(5)->ReportAggregatesOnly(true);

// Baseline: an uncontended mutex lock/unlock pair.
void BM_MutexLockUnlock(benchmark::State& state) {
  std::mutex m;
  for (auto _ : state) {
    m.lock();
    benchmark::DoNotOptimize(m);
    m.unlock();
  }
}
BENCHMARK(BM_MutexLockUnlock)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  SystemConfig cfg;
  cfg.memory_bytes = 2ull << 30;
  System sys(cfg, 2);
  g_sys = &sys;
  {
    // Warm-up: bring the frames the runs will use into the host's memory once (the frame
    // pool is reserved lazily), so that no run pays the host's first-touch faults.
    Process* p = sys.process(1);
    const uint64_t n = 4 * kPages;
    (void)sys.mmap(p, kW + (1ull << 44), n * kP, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed);
    for (int cpu = 0; cpu < 2; cpu++) {
      (void)sys.access(p, cpu, kW + (1ull << 44), n * kP, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] = 1; });
      (void)sys.madvise(p, kW + (1ull << 44), n * kP, kMadvDontneed);
    }
    (void)sys.munmap(p, kW + (1ull << 44), n * kP);
    (void)sys.mmap(p, kW + (1ull << 40), 8ull << 20, kProtRead | kProtWrite,
                   kMapPrivate | kMapAnonymous | kMapFixed | kMapNoReserve);
  }
  mirrormm::bench::Collector rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  benchmark::Shutdown();

  auto ratio = [&](const char* what, const char* one, const char* two, double target) {
    auto a = rep.rate_.find(one), b = rep.rate_.find(two);
    if (a == rep.rate_.end() || b == rep.rate_.end()) return;
    const double r = b->second / a->second;
    std::printf("%-44s 1 thread %8.2f M/s  2 threads %8.2f M/s  ratio %.2fx  (target >= %.1fx: %s)\n", what,
                a->second / 1e6, b->second / 1e6, r, target, r >= target ? "met" : "MISSED");
  };
  std::printf("\nScaling (same run; faults per second, whole process)\n");
  ratio("machine baseline: zeroing 4 KiB pages", "BM_ZeroPages/min_time:0.300/repeats:5/real_time/threads:1_median",
        "BM_ZeroPages/min_time:0.300/repeats:5/real_time/threads:2_median", 0.0);
  ratio("page faults, 2 threads on different VMAs", "BM_FaultDifferentVmas/min_time:0.300/repeats:5/real_time/threads:1_median",
        "BM_FaultDifferentVmas/min_time:0.300/repeats:5/real_time/threads:2_median", 1.7);
  ratio("page faults, 2 threads on one VMA", "BM_FaultSameVma/min_time:0.300/repeats:5/real_time/threads:1_median",
        "BM_FaultSameVma/min_time:0.300/repeats:5/real_time/threads:2_median", 1.3);
  auto rcu = rep.ns_.find("BM_RcuReadSection/repeats:5_median"), mtx = rep.ns_.find("BM_MutexLockUnlock/repeats:5_median");
  if (rcu != rep.ns_.end() && mtx != rep.ns_.end())
    std::printf("RCU read-side section %.2f ns, uncontended mutex lock+unlock %.2f ns (ratio %.2fx; target <= 5 ns: %s)\n",
                rcu->second, mtx->second, mtx->second / rcu->second, rcu->second <= 5.0 ? "met" : "MISSED");
  return 0;
}
