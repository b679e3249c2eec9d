// The page cache seen from the fault path: read fault-around (do_fault_around,
// filemap_map_pages) and the dirtying of a truncated partial page (shmem_undo_range).
// tests/scenarios/pagecache_*.mms check the same rules against the host kernel.
#include "mm/shmem.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr auto kRw = System::FileMode::kReadWrite;

class FilemapTest : public ModelTest {
 protected:
  // Maps file f at addr; the mapping has its own open file description.
  void map_file(uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags, uint64_t off = 0) {
    ASSERT_TRUE(sys().mmap_file(p1(), addr, len, prot, flags | kMapFixed, "f", off, kRw).ok());
  }
  // Puts the file pages `pgoffs` into the page cache through a mapping of its own (at W + 1 GiB)
  // that maps nothing else, so that their mapcount is 1 afterwards.
  void cache(std::initializer_list<uint64_t> pgoffs, uint64_t file_pages) {
    const uint64_t a = W + (1ull << 30);
    map_file(a, file_pages * P, RW, kMapShared);
    for (uint64_t i : pgoffs) ASSERT_TRUE(sys().madvise(p1(), a + i * P, P, kMadvPopulateWrite).ok());
  }
  int mapcount(uint64_t addr) {
    Page* page = page_at(p1(), addr);
    return page ? page->mapcount.load() : -1;
  }
  uint64_t cached_pages() { return vma_at(p1(), W)->vm_file->inode->nr_pages(); }
  // Which pages of [addr, addr + n pages) have a present PTE, as '1'/'0'.
  std::string present(uint64_t addr, uint64_t n) {
    std::string out;
    for (uint64_t i = 0; i < n; i++) out += pte_present(pte_at(p1(), addr + i * P)) ? '1' : '0';
    return out;
  }
};

TEST_F(FilemapTest, ReadFaultMapsTheCachedPagesOfItsWindow) {
  ASSERT_TRUE(sys().memfd("f", 32 * P).ok());
  cache({0, 2, 7, 15, 16}, 32);
  map_file(W, 32 * P, RW, kMapShared);
  ASSERT_TRUE(touch_read(p1(), W + 5 * P).ok());
  // The 16-page window [0, 16) around page 5: the cached pages and page 5 itself, which the
  // fault created; pages 16.. lie in the next window.
  EXPECT_EQ(present(W, 32), "10100101000000010000000000000000");
  EXPECT_EQ(mapcount(W + 2 * P), 2);
  EXPECT_EQ(mapcount(W + 5 * P), 1);
  EXPECT_EQ(cached_pages(), 6u);  // fault-around creates no page
  EXPECT_EQ(p1()->mm()->rss(MM_SHMEMPAGES), 5 + 5);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FilemapTest, PrivateMappingsGetTheNeighboursReadOnlyAndKeepTheirCopies) {
  ASSERT_TRUE(sys().memfd("f", 16 * P).ok());
  cache({0, 1, 2, 3}, 16);
  map_file(W, 16 * P, RW, kMapPrivate);
  ASSERT_TRUE(fill(p1(), W + P, 1, 9).ok());  // a private copy: a write fault maps nothing else
  EXPECT_EQ(present(W, 4), "0100");
  ASSERT_TRUE(touch_read(p1(), W + 3 * P).ok());
  EXPECT_EQ(present(W, 4), "1111");
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_TRUE(page_at(p1(), W + P)->test(PG_anon));  // only none entries are filled
  EXPECT_EQ(bytes(p1(), W + P, 1), std::vector<uint8_t>{9});
  EXPECT_EQ(mapcount(W + 2 * P), 2);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FilemapTest, WindowIsClippedToTheVmaAndTheFileSize) {
  ASSERT_TRUE(sys().memfd("f", 32 * P).ok());
  cache({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19}, 32);
  // File pages 3..9 at table index 2: the window of a fault at index 4 is [2, 18) clipped to
  // the VMA's 7 pages.
  map_file(W + 2 * P, 7 * P, kProtRead, kMapShared, 3 * P);
  ASSERT_TRUE(touch_read(p1(), W + 4 * P).ok());
  EXPECT_EQ(present(W, 12), "001111111000");
  // Shrink the file to 2.5 pages past the VMA's first page (file size 5.5 pages): a fault
  // beyond the end still maps the cached pages below it, then gets SIGBUS.
  ASSERT_TRUE(sys().munmap(p1(), W + 2 * P, 7 * P).ok());
  ASSERT_TRUE(sys().truncate("f", 5 * P + P / 2).ok());
  map_file(W + 2 * P, 7 * P, kProtRead, kMapShared, 3 * P);
  EXPECT_EQ(touch_read(p1(), W + 6 * P).kind, AccessResult::Kind::kBus);
  EXPECT_EQ(present(W, 12), "001110000000");
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FilemapTest, WindowIsClippedToThePteTable) {
  ASSERT_TRUE(sys().memfd("f", 16 * P).ok());
  cache({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15}, 16);
  const uint64_t pmd = W + (2ull << 20);
  map_file(pmd - 8 * P, 16 * P, kProtRead, kMapShared);
  ASSERT_TRUE(touch_read(p1(), pmd).ok());
  EXPECT_EQ(present(pmd - 8 * P, 16), "0000000011111111");
  ASSERT_TRUE(touch_read(p1(), pmd - P).ok());
  EXPECT_EQ(present(pmd - 8 * P, 16), "1111111111111111");
}

TEST_F(FilemapTest, WriteFaultsAndWriteFaultingGupMapOnlyTheirPage) {
  ASSERT_TRUE(sys().memfd("f", 16 * P).ok());
  cache({0, 1, 2, 3}, 16);
  map_file(W, 16 * P, RW, kMapShared);
  ASSERT_TRUE(fill(p1(), W + 2 * P, 1, 1).ok());
  ASSERT_TRUE(sys().madvise(p1(), W + 3 * P, P, kMadvPopulateWrite).ok());
  EXPECT_EQ(present(W, 4), "0011");
  ASSERT_TRUE(sys().madvise(p1(), W + 8 * P, P, kMadvPopulateRead).ok());
  EXPECT_EQ(present(W, 9), "111100001");
}

TEST_F(FilemapTest, PageoutDropsTheCleanPagesAReadFaultMappedAround) {
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  map_file(W, 4 * P, RW, kMapShared);
  ASSERT_TRUE(sys().madvise(p1(), W, 4 * P, kMadvPopulateRead).ok());  // four clean pages
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
  map_file(W, 4 * P, kProtRead, kMapShared);
  ASSERT_TRUE(touch_read(p1(), W).ok());
  ASSERT_TRUE(sys().madvise(p1(), W, 4 * P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, 4 * P), "0000");
}

TEST_F(FilemapTest, TruncatingIntoAPageDirtiesIt) {
  ASSERT_TRUE(sys().memfd("f", 3 * P).ok());
  map_file(W, 3 * P, RW, kMapShared);
  ASSERT_TRUE(sys().madvise(p1(), W, 3 * P, kMadvPopulateRead).ok());
  ASSERT_FALSE(sys().debug_file_page_dirty("f", 1));
  ASSERT_TRUE(sys().truncate("f", 2 * P).ok());  // on a page boundary: nothing is zeroed
  EXPECT_FALSE(sys().debug_file_page_dirty("f", 1));
  ASSERT_TRUE(sys().truncate("f", P + 100).ok());
  EXPECT_TRUE(sys().debug_file_page_dirty("f", 1));
  EXPECT_FALSE(sys().debug_file_page_dirty("f", 0));
  ASSERT_TRUE(sys().madvise(p1(), W, 3 * P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, 2 * P), "01");
}

TEST_F(FilemapTest, ResizingToTheSameUnalignedSizeDirtiesThePartialPage) {
  ASSERT_TRUE(sys().memfd("f", P + 100).ok());
  map_file(W, 2 * P, RW, kMapShared);
  ASSERT_TRUE(touch_read(p1(), W + P).ok());
  ASSERT_FALSE(sys().debug_file_page_dirty("f", 1));
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());  // growth truncates nothing
  EXPECT_FALSE(sys().debug_file_page_dirty("f", 1));
  ASSERT_TRUE(sys().memfd("f", P + 100).ok());
  EXPECT_TRUE(sys().debug_file_page_dirty("f", 1));
  ASSERT_TRUE(sys().memfd("f", P + 100).ok());  // the same size again: truncated again
  EXPECT_TRUE(sys().debug_file_page_dirty("f", 1));
}


TEST_F(FilemapTest, PageoutKeepsAPageSomeoneElseHoldsAReferenceTo) {
  ASSERT_TRUE(sys().memfd("f", P).ok());
  map_file(W, P, kProtRead, kMapShared);
  ASSERT_TRUE(touch_read(p1(), W).ok());
  // A fault elsewhere that found the page in the cache and has not mapped it yet.
  ShmemInode* inode = vma_at(p1(), W)->vm_file->inode;
  Page* held = inode->find_get_page(0);
  ASSERT_NE(held, nullptr);
  ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvPageout).ok());
  EXPECT_EQ(pte_at(p1(), W), 0u);      // unmapped...
  EXPECT_EQ(mincore(p1(), W, P), "1");  // ...but still cached
  sys().mem().put_page(held);
  ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, P), "1");  // not mapped here: pageout does not reach it
  ASSERT_TRUE(touch_read(p1(), W).ok());
  ASSERT_TRUE(sys().madvise(p1(), W, P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, P), "0");
}
}  // namespace
}  // namespace mirrormm::testing
