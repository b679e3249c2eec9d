// The reporter the benchmarks print their same-run ratios with: the console output as usual,
// plus each run's items/s and adjusted real time, by benchmark name, for the summary that
// main() prints after the runs (e.g. "swap / memcpy time: 1.85x").
#pragma once

#include <benchmark/benchmark.h>

#include <map>
#include <string>
#include <vector>

namespace mirrormm::bench {

class Collector : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& r : runs) {
      if (r.error_occurred) continue;
      const std::string name = r.benchmark_name();
      auto it = r.counters.find("items_per_second");
      if (it != r.counters.end()) rate_[name] = it->second.value;
      ns_[name] = r.GetAdjustedRealTime();
    }
  }
  // The items per second of two runs by full name (e.g. "BM_X/repeats:5/real_time_median"),
  // when both ran without error.
  bool rates(const std::string& a, const std::string& b, double* rate_a, double* rate_b) const {
    auto ia = rate_.find(a), ib = rate_.find(b);
    if (ia == rate_.end() || ib == rate_.end()) return false;
    *rate_a = ia->second;
    *rate_b = ib->second;
    return true;
  }
  std::map<std::string, double> rate_;  // items per second
  std::map<std::string, double> ns_;    // adjusted real time, in the run's time unit
};

// benchmark::Initialize, the runs the command line selects, Shutdown: what each bench's main()
// does before it prints its summary from the returned collector.
inline void run_benchmarks(int* argc, char** argv, Collector* rep) {
  benchmark::Initialize(argc, argv);
  benchmark::RunSpecifiedBenchmarks(rep);
  benchmark::Shutdown();
}

}  // namespace mirrormm::bench
