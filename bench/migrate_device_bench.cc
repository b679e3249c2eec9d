// Migration to device memory and back (src/mm/migrate_device.cc) against its baseline in the
// same run: a memcpy of the same bytes. One iteration moves the kPages mapped anonymous pages
// of a range to device-private memory (migrate_vma_setup with SELECT_SYSTEM, a device page
// and a copy per page, migrate_vma_pages, migrate_vma_finalize) and back to system RAM
// (SELECT_DEVICE_PRIVATE), and checks that every page moved both ways; the baseline copies
// 2 x 2 MiB page by page. The summary prints pages per second of both and the ratio of the
// rates (target: at least half memcpy's rate).
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <cstdio>
#include <cstring>
#include <vector>

#include "mirrormm/hmm.h"
#include "mirrormm/memremap.h"
#include "mirrormm/migrate_device.h"
#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kPages = 512;
constexpr uint64_t kAddr = 0x200000000000ull;

// The device: a free list of its pages (single-threaded here).
struct BenchDevice {
  DevPagemap pgmap;
  std::vector<uint64_t> free;
  static void folio_free(DevPagemap* pg, uint64_t pfn) { static_cast<BenchDevice*>(pg->driver_data)->free.push_back(pfn); }
  static Errno migrate_to_ram(DevPagemap*, const DeviceFault&) { return Errno::kFault; }  // never touched by the CPU
  static constexpr DevPagemapOps kOps = {&BenchDevice::folio_free, &BenchDevice::migrate_to_ram};
};

// One migrate_vma pass over the range; returns the pages that moved.
uint64_t migrate_range(System* sys, Mm* mm, BenchDevice* dev, unsigned select, std::vector<uint64_t>& src,
                       std::vector<uint64_t>& dst) {
  MigrateVma a;
  a.mm = mm;
  a.start = kAddr;
  a.end = kAddr + kPages * kPage;
  a.src = src.data();
  a.dst = dst.data();
  a.pgmap_owner = dev;
  a.flags = select;
  mmap_read_lock(mm);
  if (migrate_vma_setup(&a) != Errno::kOk) {
    mmap_read_unlock(mm);
    return 0;
  }
  for (uint64_t i = 0; i < kPages; i++) {
    if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
    uint64_t d;
    if (select == MIGRATE_VMA_SELECT_SYSTEM) {
      if (dev->free.empty()) continue;
      d = dev->free.back();
      dev->free.pop_back();
      zone_device_page_init(&dev->pgmap, d);
    } else {
      d = alloc_migrate_page(sys);
      if (!d) continue;
    }
    copy_highpage(sys, d, migrate_pfn_to_pfn(src[i]));
    dst[i] = migrate_pfn(d);
  }
  migrate_vma_pages(&a);
  uint64_t moved = 0;
  for (uint64_t i = 0; i < kPages; i++) moved += (src[i] & MIGRATE_PFN_MIGRATE) ? 1 : 0;
  migrate_vma_finalize(&a);
  mmap_read_unlock(mm);
  return moved;
}

void BM_MigrateToDeviceAndBack(benchmark::State& state) {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  System sys(c);
  Process* p = sys.process(1);
  BenchDevice dev;
  dev.pgmap.nr_pages = kPages;
  dev.pgmap.ops = &BenchDevice::kOps;
  dev.pgmap.owner = &dev;
  dev.pgmap.driver_data = &dev;
  if (memremap_pages(&sys, &dev.pgmap) != Errno::kOk ||
      !sys.mmap(p, kAddr, kPages * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok() ||
      !sys.access(p, 0, kAddr, kPages * kPage, true, [](uint8_t* d, uint64_t, uint64_t n) { std::memset(d, 1, n); })
           .ok()) {
    state.SkipWithError("setup failed");
    return;
  }
  dev.free = dev.pgmap.pfns;
  Mm* mm = get_task_mm(p);
  std::vector<uint64_t> src(kPages), dst(kPages);
  for (auto _ : state) {
    if (migrate_range(&sys, mm, &dev, MIGRATE_VMA_SELECT_SYSTEM, src, dst) != kPages ||
        migrate_range(&sys, mm, &dev, MIGRATE_VMA_SELECT_DEVICE_PRIVATE, src, dst) != kPages) {
      state.SkipWithError("not every page moved");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2 * kPages);
  mmput_ref(mm);
}
BENCHMARK(BM_MigrateToDeviceAndBack)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

void BM_Memcpy2x2MiB(benchmark::State& state) {
  std::vector<uint8_t> a(kPages * kPage, 1), b(kPages * kPage);
  for (auto _ : state) {
    for (int pass = 0; pass < 2; pass++) {
      for (uint64_t i = 0; i < kPages; i++) std::memcpy(&b[i * kPage], &a[i * kPage], kPage);
      benchmark::ClobberMemory();
      std::swap(a, b);
    }
  }
  state.SetItemsProcessed(state.iterations() * 2 * kPages);
}
BENCHMARK(BM_Memcpy2x2MiB)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime();

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nPer page, %llu pages each way (same run; medians)\n", static_cast<unsigned long long>(mirrormm::kPages));
  auto a = rep.rate_.find("BM_MigrateToDeviceAndBack/repeats:5/real_time_median");
  auto b = rep.rate_.find("BM_Memcpy2x2MiB/repeats:5/real_time_median");
  if (a != rep.rate_.end() && b != rep.rate_.end())
    std::printf("migrate_vma %.0f pages/s, memcpy %.0f pages/s (migrate_vma / memcpy rate: %.2f, target >= 0.50)\n",
                a->second, b->second, a->second / b->second);
  return 0;
}
