// Rules of mremap, madvise and shared-memory files (linux-vma-semantics.md §1.4–1.6, §2.4,
// §2.5, §4.1), asserted on the model.
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr uint64_t kMaymove = 1, kFixed = 2, kDontunmap = 4;

class RemapTest : public ModelTest {
 protected:
  Result<uint64_t> remap(uint64_t addr, uint64_t old_len, uint64_t new_len, uint64_t flags, uint64_t new_addr = 0) {
    return sys().mremap(p1(), addr, old_len, new_len, flags, new_addr);
  }
};

TEST_F(RemapTest, UnfaultedMoveResetsPgoffAndMergesAtTheTarget) {
  map(p1(), W, 2 * P);
  map(p1(), W + 16 * P, 2 * P);
  ASSERT_EQ(remap(W + 16 * P, 2 * P, 2 * P, kMaymove | kFixed, W + 2 * P).value(), W + 2 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-p");
}

TEST_F(RemapTest, FaultedMoveKeepsPgoffAndMergesOnlyWhenPutBack) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 4 * P, 3).ok());
  ASSERT_EQ(remap(W + 2 * P, 2 * P, 2 * P, kMaymove | kFixed, W + 16 * P).value(), W + 16 * P);
  EXPECT_EQ(vma_at(p1(), W + 16 * P)->vm_pgoff, (W + 2 * P) >> kPageShift);
  // Next to an unrelated unfaulted mapping it stays apart (pgoff is not contiguous)...
  map(p1(), W + 18 * P, 2 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000010000-200000012000 rw-p; 200000012000-200000014000 rw-p");
  // ...and moved back to where it came from it merges again, data intact.
  ASSERT_EQ(remap(W + 16 * P, 2 * P, 2 * P, kMaymove | kFixed, W + 2 * P).value(), W + 2 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-p; 200000012000-200000014000 rw-p");
  EXPECT_EQ(bytes(p1(), W + 3 * P, 1), std::vector<uint8_t>{3});
}

TEST_F(RemapTest, DontunmapLeavesAnEmptySourceAndDropsItsAnonVma) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 5).ok());
  ASSERT_EQ(remap(W, 2 * P, 2 * P, kMaymove | kDontunmap, W + 16 * P).value(), W + 16 * P);
  Vma* src = vma_at(p1(), W);
  ASSERT_NE(src, nullptr);
  EXPECT_EQ(src->anon_vma, nullptr);
  EXPECT_TRUE(src->vm_flags & VM_ACCOUNT);
  EXPECT_EQ(mincore(p1(), W, 2 * P), "00");
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{0});
  EXPECT_EQ(bytes(p1(), W + 16 * P, 1), std::vector<uint8_t>{5});
}

TEST_F(RemapTest, SameSizeWithoutMoveChecksNothingButTheStart) {
  map(p1(), W, 2 * P);
  map(p1(), W + 2 * P, 2 * P, kProtRead);
  EXPECT_EQ(remap(W, 4 * P, 4 * P, 0).value(), W);  // spans two VMAs: still fine
  EXPECT_EQ(remap(W + 8 * P, 4 * P, 4 * P, 0).error(), Errno::kFault);
}

TEST_F(RemapTest, ErrnoOrder) {
  map(p1(), W, 2 * P);
  EXPECT_EQ(remap(W, P, 2 * P, 8).error(), Errno::kInval);                       // unknown flag
  EXPECT_EQ(remap(W + 1, P, 2 * P, 0).error(), Errno::kInval);                   // unaligned
  EXPECT_EQ(remap(W, P, 0, 0).error(), Errno::kInval);                           // new_len 0
  EXPECT_EQ(remap(W, P, P, kFixed, W + 16 * P).error(), Errno::kInval);          // FIXED without MAYMOVE
  EXPECT_EQ(remap(W, P, 2 * P, kMaymove | kDontunmap, W + 16 * P).error(), Errno::kInval);  // resize
  EXPECT_EQ(remap(W, 2 * P, 2 * P, kMaymove | kFixed, W + P).error(), Errno::kInval);       // overlap
  EXPECT_EQ(remap(W, 0, 2 * P, kMaymove).error(), Errno::kInval);                // private duplicate
  EXPECT_EQ(remap(W, 4 * P, 8 * P, 0).error(), Errno::kFault);                   // past the VMA
  map(p1(), W + 2 * P, P);
  EXPECT_EQ(remap(W, 3 * P, 6 * P, 0).value(), W);                               // grows in place
  map(p1(), W + 8 * P, P);
  EXPECT_EQ(remap(W, 6 * P, 12 * P, 0).error(), Errno::kNoMem);                  // no room, no MAYMOVE
}

TEST_F(RemapTest, RangeCheckComesBeforeTheDestinationIsUnmapped) {
  map(p1(), W, 2 * P);
  map(p1(), W + 16 * P, 2 * P);
  // Growing a range that runs past its VMA: EFAULT before the destination is touched.
  EXPECT_EQ(remap(W, 4 * P, 6 * P, kMaymove | kFixed, W + 16 * P).error(), Errno::kFault);
  EXPECT_NE(vma_at(p1(), W + 16 * P), nullptr);
  // A same-size FIXED move may span VMAs and gaps (6.17+): the VMA moves, the destination's
  // old mapping is replaced.
  EXPECT_EQ(remap(W, 4 * P, 4 * P, kMaymove | kFixed, W + 16 * P).value(), W + 16 * P);
  EXPECT_EQ(maps(p1()), "200000010000-200000012000 rw-p");
}

TEST_F(RemapTest, ShrinkUnmapsTheTailAcrossVmas) {
  map(p1(), W, 2 * P);
  map(p1(), W + 2 * P, 2 * P, kProtRead);
  EXPECT_EQ(remap(W, 4 * P, P, 0).value(), W);
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-p");
}

class MadviseTest : public ModelTest {};

TEST_F(MadviseTest, DontneedZapsButKeepsTheAnonVma) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  AnonVma* av = vma_at(p1(), W)->anon_vma;
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvDontneed).ok());
  EXPECT_EQ(mincore(p1(), W, 2 * P), "00");
  EXPECT_EQ(vma_at(p1(), W)->anon_vma, av);
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{0});
}

TEST_F(MadviseTest, FlagAdviceSplitsMergesAndReportsHolesAfterApplying) {
  map(p1(), W, 4 * P);
  map(p1(), W + 8 * P, 4 * P);
  EXPECT_EQ(sys().madvise(p1(), W + 2 * P, 8 * P, kMadvDontfork).error(), Errno::kNoMem);
  EXPECT_TRUE(vma_at(p1(), W + 2 * P)->vm_flags & VM_DONTCOPY);
  EXPECT_TRUE(vma_at(p1(), W + 8 * P)->vm_flags & VM_DONTCOPY);
  EXPECT_FALSE(vma_at(p1(), W)->vm_flags & VM_DONTCOPY);
  Process* child = sys().fork(p1()).value();
  EXPECT_EQ(maps(child), "200000000000-200000002000 rw-p; 20000000a000-20000000c000 rw-p");
  ASSERT_TRUE(sys().madvise(p1(), W, 12 * P, kMadvDofork).error() == Errno::kNoMem);
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-p; 200000008000-20000000c000 rw-p");
}

TEST_F(MadviseTest, WipeonforkGivesTheChildZeroes) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 7).ok());
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvWipeonfork).ok());
  Process* child = sys().fork(p1()).value();
  EXPECT_EQ(bytes(child, W, 1), std::vector<uint8_t>{0});
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{7});
  EXPECT_EQ(vma_at(child, W)->anon_vma, nullptr);  // an unfaulted VMA in the child
  map(p1(), W + 4 * P, P, RW, SHARED);
  EXPECT_EQ(sys().madvise(p1(), W + 4 * P, P, kMadvWipeonfork).error(), Errno::kInval);
}

TEST_F(MadviseTest, SplitFailureAtTheMapCountLimitIsEagain) {
  SystemConfig c;
  c.max_map_count = 1;
  System small(c);
  Process* p = small.process(1);
  ASSERT_TRUE(small.mmap(p, W, 4 * P, RW, PRIV).ok());
  EXPECT_EQ(small.madvise(p, W + P, P, kMadvDontfork).error(), Errno::kAgain);
}

TEST_F(MadviseTest, PopulateChecksPermissionsAndHoles) {
  map(p1(), W, 2 * P, kProtRead);
  EXPECT_EQ(sys().madvise(p1(), W, 2 * P, kMadvPopulateWrite).error(), Errno::kInval);
  EXPECT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvPopulateRead).ok());
  EXPECT_EQ(mincore(p1(), W, 2 * P), "11");
  map(p1(), W + 4 * P, 2 * P);
  EXPECT_EQ(sys().madvise(p1(), W + 4 * P, 4 * P, kMadvPopulateWrite).error(), Errno::kNoMem);
  EXPECT_EQ(mincore(p1(), W + 4 * P, 2 * P), "11");  // populated up to the hole
  EXPECT_NE(vma_at(p1(), W + 4 * P)->anon_vma, nullptr);
}

class FileTest : public ModelTest {};

TEST_F(FileTest, SharedMappingsSeeEachOtherAndPrivateOnesCopy) {
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 8 * P, 4 * P, RW, kMapPrivate | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  ASSERT_TRUE(fill(p1(), W, 1, 4).ok());
  EXPECT_EQ(bytes(p1(), W + 8 * P, 1), std::vector<uint8_t>{4});
  ASSERT_TRUE(fill(p1(), W + 8 * P, 1, 5).ok());  // copy on write
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{4});
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-s 0 f; 200000008000-20000000c000 rw-p 0 f");
}

TEST_F(FileTest, ReadOnlyDescriptor) {
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  auto ro = System::FileMode::kReadOnly;
  EXPECT_EQ(sys().mmap_file(p1(), W, P, RW, kMapShared | kMapFixed, "f", 0, ro).error(), Errno::kAcces);
  ASSERT_TRUE(sys().mmap_file(p1(), W, P, kProtRead, kMapShared | kMapFixed, "f", 0, ro).ok());
  EXPECT_FALSE(vma_at(p1(), W)->vm_flags & VM_MAYWRITE);
  EXPECT_EQ(sys().mprotect(p1(), W, P, RW).error(), Errno::kAcces);
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 r--s 0 f");
  ASSERT_TRUE(sys().mmap_file(p1(), W + 4 * P, P, kProtRead, kMapPrivate | kMapFixed, "f", 0, ro).ok());
  EXPECT_TRUE(sys().mprotect(p1(), W + 4 * P, P, RW).ok());
  EXPECT_TRUE(vma_at(p1(), W + 4 * P)->vm_flags & VM_ACCOUNT);  // charged when made writable
  EXPECT_EQ(sys().mmap_file(p1(), W, P, RW, kMapShared | kMapFixed, "nosuch", 0, ro).error(), Errno::kBadf);
}

TEST_F(FileTest, SeparateMmapsOfOneFileNeverMerge) {
  ASSERT_TRUE(sys().memfd("f", 8 * P).ok());
  auto rw = System::FileMode::kReadWrite;
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kMapShared | kMapFixed, "f", 0, rw).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 4 * P, 4 * P, RW, kMapShared | kMapFixed, "f", 4 * P, rw).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-s 0 f; 200000004000-200000008000 rw-s 4000 f");
  // Pieces of one mmap do remerge.
  ASSERT_TRUE(sys().mprotect(p1(), W + P, P, kProtRead).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W + P, P, RW).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-s 0 f; 200000004000-200000008000 rw-s 4000 f");
}

TEST_F(FileTest, TruncateRemovesPagesFromEveryMappingIncludingCopies) {
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  auto rw = System::FileMode::kReadWrite;
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kMapShared | kMapFixed, "f", 0, rw).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 8 * P, 4 * P, RW, kMapPrivate | kMapFixed, "f", 0, rw).ok());
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(fill(p1(), W, 4 * P, 1).ok());
  ASSERT_TRUE(fill(p1(), W + 8 * P, 4 * P, 2).ok());  // private copies
  ASSERT_TRUE(sys().truncate("f", P + 100).ok());
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1100");
  EXPECT_EQ(touch_read(p1(), W + 2 * P).kind, AccessResult::Kind::kBus);
  EXPECT_EQ(touch_read(child, W + 3 * P).kind, AccessResult::Kind::kBus);
  EXPECT_EQ(touch_read(p1(), W + 10 * P).kind, AccessResult::Kind::kBus);  // the copy went too
  EXPECT_EQ(bytes(p1(), W + 9 * P, 1), std::vector<uint8_t>{2});          // below EOF it stays
  // The partial page beyond the new size reads as zeroes.
  EXPECT_EQ(bytes(p1(), W + P + 100, 1), std::vector<uint8_t>{0});
  EXPECT_EQ(bytes(p1(), W + P + 99, 1), std::vector<uint8_t>{1});
  EXPECT_EQ(sys().truncate("g", 0).error(), Errno::kNoEnt);
}

TEST_F(FileTest, SharedAnonymousGrowthBeyondTheObjectIsSigbus) {
  map(p1(), W, 2 * P, RW, SHARED);
  ASSERT_EQ(sys().mremap(p1(), W, 2 * P, 4 * P, 0, 0).value(), W);
  EXPECT_TRUE(fill(p1(), W + P, 1, 1).ok());
  EXPECT_EQ(fill(p1(), W + 2 * P, 1, 1).kind, AccessResult::Kind::kBus);
}

TEST_F(FileTest, CowWriteBeyondEofStillAssignsAnAnonVma) {
  ASSERT_TRUE(sys().memfd("f", P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kMapPrivate | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  EXPECT_EQ(fill(p1(), W + 2 * P, 1, 1).kind, AccessResult::Kind::kBus);
  EXPECT_NE(vma_at(p1(), W)->anon_vma, nullptr);
}

TEST_F(FileTest, PageoutDropsCleanUnsharedCachePagesOnly) {
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  map(p1(), W + 8 * P, P);
  ASSERT_TRUE(touch_read(p1(), W).ok());           // clean
  ASSERT_TRUE(fill(p1(), W + P, 1, 1).ok());       // dirty
  ASSERT_TRUE(fill(p1(), W + 8 * P, 1, 1).ok());   // anonymous: no swap, stays
  ASSERT_TRUE(sys().madvise(p1(), W, 16 * P, kMadvPageout).error() == Errno::kNoMem);
  EXPECT_EQ(mincore(p1(), W, 2 * P), "01");
  EXPECT_EQ(mincore(p1(), W + 8 * P, P), "1");
  EXPECT_EQ(bytes(p1(), W + P, 1), std::vector<uint8_t>{1});
}

}  // namespace
}  // namespace mirrormm::testing
