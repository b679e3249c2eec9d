// /proc/PID/smaps (src/mm/task_mmu.cc, System::smaps) against its baseline in the same run:
// the host kernel's /proc/self/smaps of the same layout. Both address spaces hold kVmas
// adjacent VMAs of kVmaPages pages, alternately rw- and rwx so that none merges, with the
// first kWritten pages of each written (private dirty anonymous pages). One iteration
// gathers the statistics of every VMA: System::smaps for the model, a read of the whole of
// /proc/self/smaps for the host (which walks the same page tables and formats the text).
// Each iteration checks the Rss it found. The summary prints VMAs per second of each and
// the ratio of their times.
#include <benchmark/benchmark.h>

#include "bench_report.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "mirrormm/mman.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kVmas = 10000;
constexpr uint64_t kVmaPages = 4;
constexpr uint64_t kWritten = 2;
constexpr uint64_t kAddr = 0x200000000000ull;

uint64_t vma_addr(uint64_t i) { return kAddr + i * kVmaPages * kPage; }

void BM_ModelSmaps(benchmark::State& state) {
  SystemConfig c;
  c.memory_bytes = 512ull << 20;
  System sys(c);
  Process* p = sys.process(1);
  for (uint64_t i = 0; i < kVmas; i++) {
    const uint64_t prot = kProtRead | kProtWrite | (i % 2 ? kProtExec : 0);
    AccessResult r{};
    if (sys.mmap(p, vma_addr(i), kVmaPages * kPage, prot, kMapPrivate | kMapAnonymous | kMapFixed).ok())
      r = sys.access(p, 0, vma_addr(i), kWritten * kPage, true,
                     [](uint8_t* d, uint64_t, uint64_t n) { std::memset(d, 1, n); });
    if (r.kind != AccessResult::Kind::kOk) {
      state.SkipWithError("setup failed");
      return;
    }
  }
  for (auto _ : state) {
    Result<std::vector<SmapsEntry>> r = sys.smaps(p);
    uint64_t rss = 0;
    if (r.ok())
      for (const SmapsEntry& e : r.value()) rss += e.resident;
    if (rss != kVmas * kWritten * kPage) {
      state.SkipWithError("the model's smaps missed pages");
      break;
    }
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVmas));
}
BENCHMARK(BM_ModelSmaps)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime()->Unit(benchmark::kMillisecond);

// The Rss lines of the text /proc/self/smaps printed, in kB.
uint64_t rss_kb(const std::string& text) {
  uint64_t kb = 0;
  for (size_t at = text.find("\nRss:"); at != std::string::npos; at = text.find("\nRss:", at + 1))
    kb += std::strtoull(text.c_str() + at + 5, nullptr, 10);
  return kb;
}

void BM_HostSmaps(benchmark::State& state) {
  const uint64_t len = kVmas * kVmaPages * kPage;
  void* base = mmap(reinterpret_cast<void*>(kAddr), len, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE,
                    -1, 0);
  if (base != reinterpret_cast<void*>(kAddr)) {
    state.SkipWithError("the host address range is taken");
    return;
  }
  for (uint64_t i = 0; i < kVmas; i++) {
    const int prot = PROT_READ | PROT_WRITE | (i % 2 ? PROT_EXEC : 0);
    void* a = reinterpret_cast<void*>(vma_addr(i));
    if (mmap(a, kVmaPages * kPage, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != a) {
      state.SkipWithError("host mmap failed");
      munmap(base, len);
      return;
    }
    std::memset(a, 1, kWritten * kPage);
  }
  std::string text;
  std::vector<char> buf(1 << 16);
  for (auto _ : state) {
    text.clear();
    int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
    ssize_t n = 0;
    while (fd >= 0 && (n = read(fd, buf.data(), buf.size())) > 0) text.append(buf.data(), static_cast<size_t>(n));
    if (fd >= 0) close(fd);
    // The runtime's own mappings add to the total; the window's pages must all be there.
    if (fd < 0 || n < 0 || rss_kb(text) < kVmas * kWritten * kPage / 1024) {
      state.SkipWithError("/proc/self/smaps missed pages");
      break;
    }
  }
  munmap(base, len);
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * kVmas));
}
BENCHMARK(BM_HostSmaps)->Repetitions(5)->ReportAggregatesOnly(true)->UseRealTime()->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nsmaps of %llu VMAs (same run; medians)\n", static_cast<unsigned long long>(mirrormm::kVmas));
  double model, host;
  if (rep.rates("BM_ModelSmaps/repeats:5/real_time_median", "BM_HostSmaps/repeats:5/real_time_median", &model, &host))
    std::printf("model %.0f VMAs/s, host %.0f VMAs/s (model / host time: %.2fx)\n", model, host, host / model);
  return 0;
}
