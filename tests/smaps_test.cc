// /proc/PID/smaps (System::smaps, src/mm/task_mmu.cc): the rules of smaps_pte_entry and
// smaps_account, one test each. Sizes are bytes; pss and swap_pss are bytes << kPssShift.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mirrormm/mman.h"
#include "mirrormm/replay.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr uint64_t kFull = P << SmapsEntry::kPssShift;  // the pss of one page mapped once

SystemConfig small_config() {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  return c;
}

class SmapsTest : public ModelTest {
 protected:
  SmapsTest() : ModelTest(small_config()) {}

  // The entry of the VMA that starts at addr.
  SmapsEntry at(Process* p, uint64_t addr) {
    Result<std::vector<SmapsEntry>> r = sys().smaps(p);
    EXPECT_TRUE(r.ok());
    if (r.ok())
      for (const SmapsEntry& e : r.value())
        if (e.vma.start == addr) return e;
    ADD_FAILURE() << "no VMA starts at " << std::hex << addr;
    return SmapsEntry{};
  }
  Process* fork(Process* p) {
    Result<Process*> r = sys().fork(p);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : nullptr;
  }
  void madvise(Process* p, uint64_t addr, uint64_t len, uint64_t advice) {
    ASSERT_TRUE(sys().madvise(p, addr, len, advice).ok());
  }
  uint64_t map_file(Process* p, uint64_t addr, uint64_t len, uint64_t flags, uint64_t off) {
    Result<uint64_t> r = sys().mmap_file(p, addr, len, RW, flags | kMapFixed, "f", off, System::FileMode::kReadWrite);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : 0;
  }
};

TEST_F(SmapsTest, WrittenAnonymousPagesArePrivateDirtyAndTheZeroPageCountsNowhere) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  ASSERT_TRUE(touch_read(p1(), W + 4 * P).ok());  // maps the zero page
  SmapsEntry e = at(p1(), W);
  EXPECT_EQ(e.resident, 2 * P);
  EXPECT_EQ(e.pss, 2 * kFull);
  EXPECT_EQ(e.private_dirty, 2 * P);
  EXPECT_EQ(e.private_clean + e.shared_clean + e.shared_dirty, 0u);
  EXPECT_EQ(e.anonymous, 2 * P);
  EXPECT_EQ(e.referenced, 2 * P);
  EXPECT_EQ(e.swap, 0u);
  EXPECT_EQ(replay::format_smaps({e}),
            "200000000000-200000008000 Rss=8 Pss=8 Shared_Clean=0 Shared_Dirty=0 Private_Clean=0 "
            "Private_Dirty=8 Anonymous=8 Swap=0");
}

TEST_F(SmapsTest, ForkSharesDirtyPagesAndACopyOnWriteMakesBothSidesPrivate) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  Process* child = fork(p1());
  for (Process* p : {p1(), child}) {
    SmapsEntry e = at(p, W);
    EXPECT_EQ(e.shared_dirty, 2 * P);
    EXPECT_EQ(e.private_dirty, 0u);
    EXPECT_EQ(e.pss, kFull);  // two pages, each half
  }
  ASSERT_TRUE(fill(child, W, P, 2).ok());
  // The child's copy and the parent's original are each mapped once now.
  for (Process* p : {p1(), child}) {
    SmapsEntry e = at(p, W);
    EXPECT_EQ(e.private_dirty, P);
    EXPECT_EQ(e.shared_dirty, P);
    EXPECT_EQ(e.pss, kFull + kFull / 2);
  }
}

TEST_F(SmapsTest, PssDividesASharedPageByItsMapcountBeforeRounding) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  Process* a = fork(p1());
  Process* b = fork(p1());
  for (Process* p : {p1(), a, b}) {
    SmapsEntry e = at(p, W);
    EXPECT_EQ(e.pss, 2 * (kFull / 3));  // each page's exact third, in PSS_SHIFT fixed point
    EXPECT_EQ(e.shared_dirty, 2 * P);
    // 2730.66 bytes: 2 kB, where whole bytes per page would have lost a byte each.
    EXPECT_EQ(e.pss >> SmapsEntry::kPssShift, 2730u);
  }
  sys().exit(b);
  EXPECT_EQ(at(a, W).pss, kFull);
}

TEST_F(SmapsTest, SwapEntriesCountInSwapAndSwapPssDividesByTheSwapCount) {
  ASSERT_TRUE(sys().swapon(16ull << 20).ok());
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 4 * P, 1).ok());
  madvise(p1(), W, 4 * P, kMadvPageout);
  SmapsEntry e = at(p1(), W);
  EXPECT_EQ(e.resident, 0u);
  EXPECT_EQ(e.anonymous, 0u);
  EXPECT_EQ(e.swap, 4 * P);
  EXPECT_EQ(e.swap_pss, 4 * kFull);
  // fork copies the swap entries: each slot is now referenced twice.
  Process* child = fork(p1());
  for (Process* p : {p1(), child}) {
    SmapsEntry s = at(p, W);
    EXPECT_EQ(s.swap, 4 * P);
    EXPECT_EQ(s.swap_pss, 2 * kFull);
  }
  // A swap-in maps the page again; its slot stays referenced by the other process.
  ASSERT_TRUE(touch_read(child, W).ok());
  SmapsEntry c = at(child, W);
  EXPECT_EQ(c.resident, P);
  EXPECT_EQ(c.swap, 3 * P);
}

TEST_F(SmapsTest, ShmemSwapCountsThroughTheInodeAndAtTheHolesOfAPrivateWritableMapping) {
  ASSERT_TRUE(sys().swapon(16ull << 20).ok());
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  const uint64_t shared = map_file(p1(), W, 4 * P, kMapShared, 0);
  ASSERT_TRUE(fill(p1(), shared, 4 * P, 1).ok());
  madvise(p1(), shared, 4 * P, kMadvPageout);
  SmapsEntry s = at(p1(), shared);
  EXPECT_EQ(s.resident, 0u);
  EXPECT_EQ(s.swap, 4 * P);  // shmem_swap_usage: the whole file is mapped
  EXPECT_EQ(s.swap_pss, 0u);  // no swap entry is in a PTE

  // A mapping of part of the file counts the part's swap (shmem_partial_swap_usage).
  const uint64_t part = map_file(p1(), W + 16 * P, 2 * P, kMapShared, P);
  EXPECT_EQ(at(p1(), part).swap, 2 * P);

  // A private writable mapping with a private copy of page 0: the walk counts the file's swap
  // only where no PTE is, so the copied page is not counted twice.
  const uint64_t priv = map_file(p1(), W + 32 * P, 4 * P, kMapPrivate, 0);
  ASSERT_TRUE(fill(p1(), priv, 1, 2).ok());
  SmapsEntry v = at(p1(), priv);
  EXPECT_EQ(v.anonymous, P);
  EXPECT_EQ(v.private_dirty, P);
  // The write fault brought page 0 back from swap into the cache before copying it.
  EXPECT_EQ(v.swap, 3 * P);
  EXPECT_EQ(at(p1(), shared).swap, 3 * P);
  // Untouched, it has no page table at all: the whole range is a hole of the walk.
  const uint64_t fresh = map_file(p1(), W + (1ull << 30), 4 * P, kMapPrivate, 0);
  EXPECT_EQ(at(p1(), fresh).swap, 3 * P);
}

TEST_F(SmapsTest, AShmemPageStaysDirtyAfterItsDirtyPteIsZapped) {
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  const uint64_t a = map_file(p1(), W, 2 * P, kMapShared, 0);
  ASSERT_TRUE(touch_read(p1(), a).ok());
  ASSERT_TRUE(fill(p1(), a + P, 1, 1).ok());
  SmapsEntry e = at(p1(), a);
  EXPECT_EQ(e.private_clean, P);  // read fault: PTE clean, page clean
  EXPECT_EQ(e.private_dirty, P);  // write fault: PTE dirty
  EXPECT_EQ(e.anonymous, 0u);
  // The zap moves the PTE's dirty bit to the page (PG_dirty): a read fault maps it clean yet
  // it is still counted dirty. (Fault-around maps page 0 with it, clean as before.)
  madvise(p1(), a, 2 * P, kMadvDontneed);
  EXPECT_EQ(at(p1(), a).resident, 0u);
  ASSERT_TRUE(touch_read(p1(), a + P).ok());
  e = at(p1(), a);
  EXPECT_EQ(e.resident, 2 * P);
  EXPECT_EQ(e.private_dirty, P);
  EXPECT_EQ(e.private_clean, P);
}

TEST_F(SmapsTest, AnExitedProcessHasNoSmaps) {
  Process* child = fork(p1());
  sys().exit(child);
  Result<std::vector<SmapsEntry>> r = sys().smaps(child);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error(), Errno::kSrch);
}

}  // namespace
}  // namespace mirrormm::testing
