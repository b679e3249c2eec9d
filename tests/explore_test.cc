// The interleaving explorer (src/explore/): the baton scheduler's determinism, preemption
// counting and deadlock detection, and every catalog scenario found with its bug and clean
// without it.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "mirrormm/base/locking.h"
#include "mirrormm/base/rcu.h"
#include "mirrormm/bugs.h"
#include "mirrormm/explore.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

using explore::Instance;
using explore::Scenario;

// Two threads that each read a shared counter, reach a scheduling point and write it back
// incremented: a lost update unless `locked`.
Scenario counter_race(bool locked, int points_before = 0) {
  Scenario s;
  s.name = locked ? "locked-counter" : "counter";
  s.check_consistency = false;
  s.setup = [locked, points_before](System&) {
    struct Shared {
      Mutex lock;
      int value = 0;
    };
    auto sh = std::make_shared<Shared>();
    auto bump = [sh] {
      const int v = sh->value;
      explore::point();
      sh->value = v + 1;
    };
    auto body = [sh, locked, points_before, bump] {
      for (int i = 0; i < points_before; i++) explore::point();
      if (!locked) return bump();
      MutexGuard g(sh->lock);
      bump();
    };
    Instance in;
    in.threads = {body, body};
    in.check = [sh] { return sh->value == 2 ? std::string() : "lost update: " + std::to_string(sh->value); };
    return in;
  };
  return s;
}

TEST(ExploreSchedule, CompactFormRoundTrips) {
  std::vector<int> c;
  std::string error;
  ASSERT_TRUE(explore::parse_schedule("0*5,1*3,0*2", &c, &error)) << error;
  EXPECT_EQ(c, (std::vector<int>{0, 0, 0, 0, 0, 1, 1, 1, 0, 0}));
  EXPECT_EQ(explore::format_schedule(c), "0*5,1*3,0*2");
  ASSERT_TRUE(explore::parse_schedule("1,0*2", &c, &error));
  EXPECT_EQ(c, (std::vector<int>{1, 0, 0}));
  ASSERT_TRUE(explore::parse_schedule("", &c, &error));
  EXPECT_TRUE(c.empty());
  for (const char* bad : {"x", "0*", "0*0", "-1", "0,", "0**2", ",1"})
    EXPECT_FALSE(explore::parse_schedule(bad, &c, &error)) << bad;
}

TEST(ExploreScheduler, WithoutPreemptionEachThreadRunsToTheEnd) {
  explore::Options o;
  o.preemption_bound = 0;
  const explore::Result r = explore::explore(counter_race(false), o);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.schedules, 2u);  // which thread starts; no switch anywhere else
  EXPECT_EQ(r.failures, 0u);
}

TEST(ExploreScheduler, OnePreemptionFindsTheLostUpdate) {
  explore::Options o;
  o.preemption_bound = 1;
  const explore::Result r = explore::explore(counter_race(false), o);
  ASSERT_EQ(r.failures, 1u);
  EXPECT_NE(r.first_failure.failure.find("lost update"), std::string::npos);
  EXPECT_EQ(r.first_failure.preemptions, 1);
  // The printed schedule replays the failure exactly, twice.
  for (int i = 0; i < 2; i++) {
    const explore::RunResult again = explore::replay(counter_race(false), r.first_failure.schedule);
    EXPECT_EQ(again.failure, r.first_failure.failure);
    EXPECT_EQ(again.schedule, r.first_failure.schedule);
  }
}

TEST(ExploreScheduler, PreemptionBoundCountsOnlySwitchesAwayFromARunnableThread) {
  // Each thread: k points, the read, a point, the write, its exit. More points, more places
  // to preempt; each bound includes the previous one's schedules.
  uint64_t last = 0;
  for (int bound = 0; bound <= 2; bound++) {
    explore::Options o;
    o.preemption_bound = bound;
    o.stop_on_failure = false;
    const explore::Result r = explore::explore(counter_race(false, 2), o);
    EXPECT_TRUE(r.complete);
    EXPECT_GT(r.schedules, last) << bound;
    last = r.schedules;
    if (bound == 0) EXPECT_EQ(r.failures, 0u);
    else EXPECT_GT(r.failures, 0u);
  }
  // A switch because a thread blocked is free: with the lock, bound 0 still runs both
  // orders and bound 2 finds nothing.
  explore::Options o;
  o.preemption_bound = 2;
  const explore::Result locked = explore::explore(counter_race(true, 1), o);
  EXPECT_TRUE(locked.complete);
  EXPECT_EQ(locked.failures, 0u);
  EXPECT_GT(locked.schedules, 2u);
  // The cap stops the search early.
  o.max_schedules = 3;
  const explore::Result capped = explore::explore(counter_race(true, 1), o);
  EXPECT_EQ(capped.schedules, 3u);
  EXPECT_FALSE(capped.complete);
}

// A wait loop that looked at its condition, was switched out before it waited, and missed
// the change while another thread made it and finished: its wait must not block (nobody is
// left to wake it), it looks again. Every interleaving ends with the loop done.
TEST(ExploreScheduler, AWaitAfterTheAwaitedChangeLooksAgain) {
  Scenario s;
  s.name = "late-wait";
  s.check_consistency = false;
  s.setup = [](System&) {
    auto flag = std::make_shared<std::atomic<bool>>(false);
    auto done = std::make_shared<bool>(false);
    Instance in;
    in.threads = {[flag, done] {
                    for (;;) {
                      const bool seen = flag->load();
                      explore::point();  // a switch may come between the look and the wait
                      if (seen) break;
                      explore_hook::wait_yield();
                    }
                    *done = true;
                  },
                  [flag] {
                    explore::point();
                    flag->store(true);
                  }};
    in.check = [done] { return *done ? std::string() : "the waiter did not finish"; };
    return in;
  };
  explore::Options o;
  o.stop_on_failure = false;
  const explore::Result r = explore::explore(s, o);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.failures, 0u) << r.first_failure.failure << " at " << r.first_failure.schedule;
  EXPECT_GT(r.schedules, 2u);
}

TEST(ExploreScheduler, SameScheduleSameTrace) {
  const explore::RunResult a = explore::replay(counter_race(true, 2), "0*3,1*2", true);
  const explore::RunResult b = explore::replay(counter_race(true, 2), "0*3,1*2", true);
  ASSERT_FALSE(a.trace.empty());
  ASSERT_EQ(a.trace.size(), b.trace.size());
  for (size_t i = 0; i < a.trace.size(); i++) {
    EXPECT_EQ(a.trace[i].thread, b.trace[i].thread) << i;
    EXPECT_STREQ(a.trace[i].kind, b.trace[i].kind) << i;
    EXPECT_EQ(a.trace[i].chosen, b.trace[i].chosen) << i;
  }
  EXPECT_EQ(a.schedule, b.schedule);
  // The run followed the given choices, then let thread 1 continue.
  std::vector<int> ran;
  std::string error;
  ASSERT_TRUE(explore::parse_schedule(a.schedule, &ran, &error)) << error;
  ASSERT_GE(ran.size(), 6u);
  EXPECT_EQ(std::vector<int>(ran.begin(), ran.begin() + 6), (std::vector<int>{0, 0, 0, 1, 1, 1})) << a.schedule;
  // A schedule naming a thread that cannot run there is a divergence, not a silent run.
  const explore::RunResult bad = explore::replay(counter_race(true, 2), "0*1,7", false);
  EXPECT_TRUE(bad.diverged);
  EXPECT_NE(bad.failure.find("diverged"), std::string::npos);
}

TEST(ExploreScheduler, OppositeLockOrdersDeadlock) {
  Scenario s;
  s.name = "abba";
  s.check_consistency = false;
  s.setup = [](System&) {
    struct Locks {
      Mutex a, b;
    };
    auto l = std::make_shared<Locks>();
    Instance in;
    in.threads = {[l] {
                    MutexGuard ga(l->a);
                    MutexGuard gb(l->b);
                  },
                  [l] {
                    MutexGuard gb(l->b);
                    MutexGuard ga(l->a);
                  }};
    return in;
  };
  const explore::Result r = explore::explore(s, explore::Options{});
  ASSERT_EQ(r.failures, 1u);
  EXPECT_NE(r.first_failure.failure.find("deadlock"), std::string::npos) << r.first_failure.failure;
  EXPECT_EQ(explore::replay(s, r.first_failure.schedule).failure, r.first_failure.failure);
}

TEST(ExploreScheduler, SynchronizeRcuWaitsForScenarioReaders) {
  Scenario s;
  s.name = "rcu";
  s.check_consistency = false;
  s.setup = [](System&) {
    struct Shared {
      std::atomic<int*> ptr{new int(1)};
      bool freed_under_reader = false;
      bool freed = false;
    };
    auto sh = std::make_shared<Shared>();
    Instance in;
    in.threads = {[sh] {
                    RcuReadGuard g;
                    int* p = sh->ptr.load();
                    explore::point();
                    if (p && sh->freed) sh->freed_under_reader = true;
                  },
                  [sh] {
                    int* old = sh->ptr.exchange(nullptr);
                    rcu_synchronize();
                    sh->freed = true;
                    delete old;
                  }};
    in.check = [sh] { return sh->freed_under_reader ? "freed under a reader" : ""; };
    return in;
  };
  const explore::Result r = explore::explore(s, explore::Options{});
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.failures, 0u) << r.first_failure.failure << " at " << r.first_failure.schedule;
  EXPECT_GT(r.schedules, 2u);
}

// ---- scenario scripts ----

TEST(ExploreScript, BlockErrorsNameTheirLine) {
  const std::pair<const char*, const char*> bad[] = {
      {"thread\nmaps\nthread\n", "t.mms:3: thread inside a thread block (a missing end?)"},
      {"maps\nend\n", "t.mms:2: end without thread"},
      {"thread\nmaps\n", "t.mms:2: thread block without end"},
      {"maps\n", "t.mms:1: no thread block: a scenario needs at least one `thread` … `end`"},
      {"expect maps == none\nthread\nmaps\nend\n", "t.mms:1: expect before any thread block"},
      {"thread\nmaps\nend\nmaps\n", "t.mms:4: only expect lines may follow the thread blocks"},
      {"thread\nmaps\nend\nexpect maps\n", "t.mms:4: expect: expected `expect COMMAND == RESULT`"},
      {"thread\nhmm open 0\nend\n", "t.mms:2: hmm open belongs to the setup, not to a thread block"},
      {"thread\nmunmap 0x1000\nend\n", "t.mms:2: "},  // the command's own parse error
      {"thread\nend\n", "t.mms:1: thread block 0 has no command"},
  };
  for (const auto& [text, message] : bad) {
    std::string error;
    EXPECT_FALSE(explore::parse_scenario(text, "t.mms", "", &error).has_value()) << text;
    EXPECT_EQ(error.rfind(message, 0), 0u) << text << " gave " << error;
  }
}

TEST(ExploreScript, ExpectLinesJudgeEveryRun) {
  // Two threads write different seeds to one page: every run is clean by the checkers, and
  // an expect line that no outcome meets fails the first run, naming its line.
  const char* text =
      "mmap 0x200000000000 4K rw- private+anon+fixed\n"
      "thread\n  write 0x200000000000 4K 1\nend\n"
      "thread\n  write 0x200000000000 4K 2\nend\n"
      "expect check == ok\n";
  std::string error;
  auto s = explore::parse_scenario(text, "w.mms", "", &error);
  ASSERT_TRUE(s.has_value()) << error;
  const explore::Result clean = explore::explore(*s, explore::Options{});
  EXPECT_TRUE(clean.complete);
  EXPECT_EQ(clean.failures, 0u) << clean.first_failure.failure;
  const std::string racy = std::string(text) + "expect read 0x200000000000 4K == SEGV\n";
  auto r = explore::parse_scenario(racy, "w.mms", "", &error);
  ASSERT_TRUE(r.has_value()) << error;
  const explore::Result found = explore::explore(*r, explore::Options{});
  ASSERT_EQ(found.failures, 1u);
  EXPECT_EQ(found.first_failure.failure.rfind("w.mms:9: expect read 0x200000000000 4K: got \"fnv:", 0), 0u)
      << found.first_failure.failure;
}

TEST(ExploreScript, TheSuiteIsClean) {
  for (const char* name :
       {"shadow_fault_vs_zap", "interval_remove_vs_invalidate", "exit_vs_unregister", "stepped_fault_vs_zap",
        "interval_insert_vs_invalidate", "shmem_fault_vs_punch_hole"}) {
    SCOPED_TRACE(name);
    std::string error;
    auto s = explore::parse_scenario_file(std::string(MIRRORMM_SOURCE_DIR) + "/tests/scenarios-explore/" + name + ".mms",
                                          "", &error);
    ASSERT_TRUE(s.has_value()) << error;
    const explore::Result r = explore::explore(*s, explore::Options{});
    EXPECT_TRUE(r.complete);
    EXPECT_EQ(r.failures, 0u) << r.first_failure.failure << " at " << r.first_failure.schedule;
    EXPECT_GT(r.schedules, 10u);
  }
}

// The stepped fault of stepped_fault_vs_zap.mms, with the install that skips read_retry: some
// interleaving puts the zap between the walk and the install, and the checker reports the
// mapping; the printed schedule replays it.
TEST(ExploreScript, SteppedFaultWithoutReadRetryIsCaught) {
  std::ifstream f(std::string(MIRRORMM_SOURCE_DIR) + "/tests/scenarios-explore/stepped_fault_vs_zap.mms");
  std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const size_t at = text.find("  dev map d\n");
  ASSERT_NE(at, std::string::npos);
  text.replace(at, 12, "  dev map d unchecked\n");
  std::string error;
  auto s = explore::parse_scenario(text, "unchecked.mms", "", &error);
  ASSERT_TRUE(s.has_value()) << error;
  const explore::Result r = explore::explore(*s, explore::Options{});
  ASSERT_EQ(r.failures, 1u);
  EXPECT_NE(r.first_failure.failure.find("\"mapping over a different PTE\""), std::string::npos)
      << r.first_failure.failure;
  const explore::RunResult again = explore::replay(*s, r.first_failure.schedule, false, explore::Options{});
  EXPECT_EQ(again.failure, r.first_failure.failure);
}

// ---- the catalog scenarios ----

class ExploreCatalog : public ::testing::TestWithParam<std::string> {};

TEST_P(ExploreCatalog, FoundWithTheBugAndReplayed) {
  const bugs::Bug* bug = bugs::find_bug(GetParam());
  ASSERT_NE(bug, nullptr);
  auto s = explore::bug_scenario(GetParam(), true);
  ASSERT_NE(s, nullptr);
  explore::Options o;
  o.preemption_bound = s->preemption_bound;
  const explore::Result r = explore::explore(*s, o);
  ASSERT_EQ(r.failures, 1u) << r.schedules << " schedules";
  const explore::RunResult& f = r.first_failure;
  // The report names one of the entry's violation kinds.
  bool named = false;
  for (const std::string& k : bug->caught) named |= f.failure.find("\"" + k + "\"") != std::string::npos;
  EXPECT_TRUE(named) << f.failure;
  const explore::RunResult again = explore::replay(*s, f.schedule, false, o);
  EXPECT_FALSE(again.diverged) << again.failure;
  EXPECT_EQ(again.failure, f.failure);
  EXPECT_EQ(again.schedule, f.schedule);
}

TEST_P(ExploreCatalog, CleanWithoutTheBug) {
  auto s = explore::bug_scenario(GetParam(), false);
  ASSERT_NE(s, nullptr);
  explore::Options o;
  o.preemption_bound = s->preemption_bound;
  const explore::Result r = explore::explore(*s, o);
  EXPECT_TRUE(r.complete);
  EXPECT_EQ(r.failures, 0u) << r.first_failure.failure << " at " << r.first_failure.schedule;
  EXPECT_GT(r.schedules, 1u);
}

INSTANTIATE_TEST_SUITE_P(Catalog, ExploreCatalog, ::testing::ValuesIn(explore::bug_scenarios()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n;
                           for (char c : i.param) n += c == '-' ? '_' : c;
                           return n;
                         });

}  // namespace
}  // namespace mirrormm
