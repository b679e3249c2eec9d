// The primary MMU against the host kernel: the same system calls and faults, measured in the
// same run, with the ratio printed after the Google Benchmark output.
//
// Every work item is a pair, BM_Host_<Item> and BM_Model_<Item>, run with the same sizes:
//
//   FaultIn        mmap N anonymous private pages, write one byte per page, munmap.
//   FaultTouch     the same cycle, but only the writes are timed (manual timing, see below).
//   MprotectFull   N populated pages: mprotect(PROT_READ) then mprotect(PROT_READ|PROT_WRITE).
//   MprotectMiddle the same on the middle half: the first call splits the VMA in three, the
//                  second merges the pieces back.
//   ForkCow        fork, the child writes one byte to each of N populated pages (N COW
//                  copies) and exits, the parent reaps it.
//   MunmapCycle    mmap(MAP_POPULATE) of N pages, then munmap.
//   Munmap         the same cycle, but only the munmap is timed (manual timing).
//
// The host maps at a fixed address far from anything (kHostBase, MAP_FIXED_NOREPLACE), the
// model at kModelBase of process 1 of a System built for the benchmark (outside the timed
// loop). The model touches memory through System::access, one call per page, so that each
// page costs what a user fault costs the model: TLB miss, fault, page walk, retry.
//
// Timing. All benchmarks use wall-clock time: the host's fork puts half the work in the child,
// which the parent's CPU time does not see. Where part of an iteration must not be timed we
// use UseManualTime with steady_clock around the timed part rather than PauseTiming: a
// Pause/ResumeTiming pair also reads the process CPU clock (a real system call, not vDSO) and
// costs ~0.5 us of wall-clock time on the 2-core development VM, part of it inside the timed
// region and jittery, next to ~16 us for the model's 512-page munmap. Two steady_clock reads
// cost a few tens of nanoseconds on either side. The untimed parts (mmap, munmap or populate)
// still run every iteration, so caches and allocator state are what the timed part would see
// in the full cycle.
//
// Fairness notes. Transparent huge pages are disabled for this process (PR_SET_THP_DISABLE),
// so the host faults 4 KiB pages as the model does. That also keeps the model's frame pool on
// 4 KiB host pages, which is what it gets anyway while PhysMem does not madvise it (THP is in
// "madvise" mode on the development VM). The host's fork also creates, schedules and reaps a
// task and copies the page tables of the benchmark process's own anonymous memory (trimmed
// with malloc_trim first, reported as parent_anon_KiB); the model has no tasks or scheduler.
// ForkCow/0 measures that fixed part on both sides, and the table also prints the per-page
// cost above it.
//
// After the benchmarks, main() prints the comparison table (the median over repetitions when
// --benchmark_repetitions is given), whether the performance targets are met, and the model's
// metadata bytes per populated page.
#include <malloc.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <benchmark/benchmark.h>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/mman.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/system_internal.h"

namespace mirrormm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kModelBase = 0x200000000000ull;
constexpr uintptr_t kHostBase = 0x300000000000ull;

using Clock = std::chrono::steady_clock;
double seconds_between(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// ---- the host side ----

// Maps n private anonymous read-write pages at kHostBase; nullptr when the kernel refuses or
// puts the mapping elsewhere.
uint8_t* host_map(uint64_t n, int extra_flags = 0) {
  void* want = reinterpret_cast<void*>(kHostBase);
  void* p = ::mmap(want, n * kPage, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE | extra_flags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  if (p != want) {
    ::munmap(p, n * kPage);
    return nullptr;
  }
  return static_cast<uint8_t*>(p);
}

bool host_unmap(uint8_t* p, uint64_t n) { return ::munmap(p, n * kPage) == 0; }

// One store per page; volatile so that each store is an access the MMU sees.
inline void host_touch(uint8_t* p, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) *static_cast<volatile uint8_t*>(p + i * kPage) = 1;
}

// ---- the model side ----

// A System with process 1 and the helpers every model benchmark needs. Built outside the
// timed loop; one per benchmark run.
class Model {
 public:
  Model() : sys_(config()), p_(sys_.process(1)) {}

  static SystemConfig config() {
    SystemConfig c;
    c.memory_bytes = 1ull << 30;
    return c;
  }

  System& sys() { return sys_; }
  Process* proc() { return p_; }

  bool map(uint64_t n, uint64_t extra_flags = 0) {
    Result<uint64_t> r = sys_.mmap(p_, kModelBase, n * kPage, kProtRead | kProtWrite,
                                   kMapPrivate | kMapAnonymous | kMapFixedNoReplace | extra_flags);
    return r.ok() && r.value() == kModelBase;
  }
  bool unmap(uint64_t n) { return sys_.munmap(p_, kModelBase, n * kPage).ok(); }

  // One one-byte write access per page, as a user store to each page would be.
  bool touch(Process* p, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
      if (!sys_.access(p, 0, kModelBase + i * kPage, 1, /*write=*/true, store_).ok()) return false;
    return true;
  }

 private:
  System sys_;
  Process* p_;
  // Built once: constructing a std::function per access would be measured too.
  const System::ChunkFn store_ = [](uint8_t* data, uint64_t, uint64_t) { *data = 1; };
};

int64_t pages_arg(const benchmark::State& state) { return state.range(0); }

// ---- 1. fault-in of fresh anonymous pages ----

void BM_Host_FaultIn(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  for (auto _ : state) {
    uint8_t* p = host_map(n);
    if (!p) { state.SkipWithError("host mmap failed"); break; }
    host_touch(p, n);
    if (!host_unmap(p, n)) { state.SkipWithError("host munmap failed"); break; }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Model_FaultIn(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  Model m;
  for (auto _ : state) {
    if (!m.map(n)) { state.SkipWithError("model mmap failed"); break; }
    if (!m.touch(m.proc(), n)) { state.SkipWithError("model access failed"); break; }
    if (!m.unmap(n)) { state.SkipWithError("model munmap failed"); break; }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Host_FaultTouch(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  for (auto _ : state) {
    uint8_t* p = host_map(n);
    if (!p) { state.SkipWithError("host mmap failed"); break; }
    const auto t0 = Clock::now();
    host_touch(p, n);
    const auto t1 = Clock::now();
    if (!host_unmap(p, n)) { state.SkipWithError("host munmap failed"); break; }
    state.SetIterationTime(seconds_between(t0, t1));
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Model_FaultTouch(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  Model m;
  for (auto _ : state) {
    if (!m.map(n)) { state.SkipWithError("model mmap failed"); break; }
    const auto t0 = Clock::now();
    const bool ok = m.touch(m.proc(), n);
    const auto t1 = Clock::now();
    if (!ok) { state.SkipWithError("model access failed"); break; }
    if (!m.unmap(n)) { state.SkipWithError("model munmap failed"); break; }
    state.SetIterationTime(seconds_between(t0, t1));
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// ---- 2. mprotect of a populated range ----

// The range whose protection is toggled: all n pages, or the middle half.
std::pair<uint64_t, uint64_t> mprotect_range(uint64_t n, bool middle) {
  if (!middle) return {0, n * kPage};
  return {(n / 4) * kPage, (n / 2) * kPage};
}

void host_mprotect(benchmark::State& state, bool middle) {
  const uint64_t n = pages_arg(state);
  uint8_t* p = host_map(n);
  if (!p) { state.SkipWithError("host mmap failed"); return; }
  host_touch(p, n);
  const auto [off, len] = mprotect_range(n, middle);
  for (auto _ : state) {
    if (::mprotect(p + off, len, PROT_READ) != 0 ||
        ::mprotect(p + off, len, PROT_READ | PROT_WRITE) != 0) {
      state.SkipWithError("host mprotect failed");
      break;
    }
  }
  host_unmap(p, n);
  state.SetItemsProcessed(state.iterations() * 2 * (len / kPage));
}

void model_mprotect(benchmark::State& state, bool middle) {
  const uint64_t n = pages_arg(state);
  Model m;
  if (!m.map(n) || !m.touch(m.proc(), n)) { state.SkipWithError("model setup failed"); return; }
  const auto [off, len] = mprotect_range(n, middle);
  System& sys = m.sys();
  Process* p = m.proc();
  for (auto _ : state) {
    if (!sys.mprotect(p, kModelBase + off, len, kProtRead).ok() ||
        !sys.mprotect(p, kModelBase + off, len, kProtRead | kProtWrite).ok()) {
      state.SkipWithError("model mprotect failed");
      break;
    }
  }
  state.SetItemsProcessed(state.iterations() * 2 * (len / kPage));
}

void BM_Host_MprotectFull(benchmark::State& state) { host_mprotect(state, false); }
void BM_Model_MprotectFull(benchmark::State& state) { model_mprotect(state, false); }
void BM_Host_MprotectMiddle(benchmark::State& state) { host_mprotect(state, true); }
void BM_Model_MprotectMiddle(benchmark::State& state) { model_mprotect(state, true); }

// ---- 3. fork of a populated range, COW writes in the child ----

// The resident anonymous memory of this process in KiB (RssAnon), or -1.
double rss_anon_kib() {
  FILE* f = std::fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  double kib = -1;
  while (std::fgets(line, sizeof line, f))
    if (std::sscanf(line, "RssAnon: %lf", &kib) == 1) break;
  std::fclose(f);
  return kib;
}

void BM_Host_ForkCow(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  // The host's fork copies the page tables of all of this process's anonymous memory, so its
  // cost depends on what earlier benchmarks left in the heap (the model's fork benchmark
  // allocates a Process per iteration). Give freed heap memory back first, and report what
  // the child still has to copy besides the N pages.
  ::malloc_trim(0);
  state.counters["parent_anon_KiB"] = rss_anon_kib();
  uint8_t* p = nullptr;
  if (n) {
    p = host_map(n);
    if (!p) { state.SkipWithError("host mmap failed"); return; }
    host_touch(p, n);
  }
  for (auto _ : state) {
    const pid_t pid = ::fork();
    if (pid < 0) { state.SkipWithError("fork failed"); break; }
    if (pid == 0) {
      // The child: plain stores (COW faults) and _exit, nothing that is not async-signal-safe.
      host_touch(p, n);
      ::_exit(0);
    }
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      state.SkipWithError("child failed");
      break;
    }
  }
  if (p) host_unmap(p, n);
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Model_ForkCow(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  Model m;
  if (n && (!m.map(n) || !m.touch(m.proc(), n))) { state.SkipWithError("model setup failed"); return; }
  System& sys = m.sys();
  for (auto _ : state) {
    Result<Process*> child = sys.fork(m.proc());
    if (!child.ok()) { state.SkipWithError("model fork failed"); break; }
    if (!m.touch(child.value(), n)) { state.SkipWithError("model COW write failed"); break; }
    sys.exit(child.value());
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// ---- 4. munmap of a populated range ----

void BM_Host_MunmapCycle(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  for (auto _ : state) {
    uint8_t* p = host_map(n, MAP_POPULATE);
    if (!p) { state.SkipWithError("host mmap failed"); break; }
    if (!host_unmap(p, n)) { state.SkipWithError("host munmap failed"); break; }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Model_MunmapCycle(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  Model m;
  for (auto _ : state) {
    if (!m.map(n, kMapPopulate)) { state.SkipWithError("model mmap failed"); break; }
    if (!m.unmap(n)) { state.SkipWithError("model munmap failed"); break; }
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Host_Munmap(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  for (auto _ : state) {
    uint8_t* p = host_map(n, MAP_POPULATE);
    if (!p) { state.SkipWithError("host mmap failed"); break; }
    const auto t0 = Clock::now();
    const bool ok = host_unmap(p, n);
    const auto t1 = Clock::now();
    if (!ok) { state.SkipWithError("host munmap failed"); break; }
    state.SetIterationTime(seconds_between(t0, t1));
  }
  state.SetItemsProcessed(state.iterations() * n);
}

void BM_Model_Munmap(benchmark::State& state) {
  const uint64_t n = pages_arg(state);
  Model m;
  for (auto _ : state) {
    if (!m.map(n, kMapPopulate)) { state.SkipWithError("model mmap failed"); break; }
    const auto t0 = Clock::now();
    const bool ok = m.unmap(n);
    const auto t1 = Clock::now();
    if (!ok) { state.SkipWithError("model munmap failed"); break; }
    state.SetIterationTime(seconds_between(t0, t1));
  }
  state.SetItemsProcessed(state.iterations() * n);
}

// ---- registration ----

// A work item: the suffix shared by its BM_Host_ and BM_Model_ functions, what the table
// calls it, the unit its time is divided into, and the speed-up it must reach.
struct WorkItem {
  const char* key;
  const char* what;
  const char* unit;
  // Units per iteration for size n (pages for faults, calls for mprotect, ...).
  double (*units)(int64_t n);
  double target;  // minimum host/model time ratio; 0 when the row is informative only
  bool manual_time;
  std::vector<int64_t> sizes;
  void (*host)(benchmark::State&);
  void (*model)(benchmark::State&);
};

double per_page(int64_t n) { return static_cast<double>(n); }
double two_calls(int64_t) { return 2.0; }
double one(int64_t) { return 1.0; }

const std::vector<WorkItem>& work_items() {
  static const std::vector<WorkItem> items = {
      {"FaultIn", "fault-in: mmap+touch+munmap", "page", per_page, 8, false, {256, 4096},
       BM_Host_FaultIn, BM_Model_FaultIn},
      {"FaultTouch", "fault-in: touch only", "page", per_page, 8, true, {256, 4096},
       BM_Host_FaultTouch, BM_Model_FaultTouch},
      {"MprotectFull", "mprotect RO<->RW, whole", "call", two_calls, 10, false, {16, 512},
       BM_Host_MprotectFull, BM_Model_MprotectFull},
      {"MprotectMiddle", "mprotect RO<->RW, mid half", "call", two_calls, 10, false, {16, 512},
       BM_Host_MprotectMiddle, BM_Model_MprotectMiddle},
      {"ForkCow", "fork+child COW N+exit", "fork", one, 5, false, {0, 64, 1024},
       BM_Host_ForkCow, BM_Model_ForkCow},
      {"MunmapCycle", "mmap(POPULATE)+munmap", "cycle", one, 5, false, {512, 4096},
       BM_Host_MunmapCycle, BM_Model_MunmapCycle},
      {"Munmap", "munmap only (populated)", "call", one, 5, true, {512, 4096},
       BM_Host_Munmap, BM_Model_Munmap},
  };
  return items;
}

void register_benchmarks() {
  for (const WorkItem& w : work_items()) {
    for (int side = 0; side < 2; side++) {
      const std::string name = std::string(side == 0 ? "BM_Host_" : "BM_Model_") + w.key;
      auto* b = benchmark::RegisterBenchmark(name.c_str(), side == 0 ? w.host : w.model);
      for (int64_t n : w.sizes) b->Arg(n);
      b->ArgName("pages");
      if (w.manual_time)
        b->UseManualTime();
      else
        b->UseRealTime();
    }
  }
}

// ---- the comparison ----

// Shows the usual console output and keeps each run's wall-clock time per iteration, keyed by
// (function name, args), for the comparison table.
class CompareReporter : public benchmark::ConsoleReporter {
 public:
  using ConsoleReporter::ConsoleReporter;

  void ReportRuns(const std::vector<Run>& reports) override {
    for (const Run& r : reports) {
      if (r.error_occurred || r.iterations == 0) continue;
      const Key key{r.run_name.function_name, r.run_name.args};
      // An aggregate's accumulated time is the statistic over the repetitions' accumulated
      // times, and its iterations those of one repetition.
      const double ns = r.real_accumulated_time * 1e9 / static_cast<double>(r.iterations);
      if (r.run_type == Run::RT_Iteration)
        ns_per_iter_[key].push_back(ns);
      else if (r.aggregate_name == "median")
        median_aggregate_[key] = ns;
    }
    ConsoleReporter::ReportRuns(reports);
  }

  // The median over repetitions, or a negative value when the benchmark did not run. With
  // --benchmark_report_aggregates_only the display sees no repetitions, only their median.
  double median_ns(const std::string& function, const std::string& args) const {
    const Key key{function, args};
    auto it = ns_per_iter_.find(key);
    if (it == ns_per_iter_.end() || it->second.empty()) {
      auto agg = median_aggregate_.find(key);
      return agg == median_aggregate_.end() ? -1 : agg->second;
    }
    std::vector<double> v = it->second;
    std::sort(v.begin(), v.end());
    const size_t m = v.size() / 2;
    return v.size() % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  }

 private:
  using Key = std::pair<std::string, std::string>;  // function name, args
  std::map<Key, std::vector<double>> ns_per_iter_;
  std::map<Key, double> median_aggregate_;
};

void print_comparison(const CompareReporter& rep) {
  std::printf("\nHost kernel vs model (wall-clock, median over repetitions; speed-up = host/model)\n");
  std::printf("%-28s %6s %-6s %14s %14s %9s %7s %s\n", "work item", "pages", "unit",
              "host ns/unit", "model ns/unit", "speed-up", "target", "met");
  int met = 0, missed = 0;
  for (const WorkItem& w : work_items()) {
    for (int64_t n : w.sizes) {
      const std::string args = "pages:" + std::to_string(n);
      const double host = rep.median_ns(std::string("BM_Host_") + w.key, args);
      const double model = rep.median_ns(std::string("BM_Model_") + w.key, args);
      if (host < 0 && model < 0) continue;  // filtered out
      const double u = w.units(n);
      char hs[32] = "-", ms[32] = "-", rs[32] = "-", ts[32] = "info", verdict[16] = "";
      if (host >= 0) std::snprintf(hs, sizeof hs, "%.1f", host / u);
      if (model >= 0) std::snprintf(ms, sizeof ms, "%.1f", model / u);
      // A zero-page fork has nothing the targets talk about: it is the fixed-cost baseline.
      const bool targeted = w.target > 0 && n > 0;
      if (targeted) std::snprintf(ts, sizeof ts, ">=%gx", w.target);
      if (host >= 0 && model > 0) {
        const double ratio = host / model;
        std::snprintf(rs, sizeof rs, "%.2fx", ratio);
        if (targeted) {
          const bool ok = ratio >= w.target;
          std::snprintf(verdict, sizeof verdict, "%s", ok ? "yes" : "NO");
          (ok ? met : missed)++;
        }
      }
      std::printf("%-28s %6" PRId64 " %-6s %14s %14s %9s %7s %s\n", w.what, n, w.unit, hs, ms, rs,
                  ts, verdict);
    }
  }
  std::printf("targets met: %d, missed: %d\n", met, missed);

  // The host's fork is dominated by creating, scheduling and reaping a task, which the model
  // does not have; the cost above ForkCow/0, per page, is what the page-table copy and the COW
  // faults cost on each side.
  const double host0 = rep.median_ns("BM_Host_ForkCow", "pages:0");
  const double model0 = rep.median_ns("BM_Model_ForkCow", "pages:0");
  if (host0 < 0 || model0 < 0) return;
  for (const WorkItem& w : work_items()) {
    if (std::string_view(w.key) != "ForkCow") continue;
    for (int64_t n : w.sizes) {
      const double host = rep.median_ns("BM_Host_ForkCow", "pages:" + std::to_string(n));
      const double model = rep.median_ns("BM_Model_ForkCow", "pages:" + std::to_string(n));
      if (n == 0 || host < 0 || model < 0) continue;
      const double h = (host - host0) / n, m = (model - model0) / n;
      std::printf("%-28s %6" PRId64 " %-6s %14.1f %14.1f %8.2fx %7s\n", "  fork above ForkCow/0", n,
                  "page", h, m, h / m, "info");
    }
  }
}

// Populates kPages pages in a fresh System and divides the model's metadata by them.
void print_metadata() {
  constexpr uint64_t kPages = 65536;
  System sys(Model::config());
  Process* p = sys.process(1);
  Result<uint64_t> r = sys.mmap(p, kModelBase, kPages * kPage, kProtRead | kProtWrite,
                                kMapPrivate | kMapAnonymous | kMapFixedNoReplace | kMapPopulate);
  if (!r.ok()) {
    std::printf("\nmetadata: mmap failed (%s)\n", errno_name(r.error()));
    return;
  }
  Mm* mm = p->mm();
  const uint64_t total = sys.debug_metadata_bytes();
  const uint64_t frames = sys.mem().nr_used();
  uint64_t tables = 0, vmas = 0;
  {
    MmapReadGuard g(mm);
    tables = count_pgtables(mm);
    vmas = mm->vmas_.size();
  }
  const uint64_t data = frames - tables;
  const uint64_t descriptor_bytes = frames * sizeof(Page);
  const uint64_t table_bytes = tables * kPage;
  const uint64_t vma_bytes = total - descriptor_bytes - table_bytes;
  const double per_page = static_cast<double>(total) / kPages;
  std::printf("\nModel metadata bytes per populated page (%" PRIu64 " pages written in a fresh System)\n",
              kPages);
  std::printf("  resident data pages            %10" PRIu64 "\n", data);
  std::printf("  page descriptors  %6zu B x %7" PRIu64 " frames = %10" PRIu64 " B  (%.2f B/page)\n",
              sizeof(Page), frames, descriptor_bytes, static_cast<double>(descriptor_bytes) / kPages);
  std::printf("  page tables       %6" PRIu64 " B x %7" PRIu64 " tables = %10" PRIu64 " B  (%.2f B/page)\n",
              kPage, tables, table_bytes, static_cast<double>(table_bytes) / kPages);
  std::printf("  VMAs                         %7" PRIu64 " VMAs   = %10" PRIu64 " B  (%.4f B/page)\n",
              vmas, vma_bytes, static_cast<double>(vma_bytes) / kPages);
  std::printf("  total %" PRIu64 " B = %.2f B per populated page (target <= 80: %s;"
              " Linux: 64 B struct page + 8 B PTE = 72)\n",
              total, per_page, per_page <= 80 ? "met" : "NOT met");
  if (!sys.munmap(p, kModelBase, kPages * kPage).ok()) std::printf("  (munmap failed)\n");
}

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  // 4 KiB faults on the host, as in the model; inherited by fork children.
  if (::prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) != 0) std::perror("prctl(PR_SET_THP_DISABLE)");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  mirrormm::register_benchmarks();
  mirrormm::CompareReporter reporter(::isatty(STDOUT_FILENO)
                                         ? benchmark::ConsoleReporter::OO_ColorTabular
                                         : benchmark::ConsoleReporter::OO_Tabular);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::fflush(stdout);
  mirrormm::print_comparison(reporter);
  mirrormm::print_metadata();
  benchmark::Shutdown();
  return 0;
}
