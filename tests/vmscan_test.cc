// Reclaim: aging with second chance, secondary MMUs keeping pages hot, swap-out through the
// reverse map, madvise(MADV_PAGEOUT) with swap, kswapd and direct reclaim under pressure,
// and the OOM killer with its reaper's non-blockable invalidations.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "mirrormm/mmu_notifier.h"
#include "mm/lru.h"
#include "mm/vmscan.h"
#include "mm/vmstat.h"
#include "mm_test_util.h"
#include "support/watchdog.h"

namespace mirrormm::testing {
namespace {

SystemConfig small_machine(uint64_t mib) {
  SystemConfig c;
  c.memory_bytes = mib << 20;
  return c;
}

class VmscanTest : public ModelTest {
 protected:
  explicit VmscanTest(SystemConfig c = small_machine(64)) : ModelTest(c) {}
  int64_t event(VmEvent e) { return sys().mem().events().sum(e); }
  bool verify(Process* p, uint64_t addr, uint64_t len, uint8_t v) {
    std::vector<uint8_t> b = bytes(p, addr, len);
    if (b.size() != len) return false;
    for (uint8_t x : b)
      if (x != v) return false;
    return true;
  }
};

TEST_F(VmscanTest, ReclaimWithoutSwapLeavesAnonymousMemoryAlone) {
  map(p1(), W, 16 * P);
  ASSERT_TRUE(fill(p1(), W, 16 * P, 3).ok());
  EXPECT_EQ(sys().reclaim(16), 0u);
  EXPECT_EQ(mincore(p1(), W, 16 * P), std::string(16, '1'));
}

TEST_F(VmscanTest, ReclaimSwapsColdPagesOutAndTheyComeBackWithTheirBytes) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 16 * P);
  for (int i = 0; i < 16; i++) ASSERT_TRUE(fill(p1(), W + i * P, P, static_cast<uint8_t>(i + 1)).ok());
  // New pages start inactive and young: the first look gives them a second chance; with no
  // further use the next one takes them.
  uint64_t got = 0;
  for (int pass = 0; pass < 4 && got < 16; pass++) got += sys().reclaim(16);
  EXPECT_EQ(got, 16u);
  EXPECT_EQ(mincore(p1(), W, 16 * P), std::string(16, '0'));
  EXPECT_EQ(event(PSWPOUT), 16);
  for (int i = 0; i < 16; i++) EXPECT_TRUE(verify(p1(), W + i * P, P, static_cast<uint8_t>(i + 1))) << i;
  EXPECT_EQ(event(PSWPIN), 16);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

// A KVM-style shadow MMU that keeps one page hot: its clear_flush_young says the page was
// used every time reclaim asks.
struct HotPage {
  MmuNotifier mn;
  uint64_t hot = 0;
  std::atomic<int> asked{0};
};

TEST_F(VmscanTest, PageASecondaryMmuKeepsHotIsNeverReclaimed) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 9).ok());
  static MmuNotifierOps ops;
  ops.clear_flush_young = [](MmuNotifier* mn, Mm*, uint64_t start, uint64_t end) {
    auto* h = reinterpret_cast<HotPage*>(mn);
    if (h->hot < start || h->hot >= end) return 0;
    h->asked++;
    return 1;
  };
  HotPage hot;
  hot.mn.ops = &ops;
  hot.hot = W + 3 * P;
  ASSERT_EQ(mmu_notifier_register(&hot.mn, p1()->mm()), Errno::kOk);
  for (int pass = 0; pass < 6; pass++) (void)sys().reclaim(8);
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00010000");
  EXPECT_GT(hot.asked.load(), 0);
  // Promoted by the second look that saw it used again.
  EXPECT_TRUE(page_at(p1(), W + 3 * P)->test(PG_active));
  mmu_notifier_unregister(&hot.mn, p1()->mm());
  for (int pass = 0; pass < 6; pass++) (void)sys().reclaim(8);
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00000000");
  EXPECT_TRUE(verify(p1(), W, 8 * P, 9));
}

// folio_check_references, look by look: a fresh page (young from its fault) gets a second
// chance; used again by the next look it is promoted; unused at the next look it goes.
TEST_F(VmscanTest, SecondChanceThenPromotionOrReclaim) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  lru_add_drain_all(sys().mem());
  auto look = [&](uint64_t addr) {
    Page* page = page_at(p1(), addr);
    EXPECT_TRUE(folio_isolate_lru(sys().mem(), page));
    std::vector<Page*> one{page}, keep;
    ScanControl sc;
    const uint64_t freed = shrink_folio_list(&sys(), one, sc, &keep);
    move_folios_to_lru(sys().mem().lruvec(), keep.data(), keep.size());
    return freed;
  };
  for (uint64_t addr : {W, W + P}) {
    EXPECT_EQ(look(addr), 0u);
    EXPECT_TRUE(page_at(p1(), addr)->test(PG_referenced));
    EXPECT_FALSE(page_at(p1(), addr)->test(PG_active));
  }
  ASSERT_TRUE(touch_read(p1(), W + P).ok());  // used again
  EXPECT_EQ(look(W + P), 0u);
  EXPECT_TRUE(page_at(p1(), W + P)->test(PG_active));
  EXPECT_EQ(look(W), 1u);  // not used since the last look
  EXPECT_EQ(mincore(p1(), W, 2 * P), "01");
  EXPECT_TRUE(verify(p1(), W, P, 1));
}

TEST_F(VmscanTest, PageoutWithSwapSwapsOutAndMincoreSeesIt) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 0x5a).ok());
  ASSERT_TRUE(sys().madvise(p1(), W, 8 * P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00000000");
  EXPECT_EQ(event(PSWPOUT), 8);
  EXPECT_TRUE(verify(p1(), W, 8 * P, 0x5a));
  EXPECT_EQ(mincore(p1(), W, 8 * P), "11111111");
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(VmscanTest, ForkedPageComesBackSharedAndWriteProtected) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 4).ok());
  Process* kid = sys().fork(p1()).value();
  // Shared by two processes: pageout leaves it (it is not exclusive to the caller)...
  ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, P), "1");
  // ... reclaim takes it from both.
  for (int pass = 0; pass < 4 && mincore(p1(), W, P) == "1"; pass++) (void)sys().reclaim(4);
  ASSERT_EQ(mincore(p1(), W, P), "0");
  EXPECT_EQ(mincore(kid, W, P), "0");
  EXPECT_TRUE(verify(kid, W, P, 4));
  EXPECT_TRUE(verify(p1(), W, P, 4));
  Page* a = page_at(p1(), W);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a, page_at(kid, W));
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_FALSE(pte_write(pte_at(kid, W)));
  ASSERT_TRUE(fill(kid, W, P, 5).ok());
  EXPECT_NE(page_at(kid, W), page_at(p1(), W));
  EXPECT_TRUE(verify(p1(), W, P, 4));
  EXPECT_TRUE(verify(kid, W, P, 5));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

// A remote mapper (an XPMEM/GRU-style subscriber with a reverse map of its own) hears when
// reclaim takes a page it marked away from every primary mapping.
struct RemoteMapper {
  MmuRmapNotifier mrn;
  std::vector<uint64_t> invalidated;
};

TEST_F(VmscanTest, ReclaimTellsRmapNotifiersOfExternalRmapPages) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 6).ok());
  const uint64_t pfn = pte_pfn(pte_at(p1(), W));
  static MmuRmapNotifierOps ops;
  ops.invalidate_page = [](MmuRmapNotifier* mrn, Page* page, uint64_t pfn) {
    EXPECT_TRUE(page->test(PG_locked));
    reinterpret_cast<RemoteMapper*>(mrn)->invalidated.push_back(pfn);
  };
  RemoteMapper remote;
  remote.mrn.ops = &ops;
  mmu_rmap_notifier_register(&sys(), &remote.mrn);
  set_page_external_rmap(&sys(), pfn);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, 2 * P), "00");
  EXPECT_EQ(remote.invalidated, std::vector<uint64_t>{pfn});  // the unmarked page: no call
  mmu_rmap_notifier_unregister(&sys(), &remote.mrn);
  EXPECT_TRUE(verify(p1(), W, 2 * P, 6));
}

class PressureTest : public VmscanTest {
 protected:
  PressureTest() : VmscanTest(small_machine(8)) {}
};

TEST_F(PressureTest, KswapdAndDirectReclaimLetAnAddressSpaceOutgrowMemory) {
  ASSERT_TRUE(sys().swapon(64 << 20).ok());
  const uint64_t pages = (24ull << 20) / P;  // three times the machine's memory
  map(p1(), W, pages * P);
  for (uint64_t i = 0; i < pages; i++)
    ASSERT_TRUE(fill(p1(), W + i * P, P, static_cast<uint8_t>(i * 7 + 1)).ok()) << i;
  for (uint64_t i = 0; i < pages; i++)
    ASSERT_TRUE(verify(p1(), W + i * P, P, static_cast<uint8_t>(i * 7 + 1))) << i;
  EXPECT_GT(event(PSWPOUT), 0);
  EXPECT_GT(event(PSWPIN), 0);
  EXPECT_EQ(event(OOM_KILL), 0);
  EXPECT_TRUE(p1()->alive());
  sys().debug_pause_reclaim();
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
  sys().debug_resume_reclaim();
}

TEST_F(PressureTest, OomKillerTakesTheLargestProcessAndTheAllocationGoesOn) {
  // No swap: nothing can be reclaimed. Process 1 holds most of memory; process 2 then asks
  // for more than is left.
  Process* big_p = p1();  // (process(1) answers nullptr once it has exited)
  Process* small = sys().fork(big_p).value();
  const uint64_t big = (6ull << 20) / P;
  map(big_p, W, big * P);
  ASSERT_TRUE(fill(big_p, W, big * P, 1).ok());
  const uint64_t want = (3ull << 20) / P;
  const uint64_t base = W + 0x10000000;
  map(small, base, want * P);
  AccessResult r = fill(small, base, want * P, 2);
  EXPECT_TRUE(r.ok()) << static_cast<int>(r.kind);
  EXPECT_EQ(event(OOM_KILL), 1);
  EXPECT_TRUE(small->alive());
  // The victim is killed at once and exits after its reap.
  EXPECT_EQ(sys().mmap(big_p, W, P, RW, PRIV).error(), Errno::kSrch);
  for (int i = 0; i < 1000 && big_p->alive(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_FALSE(big_p->alive());
  EXPECT_TRUE(verify(small, base, want * P, 2));
}

// An interval subscriber that cannot invalidate without sleeping: non-blockable ranges get
// false (-EAGAIN) until it has refused `refusals` of them.
struct SleepySub {
  MmuIntervalNotifier sub;
  std::atomic<int> refusals{3};
  std::atomic<int> refused{0};
  std::atomic<int> nonblock_seen{0};
};

TEST_F(PressureTest, OomReaperTakesTheSubscribersEagainPathAndRetries) {
  Process* big_p = p1();
  Process* small = sys().fork(big_p).value();
  const uint64_t big = (6ull << 20) / P;
  map(big_p, W, big * P);
  ASSERT_TRUE(fill(big_p, W, big * P, 1).ok());
  static MmuIntervalNotifierOps ops;
  ops.invalidate = [](MmuIntervalNotifier* s, const MmuNotifierRange* range, uint64_t seq) {
    auto* me = reinterpret_cast<SleepySub*>(s);
    if (!mmu_notifier_range_blockable(range)) {
      me->nonblock_seen++;
      if (me->refused.load() < me->refusals.load()) {
        me->refused++;
        return false;
      }
    }
    mmu_interval_set_seq(s, seq);
    return true;
  };
  SleepySub sleepy;
  ASSERT_EQ(mmu_interval_notifier_insert(&sleepy.sub, big_p->mm(), W, big * P, &ops), Errno::kOk);
  const uint64_t base = W + 0x10000000;
  const uint64_t want = (3ull << 20) / P;
  map(small, base, want * P);
  EXPECT_TRUE(fill(small, base, want * P, 2).ok());
  for (int i = 0; i < 2000 && big_p->alive(); i++) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_FALSE(big_p->alive());
  EXPECT_EQ(sleepy.refused.load(), 3);
  EXPECT_GE(sleepy.nonblock_seen.load(), 4);
  EXPECT_GE(sys().debug_oom_reap_retries(), 3u);
  mmu_interval_notifier_remove(&sleepy.sub);
}

// Fork racing reclaim of the parent's pages: a reclaimer thread keeps swapping while the
// parent forks, writes and the children exit; every byte read back is the one last written.
TEST_F(VmscanTest, ForkRacingReclaimKeepsEveryByte) {
  ASSERT_TRUE(sys().swapon(32 << 20).ok());
  constexpr uint64_t kPages = 64;
  map(p1(), W, kPages * P);
  std::vector<uint8_t> want(kPages);
  for (uint64_t i = 0; i < kPages; i++) {
    want[i] = static_cast<uint8_t>(i + 1);
    ASSERT_TRUE(fill(p1(), W + i * P, P, want[i]).ok());
  }
  std::atomic<bool> stop{false};
  BoundedThread reclaimer([&] {
    System::bind_thread_to_cpu(-1);
    while (!stop.load()) (void)sys().reclaim(16);
  });
  for (int round = 0; round < 100; round++) {
    Process* kid = sys().fork(p1()).value();
    const uint64_t i = (round * 13) % kPages;
    want[i] = static_cast<uint8_t>(want[i] + 1);
    ASSERT_TRUE(fill(p1(), W + i * P, P, want[i]).ok());
    ASSERT_TRUE(verify(kid, W + ((i + 1) % kPages) * P, P, want[(i + 1) % kPages]));
    sys().exit(kid);
  }
  stop = true;
  reclaimer.join("reclaimer", std::chrono::seconds(120));
  for (uint64_t i = 0; i < kPages; i++) EXPECT_TRUE(verify(p1(), W + i * P, P, want[i])) << i;
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

}  // namespace
}  // namespace mirrormm::testing
