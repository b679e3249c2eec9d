// The driver lock checker (base/driver_lock.h, src/base/driver_lockdep.cc): a driver lock taken
// in invalidate() and held across hmm_range_fault, a page allocation or read_begin is reported
// the first time both orders have been seen, by a single thread, without the deadlock having
// to happen; the driver loop of mirrormm/hmm.h is not reported.
#include "mirrormm/base/driver_lock.h"

#include "mirrormm/device_mirror.h"
#include "mirrormm/hmm.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

// An HMM driver whose invalidate() takes its update lock (as every HMM driver's must).
struct Driver {
  struct Sub : MmuIntervalNotifier {
    Driver* owner = nullptr;
  } sub;
  DriverLock update;
  explicit Driver(const char* name) : update(name) { sub.owner = this; }

  static bool invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* range, uint64_t cur_seq) {
    Driver* d = static_cast<Sub*>(s)->owner;
    if (!mmu_notifier_range_blockable(range)) return false;
    DriverLockGuard g(d->update);
    mmu_interval_set_seq(s, cur_seq);
    return true;
  }
};

const MmuIntervalNotifierOps kDriverOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &Driver::invalidate;
  return o;
}();

class DriverLockdepTest : public ModelTest {
 protected:
  void SetUp() override {
    // Death tests run the test again in a fresh process: nothing is shared with the parent.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    saved_ = lockdep::enabled.load();
    lockdep::enabled.store(true);
    mm_ = get_task_mm(p1());
    ASSERT_NE(mm_, nullptr);
    map(p1(), W, 8 * P);
  }
  void TearDown() override {
    mmput_ref(mm_);
    lockdep::enabled.store(saved_);
  }
  void insert(Driver* d) { ASSERT_EQ(mmu_interval_notifier_insert(&d->sub, mm_, W, 8 * P, &kDriverOps), Errno::kOk); }

  // The bad driver's fault: hmm_range_fault of the window's first page, read-faulting it, with
  // the update lock held across it (inside the mmap_lock, so that the only inversion is the
  // one through the invalidation callbacks).
  Errno range_fault_holding_update(Driver* d) {
    uint64_t pfn = 0;
    HmmRange range;
    range.notifier = &d->sub;
    range.notifier_seq = d->sub.invalidate_seq.load();  // the walk, not the protocol, is tested
    range.start = W;
    range.end = W + P;
    range.hmm_pfns = &pfn;
    range.default_flags = HMM_PFN_REQ_FAULT;
    mmap_read_lock(mm_);
    Errno e;
    {
      DriverLockGuard g(d->update);
      e = hmm_range_fault(&range);
    }
    mmap_read_unlock(mm_);
    return e;
  }
  // An invalidation of the window: its callbacks run, taking the update lock.
  void invalidate() {
    ASSERT_TRUE(fill(p1(), W, P, 1).ok());
    ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvDontneed).ok());
  }

  Mm* mm_ = nullptr;
  bool saved_ = false;
};

// The loop of mirrormm/hmm.h: the update lock only around read_retry and the device update.
TEST_F(DriverLockdepTest, TheDriverLoopIsNotReported) {
  Driver d("good driver update");
  insert(&d);
  for (int round = 0; round < 2; round++) {
    uint64_t pfns[2] = {0, 0};
    HmmRange range;
    range.notifier = &d.sub;
    range.start = W;
    range.end = W + 2 * P;
    range.hmm_pfns = pfns;
    range.default_flags = HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE;
    Errno e;
    do {
      range.notifier_seq = mmu_interval_read_begin(&d.sub);
      mmap_read_lock(mm_);
      e = hmm_range_fault(&range);
      mmap_read_unlock(mm_);
      if (e != Errno::kOk) continue;
      DriverLockGuard g(d.update);
      if (mmu_interval_read_retry(&d.sub, range.notifier_seq)) e = Errno::kBusy;
    } while (e == Errno::kBusy);
    EXPECT_EQ(e, Errno::kOk);
    invalidate();  // then the callback takes the lock: the same order as always
    // Allocating with the lock released is fine too.
    Page* page = sys().mem().alloc_page(Zero::kNo, Gfp::kUser);
    ASSERT_NE(page, nullptr);
    sys().mem().put_page(page);
  }
  mmu_interval_notifier_remove(&d.sub);
}

// DeviceMirror follows the loop: its faults, invalidations and DMA are not reported.
TEST_F(DriverLockdepTest, DeviceMirrorIsNotReported) {
  Result<std::unique_ptr<DeviceMirror>> m = DeviceMirror::attach(p1(), DeviceMirror::Mode::kInterval);
  ASSERT_TRUE(m.ok());
  Result<uint64_t> r = m.value()->fault(W, 4 * P, true);
  ASSERT_TRUE(r.ok() && r.value() == 4u);
  std::vector<uint8_t> out;
  EXPECT_TRUE(m.value()->read(W, 16, &out));
  invalidate();
  r = m.value()->fault(W, 4 * P, false);
  ASSERT_TRUE(r.ok() && r.value() == 4u);
  m.value()->detach();
}

// Held across hmm_range_fault first, taken in invalidate() second: reported at the
// invalidation, by the only thread there is.
TEST_F(DriverLockdepTest, HeldAcrossHmmRangeFaultThenTakenInInvalidateIsReported) {
  EXPECT_DEATH(
      {
        Driver d("bad driver update A");
        insert(&d);
        (void)range_fault_holding_update(&d);
        invalidate();
      },
      "possible circular locking dependency: taking bad driver update A at driver_lockdep_test.cc:[0-9]+ while "
      "holding mmu_notifier_invalidate_range_start");
}

// The other way round: taken in invalidate() first, then held across hmm_range_fault.
TEST_F(DriverLockdepTest, TakenInInvalidateThenHeldAcrossHmmRangeFaultIsReported) {
  EXPECT_DEATH(
      {
        Driver d("bad driver update B");
        insert(&d);
        invalidate();
        (void)range_fault_holding_update(&d);
      },
      "possible circular locking dependency: taking fs_reclaim at hmm.cc:[0-9]+ while holding bad driver update B "
      "\\(taken at driver_lockdep_test.cc:[0-9]+\\)");
}

// A page allocation that may reclaim, under a lock invalidate() takes.
TEST_F(DriverLockdepTest, HeldAcrossAReclaimingAllocationIsReported) {
  EXPECT_DEATH(
      {
        Driver d("bad driver update C");
        insert(&d);
        invalidate();
        DriverLockGuard g(d.update);
        Page* page = sys().mem().alloc_page(Zero::kNo, Gfp::kUser);
        sys().mem().put_page(page);
      },
      "taking fs_reclaim at physmem.cc:[0-9]+ while holding bad driver update C.*the opposite order was seen "
      "before:.*fs_reclaim -> mmu_notifier_invalidate_range_start at mmu_notifier.cc:[0-9]+.*"
      "mmu_notifier_invalidate_range_start -> bad driver update C at driver_lockdep_test.cc:[0-9]+");
}

// read_begin waits for invalidate() callbacks: not under their lock.
TEST_F(DriverLockdepTest, ReadBeginUnderTheUpdateLockIsReported) {
  EXPECT_DEATH(
      {
        Driver d("bad driver update D");
        insert(&d);
        invalidate();
        DriverLockGuard g(d.update);
        (void)mmu_interval_read_begin(&d.sub);
      },
      "taking mmu_notifier_invalidate_range_start at mmu_notifier.cc:[0-9]+ while holding bad driver update D");
}

// Two driver classes in both orders, with no VM involved.
TEST_F(DriverLockdepTest, TwoDriverLocksInBothOrdersAreReported) {
  DriverLock a("driver lock E1");
  DriverLock b("driver lock E2");
  {
    DriverLockGuard ga(a);
    DriverLockGuard gb(b);
  }
  EXPECT_DEATH(
      {
        DriverLockGuard gb(b);
        DriverLockGuard ga(a);
      },
      "taking driver lock E1 at .* while holding driver lock E2.*driver lock E1 -> driver lock E2 at "
      "driver_lockdep_test.cc:[0-9]+, while holding driver lock E1 at driver_lockdep_test.cc:[0-9]+");
  // The order seen first stays allowed.
  DriverLockGuard ga(a);
  DriverLockGuard gb(b);
}

TEST_F(DriverLockdepTest, TryLockAddsNoOrderAndRecursionIsReported) {
  DriverLock a("driver lock F1");
  DriverLock b("driver lock F2");
  {
    DriverLockGuard ga(a);
    DriverLockGuard gb(b);
  }
  {
    DriverLockGuard gb(b);
    if (a.try_lock()) {
      a.unlock();
    } else {
      ADD_FAILURE() << "an uncontended try_lock failed";
    }
  }
  DriverLock a2("driver lock F1");  // the same class
  EXPECT_DEATH(
      {
        DriverLockGuard g1(a);
        DriverLockGuard g2(a2);
      },
      "possible recursive locking: taking driver lock F1 at .* while holding driver lock F1");
}

}  // namespace
}  // namespace mirrormm::testing
