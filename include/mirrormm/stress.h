// Random concurrent workloads with invariant checks (`mirrormm stress`).
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace mirrormm::stress {

// A snapshot of a run under way, for progress displays (Options::on_progress).
struct Progress {
  double seconds = 0;  // since the workload started
  uint64_t ops = 0, accesses = 0, syscalls = 0, forks = 0, device_ops = 0;
  uint64_t checks = 0;  // quiescent-point consistency checks so far
  uint64_t violations = 0;
  uint64_t pswpout = 0, pswpin = 0;  // pages written to and read from swap so far
};

struct Options {
  int threads = 4;          // software CPUs, one thread each
  double seconds = 10;
  uint64_t seed = 1;
  uint64_t memory_mib = 512;     // the model's physical memory
  // A swap device of this size (in memory, System::swapon) switched on before the run; 0: no
  // swap, and the workload is exactly the one without these options. With swap on, each CPU
  // also owns a region of process 1 (anonymous and shared memory, together about 1.75 times
  // the physical memory over all CPUs, at most memory plus half the swap) whose pages it
  // writes and verifies, so that reclaim swaps all the time. Process 1's death by OOM (killed,
  // or a fault that found no memory) then ends the run as a violation of kind "oom".
  uint64_t swap_mib = 0;
  // NUMA nodes of the frame pool (SystemConfig::nodes). With more than one, migration threads
  // (half as many as CPUs, at least one) move random ranges of every process between the
  // nodes (System::migrate_pages, MPOL_MF_MOVE_ALL: shared pages too), racing the CPUs'
  // faults, forks, exits, mprotect, mremap and munmap, reclaim and the device mirrors; the
  // CPUs' verified regions show any data a migration loses, and the consistency checks any
  // migration entry left behind. 1: no migration, and the workload is exactly the one
  // without this option.
  int nodes = 1;
  // Regular files with writeback: each CPU also writes, verifies (through its mapping and
  // with pread), syncs and pages out a shared mapping of its own regular file while the
  // flusher writes dirty pages back; a write lost to writeback or a page that comes back
  // from the disk wrong is a violation. false: the workload is exactly the one without it.
  bool writeback = false;
  bool break_shootdown = false;   // the deliberately broken kernel of the checker test
  // Secondary MMUs: every process gets one (by default a DeviceMirror, interval and classic
  // modes at random; see drivers) that the threads fault pages into and read and write
  // through, with the coherence checker on. drop_bracket >= 0 removes the primary paths' brackets of that MmuNotifyEvent (the
  // broken kernel of the coherence checker's test).
  bool devices = true;
  int drop_bracket = -1;
  // The kinds of secondary MMU to attach (SecondaryMmu registry names, KIND[:VARIANT], see
  // mirrormm/secondary_mmu.h): process 1 gets the first, each forked child one of them at
  // random. Empty: process 1 gets an interval DeviceMirror and the children interval or
  // classic ones, at random (the workload of before). Every driver's statistics are added to
  // Report::mirrors_by_kind.
  std::vector<std::string> drivers;
  // A bug of the catalog to re-inject (mirrormm/bugs.h, bugs::find_bug): its kernel switch is
  // turned on and its broken driver variant replaces the drivers of its kind. The caller
  // chooses the drivers (bugs::Bug::drivers are the ones that show it). "": none.
  std::string inject;
  // Race widening (System::debug_set_race_delay_us): the model pauses this many microseconds
  // inside the windows of the catalog's races. 0: none.
  unsigned race_delay_us = 0;
  // End the run at the first violation (the broken-kernel tests: as long as it takes, no
  // longer): the CPUs stop at their next step, so a few more may be counted.
  bool stop_on_violation = false;
  std::ostream* progress = nullptr;  // a line per second, if set
  // Called by the coordinating thread about four times a second while the workload runs, if
  // set (the callback must not call into the System).
  std::function<void(const Progress&)> on_progress;
  // Tracing (mirrormm/trace.h, docs/tracing.md): when set, the run is recorded (memory sampled
  // every 10 ms, the address spaces and their device residency taken at the end) and the
  // trace-event JSON / the HTML report are written there when it ends. The report is titled
  // report_title and gives report_command (default: replay_command) to run it again.
  std::ostream* trace_json = nullptr;
  std::ostream* report_html = nullptr;
  std::string report_title = "mirrormm stress";
  std::string report_command;
};

// The `mirrormm stress` command line that runs these options again (seed, CPUs, duration
// and every switch). Runs of several CPUs interleave differently each time: it reproduces
// the workload, and most often the failure.
std::string replay_command(const Options& options);

// The secondary MMUs of one kind (a SecondaryMmu registry name) summed over every driver of
// the run, from its attach to its detach (SecondaryMmu::Stats).
struct MirrorTotals {
  static constexpr int kEvents = 8;  // MmuNotifyEvent values (SecondaryMmu::kEvents)
  uint64_t attached = 0;           // mirrors attached
  uint64_t faults = 0;             // device faults that installed entries
  uint64_t retries = 0;            // faults that collided with an invalidation (read_retry)
  uint64_t invalidations = 0;      // notifications received
  uint64_t pages_dropped = 0;      // device entries the notifications removed
  std::array<uint64_t, kEvents> by_event{};  // invalidations by MmuNotifyEvent
  uint64_t young_queries = 0;      // aging callbacks answered (SecondaryMmu::Stats)
  uint64_t young_answers = 0;      // of those, "young"
  uint64_t waits = 0;              // invalidations that slept for in-flight accesses
  uint64_t nonblock_refusals = 0;  // non-blockable invalidations refused
};

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
  bool workload_oom_killed = false;   // process 1 died of OOM: killed, or a fault found no memory
                                      // (the run ended there)
  double seconds = 0;                 // how long the workload ran

  // Swap and reclaim at the end of the run (System::vmstat, swap_stats and the reclaim
  // threads' debug counters), whether swap was on or not.
  uint64_t pswpout = 0, pswpin = 0;               // pages written to and read from swap
  uint64_t pgscan_kswapd = 0, pgscan_direct = 0;  // pages scanned by kswapd / direct reclaim
  uint64_t pgsteal_kswapd = 0, pgsteal_direct = 0;  // pages they freed
  uint64_t workingset_refault = 0;  // refaults of recently evicted pages (anon + file)
  uint64_t oom_kill = 0;            // OOM kills (any process)
  uint64_t allocstall = 0;          // direct reclaim entries
  uint64_t kswapd_runs = 0;         // System::debug_kswapd_runs
  uint64_t oom_reap_retries = 0;    // System::debug_oom_reap_retries
  uint64_t swap_slots_used = 0;     // SwapStats::used after the final consistency check
  uint64_t swap_slots_total = 0;    // SwapStats::total
  uint64_t pgfault = 0, pgmajfault = 0;  // CPU page faults (vmstat), major ones (swap-ins)

  // The secondary MMUs (all zero without devices): HMM-style interval mirrors (process 1's
  // and half of the children's) and KVM-style classic ones (the other children's).
  MirrorTotals interval_mirrors, classic_mirrors;
  // Every kind attached (Options::drivers, or interval and classic), in the order of first
  // attach, with its totals; interval_mirrors and classic_mirrors are the "interval" and
  // "classic" entries.
  std::vector<std::pair<std::string, MirrorTotals>> mirrors_by_kind;
  // Migration (Options::nodes > 1): migrate_pages calls made by the migration threads, and
  // the pages that moved or failed to (pgmigrate_success / pgmigrate_fail, every retry of a
  // page counted as Linux counts it).
  uint64_t migrate_calls = 0;
  uint64_t pgmigrate_success = 0, pgmigrate_fail = 0;
  uint64_t pages_written_back = 0;  // page writes to the model disk (writeback, any cause)
  // Locked memory: mlock/munlock/mlockall/munlockall calls the workload made, pages that
  // became mlocked (unevictable_pgs_mlocked) and locked pages reclaim met and kept
  // (unevictable_pgs_culled). A locked page reclaim freed would be a violation.
  uint64_t mlock_calls = 0;
  uint64_t pgs_mlocked = 0, pgs_culled = 0;
};

// Runs the workload: `threads` CPUs issue random accesses and system calls on a few
// processes (forking and exiting them), sharing anonymous and file-backed memory, while the
// checkers look for accesses through stale TLB entries, freed frames reachable from page
// tables, lost dirty bits, lost or corrupted private data, and rss/mapcount/refcount
// mismatches at quiescent points.
Report run(const Options& options);

}  // namespace mirrormm::stress
