// The LRU lists (src/mm/lru.h, src/mm/swap.cc): which list new pages join and when, the
// per-CPU add batches (queued and orphaned pages), folio_mark_accessed's promotion rules, isolation
// and putback, MADV_COLD, pages leaving the lists when freed, and concurrency (faults on
// several CPUs, isolation racing frees).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "mm/lru.h"
#include "mm/shmem.h"
#include "mm/vmstat.h"
#include "mm_test_util.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

using namespace mirrormm::testing;

const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(120)));

// Runs the calling thread as CPU `cpu` for a scope (the per-CPU add batch it fills).
class AsCpu {
 public:
  explicit AsCpu(int cpu) : saved_(System::bound_cpu()) { System::bind_thread_to_cpu(cpu); }
  ~AsCpu() { System::bind_thread_to_cpu(saved_); }

 private:
  int saved_;
};

class LruTest : public ModelTest {
 protected:
  LruTest() : ModelTest(config()) {}
  static SystemConfig config() {
    SystemConfig c;
    c.memory_bytes = 64ull << 20;
    return c;
  }

  PhysMem& mem() { return sys().mem(); }
  Lruvec& lruvec() { return mem().lruvec(); }
  uint64_t size(LruList lru) { return lruvec().sizes()[lru]; }
  uint64_t total() {
    uint64_t n = 0;
    for (uint64_t s : lruvec().sizes()) n += s;
    return n;
  }
  int64_t events(VmEvent e) { return mem().events().sum(e); }
  // The pages of a list, newest first.
  std::vector<Page*> list(LruList lru) {
    std::vector<Page*> out;
    SpinGuard g(lruvec().lru_lock);
    lruvec().for_each_locked(lru, [&](Page* p) { out.push_back(p); });
    return out;
  }
  bool on_list(LruList lru, Page* page) {
    std::vector<Page*> l = list(lru);
    return std::find(l.begin(), l.end(), page) != l.end();
  }
  void expect_consistent() { EXPECT_EQ(sys().debug_check_consistency(), 0u) << messages(); }
  // One anonymous page of p1 at W, faulted in and moved to its list.
  Page* one_listed_page() {
    map(p1(), W, P);
    EXPECT_TRUE(fill(p1(), W, P, 1).ok());
    sys().lru_add_drain_all();
    return page_at(p1(), W);
  }
  std::string messages() {
    std::string out;
    for (const std::string& m : sys().violation_messages()) out += m + "\n";
    return out;
  }
};

TEST_F(LruTest, NewAnonymousPagesReachTheInactiveListThroughTheAddBatch) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 4 * P, 1).ok());
  Page* page = page_at(p1(), W);
  ASSERT_NE(page, nullptr);
  // Queued in CPU 0's batch: on no list yet. The batch holds no reference of its own, but
  // folio_ref_count counts the one Linux's would hold.
  EXPECT_FALSE(page->test(PG_lru));
  EXPECT_EQ(page->lru_state.load(), kLruQueued);
  EXPECT_TRUE(page->test(PG_swapbacked));
  EXPECT_EQ(page->refcount.load(), 1);
  EXPECT_EQ(folio_ref_count(page), 2);
  EXPECT_EQ(total(), 0u);
  expect_consistent();

  sys().lru_add_drain_all();
  EXPECT_TRUE(page->test(PG_lru));
  EXPECT_FALSE(page->test(PG_active));
  EXPECT_EQ(page->refcount.load(), 1);
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 4u);
  EXPECT_EQ(total(), 4u);
  // The oldest page is at the tail.
  std::vector<Page*> l = list(LRU_INACTIVE_ANON);
  EXPECT_EQ(l.back(), page);
  EXPECT_EQ(l.front(), page_at(p1(), W + 3 * P));
  expect_consistent();
}

TEST_F(LruTest, AFullBatchMovesToTheListWithoutADrain) {
  map(p1(), W, 64 * P);
  ASSERT_TRUE(fill(p1(), W, (kFolioBatchSize - 1) * P, 1).ok());
  EXPECT_EQ(total(), 0u);
  ASSERT_TRUE(fill(p1(), W + (kFolioBatchSize - 1) * P, P, 1).ok());
  EXPECT_EQ(size(LRU_INACTIVE_ANON), static_cast<uint64_t>(kFolioBatchSize));
  ASSERT_TRUE(fill(p1(), W + kFolioBatchSize * P, P, 1).ok());
  EXPECT_EQ(size(LRU_INACTIVE_ANON), static_cast<uint64_t>(kFolioBatchSize));
  expect_consistent();
}

TEST_F(LruTest, ReadFaultsMapTheZeroPageWhichIsOnNoList) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(touch_read(p1(), W).ok());
  sys().lru_add_drain_all();
  EXPECT_EQ(page_at(p1(), W), nullptr);
  EXPECT_EQ(total(), 0u);
}

TEST_F(LruTest, ShmemPagesAreSwapBackedAndJoinTheAnonLists) {
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 2 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  map(p1(), W + 4 * P, P, RW, SHARED);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  ASSERT_TRUE(fill(p1(), W + 4 * P, P, 1).ok());
  sys().lru_add_drain_all();
  Page* page = page_at(p1(), W);
  ASSERT_NE(page, nullptr);
  EXPECT_TRUE(page->test(PG_shmem));
  EXPECT_TRUE(page->test(PG_swapbacked));
  EXPECT_TRUE(page->test(PG_lru));
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 3u);
  EXPECT_EQ(size(LRU_INACTIVE_FILE), 0u);
  // The file keeps its pages (and their places on the list) after the mapping goes.
  ASSERT_TRUE(sys().munmap(p1(), W, 8 * P).ok());
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 2u);
  ASSERT_TRUE(sys().truncate("f", 0).ok());
  EXPECT_EQ(total(), 0u);
  expect_consistent();
}

TEST_F(LruTest, CopyOnWriteCopiesJoinTheListAndForkSharesTheOriginal) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  sys().lru_add_drain_all();
  Process* child = sys().fork(p1()).value();
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 2u);  // shared, still listed once
  ASSERT_TRUE(fill(child, W, 1, 2).ok());
  sys().lru_add_drain_all();
  Page* copy = page_at(child, W);
  ASSERT_NE(copy, page_at(p1(), W));
  EXPECT_TRUE(copy->test(PG_lru));
  EXPECT_TRUE(copy->test(PG_swapbacked));
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 3u);
  expect_consistent();
  sys().exit(child);
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 2u);
}

TEST_F(LruTest, CopyOnWriteReusesAPageOnlyAnAddBatchAlsoHolds) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());
  Process* child = sys().fork(p1()).value();
  {
    // A zap on another CPU: its page free drains that CPU's batches (free_pages_and_swap_cache),
    // not CPU 0's, which holds the page.
    AsCpu cpu(1);
    ASSERT_TRUE(sys().madvise(child, W, P, kMadvDontneed).ok());
  }
  Page* page = page_at(p1(), W);
  ASSERT_FALSE(page->test(PG_anon_exclusive));
  ASSERT_EQ(folio_ref_count(page), 2);  // the PTE and (as Linux counts) CPU 0's add batch
  // wp_can_reuse_anon_folio drains the batch rather than copy a page nobody else maps.
  ASSERT_TRUE(fill(p1(), W, 1, 2).ok());
  EXPECT_EQ(page_at(p1(), W), page);
  EXPECT_TRUE(page->test(PG_lru));
  EXPECT_EQ(page->refcount.load(), 1);
}

TEST_F(LruTest, APageUnmappedWhileQueuedIsFreedByItsBatchsDrain) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());  // queued in CPU 0's batch
  Page* page = page_at(p1(), W);
  const uint64_t used = mem().nr_used();
  {
    AsCpu cpu(1);  // a zap on another CPU drains that CPU's batch, not CPU 0's
    ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvDontneed).ok());
  }
  // The last reference went while the page waited: orphaned, not freed.
  EXPECT_EQ(page->lru_state.load(), kLruOrphaned);
  EXPECT_EQ(page->refcount.load(), 0);
  EXPECT_FALSE(page->test(PG_free));
  EXPECT_EQ(mem().nr_used(), used);
  expect_consistent();
  sys().lru_add_drain_all();
  EXPECT_TRUE(page->test(PG_free));
  EXPECT_EQ(page->lru_state.load(), kLruNone);
  EXPECT_EQ(mem().nr_used(), used - 1);
  EXPECT_EQ(total(), 0u);
  expect_consistent();
}

TEST_F(LruTest, TheCheckerFindsAPageMarkedQueuedThatNoBatchHolds) {
  Page* page = one_listed_page();
  ASSERT_TRUE(page->test(PG_lru));
  expect_consistent();
  // A queued mark with no batch entry would keep the page from ever being freed by its last
  // put; the lists' checker reports it (the mark is restored before the lists are touched).
  page->lru_state.store(kLruQueued);
  const uint64_t before = sys().violations();
  EXPECT_GT(sys().debug_check_consistency(), 0u);
  page->lru_state.store(kLruListed);
  bool named = false;
  for (const std::string& m : sys().violation_messages())
    named |= m.find("is marked queued but no add batch holds it") != std::string::npos;
  EXPECT_TRUE(named) << messages();
  EXPECT_GT(sys().violations(), before);
}

TEST_F(LruTest, FreedPagesLeaveTheListsAndLoseTheirFlags) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 1).ok());
  sys().lru_add_drain_all();
  Page* page = page_at(p1(), W);
  {
    AsCpu cpu(0);  // the batch the page is marked active in
    folio_mark_accessed(mem(), page);
    folio_mark_accessed(mem(), page);
  }
  EXPECT_TRUE(page->test(PG_active));
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
  EXPECT_EQ(total(), 8u);  // the child still maps them
  sys().exit(child);
  EXPECT_EQ(total(), 4u);
  EXPECT_TRUE(page->test(PG_free));
  EXPECT_EQ(page->flags.load(), uint32_t{PG_free});  // PG_lru, PG_active, PG_swapbacked gone
  EXPECT_EQ(page->lru_prev, 0u);
  EXPECT_EQ(page->lru_next, 0u);
  sys().exit(p1());
  sys().lru_add_drain_all();
  EXPECT_EQ(total(), 0u);
  EXPECT_EQ(mem().nr_used(), 0u);
  expect_consistent();
}

TEST_F(LruTest, ExitOfEveryProcessEmptiesTheLists) {
  map(p1(), W, 40 * P);
  ASSERT_TRUE(fill(p1(), W, 40 * P, 1).ok());
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(fill(child, W, 5 * P, 2).ok());  // copies, queued on CPU 0
  sys().exit(p1());
  sys().exit(child);
  sys().lru_add_drain_all();
  EXPECT_EQ(total(), 0u);
  EXPECT_EQ(mem().nr_used(), 0u);
  expect_consistent();
}

TEST_F(LruTest, MarkAccessedPromotesOnTheSecondUse) {
  Page* page = one_listed_page();
  const int64_t activated = events(PGACTIVATE);
  folio_mark_accessed(mem(), page);  // inactive, unreferenced -> referenced
  EXPECT_TRUE(page->test(PG_referenced));
  EXPECT_FALSE(page->test(PG_active));
  EXPECT_TRUE(on_list(LRU_INACTIVE_ANON, page));
  folio_mark_accessed(mem(), page);  // inactive, referenced -> active, unreferenced
  EXPECT_TRUE(page->test(PG_active));
  EXPECT_FALSE(page->test(PG_referenced));
  EXPECT_TRUE(on_list(LRU_ACTIVE_ANON, page));
  EXPECT_EQ(list(LRU_ACTIVE_ANON).front(), page);
  EXPECT_EQ(events(PGACTIVATE), activated + 1);
  folio_mark_accessed(mem(), page);  // active -> active and referenced
  EXPECT_TRUE(page->test(PG_active));
  EXPECT_TRUE(page->test(PG_referenced));
  folio_mark_accessed(mem(), page);
  EXPECT_EQ(events(PGACTIVATE), activated + 1);
  EXPECT_EQ(size(LRU_ACTIVE_ANON), 1u);
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 0u);
  expect_consistent();
}

TEST_F(LruTest, MarkAccessedOfABatchedPageActivatesItAtTheDrain) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());  // CPU 0's batch
  Page* page = page_at(p1(), W);
  const int64_t activated = events(PGACTIVATE);
  {
    AsCpu cpu(0);
    folio_mark_accessed(mem(), page);
    folio_mark_accessed(mem(), page);
    EXPECT_TRUE(page->test(PG_active));
    EXPECT_FALSE(page->test(PG_lru));
    lru_add_drain(mem());
  }
  EXPECT_TRUE(on_list(LRU_ACTIVE_ANON, page));
  EXPECT_EQ(events(PGACTIVATE), activated);  // not a move between lists
}

TEST_F(LruTest, MarkAccessedFromAnotherCpuLeavesABatchedPageInactive) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());  // CPU 0's batch
  Page* page = page_at(p1(), W);
  {
    AsCpu cpu(1);
    folio_mark_accessed(mem(), page);
    folio_mark_accessed(mem(), page);
  }
  EXPECT_FALSE(page->test(PG_active));
  sys().lru_add_drain_all();
  EXPECT_TRUE(on_list(LRU_INACTIVE_ANON, page));
}

TEST_F(LruTest, UnevictablePagesStayPut) {
  Page* page = one_listed_page();
  ASSERT_TRUE(folio_isolate_lru(mem(), page));
  page->set(PG_unevictable);
  folio_putback_lru(mem(), page);
  EXPECT_TRUE(on_list(LRU_UNEVICTABLE, page));
  folio_mark_accessed(mem(), page);
  folio_mark_accessed(mem(), page);
  folio_activate(mem(), page);
  folio_deactivate(mem(), page);
  EXPECT_TRUE(on_list(LRU_UNEVICTABLE, page));
  EXPECT_FALSE(page->test(PG_active));
  expect_consistent();
}

TEST_F(LruTest, PopulateTouchesPagesAsGupDoes) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvPopulateWrite).ok());
  Page* page = page_at(p1(), W);
  ASSERT_NE(page, nullptr);
  EXPECT_TRUE(page->test(PG_referenced));  // FOLL_TOUCH: one use
  // The second populate finds the page still in this thread's batch and activates it there.
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvPopulateRead).ok());
  EXPECT_TRUE(page->test(PG_active));
  sys().lru_add_drain_all();
  EXPECT_EQ(size(LRU_ACTIVE_ANON), 2u);
  EXPECT_EQ(events(PGFAULT), 2);  // GUP's faults count; the second populate took none
}

TEST_F(LruTest, IsolateTakesAReferenceAndPutbackReturnsIt) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  Page* page = page_at(p1(), W);
  EXPECT_FALSE(folio_isolate_lru(mem(), page));  // still in a batch
  EXPECT_EQ(folio_ref_count(page), 2);
  sys().lru_add_drain_all();
  ASSERT_TRUE(folio_isolate_lru(mem(), page));
  EXPECT_FALSE(page->test(PG_lru));
  EXPECT_EQ(page->refcount.load(), 2);
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 1u);
  EXPECT_FALSE(folio_isolate_lru(mem(), page));  // already isolated
  EXPECT_EQ(page->refcount.load(), 2);
  folio_putback_lru(mem(), page);
  EXPECT_TRUE(page->test(PG_lru));
  EXPECT_EQ(page->refcount.load(), 1);
  EXPECT_EQ(list(LRU_INACTIVE_ANON).front(), page);  // back at the head
  expect_consistent();
}

TEST_F(LruTest, PutbackOfAPageWhoseMappingWentFreesIt) {
  Page* page = one_listed_page();
  ASSERT_TRUE(folio_isolate_lru(mem(), page));
  ASSERT_TRUE(sys().munmap(p1(), W, P).ok());
  EXPECT_FALSE(page->test(PG_free));  // the isolation reference keeps it
  EXPECT_EQ(page->refcount.load(), 1);
  const uint64_t free_before = mem().nr_free();
  EXPECT_EQ(move_folios_to_lru(lruvec(), &page, 1), 0u);
  EXPECT_TRUE(page->test(PG_free));
  EXPECT_EQ(mem().nr_free(), free_before + 1);
  EXPECT_EQ(total(), 0u);
  expect_consistent();
}

TEST_F(LruTest, ScannerIsolatesTheOldestPagesFirst) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 1).ok());
  sys().lru_add_drain_all();
  std::vector<Page*> taken;
  size_t scanned = 0;
  EXPECT_EQ(isolate_lru_folios(lruvec(), LRU_INACTIVE_ANON, 3, &taken, &scanned), 3u);
  EXPECT_EQ(scanned, 3u);
  ASSERT_EQ(taken.size(), 3u);
  for (int i = 0; i < 3; i++) {
    EXPECT_EQ(taken[i], page_at(p1(), W + i * P)) << i;
    EXPECT_FALSE(taken[i]->test(PG_lru));
    EXPECT_EQ(taken[i]->refcount.load(), 2);
  }
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 5u);
  EXPECT_EQ(move_folios_to_lru(lruvec(), taken.data(), taken.size()), 3u);
  EXPECT_EQ(size(LRU_INACTIVE_ANON), 8u);
  // Put back at the head: the next scan starts with page 3.
  std::vector<Page*> next;
  EXPECT_EQ(isolate_lru_folios(lruvec(), LRU_INACTIVE_ANON, 1, &next), 1u);
  EXPECT_EQ(next[0], page_at(p1(), W + 3 * P));
  move_folios_to_lru(lruvec(), next.data(), next.size());
  // Asking for more than the list holds scans each page once.
  std::vector<Page*> all;
  EXPECT_EQ(isolate_lru_folios(lruvec(), LRU_INACTIVE_ANON, 100, &all, &scanned), 8u);
  EXPECT_EQ(scanned, 8u);
  move_folios_to_lru(lruvec(), all.data(), all.size());
  EXPECT_EQ(isolate_lru_folios(lruvec(), LRU_ACTIVE_ANON, 4, &all, &scanned), 0u);
  EXPECT_EQ(scanned, 0u);
  expect_consistent();
}

TEST_F(LruTest, ScannerSkipsAPageWhoseLastReferenceIsGoing) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  sys().lru_add_drain_all();
  Page* oldest = page_at(p1(), W);
  // The moment between a page's last put and its unlink by the free path: refcount 0 while
  // still linked.
  oldest->refcount.store(0);
  std::vector<Page*> taken;
  size_t scanned = 0;
  EXPECT_EQ(isolate_lru_folios(lruvec(), LRU_INACTIVE_ANON, 1, &taken, &scanned), 0u);
  EXPECT_EQ(scanned, 1u);
  EXPECT_TRUE(oldest->test(PG_lru));
  EXPECT_EQ(list(LRU_INACTIVE_ANON).front(), oldest);  // rotated to the head
  EXPECT_FALSE(folio_isolate_lru(mem(), oldest));
  oldest->refcount.store(1);
  expect_consistent();
}

TEST_F(LruTest, MadvColdClearsYoungBitsAndDeactivates) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 4 * P, 1).ok());
  sys().lru_add_drain_all();
  for (int i = 0; i < 4; i++) {
    folio_mark_accessed(mem(), page_at(p1(), W + i * P));
    folio_mark_accessed(mem(), page_at(p1(), W + i * P));
  }
  EXPECT_EQ(size(LRU_ACTIVE_ANON), 4u);
  EXPECT_TRUE(pte_young(pte_at(p1(), W)));
  const int64_t deactivated = events(PGDEACTIVATE);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvCold).ok());
  for (int i = 0; i < 2; i++) {
    Page* page = page_at(p1(), W + i * P);
    EXPECT_FALSE(pte_young(pte_at(p1(), W + i * P))) << i;
    EXPECT_FALSE(page->test(PG_active)) << i;
    EXPECT_FALSE(page->test(PG_referenced)) << i;
    EXPECT_TRUE(page->test(PG_workingset)) << i;
    EXPECT_TRUE(on_list(LRU_INACTIVE_ANON, page)) << i;
  }
  EXPECT_TRUE(pte_young(pte_at(p1(), W + 2 * P)));
  EXPECT_EQ(size(LRU_ACTIVE_ANON), 2u);
  EXPECT_EQ(events(PGDEACTIVATE), deactivated + 2);
  // The flushed TLB entry refills through the page walk, which sets the young bit again.
  ASSERT_TRUE(touch_read(p1(), W).ok());
  EXPECT_TRUE(pte_young(pte_at(p1(), W)));
  // The contents are untouched.
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{1});
  expect_consistent();
}

TEST_F(LruTest, MadvColdLeavesPagesMappedTwice) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  sys().lru_add_drain_all();
  Page* page = page_at(p1(), W);
  folio_mark_accessed(mem(), page);
  folio_mark_accessed(mem(), page);
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvCold).ok());
  EXPECT_TRUE(page->test(PG_active));
  EXPECT_TRUE(on_list(LRU_ACTIVE_ANON, page));
  sys().exit(child);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvCold).ok());
  EXPECT_FALSE(page->test(PG_active));
}

TEST_F(LruTest, MadvColdDrainsTheCallersBatchFirst) {
  map(p1(), W, P);
  AsCpu cpu(0);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());
  Page* page = page_at(p1(), W);
  folio_mark_accessed(mem(), page);
  folio_mark_accessed(mem(), page);  // active in the batch
  ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvCold).ok());
  EXPECT_TRUE(on_list(LRU_INACTIVE_ANON, page));
}

TEST_F(LruTest, AllocationDrainsTheBatchesBeforeFailing) {
  SystemConfig c;
  c.memory_bytes = 32 * P;  // 30 usable frames: 4 page tables, 16 new pages, up to 30 held
  System small(c, 2);
  Process* p = small.process(1);
  ASSERT_TRUE(small.mmap(p, W, 256 * P, RW, PRIV).ok());
  // Fault, unmap and fault again, more pages in all than the machine has: the unmapped pages
  // are held only by CPU 1's add batch, which the allocator drains when it runs dry.
  for (int round = 0; round < 8; round++) {
    AccessResult r = small.access(p, 1, W, 16 * P, true, [](uint8_t*, uint64_t, uint64_t) {});
    ASSERT_TRUE(r.ok()) << round;
    ASSERT_TRUE(small.madvise(p, W, 16 * P, kMadvDontneed).ok());
  }
  EXPECT_EQ(small.debug_check_consistency(), 0u);
}

// ---- concurrency ----

TEST(LruConcurrency, FaultsOnSeveralCpusFillTheListsExactlyOnce) {
  constexpr int kCpus = 4;
  constexpr uint64_t kPages = 300;
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  System sys(c, kCpus);
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, kCpus * kPages * P, RW, PRIV).ok());
  {
    std::vector<std::unique_ptr<testing::BoundedThread>> threads;
    for (int cpu = 0; cpu < kCpus; cpu++) {
      threads.push_back(std::make_unique<testing::BoundedThread>([&sys, p, cpu] {
        const uint64_t base = W + cpu * kPages * P;
        for (uint64_t i = 0; i < kPages; i++) {
          AccessResult r = sys.access(p, cpu, base + i * P, 1, true, [](uint8_t* d, uint64_t, uint64_t) { *d = 1; });
          ASSERT_TRUE(r.ok());
        }
      }));
    }
    for (auto& t : threads) t->join("a faulting CPU");
  }
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
  sys.lru_add_drain_all();
  EXPECT_EQ(sys.mem().lruvec().sizes()[LRU_INACTIVE_ANON], kCpus * kPages);
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
  sys.exit(p);
  sys.lru_add_drain_all();
  EXPECT_EQ(sys.mem().lruvec().sizes()[LRU_INACTIVE_ANON], 0u);
  EXPECT_EQ(sys.mem().nr_used(), 0u);
}

// Pages unmapped on one CPU while they wait in another CPU's add batch, whose drains (its own
// faults filling it, and lru_add_drain_all from a third thread) race the last puts: each page
// is freed exactly once, by the put or by the drain, and nothing stays allocated.
TEST(LruConcurrency, LastPutsRaceTheirBatchsDrain) {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  System sys(c, 3);
  Process* p = sys.process(1);
  constexpr uint64_t kPages = 40;  // more than a batch: its own faults drain it too
  ASSERT_TRUE(sys.mmap(p, W, kPages * P, RW, PRIV).ok());
  // The frames in use with the range's page tables allocated and its pages gone.
  ASSERT_TRUE(sys.access(p, 0, W, kPages * P, true, [](uint8_t*, uint64_t, uint64_t) {}).ok());
  ASSERT_TRUE(sys.madvise(p, W, kPages * P, kMadvDontneed).ok());
  sys.lru_add_drain_all();
  const uint64_t used = sys.mem().nr_used();
  std::atomic<bool> stop{false};
  {
    testing::BoundedThread drainer([&] {
      while (!stop.load(std::memory_order_relaxed)) sys.lru_add_drain_all();
    });
    testing::BoundedThread zapper([&] {
      System::bind_thread_to_cpu(1);
      while (!stop.load(std::memory_order_relaxed)) ASSERT_TRUE(sys.madvise(p, W, kPages * P, kMadvDontneed).ok());
      System::bind_thread_to_cpu(-1);
    });
    for (int round = 0; round < 300; round++) {
      AccessResult r = sys.access(p, 0, W, kPages * P, true, [](uint8_t* d, uint64_t, uint64_t) { *d = 1; });
      ASSERT_TRUE(r.ok());
    }
    stop.store(true);
    zapper.join("the zapper");
    drainer.join("the drainer");
  }
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
  ASSERT_TRUE(sys.madvise(p, W, kPages * P, kMadvDontneed).ok());
  sys.lru_add_drain_all();
  EXPECT_EQ(sys.mem().nr_used(), used);
  for (uint64_t n : sys.mem().lruvec().sizes()) EXPECT_EQ(n, 0u);
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
}

TEST(LruConcurrency, IsolationRacesFreesAndActivation) {
  constexpr int kCpus = 3;
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  System sys(c, kCpus);
  Process* p = sys.process(1);
  PhysMem& mem = sys.mem();
  constexpr uint64_t kPages = 64;
  ASSERT_TRUE(sys.mmap(p, W, 2 * kPages * P, RW, PRIV).ok());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> isolated{0};
  {
    // The scanner: isolates from the tails of both anon lists and puts back.
    testing::BoundedThread scanner([&] {
      std::vector<Page*> pages;
      while (!stop.load(std::memory_order_relaxed)) {
        pages.clear();
        isolate_lru_folios(mem.lruvec(), LRU_INACTIVE_ANON, 8, &pages);
        isolate_lru_folios(mem.lruvec(), LRU_ACTIVE_ANON, 8, &pages);
        isolated.fetch_add(pages.size(), std::memory_order_relaxed);
        move_folios_to_lru(mem.lruvec(), pages.data(), pages.size());
      }
    });
    // Two CPUs fault pages in, activate some, and free them (zap), over and over.
    std::vector<std::unique_ptr<testing::BoundedThread>> workers;
    for (int cpu = 1; cpu < kCpus; cpu++) {
      workers.push_back(std::make_unique<testing::BoundedThread>([&, cpu] {
        System::bind_thread_to_cpu(cpu);
        const uint64_t base = W + (cpu - 1) * kPages * P;
        // The last round (cold) leaves the pages mapped and drained, for the scanner to find.
        for (int round = 0; round <= 150; round++) {
          AccessResult r = sys.access(p, cpu, base, kPages * P, true, [](uint8_t*, uint64_t, uint64_t) {});
          ASSERT_TRUE(r.ok());
          for (uint64_t i = 0; i < kPages; i += 3) {
            // Under the mmap_lock, as GUP would: the PTE's reference keeps the page.
            MmapReadGuard g(p->mm());
            pte_t* ptep = pte_offset(p->mm(), base + i * P);
            if (!ptep) continue;
            SpinGuard pg(pte_lockptr(p->mm(), ptep));
            const pteval_t v = ptep_get(ptep);
            if (!pte_present(v) || pte_special(v)) continue;
            Page* page = mem.pfn_to_page(pte_pfn(v));
            folio_mark_accessed(mem, page);
            folio_mark_accessed(mem, page);
          }
          if (round % 4 == 0) lru_add_drain(mem);
          ASSERT_TRUE(sys.madvise(p, base, kPages * P, round % 2 ? kMadvDontneed : kMadvCold).ok());
        }
        lru_add_drain(mem);
        System::bind_thread_to_cpu(-1);
      }));
    }
    for (auto& w : workers) w->join("a faulting CPU", std::chrono::seconds(120));
    // However the threads were scheduled, the scanner gets to the pages left on the lists.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (isolated.load() == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    stop.store(true);
    scanner.join("the scanner");
  }
  EXPECT_GT(isolated.load(), 0u);
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
  ASSERT_TRUE(sys.munmap(p, W, 2 * kPages * P).ok());
  sys.lru_add_drain_all();
  const std::array<uint64_t, NR_LRU_LISTS> sizes = mem.lruvec().sizes();
  for (int i = 0; i < NR_LRU_LISTS; i++) EXPECT_EQ(sizes[i], 0u) << kLruListNames[i];
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
}

}  // namespace
}  // namespace mirrormm
