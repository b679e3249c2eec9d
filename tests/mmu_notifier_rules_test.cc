// The notifier core's defences against broken subscribers and broken kernels: a blockable
// invalidate_range_start that fails is warned about and ignored (the caller goes on, as Linux
// does), and a change of the interval tree while invalidations walk it (frozen) is reported
// and refused rather than corrupting the walk. Each test ends in a report, never a crash or a
// hang; waits are bounded.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/mm_types.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

using namespace std::chrono_literals;
using mirrormm::testing::BoundedThread;

constexpr uint64_t P = 4096;
constexpr uint64_t W = 0x200000000000ull;
constexpr uint64_t RW = kProtRead | kProtWrite;
constexpr uint64_t PRIV_POP = kMapPrivate | kMapAnonymous | kMapFixed | kMapPopulate;

bool any_message_contains(System& sys, const std::string& what) {
  auto msgs = sys.violation_messages();
  return std::any_of(msgs.begin(), msgs.end(), [&](const std::string& m) { return m.find(what) != std::string::npos; });
}

// ---- a classic subscriber whose start fails and that has no end ----

std::atomic<int> g_failing_starts{0};
int failing_start(MmuNotifier*, const MmuNotifierRange*) {
  g_failing_starts++;
  return -static_cast<int>(Errno::kAgain);
}
const MmuNotifierOps kFailingOps = {.invalidate_range_start = failing_start};

// A well-behaved subscriber counting its starts and ends.
struct Counting : MmuNotifier {
  std::atomic<int> starts{0}, ends{0};
};
int counting_start(MmuNotifier* s, const MmuNotifierRange*) {
  static_cast<Counting*>(s)->starts++;
  return 0;
}
void counting_end(MmuNotifier* s, const MmuNotifierRange*) { static_cast<Counting*>(s)->ends++; }
const MmuNotifierOps kCountingOps = {.invalidate_range_start = counting_start,
                                     .invalidate_range_end = counting_end};

TEST(MmuNotifierRules, BlockableStartFailureIsWarnedAndTheCallGoesOn) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, 4 * P, RW, PRIV_POP).ok());
  MmuNotifier failing;
  failing.ops = &kFailingOps;
  Counting counting;
  counting.ops = &kCountingOps;
  ASSERT_EQ(mmu_notifier_register(&counting, p->mm()), Errno::kOk);
  ASSERT_EQ(mmu_notifier_register(&failing, p->mm()), Errno::kOk);
  const int before = g_failing_starts.load();
  // munmap's range is blockable: the failure cannot stop it.
  ASSERT_TRUE(sys.munmap(p, W, 2 * P).ok());
  EXPECT_GT(g_failing_starts.load(), before);
  EXPECT_TRUE(any_message_contains(sys, "on a blockable range"));
  // The other subscriber saw one start and exactly one end: no early end, no double end.
  EXPECT_EQ(counting.starts.load(), 1);
  EXPECT_EQ(counting.ends.load(), 1);
  // The memory is really gone and the rest still works.
  std::vector<uint8_t> vec;
  EXPECT_EQ(sys.mincore(p, W, 2 * P, &vec).error(), Errno::kNoMem);
  EXPECT_TRUE(sys.mprotect(p, W + 2 * P, 2 * P, kProtRead).ok());
  EXPECT_EQ(counting.starts.load(), counting.ends.load());
  mmu_notifier_unregister(&failing, p->mm());
  mmu_notifier_unregister(&counting, p->mm());
}

// ---- an interval notifier that blocks inside its invalidation ----

struct Blocking : MmuIntervalNotifier {
  std::mutex mu;
  std::condition_variable cv;
  bool armed = false, entered = false, open = false;
};
bool blocking_invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange*, uint64_t cur_seq) {
  auto* b = static_cast<Blocking*>(sub);
  std::unique_lock<std::mutex> l(b->mu);
  mmu_interval_set_seq(sub, cur_seq);
  if (!b->armed) return true;
  b->entered = true;
  b->cv.notify_all();
  b->cv.wait(l, [&] { return b->open; });
  return true;
}
const MmuIntervalNotifierOps kBlockingOps = {.invalidate = blocking_invalidate};

bool plain_invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange*, uint64_t cur_seq) {
  mmu_interval_set_seq(sub, cur_seq);
  return true;
}
const MmuIntervalNotifierOps kPlainOps = {.invalidate = plain_invalidate};

// With the switch that lets inserts enter a frozen tree, the insert is reported (naming the
// frozen tree) and deferred as the protocol requires, so the walk in progress is undisturbed
// and the new interval behaves as a deferred insert.
TEST(MmuNotifierRules, InsertIntoAFrozenTreeIsReportedAndDeferred) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, 8 * P, RW, PRIV_POP).ok());
  Blocking blocker;
  ASSERT_EQ(mmu_interval_notifier_insert(&blocker, p->mm(), W, 8 * P, &kBlockingOps), Errno::kOk);
  {
    std::lock_guard<std::mutex> g(blocker.mu);
    blocker.armed = true;
  }
  BoundedThread unmapper([&] { EXPECT_TRUE(sys.munmap(p, W, P).ok()); });
  {
    std::unique_lock<std::mutex> l(blocker.mu);
    ASSERT_TRUE(blocker.cv.wait_for(l, 10s, [&] { return blocker.entered; }));
  }
  sys.debug_break(System::DebugBreak::kInsertWhileFrozen, true);
  const uint64_t before = sys.violations();
  MmuIntervalNotifier late;
  ASSERT_EQ(mmu_interval_notifier_insert(&late, p->mm(), W + 4 * P, P, &kPlainOps), Errno::kOk);
  sys.debug_break(System::DebugBreak::kInsertWhileFrozen, false);
  EXPECT_GT(sys.violations(), before);
  EXPECT_TRUE(any_message_contains(sys, "interval tree changed while frozen"));
  EXPECT_EQ(late.state, MmuIntervalState::kInsertPending);
  {
    std::lock_guard<std::mutex> g(blocker.mu);
    blocker.open = true;
    blocker.armed = false;
    blocker.cv.notify_all();
  }
  unmapper.join("munmap");
  EXPECT_EQ(late.state, MmuIntervalState::kInTree);
  // The late interval now receives invalidations of its range.
  const uint64_t seq = mmu_interval_read_begin(&late);
  ASSERT_TRUE(sys.munmap(p, W + 4 * P, P).ok());
  EXPECT_TRUE(mmu_interval_read_retry(&late, seq));
  mmu_interval_notifier_remove(&late);
  EXPECT_EQ(late.state, MmuIntervalState::kIdle);
  mmu_interval_notifier_remove(&blocker);
}

// The lifecycle in the ordinary case: idle, in the tree, idle again, and reusable.
TEST(MmuNotifierRules, IntervalLifecycleStates) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, 2 * P, RW, PRIV_POP).ok());
  MmuIntervalNotifier n;
  EXPECT_EQ(n.state, MmuIntervalState::kIdle);
  ASSERT_EQ(mmu_interval_notifier_insert(&n, p->mm(), W, 2 * P, &kPlainOps), Errno::kOk);
  EXPECT_EQ(n.state, MmuIntervalState::kInTree);
  EXPECT_EQ(mmu_interval_notifier_insert(&n, p->mm(), W, 2 * P, &kPlainOps), Errno::kInval);
  mmu_interval_notifier_remove(&n);
  EXPECT_EQ(n.state, MmuIntervalState::kIdle);
  ASSERT_EQ(mmu_interval_notifier_insert(&n, p->mm(), W, P, &kPlainOps), Errno::kOk);
  EXPECT_EQ(n.state, MmuIntervalState::kInTree);
  mmu_interval_notifier_remove(&n);
}

}  // namespace
}  // namespace mirrormm
