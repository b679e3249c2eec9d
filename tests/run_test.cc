// `mirrormm run` (src/run/run.cc): its stress configuration, its reproduce line and its
// summary. The program itself is exercised by cli_test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/run.h"

namespace mirrormm::run {
namespace {

using ::testing::HasSubstr;

TEST(Run, EverythingIsOn) {
  Options o;
  const stress::Options s = stress_options(o);
  EXPECT_TRUE(s.devices);
  EXPECT_GT(s.swap_mib, 0u);
  EXPECT_LT(s.memory_mib, s.swap_mib);  // memory pressure: the swap regions exceed memory
  EXPECT_FALSE(s.break_shootdown);
  EXPECT_EQ(s.drop_bracket, -1);
}

TEST(Run, DebugBreaksMapOntoTheStressSwitches) {
  Options o;
  o.debug_break = "shootdown";
  EXPECT_TRUE(stress_options(o).break_shootdown);
  o.debug_break = "unmap-bracket";
  EXPECT_EQ(stress_options(o).drop_bracket, static_cast<int>(MmuNotifyEvent::kUnmap));
  o.debug_break = "protection-page-bracket";
  EXPECT_EQ(stress_options(o).drop_bracket, static_cast<int>(MmuNotifyEvent::kProtectionPage));
  for (const DebugBreakInfo& b : debug_break_names()) {
    o.debug_break = b.name;
    const stress::Options s = stress_options(o);
    EXPECT_TRUE(s.break_shootdown || s.drop_bracket >= 0) << b.name;
    // Every bracket a switch drops is one that a primary path uses.
    if (s.drop_bracket >= 0) {
      EXPECT_TRUE(mmu_debug_bracket_used(static_cast<MmuNotifyEvent>(s.drop_bracket))) << b.name;
    }
  }
}

TEST(Run, CommandLineNamesEveryOption) {
  Options o;
  o.seed = 42;
  o.seconds = 2.5;
  o.threads = 3;
  o.memory_mib = 32;
  o.swap_mib = 0;
  o.nodes = 3;
  EXPECT_EQ(command_line(o), "mirrormm run --seed 42 --seconds 2.5 --threads 3 --memory 32 --swap 0 --nodes 3");
  o.debug_break = "clear-bracket";
  EXPECT_EQ(command_line(o),
            "mirrormm run --seed 42 --seconds 2.5 --threads 3 --memory 32 --swap 0 --nodes 3 --debug-break clear-bracket");
}

TEST(Run, DescribeSaysWhatRuns) {
  Options o;
  EXPECT_EQ(describe(o).substr(0, describe(o).find('\n')),
            "mirrormm run: 4 CPUs for 10 s, seed 1; 64 MiB of memory, 256 MiB of swap, 2 NUMA nodes with page migration");
  EXPECT_THAT(describe(o), ::testing::Not(HasSubstr("broken")));
  o.swap_mib = 0;
  o.debug_break = "shootdown";
  o.nodes = 1;
  EXPECT_THAT(describe(o), HasSubstr("64 MiB of memory, no swap, one NUMA node\n"));
  EXPECT_THAT(describe(o), ::testing::EndsWith("\nkernel deliberately broken: shootdown"));
}

stress::Report sample_report() {
  stress::Report r;
  r.seconds = 2;
  r.ops = 1000;
  r.pgfault = 300;
  r.interval_mirrors.attached = 3;
  r.interval_mirrors.invalidations = 7;
  r.interval_mirrors.retries = 2;
  r.interval_mirrors.by_event[static_cast<int>(MmuNotifyEvent::kUnmap)] = 5;
  r.interval_mirrors.by_event[static_cast<int>(MmuNotifyEvent::kRelease)] = 2;
  r.classic_mirrors.attached = 1;
  r.classic_mirrors.invalidations = 4;
  r.classic_mirrors.by_event[static_cast<int>(MmuNotifyEvent::kUnmap)] = 4;
  r.pswpout = 11;
  r.pswpin = 9;
  r.migrate_calls = 3;
  r.pgmigrate_success = 40;
  return r;
}

TEST(Run, SummaryTabulatesTheRun) {
  const std::string out = summary(Options{}, sample_report());
  EXPECT_THAT(out, ::testing::ContainsRegex("\n  operations +1000 +500\n"));  // total and per second
  EXPECT_THAT(out, ::testing::ContainsRegex("\n  CPU page faults +300 +150\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("secondary MMUs \\(by subscriber\\) +interval +classic +total\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("\n  read_retry collisions +2 +0 +2\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("\n  invalidations +7 +4 +11\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("\n    unmap +5 +4 +9\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("\n    release +2 +0 +2\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("protection_vma")));  // events nobody received
  EXPECT_THAT(out, ::testing::ContainsRegex("\n  pages swapped out \\(pswpout\\) +11\n"));
  EXPECT_THAT(out, ::testing::ContainsRegex("\n  pages migrated \\(pgmigrate_success\\) +40\n"));
  EXPECT_THAT(out, HasSubstr("checkers: no violation"));
  EXPECT_THAT(out, ::testing::EndsWith("\nviolations: 0\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("reproduce:")));
}

TEST(Run, SummaryOfViolationsReproduces) {
  stress::Report r = sample_report();
  r.violations = 25;
  r.kinds = {{"stale TLB entry", 25}};
  for (int i = 0; i < 20; i++) r.messages.push_back("violation " + std::to_string(i));
  Options o;
  o.seed = 9;
  o.debug_break = "shootdown";
  const std::string out = summary(o, r);
  EXPECT_THAT(out, ::testing::ContainsRegex("\n +25  stale TLB entry\n"));
  EXPECT_THAT(out, HasSubstr("  violation 9\n"));
  EXPECT_THAT(out, ::testing::Not(HasSubstr("violation 10\n")));  // the first ten
  EXPECT_THAT(out, HasSubstr("(15 more not shown)"));
  EXPECT_THAT(out, HasSubstr("reproduce: " + command_line(o) + "\n"));
  EXPECT_THAT(out, ::testing::EndsWith("\nviolations: 25\n"));
}

TEST(Run, ProgressFitsItsWidth) {
  stress::Progress p;
  p.seconds = 5;
  p.ops = 123456;
  const std::string bar = progress_bar(p, 10, 80);
  EXPECT_LE(bar.size(), 80u);
  EXPECT_THAT(bar, ::testing::StartsWith("["));
  const size_t filled = bar.find_first_not_of('#', 1) - 1, len = bar.find(']') - 1;
  EXPECT_EQ(filled * 2, len) << bar;  // half the time, half the bar
  EXPECT_THAT(progress_line(p, 10), HasSubstr("ops 123456"));
}

}  // namespace
}  // namespace mirrormm::run
