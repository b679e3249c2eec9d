// Device-exclusive entries (src/mm/device_exclusive.cc, and the paths of memory.cc, rmap,
// mprotect, mremap, mincore, smaps, hmm and the consistency checker that meet them): the
// conversion, what the driver is told, how a CPU access, fork, a zap, mprotect and migration
// take the page back, and a CPU writer racing a device that keeps taking the page.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "mirrormm/gup.h"
#include "mirrormm/hmm.h"
#include "mirrormm/memremap.h"
#include "mirrormm/migrate_device.h"
#include "mirrormm/mmu_notifier.h"
#include "mm/migrate.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

// An interval notifier over the window standing for a driver with exclusive mappings: it
// counts the events it is told about, ignoring its own conversions (MMU_NOTIFY_EXCLUSIVE with
// its owner, as dmirror_interval_invalidate does), and drops its exclusive mappings.
struct ExclusiveDriver {
  struct Sub : MmuIntervalNotifier {
    ExclusiveDriver* d = nullptr;
  } sub;
  std::atomic<int> own_exclusive{0}, clear{0}, others{0};
  std::atomic<uint64_t> exclusive_pages{0};  // bit i: page i of the window is exclusively ours
  static bool invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* range, uint64_t cur_seq) {
    ExclusiveDriver* d = static_cast<Sub*>(s)->d;
    mmu_interval_set_seq(s, cur_seq);
    if (range->event == MmuNotifyEvent::kExclusive && range->owner == d) {
      d->own_exclusive++;
      return true;
    }
    if (range->event == MmuNotifyEvent::kClear) d->clear++;
    else d->others++;
    for (uint64_t a = std::max(range->start, W); a < std::min(range->end, W + 64 * P); a += P)
      d->exclusive_pages.fetch_and(~(1ull << ((a - W) / P)));
    return true;
  }
};
const MmuIntervalNotifierOps kDriverOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &ExclusiveDriver::invalidate;
  return o;
}();

class DeviceExclusiveTest : public ModelTest {
 protected:
  void SetUp() override {
    mm_ = get_task_mm(p1());
    ASSERT_NE(mm_, nullptr);
    drv_.sub.d = &drv_;
    ASSERT_EQ(mmu_interval_notifier_insert(&drv_.sub, mm_, W, 64 * P, &kDriverOps), Errno::kOk);
  }
  void TearDown() override {
    mmu_interval_notifier_remove(&drv_.sub);
    mmput_ref(mm_);
    EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();
  }
  std::string violations() {
    std::string s;
    for (const std::string& m : sys().violation_messages()) s += m + "\n";
    return s;
  }
  // dmirror_exclusive for one page: the conversion, then the driver's mapping, then the page
  // goes back unlocked and unreferenced.
  Result<uint64_t> exclusive(uint64_t addr) {
    mmap_read_lock(mm_);
    Result<uint64_t> r = make_device_exclusive(mm_, addr, &drv_);
    if (r.ok()) {
      drv_.exclusive_pages.fetch_or(1ull << ((addr - W) / P));
      unlock_page_pfn(&sys(), r.value());
      put_page_pfn(&sys(), r.value());
    }
    mmap_read_unlock(mm_);
    return r;
  }
  bool exclusive_at(Process* p, uint64_t addr) { return is_device_exclusive_entry(pte_at(p, addr)); }
  bool ours(uint64_t addr) { return drv_.exclusive_pages.load() & (1ull << ((addr - W) / P)); }

  Mm* mm_ = nullptr;
  ExclusiveDriver drv_;
};

TEST_F(DeviceExclusiveTest, TheEntryReplacesTheWritablePteAndKeepsThePageMapped) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  Page* page = page_at(p1(), W + P);
  ASSERT_NE(page, nullptr);
  const uint64_t pfn = sys().mem().page_to_pfn(page);
  const int refs = page->refcount.load();
  Result<uint64_t> r = exclusive(W + P + 123);  // any address inside the page
  ASSERT_TRUE(r.ok()) << errno_name(r.error());
  EXPECT_EQ(r.value(), pfn);
  EXPECT_EQ(drv_.own_exclusive.load(), 1);  // its own event, filtered by owner
  EXPECT_EQ(drv_.clear.load() + drv_.others.load(), 0);
  const pteval_t v = pte_at(p1(), W + P);
  ASSERT_TRUE(is_device_exclusive_entry(v));
  EXPECT_EQ(device_exclusive_entry_pfn(v), pfn);
  // The entry stands for the PTE: reference, mapcount and rss stay; the dirty bit went to
  // the page; the page is unlocked again.
  EXPECT_EQ(page->refcount.load(), refs);
  EXPECT_EQ(page->mapcount.load(), 1);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 4);
  EXPECT_TRUE(page->test(PG_dirty));
  EXPECT_TRUE(page->test(PG_anon_exclusive));
  EXPECT_FALSE(page->test(PG_locked));
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1111");  // a page in memory (non_swap_entry)
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();
}

TEST_F(DeviceExclusiveTest, ACpuAccessRestoresThePteAndTheDriverIsTold) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 2);
  ASSERT_TRUE(exclusive(W).ok());
  ASSERT_TRUE(ours(W));
  // A read restores the PTE (remove_device_exclusive_entry): MMU_NOTIFY_CLEAR, no owner.
  EXPECT_TRUE(has_pattern(p1(), W, P, 2));
  EXPECT_FALSE(exclusive_at(p1(), W));
  EXPECT_EQ(drv_.clear.load(), 1);
  EXPECT_FALSE(ours(W));
  // The restored PTE is writable (the page is still exclusive), so a write needs no copy.
  const pteval_t v = pte_at(p1(), W);
  EXPECT_TRUE(pte_present(v) && pte_write(v));
  Page* before = page_at(p1(), W);
  fill(p1(), W, P, 0x5a);
  EXPECT_EQ(page_at(p1(), W), before);
  // Again, and this time a write restores it.
  ASSERT_TRUE(exclusive(W).ok());
  EXPECT_TRUE(fill(p1(), W + 8, 8, 0x77).ok());
  EXPECT_FALSE(exclusive_at(p1(), W));
  EXPECT_EQ(drv_.clear.load(), 2);
  EXPECT_EQ(bytes(p1(), W, 16), (std::vector<uint8_t>{0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x77, 0x77,
                                                      0x77, 0x77, 0x77, 0x77, 0x77, 0x77}));
}

TEST_F(DeviceExclusiveTest, AConversionFaultsThePageInWritableAndBreaksCow) {
  map(p1(), W, 3 * P);
  // Never touched: the write fault allocates the page.
  ASSERT_TRUE(exclusive(W).ok());
  EXPECT_TRUE(exclusive_at(p1(), W));
  // The zero page (a read) is replaced by a page of its own.
  ASSERT_TRUE(touch_read(p1(), W + P).ok());
  ASSERT_TRUE(exclusive(W + P).ok());
  EXPECT_TRUE(exclusive_at(p1(), W + P));
  EXPECT_EQ(bytes(p1(), W + P, 4), (std::vector<uint8_t>{0, 0, 0, 0}));
  // A page shared with a child after fork is copied first: the child keeps its own.
  write_pattern(p1(), W + 2 * P, P, 3);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Page* shared = page_at(child.value(), W + 2 * P);
  ASSERT_TRUE(exclusive(W + 2 * P).ok());
  EXPECT_TRUE(exclusive_at(p1(), W + 2 * P));
  EXPECT_NE(sys().mem().pfn_to_page(device_exclusive_entry_pfn(pte_at(p1(), W + 2 * P))), shared);
  EXPECT_TRUE(has_pattern(child.value(), W + 2 * P, P, 3));
  EXPECT_TRUE(has_pattern(p1(), W + 2 * P, P, 3));
  sys().exit(child.value());
}

TEST_F(DeviceExclusiveTest, OnlyAnonymousWritableMemoryCanBeMadeExclusive) {
  map(p1(), W, P, RW, SHARED);
  map(p1(), W + P, P, kProtRead, PRIV);
  EXPECT_EQ(exclusive(W).error(), Errno::kOpNotSupp);  // shared memory is not anonymous
  EXPECT_EQ(exclusive(W + P).error(), Errno::kFault);  // the write fault is refused
  EXPECT_EQ(exclusive(W + 2 * P).error(), Errno::kFault);  // nothing mapped
  EXPECT_FALSE(exclusive_at(p1(), W));
}

TEST_F(DeviceExclusiveTest, ZapDropsTheEntryAndThePage) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 4);
  Result<uint64_t> r = exclusive(W);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(sys().madvise(p1(), W, P, kMadvDontneed).error(), Errno::kOk);
  EXPECT_EQ(pte_at(p1(), W), 0u);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 1);
  EXPECT_FALSE(ours(W));  // the zap's invalidation reached the driver
  EXPECT_EQ(bytes(p1(), W, 2), (std::vector<uint8_t>{0, 0}));
  ASSERT_TRUE(exclusive(W + P).ok());
  ASSERT_TRUE(sys().munmap(p1(), W, 2 * P).ok());
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 0);
  sys().lru_add_drain_all();
  EXPECT_TRUE(sys().mem().debug_is_free(static_cast<pfn_t>(r.value())) ||
              page_ref_count_pfn(&sys(), r.value()) == 0);
}

TEST_F(DeviceExclusiveTest, MprotectLeavesTheEntryAndTheRestoredPteFollowsTheVma) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 5);
  ASSERT_TRUE(exclusive(W).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, kProtRead).ok());
  // The entry stays (change_pte_range has nothing to change in it), but the driver was told
  // (hmm.exclusive_mprotect: its next write must go through hmm_range_fault and fail).
  EXPECT_TRUE(exclusive_at(p1(), W));
  EXPECT_FALSE(ours(W));
  EXPECT_EQ(drv_.others.load(), 1);
  EXPECT_TRUE(has_pattern(p1(), W, P, 5));
  EXPECT_FALSE(exclusive_at(p1(), W));
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));  // restore_exclusive_pte: the VMA is read-only
  EXPECT_FALSE(fill(p1(), W, 1, 1).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, RW).ok());
  ASSERT_TRUE(exclusive(W).ok());
  EXPECT_TRUE(fill(p1(), W, 1, 1).ok());
  EXPECT_TRUE(pte_write(pte_at(p1(), W)));
}

TEST_F(DeviceExclusiveTest, ForkRestoresTheParentsPteAndSharesThePageCopyOnWrite) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 6);
  ASSERT_TRUE(exclusive(W).ok());
  const uint64_t pfn = device_exclusive_entry_pfn(pte_at(p1(), W));
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  // hmm.exclusive_cow: no entry is copied; the parent's PTE came back (the fork's own
  // invalidation told the driver), and both processes share the page until a write.
  EXPECT_FALSE(exclusive_at(p1(), W));
  EXPECT_FALSE(exclusive_at(child.value(), W));
  EXPECT_FALSE(ours(W));
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), pfn);
  EXPECT_EQ(pte_pfn(pte_at(child.value(), W)), pfn);
  EXPECT_EQ(page_mapcount_pfn(&sys(), pfn), 2);
  ASSERT_TRUE(fill(child.value(), W, 1, 0xc1).ok());
  ASSERT_TRUE(fill(p1(), W + 1, 1, 0x91).ok());
  EXPECT_EQ(bytes(child.value(), W, 2), (std::vector<uint8_t>{0xc1, pattern(W + 1, 6)}));
  EXPECT_EQ(bytes(p1(), W, 2), (std::vector<uint8_t>{pattern(W, 6), 0x91}));
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();
  sys().exit(child.value());
}

TEST_F(DeviceExclusiveTest, MremapMovesTheEntryAndSmapsAndHmmSeeIt) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 7);
  ASSERT_TRUE(exclusive(W + P).ok());
  // smaps: the page is still resident and anonymous (is_pfn_swap_entry), not swap.
  Result<std::vector<SmapsEntry>> sm = sys().smaps(p1());
  ASSERT_TRUE(sm.ok());
  ASSERT_EQ(sm.value().size(), 1u);
  EXPECT_EQ(sm.value()[0].resident, 4 * P);
  EXPECT_EQ(sm.value()[0].anonymous, 4 * P);
  EXPECT_EQ(sm.value()[0].swap, 0u);
  // mremap moves the entry as it is; the page follows.
  Result<uint64_t> moved = sys().mremap(p1(), W, 4 * P, 4 * P, 3, W + 16 * P);
  ASSERT_TRUE(moved.ok());
  EXPECT_TRUE(exclusive_at(p1(), W + 17 * P));
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();
  // hmm_range_fault asked for the page faults it back (hmm_vma_handle_pte's
  // device-exclusive case), and reports it writable.
  std::vector<uint64_t> pfns(4, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE);
  HmmRange range;
  range.notifier = &drv_.sub;
  range.start = W + 16 * P;
  range.end = W + 20 * P;
  range.hmm_pfns = pfns.data();
  range.pfn_flags_mask = ~0ull;
  Errno e;
  do {  // the restore's invalidation moves the sequence: the driver loop starts again
    range.notifier_seq = mmu_interval_read_begin(&drv_.sub);
    mmap_read_lock(mm_);
    e = hmm_range_fault(&range);
    mmap_read_unlock(mm_);
  } while (e == Errno::kBusy);
  ASSERT_EQ(e, Errno::kOk);
  EXPECT_FALSE(exclusive_at(p1(), W + 17 * P));
  EXPECT_TRUE(pfns[1] & HMM_PFN_WRITE);
  EXPECT_EQ(hmm_pfn_to_pfn(pfns[1]), pte_pfn(pte_at(p1(), W + 17 * P)));
  const std::vector<uint8_t> moved_bytes = bytes(p1(), W + 16 * P, 4 * P);
  ASSERT_EQ(moved_bytes.size(), 4 * P);
  for (uint64_t i = 0; i < 4 * P; i++) ASSERT_EQ(moved_bytes[i], pattern(W + i, 7)) << i;
}

TEST_F(DeviceExclusiveTest, AnotherConversionTakesThePageFromTheFirstHolder) {
  map(p1(), W, P);
  ASSERT_TRUE(exclusive(W).ok());
  // A second make_device_exclusive (another device, or the same one again) faults the entry
  // back first: the holder sees MMU_NOTIFY_CLEAR.
  ASSERT_TRUE(exclusive(W).ok());
  EXPECT_EQ(drv_.clear.load(), 1);
  EXPECT_EQ(drv_.own_exclusive.load(), 2);
  EXPECT_TRUE(exclusive_at(p1(), W));
}

// The device keeps taking the page for an atomic increment of a counter while a CPU keeps
// incrementing the same counter: each side's update happens while the other cannot touch the
// page (the CPU's PTE is gone while the device holds it; the device waits for the page lock
// and the CPU's TLB shootdown), so no increment is lost.
TEST_F(DeviceExclusiveTest, ExclusiveAccessRacingCpuWritesLosesNoUpdate) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 0).ok());
  constexpr uint32_t kEach = 2000;
  std::atomic<int> failures{0};
  std::thread device([&] {
    for (uint32_t i = 0; i < kEach; i++) {
      mmap_read_lock(mm_);
      Result<uint64_t> r = make_device_exclusive(mm_, W, &drv_);
      if (!r.ok()) {
        failures++;
        mmap_read_unlock(mm_);
        continue;
      }
      // The device's atomic operation, on its exclusive page.
      uint32_t v;
      uint8_t* d = page_address(&sys(), r.value());
      std::memcpy(&v, d, sizeof(v));
      v++;
      std::memcpy(d, &v, sizeof(v));
      unlock_page_pfn(&sys(), r.value());
      put_page_pfn(&sys(), r.value());
      mmap_read_unlock(mm_);
    }
  });
  for (uint32_t i = 0; i < kEach; i++) {
    AccessResult r = sys().access(p1(), 0, W, 4, true, [](uint8_t* d, uint64_t, uint64_t) {
      uint32_t v;
      std::memcpy(&v, d, sizeof(v));
      v++;
      std::memcpy(d, &v, sizeof(v));
    });
    if (!r.ok()) failures++;
  }
  device.join();
  EXPECT_EQ(failures.load(), 0);
  uint32_t total = 0;
  sys().access(p1(), 0, W, 4, false, [&](uint8_t* d, uint64_t, uint64_t) { std::memcpy(&total, d, 4); });
  EXPECT_EQ(total, 2 * kEach);
  EXPECT_GT(drv_.clear.load(), 0);  // the CPU took the page back from the device
}

}  // namespace
}  // namespace mirrormm::testing
