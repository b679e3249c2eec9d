// Shared-memory pages in swap (src/mm/shmem.cc's shmem_writeout, shmem_swapin_folio and
// shmem_unuse): shared anonymous mappings and memfd files, mapped by two processes.
//
// Tests reclaim a page themselves, with reclaim's steps: the add batches drained, the page
// isolated from the LRU (its reference) and locked, try_to_unmap_one for every mapping through
// the reverse-map walk, shmem_writeout, __remove_mapping, unlock and the last put.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "mm/lru.h"
#include "mm/rmap.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mm/vmstat.h"
#include "mm_test_util.h"
#include "support/watchdog.h"

namespace mirrormm::testing {
namespace {

using namespace std::chrono_literals;

const bool kWatchdog = install_test_watchdog(scaled(120s));

SystemConfig small_config() {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  return c;
}

constexpr uint64_t kFileMap = kMapShared | kMapFixed;

class ShmemSwapTest : public ModelTest {
 protected:
  ShmemSwapTest() : ModelTest(small_config()) {}
  explicit ShmemSwapTest(int cpus) : ModelTest(small_config()) {
    sys_ = std::make_unique<System>(small_config(), cpus);
  }

  int64_t event(VmEvent e) { return sys().mem().events().sum(e); }
  uint64_t swap_used() { return sys().swap_stats().used; }
  ShmemInode* inode_at(Process* p, uint64_t addr) { return vma_at(p, addr)->vm_file->inode; }

  // Reclaim of one shmem page: unmapped from every mapping through the reverse map, written
  // to swap and freed. Returns the swap entry its inode slot now holds (0 on failure).
  uint64_t reclaim(Page* page) {
    PhysMem& mem = sys().mem();
    sys().lru_add_drain_all();  // shrink_inactive_list's lru_add_drain: no add batch holds it
    EXPECT_TRUE(folio_isolate_lru(mem, page));  // the isolation reference
    lock_page(page);
    RmapWalkControl rwc;
    rwc.sys = &sys();
    rwc.rmap_one = [](Page* p, Vma* vma, uint64_t address) { return try_to_unmap_one(p, vma, address, 0); };
    rwc.done = [](Page* p) { return !folio_mapped(p); };
    rmap_walk(page, rwc);
    EXPECT_EQ(page->mapcount.load(), 0);
    uint64_t entry = 0;
    bool freed = false;
    if (shmem_writeout(&sys(), page)) {
      entry = page->swap;
      EXPECT_TRUE(page->test(PG_swapcache));
      EXPECT_FALSE(page->test(PG_shmem));
      EXPECT_EQ(page->mapping, nullptr);
      EXPECT_FALSE(page->test(PG_dirty));
      freed = __remove_mapping(&sys(), page);
      EXPECT_TRUE(freed);
    }
    unlock_page(page);
    if (freed)
      mem.put_page(page);  // the last reference: the frame is freed
    else
      folio_putback_lru(mem, page);
    return entry;
  }

  void expect_consistent() {
    EXPECT_EQ(sys().debug_check_consistency(), 0u);
    for (const std::string& m : sys().violation_messages()) ADD_FAILURE() << m;
  }
};

// A shared anonymous mapping (shmem_zero_setup's inode, in no file table) mapped by a parent and
// its child: the page leaves both mappings for one swap slot held by the inode, and a read
// through either process brings the same bytes back as one page that both map again.
TEST_F(ShmemSwapTest, SharedAnonymousPageOfTwoProcesses) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, 4 * P, RW, SHARED);
  write_pattern(p1(), W, 4 * P, 11);
  Result<Process*> c = sys().fork(p1());
  ASSERT_TRUE(c.ok());
  Process* child = c.value();
  ASSERT_TRUE(has_pattern(child, W, 4 * P, 11));
  Page* page = page_at(p1(), W + P);
  ASSERT_NE(page, nullptr);
  ASSERT_EQ(page_at(child, W + P), page);
  ShmemInode* inode = inode_at(p1(), W);
  ASSERT_EQ(inode, inode_at(child, W));
  expect_consistent();

  const int64_t out0 = event(PSWPOUT), in0 = event(PSWPIN);
  const uint64_t entry = reclaim(page);
  ASSERT_NE(entry, 0u);
  EXPECT_EQ(event(PSWPOUT) - out0, 1);
  EXPECT_EQ(inode->nr_swapped(), 1u);
  EXPECT_EQ(inode->nr_pages(), 3u);
  EXPECT_EQ(swap_used(), 1u);
  EXPECT_EQ(__swap_count(&sys(), entry), 1u);  // the inode's count; no PTE names shmem entries
  EXPECT_EQ(pte_at(p1(), W + P), 0u);
  EXPECT_EQ(pte_at(child, W + P), 0u);
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1011");
  EXPECT_EQ(mincore(child, W, 4 * P), "1011");
  expect_consistent();

  EXPECT_TRUE(has_pattern(child, W + P, P, 11));
  EXPECT_EQ(event(PSWPIN) - in0, 1);
  EXPECT_TRUE(has_pattern(p1(), W + P, P, 11));
  Page* back = page_at(child, W + P);
  ASSERT_NE(back, nullptr);
  EXPECT_EQ(page_at(p1(), W + P), back);
  EXPECT_TRUE(back->test(PG_shmem));
  EXPECT_FALSE(back->test(PG_swapcache));
  EXPECT_TRUE(back->test(PG_dirty));  // its only copy is in memory again
  EXPECT_EQ(back->mapping, inode);
  EXPECT_EQ(back->index, 1u);
  EXPECT_EQ(inode->nr_swapped(), 0u);
  EXPECT_EQ(inode->nr_pages(), 4u);
  EXPECT_EQ(swap_used(), 0u);
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1111");
  expect_consistent();
}

// A memfd mapped by two processes: the same round trip through the file's page cache; the
// file's own lookup (find_get_page) brings the page back too.
TEST_F(ShmemSwapTest, MemfdPageOfTwoProcesses) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  Result<Process*> c = sys().fork(p1());
  ASSERT_TRUE(c.ok());
  Process* other = c.value();
  ASSERT_TRUE(sys().memfd("f", 3 * P).ok());
  for (Process* p : {p1(), other})
    ASSERT_TRUE(sys().mmap_file(p, W, 3 * P, RW, kFileMap, "f", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W, 3 * P, 23);
  ASSERT_TRUE(has_pattern(other, W, 3 * P, 23));
  ShmemInode* inode = inode_at(p1(), W);
  for (uint64_t i = 0; i < 3; i++) {
    Page* page = page_at(p1(), W + i * P);
    ASSERT_NE(page, nullptr);
    ASSERT_NE(reclaim(page), 0u);
  }
  EXPECT_EQ(inode->nr_swapped(), 3u);
  EXPECT_EQ(inode->nr_pages(), 0u);
  EXPECT_EQ(swap_used(), 3u);
  EXPECT_EQ(mincore(p1(), W, 3 * P), "000");
  EXPECT_EQ(mincore(other, W, 3 * P), "000");
  EXPECT_FALSE(sys().debug_file_page_dirty("f", 0));  // the checkers' lookup does not swap in
  EXPECT_EQ(inode->nr_swapped(), 3u);
  expect_consistent();

  // Page 0 through the file, page 1 through one process, page 2 through the other.
  Page* p0 = inode->find_get_page(0);
  ASSERT_NE(p0, nullptr);
  EXPECT_EQ(inode->filemap_get_folio(0), p0);
  sys().mem().put_page(p0);
  sys().mem().put_page(p0);
  EXPECT_TRUE(has_pattern(p1(), W + P, P, 23));
  EXPECT_TRUE(has_pattern(other, W + 2 * P, P, 23));
  EXPECT_TRUE(has_pattern(other, W, 3 * P, 23));
  EXPECT_TRUE(has_pattern(p1(), W, 3 * P, 23));
  for (uint64_t i = 0; i < 3; i++) {
    EXPECT_NE(page_at(p1(), W + i * P), nullptr);
    EXPECT_EQ(page_at(p1(), W + i * P), page_at(other, W + i * P));
  }
  EXPECT_EQ(swap_used(), 0u);
  EXPECT_EQ(inode->nr_pages(), 3u);
  expect_consistent();
}

// A page written out but still held by someone stays in the swap cache when __remove_mapping
// refuses it: mincore reports it resident, and the next lookup takes it back from the cache
// without reading the device.
TEST_F(ShmemSwapTest, SwapCachePageIsResidentAndComesBackWithoutRead) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, P, RW, SHARED);
  write_pattern(p1(), W, P, 5);
  Page* page = page_at(p1(), W);
  PhysMem& mem = sys().mem();
  Vma* vma = vma_at(p1(), W);  // before the page lock, which ranks below the process table's
  sys().lru_add_drain_all();
  mem.get_page(page);
  lock_page(page);
  ASSERT_TRUE(try_to_unmap_one(page, vma, W, 0));
  ASSERT_TRUE(shmem_writeout(&sys(), page));
  mem.get_page(page);  // another user: reclaim cannot free it
  EXPECT_FALSE(__remove_mapping(&sys(), page));
  unlock_page(page);
  mem.put_page(page);
  mem.put_page(page);  // the other user is done: only the swap cache holds the page
  EXPECT_EQ(page->refcount.load(), 1);
  EXPECT_EQ(mincore(p1(), W, P), "1");
  expect_consistent();
  const int64_t in0 = event(PSWPIN);
  EXPECT_TRUE(has_pattern(p1(), W, P, 5));
  EXPECT_EQ(event(PSWPIN), in0);
  EXPECT_EQ(page_at(p1(), W), page);
  EXPECT_EQ(swap_used(), 0u);
  expect_consistent();
}

// shmem_writeout refuses, changing nothing, a page that is still mapped, one that anyone but the
// cache and the caller references, and any page when no device has room.
TEST_F(ShmemSwapTest, WriteoutRefusals) {
  map(p1(), W, 2 * P, RW, SHARED);
  write_pattern(p1(), W, 2 * P, 9);
  Page* page = page_at(p1(), W);
  PhysMem& mem = sys().mem();
  Vma* vma = vma_at(p1(), W);  // before the page lock, which ranks below the process table's
  sys().lru_add_drain_all();
  mem.get_page(page);
  lock_page(page);
  EXPECT_FALSE(shmem_writeout(&sys(), page));  // mapped
  ASSERT_TRUE(try_to_unmap_one(page, vma, W, 0));
  EXPECT_FALSE(shmem_writeout(&sys(), page));  // no swap device
  unlock_page(page);                           // swapon ranks above the page lock
  ASSERT_TRUE(sys().swapon(2 * P).ok());       // one usable slot
  lock_page(page);
  mem.get_page(page);
  EXPECT_FALSE(shmem_writeout(&sys(), page));  // a third reference
  mem.put_page(page);
  EXPECT_TRUE(page->test(PG_shmem));
  EXPECT_EQ(swap_used(), 0u);
  ASSERT_TRUE(shmem_writeout(&sys(), page));
  ASSERT_TRUE(__remove_mapping(&sys(), page));
  unlock_page(page);
  mem.put_page(page);
  Page* second = page_at(p1(), W + P);
  mem.get_page(second);
  lock_page(second);
  ASSERT_TRUE(try_to_unmap_one(second, vma, W + P, 0));
  EXPECT_FALSE(shmem_writeout(&sys(), second));  // the device is full
  EXPECT_TRUE(second->test(PG_shmem));
  unlock_page(second);
  mem.put_page(second);
  EXPECT_EQ(swap_used(), 1u);
  expect_consistent();
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 9));
  EXPECT_EQ(swap_used(), 0u);
  expect_consistent();
}

// Truncation frees the slots of swapped pages beyond the new end, and brings back a swapped
// partial page to zero its tail.
TEST_F(ShmemSwapTest, TruncateFreesSlots) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kFileMap, "f", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W, 4 * P, 31);
  ShmemInode* inode = inode_at(p1(), W);
  for (uint64_t i = 0; i < 4; i++) ASSERT_NE(reclaim(page_at(p1(), W + i * P)), 0u);
  EXPECT_EQ(swap_used(), 4u);
  ASSERT_TRUE(sys().truncate("f", 2 * P).ok());
  EXPECT_EQ(swap_used(), 2u);
  EXPECT_EQ(inode->nr_swapped(), 2u);
  expect_consistent();
  ASSERT_TRUE(sys().truncate("f", P + 100).ok());
  EXPECT_EQ(swap_used(), 1u);  // page 1 came back to be zeroed beyond byte 100
  EXPECT_EQ(inode->nr_swapped(), 1u);
  EXPECT_EQ(inode->nr_pages(), 1u);
  std::vector<uint8_t> b = bytes(p1(), W + P, P);
  ASSERT_EQ(b.size(), P);
  for (uint64_t i = 0; i < P; i++) {
    ASSERT_EQ(b[i], i < 100 ? pattern(W + P + i, 31) : 0) << i;
  }
  expect_consistent();
  ASSERT_TRUE(sys().truncate("f", 0).ok());
  EXPECT_EQ(swap_used(), 0u);
  EXPECT_EQ(inode->nr_swapped(), 0u);
  expect_consistent();
}

// The last mapper's exit frees the slots of a shared anonymous mapping; a memfd's slots go when
// its name is removed and its last mapping unmapped (in either order).
TEST_F(ShmemSwapTest, ExitAndUnlinkFreeSlots) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  Result<Process*> c = sys().fork(p1());
  ASSERT_TRUE(c.ok());
  Process* a = c.value();
  map(a, W, 2 * P, RW, SHARED);
  write_pattern(a, W, 2 * P, 3);
  Result<Process*> c2 = sys().fork(a);
  ASSERT_TRUE(c2.ok());
  Process* b = c2.value();
  ASSERT_TRUE(has_pattern(b, W, 2 * P, 3));
  for (uint64_t i = 0; i < 2; i++) ASSERT_NE(reclaim(page_at(a, W + i * P)), 0u);
  EXPECT_EQ(swap_used(), 2u);
  sys().exit(a);
  EXPECT_EQ(swap_used(), 2u);  // b still maps the file
  expect_consistent();
  sys().exit(b);
  EXPECT_EQ(swap_used(), 0u);
  expect_consistent();

  ASSERT_TRUE(sys().memfd("g", 2 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 2 * P, RW, kFileMap, "g", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W, 2 * P, 4);
  ASSERT_NE(reclaim(page_at(p1(), W)), 0u);
  ASSERT_TRUE(sys().unlink_file("g").ok());
  EXPECT_EQ(swap_used(), 1u);  // still mapped
  EXPECT_TRUE(has_pattern(p1(), W, P, 4));
  ASSERT_NE(reclaim(page_at(p1(), W + P)), 0u);
  EXPECT_EQ(swap_used(), 1u);
  ASSERT_TRUE(sys().munmap(p1(), W, 2 * P).ok());
  EXPECT_EQ(swap_used(), 0u);
  expect_consistent();

  ASSERT_TRUE(sys().memfd("h", P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, P, RW, kFileMap, "h", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W, P, 6);
  ASSERT_NE(reclaim(page_at(p1(), W)), 0u);
  ASSERT_TRUE(sys().munmap(p1(), W, P).ok());
  EXPECT_EQ(swap_used(), 1u);  // the name keeps the file
  expect_consistent();
  ASSERT_TRUE(sys().unlink_file("h").ok());
  EXPECT_EQ(swap_used(), 0u);
  EXPECT_EQ(sys().unlink_file("h").error(), Errno::kNoEnt);
  expect_consistent();
}

// swapoff brings back the swapped pages of a shared anonymous mapping (found through the
// swaplist only), of a mapped memfd and of a memfd that nothing maps.
TEST_F(ShmemSwapTest, SwapoffBringsShmemPagesBack) {
  Status dev = sys().swapon(64 * P);
  ASSERT_TRUE(dev.ok());
  map(p1(), W, 2 * P, RW, SHARED);
  write_pattern(p1(), W, 2 * P, 41);
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 16 * P, 2 * P, RW, kFileMap, "f", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W + 16 * P, 2 * P, 42);
  ASSERT_TRUE(sys().memfd("g", P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 32 * P, P, RW, kFileMap, "g", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W + 32 * P, P, 43);
  ShmemInode* anon = inode_at(p1(), W);
  ShmemInode* f = inode_at(p1(), W + 16 * P);
  ShmemInode* g = inode_at(p1(), W + 32 * P);
  g->get();  // kept for the checks below
  for (uint64_t a : {W, W + P, W + 16 * P, W + 17 * P, W + 32 * P}) ASSERT_NE(reclaim(page_at(p1(), a)), 0u);
  ASSERT_TRUE(sys().munmap(p1(), W + 32 * P, P).ok());
  EXPECT_EQ(swap_used(), 5u);
  expect_consistent();
  ASSERT_TRUE(sys().swapoff(static_cast<unsigned>(dev.value())).ok());
  EXPECT_EQ(sys().swap_stats().devices, 0u);
  EXPECT_EQ(anon->nr_swapped(), 0u);
  EXPECT_EQ(anon->nr_pages(), 2u);
  EXPECT_EQ(f->nr_swapped(), 0u);
  EXPECT_EQ(f->nr_pages(), 2u);
  EXPECT_EQ(g->nr_swapped(), 0u);
  EXPECT_EQ(g->nr_pages(), 1u);
  g->put();
  expect_consistent();
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 41));
  EXPECT_TRUE(has_pattern(p1(), W + 16 * P, 2 * P, 42));
  ASSERT_TRUE(sys().mmap_file(p1(), W + 32 * P, P, RW, kFileMap, "g", 0, System::FileMode::kReadWrite).ok());
  EXPECT_TRUE(has_pattern(p1(), W + 32 * P, P, 43));
  expect_consistent();
}

class ShmemSwapRaceTest : public ShmemSwapTest {
 protected:
  ShmemSwapRaceTest() : ShmemSwapTest(2) {}
};

// Two faults on one swapped shmem page, from two processes on two CPUs, end with one page that
// both map, read from the device once.
TEST_F(ShmemSwapRaceTest, ConcurrentFaultsGetOnePage) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, P, RW, SHARED);
  Result<Process*> c = sys().fork(p1());
  ASSERT_TRUE(c.ok());
  Process* child = c.value();
  for (int round = 0; round < 200; round++) {
    const uint8_t seed = static_cast<uint8_t>(round);
    write_pattern(p1(), W, P, seed);
    ASSERT_TRUE(has_pattern(child, W, P, seed));
    ASSERT_NE(reclaim(page_at(p1(), W)), 0u);
    const int64_t in0 = event(PSWPIN);
    std::atomic<int> ready{0};
    bool good_a = false, good_b = false;
    {
      BoundedThread ta([&] {
        ready.fetch_add(1);
        while (ready.load() < 2) {}
        good_a = has_pattern(p1(), W, P, seed, 0);
      });
      BoundedThread tb([&] {
        ready.fetch_add(1);
        while (ready.load() < 2) {}
        good_b = has_pattern(child, W, P, seed, 1);
      });
    }
    ASSERT_TRUE(good_a && good_b) << "round " << round;
    ASSERT_EQ(event(PSWPIN) - in0, 1) << "round " << round;
    ASSERT_NE(page_at(p1(), W), nullptr);
    ASSERT_EQ(page_at(p1(), W), page_at(child, W)) << "round " << round;
    ASSERT_EQ(swap_used(), 0u);
    if (round % 20 == 0) expect_consistent();
  }
  expect_consistent();
}

// A fault racing the file's own lookup (find_get_page, on another CPU's thread) and a
// truncation of the swapped page: whichever wins, no slot is left behind.
TEST_F(ShmemSwapRaceTest, LookupRacesTruncate) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  ASSERT_TRUE(sys().memfd("f", P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, P, RW, kFileMap, "f", 0, System::FileMode::kReadWrite).ok());
  ShmemInode* inode = inode_at(p1(), W);
  for (int round = 0; round < 100; round++) {
    ASSERT_TRUE(sys().truncate("f", P).ok());
    write_pattern(p1(), W, P, 7);
    ASSERT_NE(reclaim(page_at(p1(), W)), 0u);
    std::atomic<int> ready{0};
    {
      BoundedThread ta([&] {
        ready.fetch_add(1);
        while (ready.load() < 2) {}
        if (Page* p = inode->find_get_page(0)) sys().mem().put_page(p);
      });
      BoundedThread tb([&] {
        ready.fetch_add(1);
        while (ready.load() < 2) {}
        ASSERT_TRUE(sys().truncate("f", 0).ok());
      });
    }
    EXPECT_EQ(inode->nr_swapped(), 0u);
    EXPECT_EQ(inode->nr_pages(), 0u);
    EXPECT_EQ(swap_used(), 0u) << "round " << round;
    EXPECT_EQ(sys().swap_stats().cached, 0u) << "round " << round;
    if (round % 20 == 0) expect_consistent();
  }
  expect_consistent();
}

// swapoff bringing a shared mapping's pages back while a process reads them on another CPU:
// every page comes back once, with its data, and the device goes off.
TEST_F(ShmemSwapRaceTest, SwapoffRacesFaults) {
  constexpr uint64_t kPages = 32;
  for (int round = 0; round < 20; round++) {
    Status dev = sys().swapon(64 * P);
    ASSERT_TRUE(dev.ok());
    const uint64_t base = W + static_cast<uint64_t>(round) * kPages * P;
    map(p1(), base, kPages * P, RW, SHARED);
    write_pattern(p1(), base, kPages * P, static_cast<uint8_t>(round));
    for (uint64_t i = 0; i < kPages; i++) ASSERT_NE(reclaim(page_at(p1(), base + i * P)), 0u);
    ShmemInode* inode = inode_at(p1(), base);
    bool good = false;
    {
      BoundedThread reader([&] {
        good = has_pattern(p1(), base, kPages * P, static_cast<uint8_t>(round), 1);
      });
      ASSERT_TRUE(sys().swapoff(static_cast<unsigned>(dev.value())).ok());
    }
    EXPECT_TRUE(good) << "round " << round;
    EXPECT_EQ(inode->nr_swapped(), 0u);
    EXPECT_EQ(inode->nr_pages(), kPages);
    EXPECT_EQ(sys().swap_stats().devices, 0u);
    EXPECT_TRUE(has_pattern(p1(), base, kPages * P, static_cast<uint8_t>(round)));
    if (round % 5 == 0) expect_consistent();
  }
  expect_consistent();
}

// Reclaim of one page racing a process that writes and reads it on another CPU: each attempt
// either frees the page (the next access reads it back from swap) or gives up because the
// page was mapped or referenced again; no write is ever lost.
TEST_F(ShmemSwapRaceTest, WriteoutRacesWritesLosesNoWrite) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, P, RW, SHARED);
  write_pattern(p1(), W, P, 0);
  ShmemInode* inode = inode_at(p1(), W);
  PhysMem& mem = sys().mem();
  constexpr uint64_t kWrites = 1000;
  std::atomic<bool> done{false};
  std::atomic<uint64_t> lost{0};
  int freed = 0, attempts = 0;
  {
    BoundedThread writer([&] {
      for (uint64_t v = 1; v <= kWrites; v++) {
        AccessResult w = sys().access(p1(), 1, W + 64, 8, true, [v](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) d[i] = static_cast<uint8_t>(v >> (8 * i));
        });
        uint64_t got = 0;
        AccessResult r = sys().access(p1(), 1, W + 64, 8, false, [&](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) got |= static_cast<uint64_t>(d[i]) << (8 * i);
        });
        if (!w.ok() || !r.ok() || got != v) lost.fetch_add(1);
        std::this_thread::sleep_for(20us);  // a window for a whole reclaim pass
      }
      done.store(true);
    });
    while (!done.load()) {
      attempts++;
      sys().lru_add_drain_all();
      Page* page = inode->filemap_get_folio(0);
      if (!page) continue;  // swapped out: the writer brings it back
      const bool isolated = folio_isolate_lru(mem, page);
      mem.put_page(page);
      if (!isolated) continue;
      lock_page(page);
      bool ok = false;
      if (page->test(PG_shmem)) {
        RmapWalkControl rwc;
        rwc.sys = &sys();
        rwc.rmap_one = [](Page* p, Vma* vma, uint64_t address) { return try_to_unmap_one(p, vma, address, 0); };
        rwc.done = [](Page* p) { return !folio_mapped(p); };
        rmap_walk(page, rwc);
        ok = !folio_mapped(page) && shmem_writeout(&sys(), page) && __remove_mapping(&sys(), page);
      }
      unlock_page(page);
      if (ok) {
        freed++;
        mem.put_page(page);
      } else {
        folio_putback_lru(mem, page);
      }
    }
  }
  EXPECT_EQ(lost.load(), 0u);
  EXPECT_GT(freed, 0);  // the writer's pauses leave room for whole reclaim passes
  std::vector<uint8_t> b = bytes(p1(), W + 64, 8);
  ASSERT_EQ(b.size(), 8u);
  uint64_t last = 0;
  for (int i = 0; i < 8; i++) last |= static_cast<uint64_t>(b[i]) << (8 * i);
  EXPECT_EQ(last, kWrites);
  EXPECT_TRUE(has_pattern(p1(), W, 64, 0));
  RecordProperty("freed", freed);
  RecordProperty("attempts", attempts);
  expect_consistent();
}

}  // namespace
}  // namespace mirrormm::testing
