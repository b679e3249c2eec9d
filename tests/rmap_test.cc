// The reverse map: anon_vma_chain links and interval trees, the i_mmap tree, rmap_walk,
// folio_referenced, and the type-stable lookup of a page's anon_vma.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "mirrormm/mmu_notifier.h"
#include "mm_test_util.h"
#include "mm/rmap.h"
#include "mm/slab.h"
#include "support/watchdog.h"

namespace mirrormm::testing {
namespace {

class RmapTest : public ModelTest {
 protected:
  // Every (mm id, address) at which the reverse map finds page mapped.
  std::set<std::pair<uint64_t, uint64_t>> rmap_hits(Page* page) {
    std::set<std::pair<uint64_t, uint64_t>> hits;
    RmapWalkControl rwc;
    rwc.sys = &sys();
    rwc.rmap_one = [&](Page* p, Vma* vma, uint64_t address) {
      if (page_vma_mapped_pte(p, vma, address)) hits.insert({vma->vm_mm->id(), address});
      return true;
    };
    lock_page(page);
    rmap_walk(page, rwc);
    unlock_page(page);
    return hits;
  }
  uint64_t mm_id(Process* p) { return p->mm()->id(); }
};

TEST_F(RmapTest, AnonymousPageSharedByForkedProcessesIsFoundInEach) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 4 * P, 1).ok());
  Page* page = page_at(p1(), W + P);
  ASSERT_NE(page, nullptr);
  std::vector<Process*> kids;
  for (int i = 0; i < 3; i++) kids.push_back(sys().fork(i == 2 ? kids[0] : p1()).value());
  auto hits = rmap_hits(page);
  EXPECT_EQ(hits.size(), 4u);
  EXPECT_TRUE(hits.count({mm_id(p1()), W + P}));
  for (Process* k : kids) EXPECT_TRUE(hits.count({mm_id(k), W + P}));
  EXPECT_EQ(page->mapcount.load(), 4);
  // A write in one child gives it a copy: the original is no longer mapped there.
  ASSERT_TRUE(fill(kids[1], W + P, P, 7).ok());
  hits = rmap_hits(page);
  EXPECT_EQ(hits.size(), 3u);
  EXPECT_FALSE(hits.count({mm_id(kids[1]), W + P}));
  Page* copy = page_at(kids[1], W + P);
  EXPECT_EQ(rmap_hits(copy), (std::set<std::pair<uint64_t, uint64_t>>{{mm_id(kids[1]), W + P}}));
  sys().exit(kids[0]);
  EXPECT_EQ(rmap_hits(page).size(), 2u);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(RmapTest, SplitsMergesAndMovesKeepTheTreesKeyed) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 3).ok());
  Page* page = page_at(p1(), W + 5 * P);
  // Split in three, then merge back.
  ASSERT_TRUE(sys().mprotect(p1(), W + 2 * P, 2 * P, kProtRead).ok());
  EXPECT_EQ(rmap_hits(page), (std::set<std::pair<uint64_t, uint64_t>>{{mm_id(p1()), W + 5 * P}}));
  EXPECT_EQ(rmap_hits(page_at(p1(), W + 2 * P)).size(), 1u);
  ASSERT_TRUE(sys().mprotect(p1(), W + 2 * P, 2 * P, RW).ok());
  EXPECT_EQ(rmap_hits(page).size(), 1u);
  // Move the mapping: the page is found at its new address.
  const uint64_t to = W + 0x100000;
  ASSERT_EQ(sys().mremap(p1(), W, 8 * P, 8 * P, 3, to).value(), to);
  EXPECT_EQ(rmap_hits(page), (std::set<std::pair<uint64_t, uint64_t>>{{mm_id(p1()), to + 5 * P}}));
  // Grow it in place and fork: both find it.
  ASSERT_EQ(sys().mremap(p1(), to, 8 * P, 16 * P, 0, 0).value(), to);
  Process* kid = sys().fork(p1()).value();
  EXPECT_EQ(rmap_hits(page).size(), 2u);
  ASSERT_TRUE(sys().munmap(p1(), to, 6 * P).ok());
  EXPECT_EQ(rmap_hits(page), (std::set<std::pair<uint64_t, uint64_t>>{{mm_id(kid), to + 5 * P}}));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(RmapTest, FilePageIsFoundThroughIMmapAtEachMappingsOffset) {
  ASSERT_TRUE(sys().memfd("f", 16 * P).ok());
  ASSERT_EQ(sys().mmap_file(p1(), W, 8 * P, RW, kMapShared | kMapFixed, "f", 4 * P, System::FileMode::kReadWrite).value(),
            W);
  const uint64_t w2 = W + 0x100000;
  ASSERT_EQ(sys().mmap_file(p1(), w2, 16 * P, kProtRead, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadOnly)
                .value(),
            w2);
  ASSERT_TRUE(fill(p1(), W + 2 * P, P, 9).ok());  // file page 6
  ASSERT_TRUE(touch_read(p1(), w2 + 6 * P).ok());
  Page* page = page_at(p1(), W + 2 * P);
  ASSERT_EQ(page, page_at(p1(), w2 + 6 * P));
  EXPECT_EQ(rmap_hits(page), (std::set<std::pair<uint64_t, uint64_t>>{{mm_id(p1()), W + 2 * P},
                                                                     {mm_id(p1()), w2 + 6 * P}}));
  // A split of the second mapping re-keys it.
  ASSERT_TRUE(sys().munmap(p1(), w2, 3 * P).ok());
  EXPECT_EQ(rmap_hits(page).size(), 2u);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(RmapTest, FolioReferencedClearsYoungAndSeesTheCpuUseIt) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());
  Page* page = page_at(p1(), W);
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 1);
  EXPECT_FALSE(pte_young(pte_at(p1(), W)));
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 0);
  ASSERT_TRUE(touch_read(p1(), W).ok());  // the flush made the CPU walk again: young again
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 1);
  Process* kid = sys().fork(p1()).value();
  ASSERT_TRUE(touch_read(kid, W).ok());
  ASSERT_TRUE(touch_read(p1(), W).ok());
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 2);
}

// A KVM-style shadow MMU that says it used every page (its accessed bits).
struct HotSecondary {
  MmuNotifier mn;
  std::atomic<int> asked{0};
};

TEST_F(RmapTest, SecondaryMmuThatUsedThePageKeepsItReferenced) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());
  Page* page = page_at(p1(), W);
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 1);
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 0);
  static MmuNotifierOps ops;
  ops.clear_flush_young = [](MmuNotifier* mn, Mm*, uint64_t, uint64_t) {
    reinterpret_cast<HotSecondary*>(mn)->asked++;
    return 1;
  };
  HotSecondary hot;
  hot.mn.ops = &ops;
  ASSERT_EQ(mmu_notifier_register(&hot.mn, p1()->mm()), Errno::kOk);
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 1);
  EXPECT_EQ(hot.asked.load(), 1);
  mmu_notifier_unregister(&hot.mn, p1()->mm());
  EXPECT_EQ(folio_referenced(&sys(), page, PageLocked::kNo), 0);
}

// The oblique lookup: a walk reads the page's anon_vma, and before it takes the lock the last
// mapping goes and the anon_vma is freed. The test holds a reference on the page so that the
// frame (and its stale mapping pointer) stays.
class RmapTypesafeTest : public RmapTest {
 protected:
  void SetUp() override {
    was_checking_ = KmemCache::debug_checks();
    KmemCache::debug_set_checks(true);
    reports_before_ = KmemCache::debug_reports();
  }
  void TearDown() override {
    sys().debug_set_rmap_gate(nullptr);
    KmemCache::debug_set_checks(was_checking_);
  }
  // Maps one page, then walks its rmap with the unmap done from the gate; returns the hits.
  int walk_racing_unmap() {
    map(p1(), W, P);
    EXPECT_TRUE(fill(p1(), W, P, 1).ok());
    Page* page = page_at(p1(), W);
    sys().mem().get_page(page);
    bool unmapped = false;
    // The walker holds the page lock: the unmap runs on a thread of its own (as another CPU
    // would), which the gate waits for.
    sys().debug_set_rmap_gate([&](const void*) {
      if (unmapped) return;
      unmapped = true;
      BoundedThread unmapper([&] { EXPECT_TRUE(sys().munmap(p1(), W, P).ok()); });
      unmapper.join("unmapper");
    });
    int hits = 0;
    RmapWalkControl rwc;
    rwc.sys = &sys();
    rwc.rmap_one = [&](Page*, Vma*, uint64_t) {
      hits++;
      return true;
    };
    lock_page(page);
    rmap_walk(page, rwc);
    unlock_page(page);
    sys().debug_set_rmap_gate(nullptr);
    EXPECT_TRUE(unmapped);
    sys().mem().put_page(page);
    return hits;
  }
  uint64_t new_reports() { return KmemCache::debug_reports() - reports_before_; }

  bool was_checking_ = false;
  uint64_t reports_before_ = 0;
};

TEST_F(RmapTypesafeTest, TypeStableAnonVmaLetsTheRecheckTurnTheWalkAway) {
  EXPECT_EQ(walk_racing_unmap(), 0);
  EXPECT_EQ(new_reports(), 0u);
}

TEST_F(RmapTypesafeTest, AnonVmaWithoutTypesafeMemoryIsAUseAfterFree) {
  sys().debug_break(System::DebugBreak::kAnonVmaNotTypesafe, true);
  EXPECT_EQ(walk_racing_unmap(), 0);
  EXPECT_GE(new_reports(), 1u);
}

TEST_F(RmapTypesafeTest, AWalkWithoutTheIdentityRecheckUsesAFreeAnonVma) {
  sys().debug_break(System::DebugBreak::kNoAnonVmaRecheck, true);
  EXPECT_EQ(walk_racing_unmap(), 0);
  EXPECT_GE(new_reports(), 1u);
}

TEST_F(RmapTest, FolioGetAnonVmaPinsOnlyAMappedPagesAnonVma) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());
  Page* page = page_at(p1(), W);
  AnonVma* av = folio_get_anon_vma(&sys(), page);
  ASSERT_NE(av, nullptr);
  EXPECT_EQ(av, vma_at(p1(), W)->anon_vma.load());
  EXPECT_EQ(av->refcount.load(), 2);
  put_anon_vma(av);
  sys().mem().get_page(page);
  ASSERT_TRUE(sys().munmap(p1(), W, P).ok());
  EXPECT_EQ(folio_get_anon_vma(&sys(), page), nullptr);
  sys().mem().put_page(page);
}

// Exit racing rmap walks: walkers keep walking pages of a process that forks and exits; every
// hit must be a live mapping, and nothing may crash or be reported.
TEST_F(RmapTest, WalksRacingForkAndExitStaySafe) {
  map(p1(), W, 64 * P);
  ASSERT_TRUE(fill(p1(), W, 64 * P, 5).ok());
  std::vector<Page*> pages;
  for (int i = 0; i < 64; i++) {
    pages.push_back(page_at(p1(), W + i * P));
    sys().mem().get_page(pages.back());
  }
  std::atomic<bool> stop{false};
  BoundedThread walker([&] {
    while (!stop.load()) {
      for (Page* page : pages) {
        int hits = 0;
        RmapWalkControl rwc;
        rwc.sys = &sys();
        rwc.rmap_one = [&](Page* p, Vma* vma, uint64_t address) {
          if (page_vma_mapped_pte(p, vma, address)) hits++;
          return true;
        };
        lock_page(page);
        rmap_walk(page, rwc);
        unlock_page(page);
        EXPECT_GE(hits, 0);
        (void)folio_referenced(&sys(), page, PageLocked::kNo);
      }
    }
  });
  for (int round = 0; round < 200; round++) {
    Process* kid = sys().fork(p1()).value();
    if (round % 3 == 0) {
      ASSERT_TRUE(fill(kid, W + (round % 64) * P, P, 1).ok());
    }
    if (round % 5 == 0) {
      ASSERT_TRUE(sys().mprotect(kid, W + 8 * P, 8 * P, kProtRead).ok());
    }
    sys().exit(kid);
  }
  stop = true;
  walker.join("rmap walker", std::chrono::seconds(120));
  for (Page* page : pages) sys().mem().put_page(page);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
  EXPECT_EQ(sys().violations(), 0u);
}

}  // namespace
}  // namespace mirrormm::testing
