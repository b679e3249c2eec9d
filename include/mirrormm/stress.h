// Random concurrent workloads with invariant checks (`mirrormm stress`).
#pragma once

#include <cstdint>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace mirrormm::stress {

struct Options {
  int threads = 4;          // software CPUs, one thread each
  double seconds = 10;
  uint64_t seed = 1;
  uint64_t memory_mib = 512;
  bool break_shootdown = false;   // the deliberately broken kernel of the checker test
  // Secondary MMUs: every process gets a DeviceMirror (interval and classic modes alternate)
  // that the threads fault pages into and read and write through, with the coherence checker
  // on. drop_bracket >= 0 removes the primary paths' brackets of that MmuNotifyEvent (the
  // broken kernel of the coherence checker's test).
  bool devices = true;
  int drop_bracket = -1;
  // End the run at the first violation (the broken-kernel tests: as long as it takes, no
  // longer): the CPUs stop at their next step, so a few more may be counted.
  bool stop_on_violation = false;
  std::ostream* progress = nullptr;  // a line per second, if set
};

// The `mirrormm stress` command line that runs these options again (seed, CPUs, duration
// and every switch). Runs of several CPUs interleave differently each time: it reproduces
// the workload, and most often the failure.
std::string replay_command(const Options& options);

struct Report {
  uint64_t ops = 0;            // system calls and accesses issued
  uint64_t accesses = 0;
  uint64_t syscalls = 0;
  uint64_t forks = 0;
  uint64_t checks = 0;         // quiescent-point consistency checks run
  uint64_t device_ops = 0;     // secondary-MMU faults, reads and writes
  uint64_t violations = 0;
  std::vector<std::string> messages;  // the first violations, described
  // Every violation counted by kind (System::violation_kinds), most frequent first.
  std::vector<std::pair<std::string, uint64_t>> kinds;
  bool stopped_on_violation = false;  // stop_on_violation ended the run early
  double seconds = 0;                 // how long the workload ran
};

// Runs the workload: `threads` CPUs issue random accesses and system calls on a few
// processes (forking and exiting them), sharing anonymous and file-backed memory, while the
// checkers look for accesses through stale TLB entries, freed frames reachable from page
// tables, lost dirty bits, lost or corrupted private data, and rss/mapcount/refcount
// mismatches at quiescent points.
Report run(const Options& options);

}  // namespace mirrormm::stress
