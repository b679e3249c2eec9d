// Errno order of mmap, munmap, mprotect and mincore (Linux 6.18, x86-64), and the
// max_map_count rules.
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class ErrnoTest : public ModelTest {
 protected:
  Errno mmap_err(uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags, uint64_t off = 0) {
    Result<uint64_t> r = sys().mmap(p1(), addr, len, prot, flags, nullptr, off);
    return r.ok() ? Errno::kOk : r.error();
  }
  Errno mprotect_err(uint64_t addr, uint64_t len, uint64_t prot) {
    Status s = sys().mprotect(p1(), addr, len, prot);
    return s.ok() ? Errno::kOk : s.error();
  }
  Errno munmap_err(uint64_t addr, uint64_t len) {
    Status s = sys().munmap(p1(), addr, len);
    return s.ok() ? Errno::kOk : s.error();
  }
};

TEST_F(ErrnoTest, Mprotect) {
  map(p1(), W, 4 * P);
  EXPECT_EQ(mprotect_err(W, P, kProtRead | kProtGrowsDown | kProtGrowsUp), Errno::kInval);
  EXPECT_EQ(mprotect_err(W + 1, 0, kProtRead), Errno::kInval);   // alignment before len == 0
  EXPECT_EQ(mprotect_err(W + 64 * P, 0, kProtRead), Errno::kOk);  // len 0 on nothing
  EXPECT_EQ(mprotect_err(W, ~0ull - 4095, kProtRead), Errno::kNoMem);  // overflow
  EXPECT_EQ(mprotect_err(W, P, 0x10), Errno::kInval);             // unknown prot bit
  EXPECT_EQ(mprotect_err(W, P, kProtRead | kProtSem), Errno::kOk);
  EXPECT_EQ(mprotect_err(W + 64 * P, P, kProtRead), Errno::kNoMem);
  EXPECT_EQ(mprotect_err(W - P, 2 * P, kProtRead), Errno::kNoMem);  // starts in a hole
  EXPECT_EQ(mprotect_err(0x800000000000ull, P, kProtRead), Errno::kNoMem);
  EXPECT_EQ(mprotect_err(W, P, kProtRead | kProtGrowsDown), Errno::kInval);  // not a stack
  EXPECT_EQ(mprotect_err(W, P, kProtRead | kProtGrowsUp), Errno::kInval);    // x86 has none
  EXPECT_EQ(mprotect_err(W + P, 1, kProtRead), Errno::kOk);       // len rounds up
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 r--p; 200000002000-200000004000 rw-p");
}

TEST_F(ErrnoTest, MprotectGrowsDownAppliesFromTheVmaStart) {
  map(p1(), W + 8 * P, 4 * P, RW, PRIV | kMapGrowsDown);
  EXPECT_EQ(mprotect_err(W + 10 * P, P, kProtRead | kProtGrowsDown), Errno::kOk);
  EXPECT_EQ(maps(p1()), "200000008000-20000000b000 r--p; 20000000b000-20000000c000 rw-p");
  EXPECT_EQ(mprotect_err(W + 4 * P, P, kProtRead | kProtGrowsDown), Errno::kNoMem);
}

TEST_F(ErrnoTest, Munmap) {
  map(p1(), W, 4 * P);
  EXPECT_EQ(munmap_err(W + 1, P), Errno::kInval);
  EXPECT_EQ(munmap_err(W, 0), Errno::kInval);
  EXPECT_EQ(munmap_err(0x800000000000ull, P), Errno::kInval);
  EXPECT_EQ(munmap_err(kTaskSize - P, 2 * P), Errno::kInval);
  EXPECT_EQ(munmap_err(W, ~0ull - 4095), Errno::kInval);
  EXPECT_EQ(munmap_err(W + 64 * P, P), Errno::kOk);  // nothing there
  EXPECT_EQ(munmap_err(W + P, 1), Errno::kOk);       // len rounds up
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-p; 200000002000-200000004000 rw-p");
}

TEST_F(ErrnoTest, Mmap) {
  const uint64_t rw = RW;
  EXPECT_EQ(mmap_err(W, P, rw, PRIV, 1), Errno::kInval);              // unaligned offset
  EXPECT_EQ(mmap_err(W, 0, rw, PRIV), Errno::kInval);
  EXPECT_EQ(mmap_err(W, ~0ull, rw, PRIV), Errno::kNoMem);             // PAGE_ALIGN overflows
  EXPECT_EQ(mmap_err(W, 1ull << 48, rw, PRIV), Errno::kNoMem);        // longer than TASK_SIZE
  EXPECT_EQ(mmap_err(kTaskSize, P, rw, PRIV), Errno::kNoMem);
  EXPECT_EQ(mmap_err(W + 1, P, rw, PRIV), Errno::kInval);             // unaligned fixed address
  EXPECT_EQ(mmap_err(W, P, rw, kMapShared | kMapAnonymous | kMapFixed | kMapGrowsDown), Errno::kInval);
  EXPECT_EQ(mmap_err(W, P, rw, kMapAnonymous | kMapFixed), Errno::kInval);  // no type
  EXPECT_EQ(mmap_err(W, P, rw, kMapSharedValidate | kMapAnonymous | kMapFixed), Errno::kInval);
  map(p1(), W, 4 * P);
  EXPECT_EQ(mmap_err(W + 3 * P, 2 * P, rw, kMapPrivate | kMapAnonymous | kMapFixedNoReplace), Errno::kExist);
  EXPECT_EQ(mmap_err(W + 3 * P, 2 * P, rw, PRIV | kMapFixedNoReplace), Errno::kExist);
  // Overcommit heuristic: a private writable request larger than RAM fails, NORESERVE passes.
  EXPECT_EQ(mmap_err(W + (1ull << 40), 1ull << 40, rw, PRIV), Errno::kNoMem);
  EXPECT_EQ(mmap_err(W + (1ull << 40), 1ull << 40, rw, PRIV | kMapNoReserve), Errno::kOk);
  EXPECT_EQ(mmap_err(W + (1ull << 41), 1ull << 40, rw, SHARED), Errno::kNoMem);
  EXPECT_EQ(mmap_err(W + (1ull << 41), 1ull << 40, kProtRead, PRIV), Errno::kOk);  // not accountable
}

TEST_F(ErrnoTest, FailedFixedMappingLeavesTheOldOneInPlace) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 4).ok());
  EXPECT_EQ(mmap_err(W + 2 * P, 1ull << 40, RW, PRIV), Errno::kNoMem);
  EXPECT_EQ(bytes(p1(), W + 3 * P, 1), std::vector<uint8_t>{4});
}

TEST_F(ErrnoTest, FailedSharedMappingLeavesAGap) {
  // shmem's accounting fails after the replaced mappings were cleared: they stay gone, and
  // the split at the end of the range stays too.
  map(p1(), W, 8 * P);
  EXPECT_EQ(mmap_err(W + 2 * P, (1ull << 40) - 4 * P, RW, SHARED), Errno::kNoMem);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p");
}

TEST_F(ErrnoTest, HintIsUsedWhenFree) {
  Result<uint64_t> r = sys().mmap(p1(), W + 5 * P + 17, P, RW, kMapPrivate | kMapAnonymous);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), W + 5 * P);  // rounded down to a page
  Result<uint64_t> r2 = sys().mmap(p1(), W + 5 * P, P, RW, kMapPrivate | kMapAnonymous);
  ASSERT_TRUE(r2.ok());
  EXPECT_NE(r2.value(), W + 5 * P);  // taken: placed elsewhere
}

TEST_F(ErrnoTest, Mincore) {
  map(p1(), W, 4 * P);
  std::vector<uint8_t> vec;
  EXPECT_EQ(sys().mincore(p1(), W + 1, P, &vec).error(), Errno::kInval);
  EXPECT_EQ(sys().mincore(p1(), W + 8 * P, P, &vec).error(), Errno::kNoMem);
  EXPECT_EQ(sys().mincore(p1(), W, 8 * P, &vec).error(), Errno::kNoMem);  // runs into a hole
  EXPECT_EQ(sys().mincore(p1(), 0x800000000000ull, 0, &vec).error(), Errno::kNoMem);
  EXPECT_TRUE(sys().mincore(p1(), W, 0, &vec).ok());
  EXPECT_TRUE(vec.empty());
  EXPECT_EQ(mincore(p1(), W, P + 1), "00");
}

class MapCountTest : public ModelTest {
 protected:
  static SystemConfig limited() {
    SystemConfig c;
    c.max_map_count = 4;
    return c;
  }
  MapCountTest() : ModelTest(limited()) {}
  uint64_t count() NO_THREAD_SAFETY_ANALYSIS { return p1()->mm()->map_count_; }
};

TEST_F(MapCountTest, SplitsAndMappingsAtTheLimit) {
  for (int i = 0; i < 4; i++) map(p1(), W + i * 16 * P, 4 * P);
  EXPECT_EQ(count(), 4u);
  // mmap fails only when the count is strictly greater than the limit.
  map(p1(), W + 100 * P, 4 * P);
  EXPECT_EQ(count(), 5u);
  EXPECT_EQ(sys().mmap(p1(), W + 200 * P, P, RW, PRIV).error(), Errno::kNoMem);
  // munmap: a hole punch at the limit fails, trimming an edge does not.
  EXPECT_EQ(sys().munmap(p1(), W + P, P).error(), Errno::kNoMem);
  EXPECT_TRUE(sys().munmap(p1(), W, P).ok());
  // mprotect: the split fails with nothing changed.
  EXPECT_EQ(sys().mprotect(p1(), W + 17 * P, P, kProtRead).error(), Errno::kNoMem);
  EXPECT_EQ(count(), 5u);
}

TEST_F(MapCountTest, MprotectSecondSplitFailureKeepsTheFirst) {
  for (int i = 0; i < 3; i++) map(p1(), W + i * 16 * P, 4 * P);
  EXPECT_EQ(count(), 3u);
  // Splitting at start brings the count to 4 = the limit; the end split then fails.
  EXPECT_EQ(sys().mprotect(p1(), W + P, P, kProtRead).error(), Errno::kNoMem);
  EXPECT_EQ(count(), 4u);
  EXPECT_EQ(maps(p1()).substr(0, 62), "200000000000-200000001000 rw-p; 200000001000-200000004000 rw-p");
}

}  // namespace
}  // namespace mirrormm::testing
