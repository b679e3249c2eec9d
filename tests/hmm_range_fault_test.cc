// hmm_range_fault (src/mm/hmm.cc): the hmm_pfns encoding, the request rules, the errors, the
// -EBUSY protocol, swap and migration entries, the zero page, COW, and one walk over several
// PTE tables and VMAs; and the address-space calls drivers make around it.
#include "mirrormm/hmm.h"

#include <condition_variable>
#include <mutex>
#include <thread>

#include "mirrormm/base/driver_lock.h"
#include "mm/migrate.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

// The layout of include/linux/hmm.h on a 64-bit machine.
static_assert(HMM_PFN_VALID == 1ull << 63 && HMM_PFN_WRITE == 1ull << 62 && HMM_PFN_ERROR == 1ull << 61);
static_assert(HMM_PFN_DMA_MAPPED == 1ull << 60 && HMM_PFN_P2PDMA == 1ull << 59 && HMM_PFN_P2PDMA_BUS == 1ull << 58);
static_assert(HMM_PFN_ORDER_SHIFT == 53 && HMM_PFN_FLAGS == 0xffe0000000000000ull);
static_assert(HMM_PFN_REQ_FAULT == HMM_PFN_VALID && HMM_PFN_REQ_WRITE == HMM_PFN_WRITE);

constexpr uint64_t kSpan = 64ull << 20;  // the interval the test driver mirrors: [W, W + kSpan)

// A minimal HMM driver: one interval notifier over the window, whose invalidate() takes the
// update lock and moves the sequence, counting the invalidations it saw.
struct TestMirror {
  struct Sub : MmuIntervalNotifier {
    TestMirror* owner = nullptr;
  } sub;
  DriverLock update{"hmm_range_fault_test update"};
  int invalidations GUARDED_BY(update) = 0;

  static bool invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* range, uint64_t cur_seq) {
    TestMirror* m = static_cast<Sub*>(s)->owner;
    if (!mmu_notifier_range_blockable(range)) return false;
    DriverLockGuard g(m->update);
    mmu_interval_set_seq(s, cur_seq);
    m->invalidations++;
    return true;
  }
  int seen() {
    DriverLockGuard g(update);
    return invalidations;
  }
};

const MmuIntervalNotifierOps kTestOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &TestMirror::invalidate;
  return o;
}();

class HmmRangeFaultTest : public ModelTest {
 protected:
  explicit HmmRangeFaultTest(SystemConfig c = SystemConfig{}) : ModelTest(c) {}
  void SetUp() override {
    mm_ = get_task_mm(p1());
    ASSERT_NE(mm_, nullptr);
    mirror_.sub.owner = &mirror_;
    ASSERT_EQ(mmu_interval_notifier_insert(&mirror_.sub, mm_, W, kSpan, &kTestOps), Errno::kOk);
  }
  void TearDown() override {
    if (!mm_) return;  // the test dropped them itself
    mmu_interval_notifier_remove(&mirror_.sub);
    mmput_ref(mm_);
  }

  // One hmm_range_fault of [start, start + pfns->size() pages) with the sequence read just
  // before, under the mmap_lock for read. pfns holds the requests and receives the results.
  Errno hmm_once(uint64_t start, std::vector<uint64_t>* pfns, uint64_t default_flags, uint64_t mask) {
    HmmRange range;
    range.notifier = &mirror_.sub;
    range.notifier_seq = mmu_interval_read_begin(&mirror_.sub);
    range.start = start;
    range.end = start + pfns->size() * P;
    range.hmm_pfns = pfns->data();
    range.default_flags = default_flags;
    range.pfn_flags_mask = mask;
    mmap_read_lock(mm_);
    Errno e = hmm_range_fault(&range);
    mmap_read_unlock(mm_);
    return e;
  }
  // The driver loop around it: -EBUSY (counted in busy_) starts again with the requests.
  Errno hmm(uint64_t start, std::vector<uint64_t>* pfns, uint64_t default_flags, uint64_t mask = 0) {
    const std::vector<uint64_t> requests = *pfns;
    Errno e;
    while ((e = hmm_once(start, pfns, default_flags, mask)) == Errno::kBusy && busy_ < 100) {
      busy_++;
      *pfns = requests;
    }
    return e;
  }
  // The same for n pages with every request empty.
  std::vector<uint64_t> snapshot(uint64_t start, uint64_t n, uint64_t default_flags, Errno expect = Errno::kOk) {
    std::vector<uint64_t> pfns(n, 0);
    EXPECT_EQ(hmm(start, &pfns, default_flags), expect);
    return pfns;
  }
  void set_vma_flags(uint64_t addr, vm_flags_t set, vm_flags_t clear) {
    Mm* mm = p1()->mm();
    MmapWriteGuard g(mm);
    Vma* vma = mm->vma_lookup(addr);
    vma_set_flags(vma, (vma->vm_flags | set) & ~clear);
  }
  uint64_t pfn_of(uint64_t addr) { return pte_pfn(pte_at(p1(), addr)); }
  uint64_t zero_pfn() { return sys().mem().zero_pfn(); }

  Mm* mm_ = nullptr;
  TestMirror mirror_;
  int busy_ = 0;
};

TEST_F(HmmRangeFaultTest, WithoutRequestsItOnlyReportsWhatIsMapped) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W + P, 1, 7).ok());
  ASSERT_TRUE(touch_read(p1(), W + 2 * P).ok());  // the zero page
  std::vector<uint64_t> pfns = snapshot(W, 4, 0);
  EXPECT_EQ(pfns[0], 0u);  // none: a fault could map it
  EXPECT_EQ(pfns[1], pfn_of(W + P) | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_EQ(pfns[2], zero_pfn() | HMM_PFN_VALID);  // the zero page is a normal read-only page
  EXPECT_EQ(pfns[3], 0u);
  EXPECT_EQ(hmm_pfn_to_pfn(pfns[1]), pfn_of(W + P));
  EXPECT_EQ(hmm_pfn_to_map_order(pfns[1]), 0u);
  EXPECT_EQ(mincore(p1(), W, 4 * P), "0110");  // nothing was faulted
}

TEST_F(HmmRangeFaultTest, DefaultFlagsFaultEveryPageAsAsked) {
  map(p1(), W, 3 * P);
  std::vector<uint64_t> pfns = snapshot(W, 3, HMM_PFN_REQ_FAULT);
  for (uint64_t p : pfns) EXPECT_EQ(p, zero_pfn() | HMM_PFN_VALID);  // read faults map the zero page
  pfns = snapshot(W, 3, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(pfns[i], pfn_of(W + i * P) | HMM_PFN_VALID | HMM_PFN_WRITE);
    EXPECT_NE(hmm_pfn_to_pfn(pfns[i]), zero_pfn());  // the write replaced the zero page
  }
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 3);
}

TEST_F(HmmRangeFaultTest, PerPageRequestsPassThroughTheMask) {
  map(p1(), W, 4 * P);
  std::vector<uint64_t> pfns = {0, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, HMM_PFN_REQ_WRITE};
  // A mask without REQ_FAULT honours none of them.
  std::vector<uint64_t> ignored = pfns;
  ASSERT_EQ(hmm(W, &ignored, 0, HMM_PFN_REQ_WRITE), Errno::kOk);
  EXPECT_EQ(ignored, std::vector<uint64_t>(4, 0));
  EXPECT_EQ(mincore(p1(), W, 4 * P), "0000");
  ASSERT_EQ(hmm(W, &pfns, 0, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE), Errno::kOk);
  EXPECT_EQ(pfns[0], 0u);                              // not asked: not faulted
  EXPECT_EQ(pfns[1], zero_pfn() | HMM_PFN_VALID);      // a read fault
  EXPECT_EQ(pfns[2], pfn_of(W + 2 * P) | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_EQ(pfns[3], 0u);                              // REQ_WRITE without REQ_FAULT asks nothing
  EXPECT_EQ(mincore(p1(), W, 4 * P), "0110");
  // default_flags apply to every page whatever the mask lets through.
  pfns.assign(4, 0);
  ASSERT_EQ(hmm(W, &pfns, HMM_PFN_REQ_FAULT, HMM_PFN_REQ_WRITE), Errno::kOk);
  for (uint64_t p : pfns) EXPECT_TRUE(p & HMM_PFN_VALID);
}

TEST_F(HmmRangeFaultTest, StickyBitsPassFromInputToOutput) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  std::vector<uint64_t> pfns = {HMM_PFN_DMA_MAPPED, HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS};
  ASSERT_EQ(hmm(W, &pfns, 0), Errno::kOk);
  EXPECT_EQ(pfns[0], HMM_PFN_DMA_MAPPED | pfn_of(W) | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_EQ(pfns[1], HMM_PFN_P2PDMA | HMM_PFN_P2PDMA_BUS);
}

TEST_F(HmmRangeFaultTest, HolesAndVmasThatCannotBeMirroredAreErrorsOrEfault) {
  map(p1(), W, P);
  map(p1(), W + 2 * P, P, kProtNone);
  // A snapshot marks them ERROR and goes on.
  std::vector<uint64_t> pfns = snapshot(W, 4, 0);
  EXPECT_EQ(pfns[0], 0u);
  EXPECT_EQ(pfns[1], HMM_PFN_ERROR);  // no VMA
  EXPECT_EQ(pfns[2], HMM_PFN_ERROR);  // PROT_NONE: no VM_READ
  EXPECT_EQ(pfns[3], HMM_PFN_ERROR);
  // Asking for any of them is -EFAULT; the pages before it hold their results.
  pfns = snapshot(W, 2, HMM_PFN_REQ_FAULT, Errno::kFault);
  EXPECT_EQ(pfns[0], zero_pfn() | HMM_PFN_VALID);
  (void)snapshot(W + 2 * P, 1, HMM_PFN_REQ_FAULT, Errno::kFault);
  // VM_IO and VM_PFNMAP VMAs have no pages a device could use.
  for (vm_flags_t special : {VM_IO, VM_PFNMAP}) {
    map(p1(), W + 8 * P, P);
    set_vma_flags(W + 8 * P, special, 0);
    EXPECT_EQ(snapshot(W + 8 * P, 1, 0)[0], HMM_PFN_ERROR);
    (void)snapshot(W + 8 * P, 1, HMM_PFN_REQ_FAULT, Errno::kFault);
    set_vma_flags(W + 8 * P, 0, special);
    ASSERT_TRUE(sys().munmap(p1(), W + 8 * P, P).ok());
  }
}

TEST_F(HmmRangeFaultTest, AGuardRegionIsNeverMirrored) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(sys().access(p1(), 0, W, 2 * P, true, [](uint8_t* d, uint64_t, uint64_t n) {
                     for (uint64_t i = 0; i < n; i++) d[i] = 1;
                   }).ok());
  ASSERT_TRUE(sys().madvise(p1(), W + P, P, kMadvGuardInstall).ok());
  // A snapshot reports nothing there; asking for the page is -EFAULT, the page before it
  // keeps its result.
  std::vector<uint64_t> pfns = snapshot(W, 2, 0);
  EXPECT_TRUE(pfns[0] & HMM_PFN_VALID);
  EXPECT_EQ(pfns[1], 0u);
  pfns = snapshot(W, 2, HMM_PFN_REQ_FAULT, Errno::kFault);
  EXPECT_TRUE(pfns[0] & HMM_PFN_VALID);
  (void)snapshot(W + P, 1, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, Errno::kFault);
}

TEST_F(HmmRangeFaultTest, WriteRequestsInReadOnlyVmasAreEperm) {
  map(p1(), W, 2 * P, kProtRead);
  std::vector<uint64_t> pfns = snapshot(W, 2, HMM_PFN_REQ_FAULT);  // reading is fine
  EXPECT_EQ(pfns[0], zero_pfn() | HMM_PFN_VALID);
  (void)snapshot(W, 2, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, Errno::kPerm);
  // Without a fault request a read-only entry is simply reported.
  EXPECT_EQ(snapshot(W, 1, 0)[0], zero_pfn() | HMM_PFN_VALID);
}

TEST_F(HmmRangeFaultTest, InvalidRangesAreEinval) {
  map(p1(), W, P);
  std::vector<uint64_t> pfns(1, 0);
  HmmRange range;
  range.notifier = &mirror_.sub;
  range.start = W + 1;
  range.end = W + P;
  range.hmm_pfns = pfns.data();
  mmap_read_lock(mm_);
  EXPECT_EQ(hmm_range_fault(&range), Errno::kInval);  // unaligned
  range.start = W + P;
  EXPECT_EQ(hmm_range_fault(&range), Errno::kInval);  // empty
  range.start = W;
  range.hmm_pfns = nullptr;
  EXPECT_EQ(hmm_range_fault(&range), Errno::kInval);
  mmap_read_unlock(mm_);
}

// The caller holds the mmap_lock: checked whenever the lock checker runs.
TEST_F(HmmRangeFaultTest, WithoutTheMmapLockItStops) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  map(p1(), W, P);
  EXPECT_DEATH(
      {
        lockdep::enabled.store(true);
        uint64_t pfn = 0;
        HmmRange range;
        range.notifier = &mirror_.sub;
        range.notifier_seq = mmu_interval_read_begin(&mirror_.sub);
        range.start = W;
        range.end = W + P;
        range.hmm_pfns = &pfn;
        (void)hmm_range_fault(&range);
      },
      "mmap_lock not locked by this thread");
}

TEST_F(HmmRangeFaultTest, WriteRequestOnACowPageBreaksCow) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 3);
  const uint64_t shared = pfn_of(W);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  // After fork both map the page read-only: a snapshot reports it without WRITE.
  EXPECT_EQ(snapshot(W, 1, 0)[0], shared | HMM_PFN_VALID);
  EXPECT_EQ(snapshot(W, 1, HMM_PFN_REQ_FAULT)[0], shared | HMM_PFN_VALID);
  // A write request breaks COW: the parent gets its own copy, the child keeps the old page.
  // The copy invalidates the range (its old entry goes), which the walk reports as -EBUSY.
  std::vector<uint64_t> pfns(2, 0);
  ASSERT_EQ(hmm(W, &pfns, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE), Errno::kOk);
  EXPECT_GE(busy_, 1);
  EXPECT_NE(hmm_pfn_to_pfn(pfns[0]), shared);
  EXPECT_EQ(pfns[0], pfn_of(W) | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_EQ(pte_pfn(pte_at(child.value(), W)), shared);
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 3));
  EXPECT_TRUE(has_pattern(child.value(), W, 2 * P, 3));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(HmmRangeFaultTest, AnInvalidationAfterReadBeginIsEbusyAndTheLoopRecovers) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 5).ok());
  std::vector<uint64_t> pfns(2, 0);
  HmmRange range;
  range.notifier = &mirror_.sub;
  range.start = W;
  range.end = W + 2 * P;
  range.hmm_pfns = pfns.data();
  range.default_flags = HMM_PFN_REQ_FAULT;
  range.notifier_seq = mmu_interval_read_begin(&mirror_.sub);
  const int before = mirror_.seen();
  ASSERT_TRUE(sys().madvise(p1(), W + P, P, kMadvDontneed).ok());  // invalidates the range
  EXPECT_GT(mirror_.seen(), before);
  mmap_read_lock(mm_);
  EXPECT_EQ(hmm_range_fault(&range), Errno::kBusy);
  mmap_read_unlock(mm_);
  // The driver loop: a fresh sequence, then the walk and the check under the update lock.
  range.notifier_seq = mmu_interval_read_begin(&mirror_.sub);
  mmap_read_lock(mm_);
  EXPECT_EQ(hmm_range_fault(&range), Errno::kOk);
  mmap_read_unlock(mm_);
  {
    DriverLockGuard g(mirror_.update);
    EXPECT_FALSE(mmu_interval_read_retry(&mirror_.sub, range.notifier_seq));
  }
  EXPECT_EQ(pfns[0], pfn_of(W) | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_EQ(pfns[1], zero_pfn() | HMM_PFN_VALID);  // MADV_DONTNEED emptied it; a read fault refilled it
}

TEST_F(HmmRangeFaultTest, SwapEntriesAreFaultedInOnlyWhenAsked) {
  ASSERT_TRUE(sys().swapon(1 << 20).ok());
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 9);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvPageout).ok());
  ASSERT_TRUE(is_swap_pte(pte_at(p1(), W)));
  // Not asked: reported as not present (0), left in swap.
  std::vector<uint64_t> pfns = snapshot(W, 2, 0);
  EXPECT_EQ(pfns, std::vector<uint64_t>(2, 0));
  EXPECT_TRUE(is_swap_pte(pte_at(p1(), W)));
  // Asked (page 1 only): swapped in, with its data.
  pfns = {0, HMM_PFN_REQ_FAULT};
  ASSERT_EQ(hmm(W, &pfns, 0, HMM_PFN_REQ_FAULT), Errno::kOk);
  EXPECT_EQ(pfns[0], 0u);
  EXPECT_TRUE(is_swap_pte(pte_at(p1(), W)));
  ASSERT_TRUE(pfns[1] & HMM_PFN_VALID);
  EXPECT_EQ(hmm_pfn_to_pfn(pfns[1]), pfn_of(W + P));
  const uint8_t* frame = sys().mem().pfn_to_virt(static_cast<pfn_t>(hmm_pfn_to_pfn(pfns[1])));
  for (uint64_t i = 0; i < P; i += 511) EXPECT_EQ(frame[i], pattern(W + P + i, 9));
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 9));
}

TEST_F(HmmRangeFaultTest, OneWalkCoversSeveralPteTablesAndVmas) {
  // [T - 4P, T + 4P) read-write across a PTE-table boundary T, a hole, then [T + 6P, T + 10P)
  // read-only, and a second boundary inside a third VMA further on.
  const uint64_t T = W + (2ull << 20);
  map(p1(), T - 4 * P, 8 * P);
  map(p1(), T + 6 * P, 4 * P, kProtRead);
  const uint64_t T2 = W + (4ull << 20);
  map(p1(), T2 - 2 * P, 4 * P);
  write_pattern(p1(), T - 4 * P, 8 * P, 1);
  const uint64_t n = (T2 + 2 * P - (T - 4 * P)) / P;
  std::vector<uint64_t> pfns(n, 0);
  // Fault only where a VMA is (per-page requests), reading.
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t a = T - 4 * P + i * P;
    const bool mapped = (a < T + 4 * P) || (a >= T + 6 * P && a < T + 10 * P) || a >= T2 - 2 * P;
    pfns[i] = mapped ? HMM_PFN_REQ_FAULT : 0;
  }
  ASSERT_EQ(hmm(T - 4 * P, &pfns, 0, HMM_PFN_REQ_FAULT), Errno::kOk);
  for (uint64_t i = 0; i < n; i++) {
    const uint64_t a = T - 4 * P + i * P;
    SCOPED_TRACE(i);
    if (a < T + 4 * P) {
      EXPECT_EQ(pfns[i], pfn_of(a) | HMM_PFN_VALID | HMM_PFN_WRITE);
    } else if (a < T + 6 * P) {
      EXPECT_EQ(pfns[i], HMM_PFN_ERROR);
    } else if (a < T + 10 * P) {
      EXPECT_EQ(pfns[i], zero_pfn() | HMM_PFN_VALID);
    } else if (a < T2 - 2 * P) {
      EXPECT_EQ(pfns[i], HMM_PFN_ERROR);
    } else {
      EXPECT_EQ(pfns[i], zero_pfn() | HMM_PFN_VALID);
    }
  }
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(HmmRangeFaultTest, DriverCallsAroundIt) {
  map(p1(), W, 2 * P, kProtRead);
  map(p1(), W + 4 * P, P);
  ASSERT_TRUE(mmget_not_zero(mm_));
  mmgrab(mm_);
  mmap_read_lock(mm_);
  const std::optional<VmaInfo> v = vma_lookup(mm_, W + P);
  const std::optional<VmaInfo> none = vma_lookup(mm_, W + 2 * P);
  const std::optional<VmaInfo> next = find_vma(mm_, W + 2 * P);
  mmap_read_unlock(mm_);
  ASSERT_TRUE(v.has_value());
  EXPECT_EQ(v->vm_start, W);
  EXPECT_EQ(v->vm_end, W + 2 * P);
  EXPECT_TRUE(v->vm_flags & VM_READ);
  EXPECT_FALSE(v->vm_flags & VM_WRITE);
  EXPECT_FALSE(none.has_value());
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->vm_start, W + 4 * P);
  EXPECT_TRUE(next->vm_flags & VM_WRITE);
  mmput(mm_);
  // Once the process has exited and every user reference is gone, no new one can be taken;
  // the structure reference keeps the Mm readable.
  sys().exit(p1());
  mmu_interval_notifier_remove(&mirror_.sub);
  mmput_ref(mm_);
  EXPECT_FALSE(mmget_not_zero(mm_));
  mmdrop(mm_);
  // TearDown's remove and mmput_ref are done; leave nothing for it.
  mm_ = nullptr;
}

// Migration entries: a snapshot reports them as not present; a fault waits for the migration
// to finish and then reports the new page.
SystemConfig two_nodes() {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  c.nodes = 2;
  return c;
}

class HmmMigrationTest : public HmmRangeFaultTest {
 protected:
  HmmMigrationTest() : HmmRangeFaultTest(two_nodes()) {}
};

TEST_F(HmmMigrationTest, MigrationEntriesAreWaitedForOnlyWhenFaulting) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 4);
  const uint64_t old_pfn = pfn_of(W);
  // Hold a migration of the page to node 1 after its entries were replaced.
  std::mutex mu;
  std::condition_variable cv;
  bool held = false, released = false;
  sys().debug_set_migrate_gate([&](const void*) {
    std::unique_lock<std::mutex> l(mu);
    held = true;
    cv.notify_all();
    cv.wait(l, [&] { return released; });
  });
  std::thread migration([&] {
    Result<uint64_t> moved = sys().migrate_pages(p1(), W, P, 1);
    EXPECT_TRUE(moved.ok() && moved.value() == 1u);
  });
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return held; });
  }
  ASSERT_TRUE(is_migration_entry(pte_at(p1(), W)));
  EXPECT_EQ(snapshot(W, 1, 0)[0], 0u);
  // A fault request waits in the walk until the migration is over.
  std::vector<uint64_t> pfns(1, 0);
  std::thread device([&] { EXPECT_EQ(hmm(W, &pfns, HMM_PFN_REQ_FAULT), Errno::kOk); });
  {
    std::lock_guard<std::mutex> l(mu);
    released = true;
  }
  cv.notify_all();
  migration.join();
  device.join();
  sys().debug_set_migrate_gate(nullptr);
  EXPECT_EQ(pfns[0], pfn_of(W) | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_NE(hmm_pfn_to_pfn(pfns[0]), old_pfn);
  EXPECT_TRUE(has_pattern(p1(), W, P, 4));
}

}  // namespace
}  // namespace mirrormm::testing
