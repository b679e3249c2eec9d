// NUMA nodes and page migration (src/mm/physmem.cc's nodes, src/mm/migrate.cc,
// src/mm/mempolicy.cc): migration entries, their rules in mprotect and fork, faults waiting
// for a migration, and the checkers that catch the historical bugs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#include "mirrormm/device_mirror.h"
#include "mm/lru.h"
#include "mm/migrate.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm_test_util.h"
#include "support/watchdog.h"

namespace mirrormm::testing {
namespace {

using namespace std::chrono_literals;

const bool kWatchdog = install_test_watchdog(scaled(120s));

SystemConfig two_nodes() {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  c.nodes = 2;
  return c;
}

class MigrateTest : public ModelTest {
 protected:
  MigrateTest() : ModelTest(two_nodes()) {}

  PhysMem& mem() { return sys().mem(); }
  int node_of(Process* p, uint64_t addr) {
    Page* page = page_at(p, addr);
    return page ? mem().page_to_nid(page) : -1;
  }
  uint64_t migrate(Process* p, uint64_t addr, uint64_t len, int node) {
    Result<uint64_t> r = sys().migrate_pages(p, addr, len, node);
    EXPECT_TRUE(r.ok()) << errno_name(r.error());
    return r.ok() ? r.value() : ~0ull;
  }
  void expect_clean() {
    EXPECT_EQ(sys().debug_check_consistency(), 0u);
    EXPECT_EQ(sys().violations(), 0u) << (sys().violation_messages().empty() ? "" : sys().violation_messages()[0]);
  }
};

// A migration of one page run on its own thread and held at the gate, between try_to_migrate
// and the copy, until release(). The page is isolated here, as migrate_pages would.
class HeldMigration {
 public:
  HeldMigration(System& sys, Page* page, int node) : sys_(sys) {
    lru_add_drain_all(sys.mem());
    EXPECT_TRUE(folio_isolate_lru(sys.mem(), page));
    sys.debug_set_migrate_gate([this](const void*) {
      std::unique_lock<std::mutex> l(mu_);
      held_ = true;
      cv_.notify_all();
      cv_.wait(l, [this] { return released_; });
    });
    thread_ = std::thread([this, page, node] {
      result_ = migrate_folio(&sys_, page, node, &sys_);
      if (result_ == Errno::kOk) sys_.mem().put_page(page);
      else folio_putback_lru(sys_.mem(), page);
    });
    std::unique_lock<std::mutex> l(mu_);
    cv_.wait(l, [this] { return held_; });
  }
  // Lets the migration finish and returns its result.
  Errno release() {
    {
      std::lock_guard<std::mutex> l(mu_);
      released_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
    sys_.debug_set_migrate_gate(nullptr);
    return result_;
  }
  ~HeldMigration() { (void)release(); }

 private:
  System& sys_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false, released_ = false;
  Errno result_ = Errno::kOk;
  std::thread thread_;
};

TEST(NumaNodes, SplitAllocateAndFallBack) {
  SystemConfig c;
  c.memory_bytes = 8ull << 20;  // 2048 frames
  System sys(c, 2);
  EXPECT_EQ(sys.nr_nodes(), 1);
  EXPECT_EQ(sys.set_nodes(0).error(), Errno::kInval);
  EXPECT_EQ(sys.set_nodes(65).error(), Errno::kInval);
  ASSERT_TRUE(sys.set_nodes(2).ok());
  EXPECT_EQ(sys.nr_nodes(), 2);
  PhysMem& mem = sys.mem();
  EXPECT_EQ(mem.node_frames(0) + mem.node_frames(1), mem.nr_frames());
  EXPECT_EQ(mem.cpu_to_node(0), 0);
  EXPECT_EQ(mem.cpu_to_node(1), 1);
  // A thread that runs as no CPU allocates on node 0; node 1 on request.
  Page* a = mem.alloc_page(Zero::kNo);
  Page* b = mem.alloc_page_node(1, NodeFallback::kThisNode, Zero::kNo);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(mem.page_to_nid(a), 0);
  EXPECT_EQ(mem.page_to_nid(b), 1);
  // Empty node 1, then: THISNODE fails, the default falls back to node 0.
  std::vector<Page*> taken;
  while (Page* p = mem.alloc_page_node(1, NodeFallback::kThisNode, Zero::kNo)) taken.push_back(p);
  EXPECT_EQ(mem.node_nr_free(1), 0u);
  EXPECT_EQ(mem.alloc_page_node(1, NodeFallback::kThisNode, Zero::kNo), nullptr);
  Page* fb = mem.alloc_page_node(1, NodeFallback::kYes, Zero::kNo);
  ASSERT_NE(fb, nullptr);
  EXPECT_EQ(mem.page_to_nid(fb), 0);
  for (Page* p : taken) mem.put_page(p);
  mem.put_page(a);
  mem.put_page(b);
  mem.put_page(fb);
  // A CPU allocates from its own node.
  Process* p1 = sys.process(1);
  ASSERT_TRUE(sys.mmap(p1, W, 4 * P, RW, PRIV).ok());
  ASSERT_TRUE(sys.access(p1, 1, W, P, true, [](uint8_t* d, uint64_t, uint64_t) { *d = 1; }).ok());
  Result<PageInfo> info = sys.pageinfo(p1, W);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info.value().node, 1);
  // Only before any mapping.
  EXPECT_EQ(sys.set_nodes(4).error(), Errno::kBusy);
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
}

TEST(NumaNodes, ExplicitSizes) {
  SystemConfig c;
  c.memory_bytes = 8ull << 20;
  c.nodes = 2;
  c.node_memory_bytes = {2ull << 20, 6ull << 20};
  System sys(c);
  EXPECT_EQ(sys.mem().node_frames(0), 512u);
  EXPECT_EQ(sys.mem().node_frames(1), 1536u);
}

TEST_F(MigrateTest, AnonymousPagesMoveWithDataAndState) {
  map(p1(), W, 8 * P);
  write_pattern(p1(), W, 8 * P, 3);
  for (uint64_t i = 0; i < 8; i++) EXPECT_EQ(node_of(p1(), W + i * P), 0);
  const pteval_t before = pte_at(p1(), W);
  EXPECT_EQ(migrate(p1(), W, 8 * P, 1), 8u);
  for (uint64_t i = 0; i < 8; i++) EXPECT_EQ(node_of(p1(), W + i * P), 1);
  const pteval_t after = pte_at(p1(), W);
  EXPECT_NE(pte_pfn(before), pte_pfn(after));
  // The PTE's bits (writable, dirty, young) and the page's state come along.
  EXPECT_EQ(before & ~kPfnMask, after & ~kPfnMask);
  Result<PageInfo> info = sys().pageinfo(p1(), W);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info.value().node, 1);
  EXPECT_EQ(info.value().mapcount, 1);
  const std::vector<std::string>& flags = info.value().flags;
  EXPECT_NE(std::find(flags.begin(), flags.end(), "anon_exclusive"), flags.end());
  EXPECT_TRUE(has_pattern(p1(), W, 8 * P, 3));
  // Already there: nothing moves.
  EXPECT_EQ(migrate(p1(), W, 8 * P, 1), 0u);
  EXPECT_EQ(migrate(p1(), W, 8 * P, 0), 8u);
  EXPECT_TRUE(has_pattern(p1(), W, 8 * P, 3));
  // A write reuses the exclusive page: no copy.
  const pfn_t pfn = pte_pfn(pte_at(p1(), W));
  fill(p1(), W, 1, 9);
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), pfn);
  expect_clean();
}

TEST_F(MigrateTest, OldAndCleanPteStaysOldAndClean) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 1);
  pte_t* ptep = pte_offset(p1()->mm(), W);
  ptep->fetch_and(~(_PAGE_ACCESSED | _PAGE_DIRTY));
  flush_tlb_page(p1()->mm(), W);
  page_at(p1(), W)->clear(PG_dirty);
  EXPECT_EQ(migrate(p1(), W, P, 1), 1u);
  const pteval_t v = pte_at(p1(), W);
  EXPECT_FALSE(pte_young(v));
  EXPECT_FALSE(pte_dirty(v));
  EXPECT_TRUE(pte_write(v));
  expect_clean();
}

TEST_F(MigrateTest, ErrorsFollowMigratePages) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  EXPECT_EQ(sys().migrate_pages(p1(), W, P, 2).error(), Errno::kInval);
  EXPECT_EQ(sys().migrate_pages(p1(), W, P, -1).error(), Errno::kInval);
  EXPECT_EQ(sys().migrate_pages(p1(), W + 1, P, 1).error(), Errno::kInval);
  EXPECT_EQ(sys().migrate_pages(p1(), W, 8 * P, 1).error(), Errno::kFault);  // a hole
  EXPECT_EQ(node_of(p1(), W), 0);  // nothing moved
  EXPECT_EQ(migrate(p1(), W, 0, 1), 0u);
  // Not-present pages and the zero page are not counted.
  map(p1(), W + 16 * P, 2 * P);
  touch_read(p1(), W + 16 * P);
  EXPECT_EQ(migrate(p1(), W + 16 * P, 2 * P, 1), 0u);
  expect_clean();
}

TEST_F(MigrateTest, MovePagesReportsPerPage) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 2 * P, 1);
  touch_read(p1(), W + 2 * P);  // the zero page
  std::vector<int> status;
  ASSERT_TRUE(sys().move_pages(p1(), {W, W + P, W + 2 * P, W + 3 * P, W + 64 * P}, {1, 0, 1, 1, 1}, &status).ok());
  // As the host answers: the zero page -EFAULT, nothing present -ENOENT, no VMA -EFAULT.
  EXPECT_EQ(status, (std::vector<int>{1, 0, -14, -2, -14}));
  EXPECT_EQ(node_of(p1(), W), 1);
  ASSERT_TRUE(sys().move_pages(p1(), {W, W + P, W + 2 * P, W + 3 * P}, {}, &status).ok());
  EXPECT_EQ(status, (std::vector<int>{1, 0, -14, -2}));
  EXPECT_EQ(sys().move_pages(p1(), {W}, {5}, &status).error(), Errno::kNoDev);
  EXPECT_EQ(sys().move_pages(p1(), {W}, {0, 1}, &status).error(), Errno::kInval);
  expect_clean();
}

TEST_F(MigrateTest, SharedMemoryPageCacheSlotIsReplaced) {
  map(p1(), W, 4 * P, RW, SHARED);
  write_pattern(p1(), W, 4 * P, 5);
  Page* old = page_at(p1(), W);
  auto* inode = static_cast<ShmemInode*>(old->mapping);
  EXPECT_EQ(migrate(p1(), W, 4 * P, 1), 4u);
  Page* now = page_at(p1(), W);
  EXPECT_EQ(mem().page_to_nid(now), 1);
  Page* cached = inode->filemap_get_folio(0);
  EXPECT_EQ(cached, now);
  mem().put_page(cached);
  EXPECT_TRUE(now->test(PG_shmem));
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 5));
  expect_clean();
}

TEST_F(MigrateTest, SwapCachePageKeepsItsSlot) {
  ASSERT_TRUE(sys().swapon(1 << 20).ok());
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 7);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvPageout).ok());
  ASSERT_TRUE(is_swap_pte(pte_at(p1(), W)));
  // A read fault brings it back and leaves the copy in the swap cache.
  ASSERT_TRUE(has_pattern(p1(), W, 2 * P, 7));
  Page* old = page_at(p1(), W);
  ASSERT_TRUE(old && old->test(PG_swapcache));
  const uint64_t entry = old->swap;
  EXPECT_EQ(migrate(p1(), W, 2 * P, 1), 2u);
  Page* now = page_at(p1(), W);
  EXPECT_EQ(mem().page_to_nid(now), 1);
  EXPECT_TRUE(now->test(PG_swapcache));
  EXPECT_EQ(now->swap, entry);
  EXPECT_EQ(swap_cache_peek(&sys(), entry), now);
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 7));
  expect_clean();
}

TEST_F(MigrateTest, OneMigrationMovesEveryProcesssMapping) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 2);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Process* p2 = child.value();
  EXPECT_EQ(migrate(p2, W, 4 * P, 1), 4u);  // from the child: the parent's mappings move too
  EXPECT_EQ(node_of(p1(), W), 1);
  EXPECT_EQ(page_at(p1(), W), page_at(p2, W));
  EXPECT_EQ(page_at(p1(), W)->mapcount.load(), 2);
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  // COW still works on the new page.
  fill(p2, W, 1, 0xee);
  EXPECT_NE(page_at(p1(), W), page_at(p2, W));
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 2));
  expect_clean();
}

TEST_F(MigrateTest, PinnedPageStaysAndItsMappingsComeBack) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 4);
  Page* page = page_at(p1(), W);
  const pteval_t before = pte_at(p1(), W);
  mem().get_page(page);  // a pin (get_user_pages' reference)
  EXPECT_EQ(migrate(p1(), W, P, 1), 0u);
  EXPECT_EQ(page_at(p1(), W), page);
  EXPECT_EQ(pte_at(p1(), W) & (kPfnMask | _PAGE_RW), before & (kPfnMask | _PAGE_RW));
  EXPECT_TRUE(page->test(PG_anon_exclusive));
  std::vector<int> status;
  ASSERT_TRUE(sys().move_pages(p1(), {W}, {1}, &status).ok());
  EXPECT_EQ(status[0], -static_cast<int>(Errno::kAgain));
  mem().put_page(page);
  EXPECT_TRUE(has_pattern(p1(), W, P, 4));
  lru_add_drain_all(mem());
  EXPECT_EQ(migrate(p1(), W, P, 1), 1u);
  expect_clean();
}

TEST_F(MigrateTest, FaultsWaitForAHeldMigrationAndSeeTheNewPage) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 6);
  Page* page = page_at(p1(), W);
  HeldMigration held(sys(), page, 1);
  const pteval_t entry = pte_at(p1(), W);
  ASSERT_TRUE(is_migration_entry(entry));
  EXPECT_TRUE(is_writable_migration_entry(entry));
  EXPECT_EQ(mincore(p1(), W, P), "1");
  std::atomic<bool> done{false};
  std::thread reader([&] {
    EXPECT_TRUE(has_pattern(p1(), W, P, 6));
    done = true;
  });
  std::this_thread::sleep_for(50ms);
  EXPECT_FALSE(done.load());  // waiting at the migration entry
  EXPECT_EQ(held.release(), Errno::kOk);
  reader.join();
  EXPECT_TRUE(done.load());
  EXPECT_EQ(node_of(p1(), W), 1);
  expect_clean();
}

TEST_F(MigrateTest, DeviceFaultsWaitAndSeeTheMigrateInvalidation) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 6);
  Result<std::unique_ptr<DeviceMirror>> dev = DeviceMirror::attach(p1(), DeviceMirror::Mode::kInterval, W, P);
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(dev.value()->fault(W, P, false).ok());
  (void)dev.value()->take_events();
  Page* page = page_at(p1(), W);
  std::atomic<bool> done{false};
  std::thread device;
  {
    HeldMigration held(sys(), page, 1);
    std::vector<DeviceMirror::Event> events = dev.value()->take_events();
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].event, MmuNotifyEvent::kMigrate);
    EXPECT_EQ(events[0].start, W);
    EXPECT_EQ(events[0].end, W + P);
    device = std::thread([&] {
      EXPECT_TRUE(dev.value()->fault(W, P, true).ok());  // GUP through hmm: waits at the entry
      done = true;
    });
    std::this_thread::sleep_for(50ms);
    EXPECT_FALSE(done.load());
    EXPECT_EQ(held.release(), Errno::kOk);
  }
  device.join();
  EXPECT_TRUE(done.load());
  std::vector<uint8_t> data;
  ASSERT_TRUE(dev.value()->read(W, P, &data));
  EXPECT_EQ(data[5], pattern(W + 5, 6));
  EXPECT_EQ(node_of(p1(), W), 1);
  dev.value()->detach();
  expect_clean();
}

TEST_F(MigrateTest, TruncateDuringAHeldMigrationFailsItCleanly) {
  ASSERT_TRUE(sys().memfd("data", 4 * P).ok());
  Result<uint64_t> r = sys().mmap_file(p1(), W, 4 * P, RW, kMapShared | kMapFixed, "data", 0, System::FileMode::kReadWrite);
  ASSERT_TRUE(r.ok());
  write_pattern(p1(), W, 4 * P, 3);
  std::thread truncater;
  {
    HeldMigration held(sys(), page_at(p1(), W + 2 * P), 1);
    // move_pages meets the page isolated by the migration.
    std::vector<int> status;
    ASSERT_TRUE(sys().move_pages(p1(), {W + 2 * P}, {1}, &status).ok());
    EXPECT_EQ(status[0], -static_cast<int>(Errno::kNoEnt));  // a migration entry: nothing present
    // The truncation zaps the entry, then waits for the page lock to drop the cached page.
    truncater = std::thread([&] { EXPECT_TRUE(sys().truncate("data", P).ok()); });
    std::this_thread::sleep_for(50ms);
    EXPECT_EQ(pte_at(p1(), W + 2 * P), 0u);
    // The page left its cache slot: the slot replacement fails, and the migration with it.
    EXPECT_EQ(held.release(), Errno::kAgain);
  }
  truncater.join();
  EXPECT_TRUE(has_pattern(p1(), W, P, 3));
  EXPECT_EQ(node_of(p1(), W), 0);
  EXPECT_EQ(migrate(p1(), W, P, 1), 1u);
  EXPECT_TRUE(has_pattern(p1(), W, P, 3));
  expect_clean();
}

TEST_F(MigrateTest, MovePagesMeetsAPageIsolatedElsewhere) {
  map(p1(), W, 2 * P, RW, SHARED);
  write_pattern(p1(), W, 2 * P, 3);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Process* p2 = child.value();
  ASSERT_TRUE(has_pattern(p2, W, 2 * P, 3));  // the child maps the pages too
  Page* page = page_at(p1(), W);
  lru_add_drain_all(mem());
  ASSERT_TRUE(folio_isolate_lru(mem(), page));  // reclaim's isolation, say
  std::vector<int> status;
  ASSERT_TRUE(sys().move_pages(p2, {W, W + P}, {1, 1}, &status).ok());
  EXPECT_EQ(status, (std::vector<int>{-static_cast<int>(Errno::kBusy), 1}));
  folio_putback_lru(mem(), page);
  ASSERT_TRUE(sys().move_pages(p2, {W}, {1}, &status).ok());
  EXPECT_EQ(status[0], 1);
  EXPECT_EQ(node_of(p1(), W), 1);
  EXPECT_EQ(page_at(p1(), W), page_at(p2, W));
  expect_clean();
}

TEST_F(MigrateTest, MprotectDuringAHeldMigrationMakesTheEntryRead) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 8);
  HeldMigration held(sys(), page_at(p1(), W), 1);
  ASSERT_TRUE(sys().mprotect(p1(), W, P, kProtRead).ok());
  const pteval_t entry = pte_at(p1(), W);
  EXPECT_TRUE(is_migration_entry(entry));
  EXPECT_TRUE(is_readable_exclusive_migration_entry(entry));
  EXPECT_EQ(held.release(), Errno::kOk);
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_TRUE(page_at(p1(), W)->test(PG_anon_exclusive));
  // Writable again: the exclusive page is reused on the write fault.
  ASSERT_TRUE(sys().mprotect(p1(), W, P, RW).ok());
  const pfn_t pfn = pte_pfn(pte_at(p1(), W));
  fill(p1(), W, 1, 1);
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), pfn);
  expect_clean();
}

TEST_F(MigrateTest, ForkDuringAHeldMigrationGivesReadEntriesInBoth) {
  map(p1(), W, P);
  write_pattern(p1(), W, P, 9);
  HeldMigration held(sys(), page_at(p1(), W), 1);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Process* p2 = child.value();
  for (Process* p : {p1(), p2}) {
    const pteval_t e = pte_at(p, W);
    EXPECT_TRUE(is_migration_entry(e));
    EXPECT_EQ(swp_type(e), kSwpMigrationRead);
  }
  EXPECT_EQ(held.release(), Errno::kOk);
  EXPECT_EQ(page_at(p1(), W), page_at(p2, W));
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_FALSE(pte_write(pte_at(p2, W)));
  // The child's write copies; the parent keeps its data.
  fill(p2, W, P, 0x55);
  EXPECT_NE(page_at(p1(), W), page_at(p2, W));
  EXPECT_TRUE(has_pattern(p1(), W, P, 9));
  expect_clean();
}

TEST_F(MigrateTest, BrokenForkCopyingWriteEntriesIsCaught) {
  sys().debug_break(System::DebugBreak::kForkCopiesWriteMigration, true);
  map(p1(), W, P);
  write_pattern(p1(), W, P, 9);
  Process* p2 = nullptr;
  {
    HeldMigration held(sys(), page_at(p1(), W), 1);
    Result<Process*> child = sys().fork(p1());
    ASSERT_TRUE(child.ok());
    p2 = child.value();
    EXPECT_TRUE(is_writable_migration_entry(pte_at(p2, W)));
    EXPECT_EQ(held.release(), Errno::kOk);
  }
  // Both got a writable PTE to one page: the child's write shows in the parent.
  fill(p2, W, P, 0x55);
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{0x55});
  EXPECT_GT(sys().debug_check_consistency(), 0u);
  sys().debug_break(System::DebugBreak::kForkCopiesWriteMigration, false);
}

TEST_F(MigrateTest, BrokenMprotectKeepingWriteEntriesIsCaught) {
  sys().debug_break(System::DebugBreak::kMprotectKeepsWriteMigration, true);
  map(p1(), W, P);
  write_pattern(p1(), W, P, 1);
  {
    HeldMigration held(sys(), page_at(p1(), W), 1);
    ASSERT_TRUE(sys().mprotect(p1(), W, P, kProtRead).ok());
    EXPECT_EQ(held.release(), Errno::kOk);
  }
  EXPECT_TRUE(pte_write(pte_at(p1(), W)));  // writable after mprotect(PROT_READ)
  EXPECT_GT(sys().debug_check_consistency(), 0u);
  sys().debug_break(System::DebugBreak::kMprotectKeepsWriteMigration, false);
}

TEST_F(MigrateTest, MunmapMremapDontneedAndExitMeetEntries) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  {
    HeldMigration held(sys(), page_at(p1(), W), 1);
    ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvDontneed).ok());
    EXPECT_EQ(pte_at(p1(), W), 0u);
    EXPECT_EQ(held.release(), Errno::kOk);  // its only mapping went: the copy maps nothing
  }
  {
    HeldMigration held(sys(), page_at(p1(), W + P), 1);
    Result<uint64_t> r = sys().mremap(p1(), W + P, P, P, 1 | 2, W + 32 * P);
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(is_migration_entry(pte_at(p1(), W + 32 * P)));
    EXPECT_EQ(held.release(), Errno::kOk);
    EXPECT_EQ(node_of(p1(), W + 32 * P), 1);
  }
  {
    HeldMigration held(sys(), page_at(p1(), W + 2 * P), 1);
    ASSERT_TRUE(sys().munmap(p1(), W + 2 * P, P).ok());
    EXPECT_EQ(held.release(), Errno::kOk);
  }
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  {
    HeldMigration held(sys(), page_at(p1(), W + 3 * P), 1);
    sys().exit(child.value());
    EXPECT_EQ(held.release(), Errno::kOk);
  }
  expect_clean();
}

// Migrations from one thread while others fault, mprotect (splitting and merging VMAs) and
// fork: the checkers stay clean and the data stays intact.
TEST(MigrateConcurrency, RacingFaultsMprotectAndFork) {
  SystemConfig c = two_nodes();
  System sys(c, 4);
  Process* p1 = sys.process(1);
  constexpr uint64_t kPages = 32;
  ASSERT_TRUE(sys.mmap(p1, W, kPages * P, RW, PRIV).ok());
  ASSERT_TRUE(sys.mmap(p1, W + 64 * P, kPages * P, RW, SHARED).ok());
  auto fill_all = [&](uint64_t base, uint8_t seed) {
    return sys.access(p1, 0, base, kPages * P, true, [seed](uint8_t* d, uint64_t a, uint64_t n) {
      for (uint64_t i = 0; i < n; i++) d[i] = static_cast<uint8_t>((a + i) * 13 + seed);
    });
  };
  ASSERT_TRUE(fill_all(W, 1).ok());
  ASSERT_TRUE(fill_all(W + 64 * P, 2).ok());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> moved{0}, bad{0};
  std::thread migrator([&] {
    System::bind_thread_to_cpu(3);
    for (int node = 1; !stop; node ^= 1) {
      for (uint64_t base : {W, W + 64 * P}) {
        Result<uint64_t> r = sys.migrate_pages(p1, base, kPages * P, node);
        if (r.ok()) moved += r.value();
      }
    }
  });
  std::thread faulter([&] {
    for (int round = 0; !stop; round++) {
      AccessResult r = sys.access(p1, 1, W + 64 * P, kPages * P, false, [&](uint8_t* d, uint64_t a, uint64_t n) {
        for (uint64_t i = 0; i < n; i++)
          if (d[i] != static_cast<uint8_t>((a + i) * 13 + 2)) bad++;
      });
      if (!r.ok()) bad++;
    }
  });
  // Whole VMAs and middle pieces: splits and merges, of the private and the shared region
  // (the reverse map must cover every page throughout, or a migration entry is left behind).
  std::thread protector([&] {
    for (int round = 0; !stop; round++) {
      const uint64_t prot = round % 2 ? RW : kProtRead;
      (void)sys.mprotect(p1, W, kPages * P, prot);
      (void)sys.mprotect(p1, W + 64 * P + 8 * P, 8 * P, prot);
    }
  });
  std::thread forker([&] {
    while (!stop) {
      Result<Process*> ch = sys.fork(p1);
      if (!ch.ok()) continue;
      (void)sys.access(ch.value(), 2, W, P, false, [](uint8_t*, uint64_t, uint64_t) {});
      sys.exit(ch.value());
    }
  });
  std::this_thread::sleep_for(scaled(1500ms));
  stop = true;
  migrator.join();
  faulter.join();
  protector.join();
  forker.join();
  EXPECT_GT(moved.load(), 0u);
  EXPECT_EQ(bad.load(), 0u);
  ASSERT_TRUE(sys.mprotect(p1, W, kPages * P, RW).ok());
  bool intact = true;
  ASSERT_TRUE(sys.access(p1, 0, W, kPages * P, false, [&](uint8_t* d, uint64_t a, uint64_t n) {
                   for (uint64_t i = 0; i < n; i++)
                     if (d[i] != static_cast<uint8_t>((a + i) * 13 + 1)) intact = false;
                 }).ok());
  EXPECT_TRUE(intact);
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
  EXPECT_EQ(sys.violations(), 0u) << (sys.violation_messages().empty() ? "" : sys.violation_messages()[0]);
}

}  // namespace
}  // namespace mirrormm::testing
