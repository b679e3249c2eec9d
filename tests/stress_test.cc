// The concurrent stress workload and its checkers.
#include <gtest/gtest.h>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/stress.h"
#include "support/watchdog.h"

namespace mirrormm::stress {
namespace {

// A hang fails the test within this limit with a message (tests/support/watchdog.h). Each
// stress run ends by its own wall-clock bound (DroppedBracketIsCaught's two runs: 120 s at
// most); the scaled part covers setup, the checks at the end and teardown.
const bool kWatchdog =
    testing::install_test_watchdog(std::chrono::seconds(120) + testing::scaled(std::chrono::seconds(60)));

TEST(Stress, ConcurrentWorkloadHasNoViolations) {
  Options o;
  o.threads = 4;
  o.seconds = 3;
  o.seed = 7;
  std::vector<Progress> progress;
  o.on_progress = [&progress](const Progress& p) { progress.push_back(p); };
  Report r = run(o);
  EXPECT_GT(r.accesses, 100u);  // low bars: CI machines may be loaded
  EXPECT_GT(r.syscalls, 100u);
  EXPECT_GT(r.checks, 1u);
  EXPECT_GT(r.device_ops, 10u);  // secondary MMUs attached, checker on
  EXPECT_GT(r.pgfault, 0u);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
  // Every mirror's notifications are summed by kind of subscriber and by event.
  EXPECT_GE(r.interval_mirrors.attached, 1u);  // process 1's
  EXPECT_GT(r.interval_mirrors.invalidations, 0u);
  for (const MirrorTotals* t : {&r.interval_mirrors, &r.classic_mirrors}) {
    uint64_t sum = 0;
    for (uint64_t n : t->by_event) sum += n;
    EXPECT_EQ(sum, t->invalidations);
  }
  // The progress snapshots come while the run goes, in order.
  ASSERT_FALSE(progress.empty());
  for (size_t i = 1; i < progress.size(); i++) {
    EXPECT_GE(progress[i].seconds, progress[i - 1].seconds);
    EXPECT_GE(progress[i].ops, progress[i - 1].ops);
  }
  EXPECT_LE(progress.back().ops, r.ops);
}

// The coherence checker's reason to exist: take the brackets away from one family of primary
// paths and the stale secondary mappings (and the unbracketed PTE changes) are reported.
TEST(Stress, DroppedBracketIsCaught) {
  for (MmuNotifyEvent e : {MmuNotifyEvent::kUnmap, MmuNotifyEvent::kProtectionVma}) {
    Options o;
    o.threads = 4;
    o.seconds = 60;  // an upper bound for loaded machines: the run ends at the first violation
    o.seed = 3;
    o.stop_on_violation = true;
    o.drop_bracket = static_cast<int>(e);
    Report r = run(o);
    EXPECT_GT(r.violations, 0u) << mmu_notify_event_name(e);
    bool named = false;
    for (const std::string& m : r.messages) named |= m.find("mmu checker") != std::string::npos;
    EXPECT_TRUE(named) << mmu_notify_event_name(e);
  }
}

TEST(Stress, BrokenShootdownIsCaught) {
  Options o;
  o.threads = 4;
  o.seconds = 60;  // upper bound; ends at the first violation
  o.seed = 1;
  o.stop_on_violation = true;
  o.break_shootdown = true;
  Report r = run(o);
  EXPECT_GT(r.violations, 0u);
}

}  // namespace
}  // namespace mirrormm::stress

namespace mirrormm::stress {
namespace {

// A broken kernel never breaks the model: with the unmap brackets dropped, devices keep stale
// mappings and DMA through them while their frames are freed and reused (page tables
// included); every such access is refused and reported, and the run ends normally with the
// violations counted by kind.
TEST(Stress, DroppedUnmapBracketIsReportedNotFatal) {
  Options o;
  o.threads = 2;
  o.seconds = 3;
  o.seed = 7;
  o.drop_bracket = static_cast<int>(MmuNotifyEvent::kUnmap);
  Report r = run(o);
  EXPECT_GT(r.violations, 0u);
  EXPECT_GT(r.device_ops, 10u);
  uint64_t counted = 0;
  for (const auto& [kind, n] : r.kinds) counted += n;
  EXPECT_EQ(counted, r.violations);
  EXPECT_LE(r.messages.size(), 20u);
  EXPECT_FALSE(r.stopped_on_violation);
}

// --stop-on-violation: the run ends at the first violation, long before its time is up, and
// its replay line carries every switch.
TEST(Stress, StopOnViolationEndsTheRunAndReplaysIt) {
  Options o;
  o.threads = 2;
  o.seconds = 60;
  o.seed = 3;
  o.drop_bracket = static_cast<int>(MmuNotifyEvent::kClear);
  o.stop_on_violation = true;
  Report r = run(o);
  EXPECT_TRUE(r.stopped_on_violation);
  EXPECT_GT(r.violations, 0u);
  EXPECT_LT(r.seconds, 50.0);
  ASSERT_FALSE(r.messages.empty());
  EXPECT_NE(r.messages[0].find("mmu checker"), std::string::npos) << r.messages[0];
  EXPECT_EQ(replay_command(o),
            "mirrormm stress --threads 2 --seconds 60 --seed 3 --drop-bracket clear --stop-on-violation");
  o.stop_on_violation = false;
  o.drop_bracket = -1;
  o.devices = false;
  o.break_shootdown = true;
  EXPECT_EQ(replay_command(o), "mirrormm stress --threads 2 --seconds 60 --seed 3 --break-shootdown --no-devices");
}

}  // namespace
}  // namespace mirrormm::stress

namespace mirrormm::stress {
namespace {

// Two CPUs for 3 seconds with 16 MiB of memory and 64 MiB of swap: reclaim and swap busy.
Options pressure(uint64_t seed, int nodes = 1, bool writeback = false) {
  Options o;
  o.threads = 2;
  o.seconds = 3;
  o.seed = seed;
  o.memory_mib = 16;
  o.swap_mib = 64;
  o.nodes = nodes;
  o.writeback = writeback;
  return o;
}

// Memory under pressure with swap on: reclaim pushes the swap regions out and the reads bring
// them back, with every read verified, the consistency checks passing and process 1 alive.
TEST(Stress, SwapUnderMemoryPressureLosesNothing) {
  const Options o = pressure(5);
  Report r = run(o);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
  EXPECT_FALSE(r.workload_oom_killed);
  EXPECT_GT(r.pswpout, 0u);
  EXPECT_GT(r.pswpin, 0u);
  EXPECT_GT(r.pgscan_kswapd + r.pgscan_direct, 0u);
  EXPECT_GT(r.checks, 1u);
  EXPECT_GT(r.swap_slots_total, 0u);
  EXPECT_EQ(replay_command(o), "mirrormm stress --threads 2 --seconds 3 --seed 5 --memory 16 --swap 64");
}

// Several NUMA nodes: the migration threads move pages of every region between them while the
// CPUs fault, fork, exit, remap and reclaim swaps; every verified read still sees its data and
// no migration entry survives to a consistency check.
TEST(Stress, MigrationThreadsRaceEverythingAndLoseNothing) {
  const Options o = pressure(7, 2);
  Report r = run(o);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
  EXPECT_FALSE(r.workload_oom_killed);
  EXPECT_GT(r.migrate_calls, 0u);
  EXPECT_GT(r.pgmigrate_success, 0u);
  EXPECT_GT(r.checks, 1u);
  EXPECT_EQ(replay_command(o), "mirrormm stress --threads 2 --seconds 3 --seed 7 --memory 16 --swap 64 --nodes 2");
}

// Regular files with writeback: the CPUs write, verify, sync and page out their files while
// the flusher writes back and reclaim drops clean pages; nothing read back differs from the
// last write, and no writable PTE maps a clean page of a write-notify mapping.
TEST(Stress, WritebackLosesNoWrite) {
  const Options o = pressure(9, 2, true);
  Report r = run(o);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
  EXPECT_FALSE(r.workload_oom_killed);
  EXPECT_GT(r.pages_written_back, 0u);
  EXPECT_EQ(replay_command(o),
            "mirrormm stress --threads 2 --seconds 3 --seed 9 --memory 16 --swap 64 --nodes 2 --writeback");
}

// Without swap_mib the workload is the one it always was: no swap device, nothing swapped,
// and the replay line names neither option.
TEST(Stress, DefaultRunHasNoSwap) {
  Options o;
  EXPECT_EQ(o.swap_mib, 0u);
  EXPECT_EQ(o.memory_mib, 512u);
  o.threads = 2;
  o.seconds = 1;
  o.seed = 7;
  Report r = run(o);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
  EXPECT_EQ(r.swap_slots_total, 0u);
  EXPECT_EQ(r.swap_slots_used, 0u);
  EXPECT_EQ(r.pswpout, 0u);
  EXPECT_EQ(r.pswpin, 0u);
  EXPECT_EQ(r.oom_kill, 0u);
  EXPECT_EQ(replay_command(o), "mirrormm stress --threads 2 --seconds 1 --seed 7");
}

}  // namespace
}  // namespace mirrormm::stress
