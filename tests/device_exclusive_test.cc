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

}  // namespace
}  // namespace mirrormm::testing
