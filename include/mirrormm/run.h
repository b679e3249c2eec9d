// `mirrormm run`: the whole system at work, for people to watch.
//
// A presentation layer over the stress workload (stress.h) with everything on: several
// processes that fork and exit, mmap/mprotect/mremap/munmap/madvise churn, data written and
// verified, a secondary MMU on every process (HMM-style interval mirrors and KVM-style
// classic ones), memory smaller than the workload with a swap device (kswapd, direct
// reclaim, swap-in, the OOM killer), and the coherence checker and the quiescent-point
// consistency checks on. This file turns its options into a stress configuration and its
// report into a progress display and a summary table.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mirrormm/stress.h"

namespace mirrormm::run {

struct Options {
  int threads = 4;            // software CPUs
  double seconds = 10;        // how long the workload runs
  uint64_t seed = 1;          // the randomness of every CPU
  uint64_t memory_mib = 64;   // the model's physical memory
  uint64_t swap_mib = 256;    // the swap device (0: none, and no swap regions)
  int nodes = 2;              // NUMA nodes; above 1, migration threads move pages between them
  // A deliberately broken kernel, to watch the checkers catch it: "" (none) or one of
  // debug_break_names().
  std::string debug_break;
  // A bug of the catalog to re-inject (mirrormm/bugs.h; the CLI checks the name): the run
  // attaches the drivers that show it (bugs::Bug::drivers) and, where it needs them, two
  // NUMA nodes.
  std::string inject;
};

// The accepted values of Options::debug_break, each with what it breaks:
//   shootdown                TLB shootdowns do nothing (stale TLB entries)
//   unmap-bracket            unmap paths skip invalidate_range_start/end
//   clear-bracket            zap paths of madvise, COW and truncate skip them
//   protection-vma-bracket   mprotect skips them
//   protection-page-bracket  per-page protection changes skip them
struct DebugBreakInfo {
  const char* name;
  const char* what;
};
const std::vector<DebugBreakInfo>& debug_break_names();

// The stress configuration that runs `options` (devices on, the checkers on). An unknown
// debug_break is the caller's error (the CLI checks it against debug_break_names()).
stress::Options stress_options(const Options& options);

// The exact command line that runs these options again: "mirrormm run --seed S --seconds N
// --threads T --memory M --swap W [--debug-break NAME] [--inject NAME]".
std::string command_line(const Options& options);

// The first lines a run prints (two, without a final newline): what runs, with which options.
std::string describe(const Options& options);

// Progress displays. progress_bar(): one line of at most `width` columns for a terminal
// (redrawn in place): a bar of 20 columns (10 below a width of 60) filled to the elapsed share
// of the run, then the elapsed time, operations, swap traffic and violations so far.
// progress_line(): the same figures and more as a plain line, for logs.
std::string progress_bar(const stress::Progress& p, double seconds, int width);
std::string progress_line(const stress::Progress& p, double seconds);

// The summary table: operations and their rate, faults, invalidations by event and by
// subscriber kind, read_retry collisions, reclaim and swap, the checkers' verdict with the
// first violations and the command that reproduces them, and last the line "violations: N".
std::string summary(const Options& options, const stress::Report& report);

}  // namespace mirrormm::run
