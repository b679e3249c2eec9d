// The concurrent stress workload and its checkers.
#include <gtest/gtest.h>

#include "mirrormm/stress.h"

namespace mirrormm::stress {
namespace {

TEST(Stress, ConcurrentWorkloadHasNoViolations) {
  Options o;
  o.threads = 4;
  o.seconds = 3;
  o.seed = 7;
  Report r = run(o);
  EXPECT_GT(r.accesses, 100u);  // low bars: CI machines may be loaded
  EXPECT_GT(r.syscalls, 100u);
  EXPECT_GT(r.checks, 1u);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
}

TEST(Stress, BrokenShootdownIsCaught) {
  Options o;
  o.threads = 4;
  o.seconds = 2;
  o.seed = 1;
  o.break_shootdown = true;
  Report r = run(o);
  EXPECT_GT(r.violations, 0u);
}

}  // namespace
}  // namespace mirrormm::stress
