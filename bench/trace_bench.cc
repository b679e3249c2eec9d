// The cost of tracing: the throughput of `mirrormm run`'s workload (include/mirrormm/run.h:
// processes, device mirrors, memory pressure, swap, migration, every checker on) with a
// recorder (trace-event JSON and HTML report, mirrormm/trace.h) against the same workload
// without one, measured in the same run.
//
// Each benchmark is one run of kSeconds; its rate is the workload's operations (system calls
// and accesses) per second of CPU time the whole process spent meanwhile (every thread: the
// software CPUs, kswapd, the coordinator), between the first and the last progress report of
// the run. CPU time rather than wall-clock time, because the machine this runs on is shared:
// the CPU threads lose the processor to other jobs for long stretches, which CPU time does not
// count. The two variants alternate, kReps runs each, the order flipping every repetition,
// and the summary compares their medians: "traced / untraced throughput: R" (the target is
// at least 0.90), and the wall-clock rates too. Writing the trace and the report happens
// after the run and is not in the rates; the summary prints its size and time apart.
//
//   build/release/bench/trace_bench
#include <benchmark/benchmark.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ostream>
#include <streambuf>
#include <string>
#include <vector>

#include "bench_report.h"
#include "mirrormm/run.h"
#include "mirrormm/stress.h"

namespace {

using namespace mirrormm;

constexpr double kSeconds = 2;
constexpr int kReps = 5;

double process_cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// Counts what is written and keeps nothing.
class CountingBuf : public std::streambuf {
 public:
  size_t bytes = 0;

 protected:
  std::streamsize xsputn(const char*, std::streamsize n) override {
    bytes += static_cast<size_t>(n);
    return n;
  }
  int overflow(int c) override {
    bytes++;
    return c;
  }
};

struct Written {
  size_t trace_bytes = 0, report_bytes = 0;
  double seconds = 0;  // the traced call's wall time beyond the workload: setup, teardown, merge, writing
};
std::vector<Written> written;
std::vector<double> wall_traced, wall_untraced;  // ops per wall-clock second

void BM_Run(benchmark::State& state, bool traced) {
  run::Options ro;
  ro.seconds = kSeconds;
  ro.seed = 1;
  for (auto _ : state) {
    stress::Options so = run::stress_options(ro);
    CountingBuf tb, rb;
    std::ostream trace_out(&tb), report_out(&rb);
    if (traced) {
      so.trace_json = &trace_out;
      so.report_html = &report_out;
    }
    // (CPU seconds, ops) at the first and the last progress report.
    double cpu0 = -1, cpu1 = 0;
    uint64_t ops0 = 0, ops1 = 0;
    so.on_progress = [&](const stress::Progress& p) {
      const double c = process_cpu_seconds();
      if (cpu0 < 0) {
        cpu0 = c;
        ops0 = p.ops;
      }
      cpu1 = c;
      ops1 = p.ops;
    };
    const auto t0 = std::chrono::steady_clock::now();
    const stress::Report r = stress::run(so);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (r.violations) state.SkipWithError("the workload reported a violation");
    if (cpu1 <= cpu0) state.SkipWithError("too few progress reports");
    state.SetIterationTime(cpu1 - cpu0);
    state.SetItemsProcessed(static_cast<int64_t>(ops1 - ops0));
    (traced ? wall_traced : wall_untraced).push_back(static_cast<double>(r.ops) / r.seconds);
    if (traced) written.push_back({tb.bytes, rb.bytes, wall - r.seconds});
  }
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  for (int rep = 0; rep < kReps; rep++) {
    for (int k = 0; k < 2; k++) {
      const bool traced = (k == 1) != (rep % 2 == 1);
      benchmark::RegisterBenchmark(("BM_Run/" + std::string(traced ? "traced" : "untraced") + "/rep" +
                                    std::to_string(rep)).c_str(),
                                   [traced](benchmark::State& s) { BM_Run(s, traced); })
          ->Iterations(1)
          ->UseManualTime()
          ->Unit(benchmark::kMillisecond);
    }
  }
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::vector<double> traced, untraced;
  for (const auto& [name, rate] : rep.rate_) (name.find("/traced/") != std::string::npos ? traced : untraced).push_back(rate);
  if (traced.empty() || untraced.empty()) return 0;
  const double t = median(traced), u = median(untraced);
  std::printf("\nrun workload throughput (median of %zu runs of %.1f s each):\n", traced.size(), kSeconds);
  std::printf("  per CPU second: untraced %.0f ops/s, traced %.0f ops/s\n", u, t);
  std::printf("  per wall-clock second: untraced %.0f ops/s, traced %.0f ops/s (ratio %.3f)\n", median(wall_untraced),
              median(wall_traced), median(wall_traced) / median(wall_untraced));
  std::printf("traced / untraced throughput: %.3f (target >= 0.90)\n", t / u);
  for (const Written& w : written)
    std::printf("  written after a traced run: trace %.1f MB, report %.1f MB, %.2f s beyond the workload (setup, teardown, merge, writing)\n",
                w.trace_bytes / 1e6, w.report_bytes / 1e6, w.seconds);
  return 0;
}
