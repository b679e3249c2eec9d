// Regular files on the model disk (src/mm/filemap.h): reads from the disk, write-notify
// faults, folio_mkclean and writeback (also seen by a secondary MMU), msync/fsync/pread,
// truncation, reclaim of clean and dirty file pages, the flusher, and writeback racing with
// write faults. tests/scenarios/file_*.mms check the host-visible rules against the kernel.
#include <atomic>
#include <chrono>
#include <thread>

#include "mirrormm/device_mirror.h"
#include "mm/filemap.h"
#include "mm/page_writeback.h"
#include "mm/shmem.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr auto kRw = System::FileMode::kReadWrite;
constexpr uint64_t kMsAsync = 1, kMsInvalidate = 2, kMsSync = 4;

class FileWritebackTest : public ModelTest {
 protected:
  explicit FileWritebackTest(SystemConfig c = SystemConfig{}) : ModelTest(c) {}

  void map_file(uint64_t addr, uint64_t len, uint64_t flags, const char* name = "f", uint64_t off = 0) {
    ASSERT_TRUE(sys().mmap_file(p1(), addr, len, RW, flags | kMapFixed, name, off, kRw).ok());
  }
  ShmemInode* inode(uint64_t addr = W) { return vma_at(p1(), addr)->vm_file->inode; }
  // The bytes pread returns.
  std::vector<uint8_t> pread(uint64_t off, uint64_t len, const char* name = "f") {
    Result<std::vector<uint8_t>> r = sys().pread(name, off, len);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : std::vector<uint8_t>{};
  }
  bool page_dirty(uint64_t addr) {
    Page* p = page_at(p1(), addr);
    return p && p->test(PG_dirty);
  }
};

TEST_F(FileWritebackTest, PagesComeFromTheDiskAndHolesReadAsZeros) {
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  fill(p1(), W + P, P, 0x5a);
  EXPECT_EQ(sys().fsync("f").error(), Errno::kOk);
  // Out of the cache (nothing maps it after the munmap; a clean page simply goes).
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
  sys().reclaim(1000);
  EXPECT_EQ(sys().debug_dirty_file_pages(), 0u);
  map_file(W, 4 * P, kMapShared);
  EXPECT_EQ(mincore(p1(), W, 4 * P), "0000");
  EXPECT_EQ(bytes(p1(), W + P, P), std::vector<uint8_t>(P, 0x5a));  // read back from the disk
  EXPECT_EQ(bytes(p1(), W + 2 * P, P), std::vector<uint8_t>(P, 0));  // a hole
  EXPECT_EQ(mincore(p1(), W, 4 * P), "0110");  // exactly the pages read: no readahead
  // File pages are not swap-backed: they live on the file LRU lists.
  Page* page = page_at(p1(), W + P);
  ASSERT_NE(page, nullptr);
  EXPECT_FALSE(page->test(PG_swapbacked));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FileWritebackTest, SharedWritableFileMappingsAreWriteNotify) {
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  ASSERT_TRUE(sys().memfd("m", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  map_file(W + 8 * P, 4 * P, kMapShared, "m");
  ASSERT_TRUE(touch_read(p1(), W).ok());
  ASSERT_TRUE(touch_read(p1(), W + 8 * P).ok());
  // A clean file page is mapped read-only; shared memory gets a writable PTE at once.
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_TRUE(pte_write(pte_at(p1(), W + 8 * P)));
  EXPECT_FALSE(page_dirty(W));
  // The first write faults (page_mkwrite): the page is dirty, the PTE writable and dirty.
  fill(p1(), W, 1, 7);
  EXPECT_TRUE(page_dirty(W));
  EXPECT_TRUE(pte_write(pte_at(p1(), W)) && pte_dirty(pte_at(p1(), W)));
  // A write fault on a page not yet mapped goes the same way.
  fill(p1(), W + P, 1, 7);
  EXPECT_TRUE(page_dirty(W + P));
  EXPECT_TRUE(pte_write(pte_at(p1(), W + P)));
  // mprotect keeps the rule: back to writable, only the dirty pages' PTEs are writable.
  ASSERT_TRUE(touch_read(p1(), W + 2 * P).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W, 4 * P, kProtRead).ok());
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  ASSERT_TRUE(sys().mprotect(p1(), W, 4 * P, RW).ok());
  EXPECT_TRUE(pte_write(pte_at(p1(), W)));
  EXPECT_FALSE(pte_write(pte_at(p1(), W + 2 * P)));
  EXPECT_FALSE(page_dirty(W + 2 * P));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FileWritebackTest, FsyncCleansEveryMappingAndAWriteAfterItDirtiesAgain) {
  ASSERT_TRUE(sys().file_create("f", 2 * P).ok());
  map_file(W, 2 * P, kMapShared);
  map_file(W + 4 * P, 2 * P, kMapShared);
  fill(p1(), W, 10, 1);
  ASSERT_TRUE(touch_read(p1(), W + 4 * P).ok());
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(fill(child, W, 1, 2).ok());
  const uint64_t writes = inode()->disk()->nr_writes();
  ASSERT_TRUE(sys().fsync("f").ok());
  EXPECT_EQ(inode()->disk()->nr_writes(), writes + 1);
  EXPECT_FALSE(page_dirty(W));
  for (uint64_t a : {W, W + 4 * P}) {
    EXPECT_FALSE(pte_write(pte_at(p1(), a)));
    EXPECT_FALSE(pte_dirty(pte_at(p1(), a)));
  }
  EXPECT_FALSE(pte_write(pte_at(child, W)));
  // A clean page makes fsync write nothing.
  ASSERT_TRUE(sys().fsync("f").ok());
  EXPECT_EQ(inode()->disk()->nr_writes(), writes + 1);
  // The next write, through any mapping, dirties it again.
  ASSERT_TRUE(fill(p1(), W + 4 * P + 5, 1, 3).ok());
  EXPECT_TRUE(page_dirty(W));
  EXPECT_TRUE(pte_write(pte_at(p1(), W + 4 * P)));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FileWritebackTest, WritebackTakesWriteAccessFromADeviceMirror) {
  sys().set_mmu_checker(true);
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  auto dev = DeviceMirror::attach(p1(), DeviceMirror::Mode::kInterval, W, 4 * P);
  ASSERT_TRUE(dev.ok());
  ASSERT_TRUE(dev.value()->fault(W, 2 * P, true).ok());
  EXPECT_EQ(dev.value()->show(W, 2 * P), "ww");
  EXPECT_TRUE(page_dirty(W));
  (void)dev.value()->take_events();
  ASSERT_TRUE(sys().msync(p1(), W, 4 * P, kMsSync).ok());
  EXPECT_EQ(dev.value()->show(W, 2 * P).find('w'), std::string::npos);
  std::vector<DeviceMirror::Event> ev = dev.value()->take_events();
  ASSERT_EQ(ev.size(), 2u);  // one bracket per cleaned page
  for (const auto& e : ev) EXPECT_EQ(e.event, MmuNotifyEvent::kProtectionPage);
  // A device write faults the page writable again, through page_mkwrite.
  const uint8_t data[4] = {1, 2, 3, 4};
  EXPECT_FALSE(dev.value()->write(W, 4, data));
  ASSERT_TRUE(dev.value()->fault(W, P, true).ok());
  EXPECT_TRUE(dev.value()->write(W, 4, data));
  EXPECT_TRUE(page_dirty(W));
  EXPECT_EQ(sys().violations(), 0u);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FileWritebackTest, MsyncErrnoOrder) {
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  map_file(W + 8 * P, 4 * P, kMapShared);
  EXPECT_EQ(sys().msync(p1(), W, 4 * P, 8).error(), Errno::kInval);
  EXPECT_EQ(sys().msync(p1(), W + 1, P, kMsSync).error(), Errno::kInval);
  EXPECT_EQ(sys().msync(p1(), W, P, kMsSync | kMsAsync).error(), Errno::kInval);
  EXPECT_EQ(sys().msync(p1(), W, ~0ull - W, kMsSync).error(), Errno::kNoMem);  // wraps
  EXPECT_TRUE(sys().msync(p1(), W + 100 * P, 0, kMsSync).ok());                // nothing to do
  EXPECT_TRUE(sys().msync(p1(), W, 4 * P, kMsAsync).ok());
  EXPECT_TRUE(sys().msync(p1(), W, 4 * P, kMsInvalidate).ok());
  EXPECT_TRUE(sys().msync(p1(), W, 4 * P, 0).ok());
  EXPECT_EQ(sys().msync(p1(), W + 100 * P, P, kMsAsync).error(), Errno::kNoMem);
  // A hole in the middle: the mapped parts are synced, then -ENOMEM.
  fill(p1(), W + 8 * P, 1, 1);
  EXPECT_EQ(sys().msync(p1(), W, 12 * P, kMsSync).error(), Errno::kNoMem);
  EXPECT_FALSE(page_dirty(W + 8 * P));
  // Plain MS_ASYNC stops at the hole, the others go on; all answer -ENOMEM.
  EXPECT_EQ(sys().msync(p1(), W, 12 * P, kMsAsync).error(), Errno::kNoMem);
  EXPECT_EQ(sys().msync(p1(), W, 12 * P, kMsInvalidate).error(), Errno::kNoMem);
  // MS_ASYNC writes nothing.
  fill(p1(), W, 1, 1);
  EXPECT_TRUE(sys().msync(p1(), W, P, kMsAsync).ok());
  EXPECT_TRUE(page_dirty(W));
  EXPECT_TRUE(sys().msync(p1(), W, P, kMsSync).ok());
  EXPECT_FALSE(page_dirty(W));
  // fsync of a memfd is 0; of an unknown name -EBADF.
  ASSERT_TRUE(sys().memfd("m", P).ok());
  EXPECT_TRUE(sys().fsync("m").ok());
  EXPECT_EQ(sys().fsync("nosuch").error(), Errno::kBadf);
  // One namespace for both kinds.
  EXPECT_EQ(sys().memfd("f", P).error(), Errno::kExist);
  EXPECT_EQ(sys().file_create("m", P).error(), Errno::kExist);
  EXPECT_EQ(sys().file_create("g", System::kMaxRegularFileSize + P).error(), Errno::kFbig);
}

TEST_F(FileWritebackTest, PreadReadsTheCacheAndBringsExactlyItsPagesIn) {
  ASSERT_TRUE(sys().file_create("f", 4 * P + 100).ok());
  map_file(W, 5 * P, kMapShared);
  fill(p1(), W + P, P, 3);
  ASSERT_TRUE(sys().munmap(p1(), W, 5 * P).ok());
  map_file(W, 5 * P, kMapShared);
  EXPECT_EQ(pread(P - 1, 2), (std::vector<uint8_t>{0, 3}));
  EXPECT_EQ(mincore(p1(), W, 5 * P), "11000");
  EXPECT_EQ(pread(3 * P, 3 * P).size(), P + 100);  // fewer at the end of the file
  EXPECT_EQ(mincore(p1(), W, 5 * P), "11011");
  EXPECT_TRUE(pread(5 * P, P).empty());
  EXPECT_EQ(sys().pread("f", 1ull << 63, 1).error(), Errno::kInval);
  EXPECT_EQ(sys().pread("f", (1ull << 63) - 1, 2).error(), Errno::kInval);
  EXPECT_EQ(sys().pread("nosuch", 0, 1).error(), Errno::kBadf);
  // Shared memory reads a hole as zeros and allocates nothing.
  ASSERT_TRUE(sys().memfd("m", 4 * P).ok());
  EXPECT_EQ(pread(0, 2 * P, "m"), std::vector<uint8_t>(2 * P, 0));
  map_file(W + 8 * P, 4 * P, kMapShared, "m");
  EXPECT_EQ(inode(W + 8 * P)->nr_pages(), 0u);
}

TEST_F(FileWritebackTest, TruncateOfAMappedFile) {
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  fill(p1(), W, 4 * P, 9);
  ASSERT_TRUE(sys().fsync("f").ok());
  ASSERT_TRUE(sys().truncate("f", P + 100).ok());
  EXPECT_EQ(fill(p1(), W + 2 * P, 1, 1).kind, AccessResult::Kind::kBus);
  EXPECT_EQ(inode()->disk()->nr_blocks(), 2u);  // the blocks beyond the end are freed
  std::vector<uint8_t> tail = bytes(p1(), W + P + 100, P - 100);
  EXPECT_EQ(tail, std::vector<uint8_t>(P - 100, 0));
  // A write beyond the end of file in the last page is zeroed when the file grows again.
  fill(p1(), W + P + 200, 1, 5);
  ASSERT_TRUE(sys().truncate("f", 3 * P).ok());
  EXPECT_EQ(bytes(p1(), W + P + 200, 1), std::vector<uint8_t>{0});
  // ... and by writeback, in the page itself.
  ASSERT_TRUE(sys().truncate("f", P + 100).ok());
  fill(p1(), W + P + 200, 1, 5);
  ASSERT_TRUE(sys().fsync("f").ok());
  EXPECT_EQ(bytes(p1(), W + P + 200, 1), std::vector<uint8_t>{0});
  EXPECT_EQ(bytes(p1(), W + 99 + P, 1), std::vector<uint8_t>{9});
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FileWritebackTest, ReclaimDropsCleanPagesAndKeepsDirtyOnes) {
  ASSERT_TRUE(sys().file_create("f", 8 * P).ok());
  map_file(W, 8 * P, kMapShared);
  for (uint64_t i = 0; i < 8; i++) fill(p1(), W + i * P, P, static_cast<uint8_t>(i + 1));
  ASSERT_TRUE(sys().msync(p1(), W, 4 * P, kMsSync).ok());  // pages 0-3 clean, 4-7 dirty
  ASSERT_TRUE(sys().munmap(p1(), W, 8 * P).ok());
  map_file(W, 8 * P, kMapShared);
  sys().reclaim(1000);
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00001111");  // dirty pages stay: reclaim writes no file page
  EXPECT_EQ(sys().debug_dirty_file_pages(), 4u);
  EXPECT_EQ(sys().sync(), 4u);
  // The pages reclaim kept were activated: they age back to the inactive list first.
  for (int i = 0; i < 10 && mincore(p1(), W, 8 * P) != "00000000"; i++) sys().reclaim(1000);
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00000000");
  for (uint64_t i = 0; i < 8; i++)
    EXPECT_EQ(bytes(p1(), W + i * P, P), std::vector<uint8_t>(P, static_cast<uint8_t>(i + 1))) << i;
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FileWritebackTest, PrivateMappingsCopyTheDiskData) {
  ASSERT_TRUE(sys().file_create("f", 2 * P).ok());
  map_file(W, 2 * P, kMapShared);
  fill(p1(), W, P, 4);
  map_file(W + 4 * P, 2 * P, kMapPrivate);
  EXPECT_EQ(bytes(p1(), W + 4 * P, 1), std::vector<uint8_t>{4});
  fill(p1(), W + 4 * P, 1, 8);  // a private copy
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{4});
  EXPECT_EQ(pread(0, 1), std::vector<uint8_t>{4});
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

SystemConfig fast_flusher() {
  SystemConfig c;
  c.dirty_expire_ms = 0;
  c.dirty_writeback_ms = 20;
  return c;
}

class FlusherTest : public FileWritebackTest {
 protected:
  FlusherTest() : FileWritebackTest(fast_flusher()) {}
};

TEST_F(FlusherTest, TheFlusherWritesBackExpiredFiles) {
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  fill(p1(), W, 4 * P, 6);
  // The first pass sees the file dirty, a later one writes it back (expire 0).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  while (sys().debug_dirty_file_pages() != 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(sys().debug_dirty_file_pages(), 0u);
  EXPECT_GE(sys().flusher().pages_written(), 4u);
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
}

TEST_F(FileWritebackTest, NoWritebackBeforeTheExpireInterval) {
  ASSERT_TRUE(sys().file_create("f", 4 * P).ok());
  map_file(W, 4 * P, kMapShared);
  fill(p1(), W, 4 * P, 6);
  EXPECT_EQ(sys().flusher().writeback_pass(), 0u);  // dirty for less than 30 s
  EXPECT_EQ(sys().flusher().writeback_pass(), 0u);
  EXPECT_EQ(sys().debug_dirty_file_pages(), 4u);
}

// Writeback racing write faults: after the last fsync the disk holds every write; a page
// written after a writeback cleaned it is dirty again.
TEST(FileWritebackRace, WritebackRacingWriteFaultsLosesNoWrite) {
  SystemConfig c;
  System sys(c, 2);
  constexpr uint64_t kPages = 16;
  ASSERT_TRUE(sys.file_create("f", kPages * P).ok());
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap_file(p, W, kPages * P, RW, kMapShared | kMapFixed, "f", 0, kRw).ok());
  std::atomic<bool> stop{false};
  std::thread syncer([&] {
    System::bind_thread_to_cpu(1);
    while (!stop.load()) (void)sys.fsync("f");
  });
  uint8_t last = 0;
  for (int round = 1; round <= 200; round++) {
    last = static_cast<uint8_t>(round);
    for (uint64_t i = 0; i < kPages; i++) {
      AccessResult r = sys.access(p, 0, W + i * P, 8, true, [last](uint8_t* d, uint64_t, uint64_t n) {
        for (uint64_t k = 0; k < n; k++) d[k] = last;
      });
      ASSERT_TRUE(r.ok());
    }
  }
  stop.store(true);
  syncer.join();
  // The last writeback cleaned some pages; a write to each page after it dirties it again.
  ASSERT_TRUE(sys.fsync("f").ok());
  EXPECT_EQ(sys.debug_dirty_file_pages(), 0u);
  last++;
  for (uint64_t i = 0; i < kPages; i++) {
    AccessResult r = sys.access(p, 0, W + i * P, 8, true, [last](uint8_t* d, uint64_t, uint64_t n) {
      for (uint64_t k = 0; k < n; k++) d[k] = last;
    });
    ASSERT_TRUE(r.ok());
  }
  EXPECT_EQ(sys.debug_dirty_file_pages(), kPages);
  // After the final fsync the disk holds every last write.
  ASSERT_TRUE(sys.fsync("f").ok());
  ASSERT_TRUE(sys.munmap(p, W, kPages * P).ok());
  sys.reclaim(1000);
  for (uint64_t i = 0; i < kPages; i++) {
    Result<std::vector<uint8_t>> r = sys.pread("f", i * P, 8);
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r.value(), std::vector<uint8_t>(8, last)) << i;
  }
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
}

}  // namespace
}  // namespace mirrormm::testing
