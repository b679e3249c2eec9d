// VMA merge and split rules of Linux 6.18 (mm/vma.c), observed through maps.
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class VmaMergeTest : public ModelTest {};

TEST_F(VmaMergeTest, AdjacentAnonymousMappingsMerge) {
  map(p1(), W, 4 * P);
  map(p1(), W + 4 * P, 4 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");
}

TEST_F(VmaMergeTest, NewMappingFillsHoleAndMergesBothSides) {
  map(p1(), W, 2 * P);
  map(p1(), W + 4 * P, 2 * P);
  map(p1(), W + 2 * P, 2 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000006000 rw-p");
}

TEST_F(VmaMergeTest, NoreserveDoesNotMergeWithAccounted) {
  map(p1(), W, 2 * P, RW, PRIV | kMapNoReserve);
  map(p1(), W + 2 * P, 2 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000002000-200000004000 rw-p");
  EXPECT_TRUE(vma_at(p1(), W)->vm_flags & VM_NORESERVE);
  EXPECT_TRUE(vma_at(p1(), W + 2 * P)->vm_flags & VM_ACCOUNT);
}

TEST_F(VmaMergeTest, DifferentProtectionsStaySeparate) {
  map(p1(), W, 2 * P, kProtRead);
  map(p1(), W + 2 * P, 2 * P, RW);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 r--p; 200000002000-200000004000 rw-p");
}

TEST_F(VmaMergeTest, MprotectMiddleSplitsThenRemerges) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(sys().mprotect(p1(), W + 2 * P, 2 * P, kProtRead).ok());
  EXPECT_EQ(maps(p1()),
            "200000000000-200000002000 rw-p; 200000002000-200000004000 r--p; 200000004000-200000008000 rw-p");
  ASSERT_TRUE(sys().mprotect(p1(), W + 2 * P, 2 * P, RW).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");
}

TEST_F(VmaMergeTest, MprotectWithUnchangedFlagsDoesNotMerge) {
  // Two faulted VMAs with distinct anon_vmas and equal flags stay separate; an mprotect that
  // leaves their flags as they are attempts no merge (mprotect_fixup returns early).
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  map(p1(), W + 4 * P, 2 * P);
  ASSERT_TRUE(fill(p1(), W + 4 * P, 1, 1).ok());
  ASSERT_TRUE(sys().munmap(p1(), W + 2 * P, 0x1000).ok());
  map(p1(), W + 2 * P, 2 * P);  // merges left only: distinct anon_vmas on both sides
  ASSERT_EQ(maps(p1()), "200000000000-200000004000 rw-p; 200000004000-200000006000 rw-p");
  ASSERT_TRUE(sys().mprotect(p1(), W, 6 * P, RW).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-p; 200000004000-200000006000 rw-p");
}

TEST_F(VmaMergeTest, FaultedRwToReadOnlyKeepsAccountAndBlocksMerge) {
  map(p1(), W, 2 * P, RW);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());  // faulted: anon_vma assigned
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, kProtRead).ok());
  EXPECT_TRUE(vma_at(p1(), W)->vm_flags & VM_ACCOUNT);
  map(p1(), W + 2 * P, 2 * P, kProtRead);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 r--p; 200000002000-200000004000 r--p");
}

TEST_F(VmaMergeTest, UnfaultedRwToReadOnlyDropsAccountAndMerges) {
  map(p1(), W, 2 * P, RW);
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, kProtRead).ok());
  EXPECT_FALSE(vma_at(p1(), W)->vm_flags & VM_ACCOUNT);
  map(p1(), W + 2 * P, 2 * P, kProtRead);
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 r--p");
}

TEST_F(VmaMergeTest, ReadFaultDoesNotAssignAnonVma) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(touch_read(p1(), W).ok());
  EXPECT_EQ(vma_at(p1(), W)->anon_vma, nullptr);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  EXPECT_NE(vma_at(p1(), W)->anon_vma, nullptr);
}

// selftests/mm/merge.c mprotect_unfaulted_left: an unfaulted VMA merges into a faulted
// neighbour when its protection is restored (the 6.16 rule).
TEST_F(VmaMergeTest, UnfaultedMergesWithFaultedNeighbour) {
  map(p1(), W, 10 * P, RW, PRIV | kMapNoReserve);
  ASSERT_TRUE(sys().mprotect(p1(), W, 5 * P, kProtRead).ok());
  ASSERT_TRUE(fill(p1(), W + 5 * P, 5 * P, 1).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W, 5 * P, RW).ok());
  EXPECT_EQ(maps(p1()), "200000000000-20000000a000 rw-p");
}

TEST_F(VmaMergeTest, FaultedMergesWithUnfaultedNeighbour) {
  map(p1(), W, 10 * P, RW, PRIV | kMapNoReserve);
  ASSERT_TRUE(sys().mprotect(p1(), W, 5 * P, kProtRead).ok());
  ASSERT_TRUE(bytes(p1(), W, 1).size() == 1);
  ASSERT_TRUE(fill(p1(), W + 5 * P, 1, 1).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W + 5 * P, 5 * P, kProtRead).ok());
  EXPECT_EQ(maps(p1()), "200000000000-20000000a000 r--p");
}

TEST_F(VmaMergeTest, NewRangeBetweenDistinctAnonVmasMergesLeftOnly) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  map(p1(), W + 8 * P, 4 * P);
  ASSERT_TRUE(fill(p1(), W + 8 * P, 1, 1).ok());
  ASSERT_NE(vma_at(p1(), W)->anon_vma, vma_at(p1(), W + 8 * P)->anon_vma);
  map(p1(), W + 4 * P, 4 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p; 200000008000-20000000c000 rw-p");
}

TEST_F(VmaMergeTest, FaultReusesAdjacentCompatibleAnonVma) {
  // Regions faulted one after the other while adjacent share an anon_vma and merge later.
  map(p1(), W, 4 * P, RW, PRIV | kMapNoReserve);
  map(p1(), W + 4 * P, 4 * P, kProtRead, PRIV | kMapNoReserve);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  ASSERT_TRUE(sys().mprotect(p1(), W + 4 * P, 4 * P, RW).ok());
  ASSERT_TRUE(fill(p1(), W + 4 * P, 1, 1).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");
}

TEST_F(VmaMergeTest, ForkChildFaultedVmaDoesNotMergeWithNewNeighbour) {
  map(p1(), W, 4 * P);
  map(p1(), W + 16 * P, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());  // faulted before fork
  Result<Process*> c = sys().fork(p1());
  ASSERT_TRUE(c.ok());
  Process* child = c.value();
  EXPECT_TRUE(vma_is_fork_child(vma_at(child, W)));
  map(child, W + 4 * P, 4 * P);           // next to the forked faulted VMA
  map(child, W + 20 * P, 4 * P);          // next to the forked unfaulted VMA
  EXPECT_EQ(maps(child),
            "200000000000-200000004000 rw-p; 200000004000-200000008000 rw-p; 200000010000-200000018000 rw-p");
  map(p1(), W + 4 * P, 4 * P);            // the parent is unaffected
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p; 200000010000-200000014000 rw-p");
}

TEST_F(VmaMergeTest, SplitWithinForkedVmaRemerges) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 1).ok());
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(sys().mprotect(child, W + 2 * P, 2 * P, kProtRead).ok());
  ASSERT_TRUE(sys().mprotect(child, W + 2 * P, 2 * P, RW).ok());
  EXPECT_EQ(maps(child), "200000000000-200000008000 rw-p");
}

TEST_F(VmaMergeTest, SharedAnonymousMappingsNeverMerge) {
  map(p1(), W, 2 * P, RW, SHARED);
  map(p1(), W + 2 * P, 2 * P, RW, SHARED);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-s 0 shmem; 200000002000-200000004000 rw-s 0 shmem");
  ASSERT_TRUE(sys().mprotect(p1(), W + P, P, kProtRead).ok());
  EXPECT_EQ(maps(p1()),
            "200000000000-200000001000 rw-s 0 shmem; 200000001000-200000002000 r--s 1000 shmem; "
            "200000002000-200000004000 rw-s 0 shmem");
  ASSERT_TRUE(sys().mprotect(p1(), W + P, P, RW).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-s 0 shmem; 200000002000-200000004000 rw-s 0 shmem");
}

TEST_F(VmaMergeTest, FixedMappingOverMiddleOfFaultedVmaRemerges) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 8 * P, 7).ok());
  map(p1(), W + 2 * P, 2 * P);
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");
  EXPECT_EQ(bytes(p1(), W + 2 * P, 1), std::vector<uint8_t>{0});  // the old data was zapped
  EXPECT_EQ(bytes(p1(), W + 4 * P, 1), std::vector<uint8_t>{7});
}

}  // namespace
}  // namespace mirrormm::testing
