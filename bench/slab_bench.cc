// Object caches (src/mm/slab.cc) against their baseline in the same run: new/delete of the
// same object. One iteration allocates a batch of kBatch objects of a VMA's size and frees
// them, newest first; each thread runs as its own software CPU. The summary prints the time
// per object of each and their ratio.
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "mirrormm/system.h"
#include "mm/slab.h"

namespace mirrormm {
namespace {

constexpr int kBatch = 64;

struct Obj {
  uint64_t words[40];  // 320 bytes, about a Vma
};

KmemCache& bench_cache() {
  static KmemCache* cache = new KmemCache("bench", sizeof(Obj), 64, SlabFlags::kNone);
  return *cache;
}

void BM_KmemCacheAllocFree(benchmark::State& state) {
  System::bind_thread_to_cpu(state.thread_index());
  KmemCache& cache = bench_cache();
  void* objs[kBatch];
  for (auto _ : state) {
    for (void*& p : objs) {
      p = cache.alloc();
      benchmark::DoNotOptimize(p);
    }
    for (int i = kBatch - 1; i >= 0; i--) cache.free(objs[i]);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_KmemCacheAllocFree)->Threads(1)->Threads(2)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

void BM_NewDelete(benchmark::State& state) {
  Obj* objs[kBatch];
  for (auto _ : state) {
    for (Obj*& p : objs) {
      p = new Obj;
      benchmark::DoNotOptimize(p);
    }
    for (int i = kBatch - 1; i >= 0; i--) delete objs[i];
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
BENCHMARK(BM_NewDelete)->Threads(1)->Threads(2)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nPer object (same run; alloc + free, medians)\n");
  for (const char* threads : {"1", "2"}) {
    auto a = rep.rate_.find(std::string("BM_KmemCacheAllocFree/repeats:5/real_time/threads:") + threads + "_median");
    auto b = rep.rate_.find(std::string("BM_NewDelete/repeats:5/real_time/threads:") + threads + "_median");
    if (a == rep.rate_.end() || b == rep.rate_.end()) continue;
    std::printf("%s thread(s): kmem_cache %.2f ns, new/delete %.2f ns (kmem_cache / new-delete time: %.2fx)\n", threads, 1e9 / a->second,
                1e9 / b->second, b->second / a->second);
  }
  return 0;
}
