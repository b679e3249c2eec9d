// The tests' own hang detectors (tests/support/watchdog.h): a hang ends the binary with a
// message naming what hung, and nothing fires while progress is made in time.
#include "support/watchdog.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

namespace mirrormm::testing {
namespace {

using namespace std::chrono_literals;

const bool kWatchdog = install_test_watchdog(scaled(60s));

// The death tests re-run this binary for the child (the parent has watchdog threads, which
// fork would not copy).
class WatchdogDeathTest : public ::testing::Test {
 protected:
  WatchdogDeathTest() { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(WatchdogDeathTest, HangAbortsWithWhatHung) {
  EXPECT_DEATH(
      {
        Watchdog w("a deliberate hang", 50ms);
        std::this_thread::sleep_for(20s);
      },
      "FATAL: a deliberate hang did not finish within 50 ms \\(hang\\)");
}

TEST_F(WatchdogDeathTest, TestListenerNamesTheHungTest) {
  EXPECT_DEATH(
      {
        TestWatchdog listener(50ms);
        listener.OnTestStart(*::testing::UnitTest::GetInstance()->current_test_info());
        std::this_thread::sleep_for(20s);
      },
      "FATAL: WatchdogDeathTest.TestListenerNamesTheHungTest did not finish within 50 ms \\(hang\\)");
}

TEST_F(WatchdogDeathTest, BoundedJoinOfAStuckThreadAborts) {
  EXPECT_DEATH(
      {
        BoundedThread t([] { std::this_thread::sleep_for(20s); });
        t.join("a stuck thread", 50ms);
      },
      "FATAL: a stuck thread did not finish within 50 ms \\(hang\\)");
}

// Kicked more often than its limit, a watchdog outlives many limits without firing (a firing
// one would end this binary).
TEST(Watchdog, KickedInTimeDoesNotFire) {
  Watchdog w("a kicked watchdog", 300ms);
  for (int i = 0; i < 12; i++) {
    std::this_thread::sleep_for(50ms);
    w.kick();
  }
}

TEST(Watchdog, FinishedThreadJoinsWithinItsBound) {
  BoundedThread t([] {});
  t.join("a thread with nothing to do", 10s);
  EXPECT_TRUE(t.done());
}

}  // namespace
}  // namespace mirrormm::testing
