// madvise's newer advice (src/mm/madvise.cc), mseal (src/mm/mseal.cc), process_madvise and
// the map types: MADV_FREE and the lazyfree LRU, MADV_REMOVE, guard regions, the huge-page
// flags, sealing, and MAP_SHARED_VALIDATE / MAP_DROPPABLE / MAP_STACK. The rules are Linux
// 6.18's as measured on the host (the host-comparable halves are also in
// tests/scenarios/madv_*.mms, mseal.mms, map_types.mms and process_madvise.mms).
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class AdviceTest : public ModelTest {
 protected:
  Errno madv(Process* p, uint64_t addr, uint64_t len, uint64_t advice) {
    Status s = sys().madvise(p, addr, len, advice);
    return s.ok() ? Errno::kOk : s.error();
  }
  Errno seal(uint64_t addr, uint64_t len, uint64_t flags = 0) {
    Status s = sys().mseal(p1(), addr, len, flags);
    return s.ok() ? Errno::kOk : s.error();
  }
  Errno pmadv(Process* p, Process* target, uint64_t addr, uint64_t len, uint64_t advice) {
    Status s = sys().process_madvise(p, target, addr, len, advice);
    return s.ok() ? Errno::kOk : s.error();
  }
  PageInfo info(Process* p, uint64_t addr) {
    sys().lru_add_drain_all();
    Result<PageInfo> r = sys().pageinfo(p, addr);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : PageInfo{};
  }
  static bool has_flag(const PageInfo& i, const std::string& f) {
    return std::find(i.flags.begin(), i.flags.end(), f) != i.flags.end();
  }
  SmapsEntry smaps_of(Process* p, uint64_t addr) {
    Result<std::vector<SmapsEntry>> r = sys().smaps(p);
    EXPECT_TRUE(r.ok());
    for (const SmapsEntry& e : r.value())
      if (e.vma.start <= addr && addr < e.vma.end) return e;
    ADD_FAILURE() << "no mapping at " << std::hex << addr;
    return SmapsEntry{};
  }
  bool all_zero(Process* p, uint64_t addr, uint64_t len) {
    std::vector<uint8_t> b = bytes(p, addr, len);
    return b.size() == len && std::all_of(b.begin(), b.end(), [](uint8_t x) { return x == 0; });
  }
};

// ---- MADV_FREE ----

TEST_F(AdviceTest, FreeCleansPagesAndMovesThemToTheInactiveFileList) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  EXPECT_EQ(madv(p1(), W, 2 * P, kMadvFree), Errno::kOk);
  const PageInfo lazy = info(p1(), W);
  EXPECT_FALSE(lazy.dirty);
  EXPECT_FALSE(has_flag(lazy, "swapbacked"));
  EXPECT_EQ(lazy.lru, "inactive_file");
  const PageInfo kept = info(p1(), W + 2 * P);
  EXPECT_TRUE(has_flag(kept, "swapbacked"));
  const SmapsEntry e = smaps_of(p1(), W);
  EXPECT_EQ(e.private_clean, 2 * P);
  EXPECT_EQ(e.private_dirty, 2 * P);
  EXPECT_EQ(e.lazyfree, 2 * P);
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 1));  // nothing is lost before reclaim
}

TEST_F(AdviceTest, PageoutWithoutSwapDropsCleanLazyPagesAndKeepsRewrittenOnes) {
  map(p1(), W, 3 * P);
  write_pattern(p1(), W, 3 * P, 1);
  ASSERT_EQ(madv(p1(), W, 3 * P, kMadvFree), Errno::kOk);
  ASSERT_EQ(fill(p1(), W, 1, 7).ok(), true);  // page 0 written again
  ASSERT_TRUE(touch_read(p1(), W + P).ok());  // page 1 only read: still lazily free
  ASSERT_EQ(madv(p1(), W, 3 * P, kMadvPageout), Errno::kOk);
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{7});
  EXPECT_TRUE(all_zero(p1(), W + P, 2 * P));
  // The rewritten page is swap-backed again.
  EXPECT_TRUE(has_flag(info(p1(), W), "swapbacked"));
}

TEST_F(AdviceTest, ReclaimWithSwapNeverLosesALazyPageWrittenAgain) {
  ASSERT_TRUE(sys().swapon(1 << 20).ok());
  map(p1(), W, 8 * P);
  write_pattern(p1(), W, 8 * P, 1);
  ASSERT_EQ(madv(p1(), W, 8 * P, kMadvFree), Errno::kOk);
  write_pattern(p1(), W + 4 * P, 4 * P, 2);  // the upper half is written again
  sys().reclaim(1024);
  EXPECT_TRUE(has_pattern(p1(), W + 4 * P, 4 * P, 2));
  EXPECT_TRUE(all_zero(p1(), W, 4 * P));
}

TEST_F(AdviceTest, FreeReleasesSwapEntriesAtOnce) {
  ASSERT_TRUE(sys().swapon(1 << 20).ok());
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 1);
  ASSERT_EQ(madv(p1(), W, 2 * P, kMadvPageout), Errno::kOk);
  ASSERT_EQ(info(p1(), W).entry, PageInfo::Entry::kSwap);
  EXPECT_EQ(smaps_of(p1(), W).swap, 2 * P);
  ASSERT_EQ(madv(p1(), W, 2 * P, kMadvFree), Errno::kOk);
  EXPECT_EQ(info(p1(), W).entry, PageInfo::Entry::kNone);
  EXPECT_EQ(smaps_of(p1(), W).swap, 0u);
  EXPECT_TRUE(all_zero(p1(), W, 2 * P));
}

TEST_F(AdviceTest, FreeIsForPrivateAnonymousMemoryOnly) {
  map(p1(), W, 2 * P, RW, SHARED);
  EXPECT_EQ(madv(p1(), W, 2 * P, kMadvFree), Errno::kInval);
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 16 * P, 2 * P, RW, kMapPrivate | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  EXPECT_EQ(madv(p1(), W + 16 * P, 2 * P, kMadvFree), Errno::kInval);
  map(p1(), W + 32 * P, 2 * P, kProtNone);
  EXPECT_EQ(madv(p1(), W + 32 * P, 2 * P, kMadvFree), Errno::kOk);
  EXPECT_EQ(madv(p1(), W + 32 * P, 8 * P, kMadvFree), Errno::kNoMem);
}

// ---- MADV_REMOVE ----

TEST_F(AdviceTest, RemovePunchesAHoleThatEveryMappingSeesButPrivateCopiesSurvive) {
  ASSERT_TRUE(sys().memfd("f", 8 * P).ok());
  const uint64_t kShared = kMapShared | kMapFixed, kPrivate = kMapPrivate | kMapFixed;
  ASSERT_TRUE(sys().mmap_file(p1(), W, 4 * P, RW, kShared, "f", 0, System::FileMode::kReadWrite).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 64 * P, 4 * P, RW, kShared, "f", 0, System::FileMode::kReadWrite).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 128 * P, 4 * P, RW, kPrivate, "f", 0, System::FileMode::kReadWrite).ok());
  write_pattern(p1(), W, 4 * P, 1);
  write_pattern(p1(), W + 128 * P, P, 2);  // a private copy of page 0
  EXPECT_EQ(madv(p1(), W, 2 * P, kMadvRemove), Errno::kOk);
  EXPECT_TRUE(all_zero(p1(), W + 64 * P, 2 * P));
  EXPECT_TRUE(has_pattern(p1(), W + 64 * P + 2 * P, 2 * P, 1));
  EXPECT_TRUE(has_pattern(p1(), W + 128 * P, P, 2));
  EXPECT_TRUE(all_zero(p1(), W + 129 * P, P));
  EXPECT_EQ(madv(p1(), W + 128 * P, P, kMadvRemove), Errno::kAcces);
  map(p1(), W + 192 * P, 2 * P);
  EXPECT_EQ(madv(p1(), W + 192 * P, 2 * P, kMadvRemove), Errno::kInval);
}

// ---- guard regions ----

TEST_F(AdviceTest, GuardMarkersFaultSurviveZapsAndRefusePopulation) {
  map(p1(), W, 8 * P);
  write_pattern(p1(), W, 8 * P, 1);
  ASSERT_EQ(madv(p1(), W + P, 2 * P, kMadvGuardInstall), Errno::kOk);
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");  // no split
  EXPECT_FALSE(touch_read(p1(), W + P).ok());
  EXPECT_FALSE(fill(p1(), W + 2 * P, 1, 1).ok());
  EXPECT_TRUE(has_pattern(p1(), W + 3 * P, 5 * P, 1));
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1001");
  for (uint64_t advice : {kMadvDontneed, kMadvFree, kMadvPageout, kMadvCold})
    ASSERT_EQ(madv(p1(), W, 8 * P, advice), Errno::kOk);
  EXPECT_FALSE(touch_read(p1(), W + P).ok());
  EXPECT_EQ(madv(p1(), W, 8 * P, kMadvPopulateRead), Errno::kFault);
  EXPECT_EQ(madv(p1(), W, 8 * P, kMadvPopulateWrite), Errno::kFault);
  ASSERT_EQ(madv(p1(), W + P, P, kMadvGuardRemove), Errno::kOk);
  EXPECT_TRUE(all_zero(p1(), W + P, P));
  EXPECT_FALSE(touch_read(p1(), W + 2 * P).ok());
}

TEST_F(AdviceTest, GuardMarkersAreCopiedByForkExceptWipeOnForkAndMovedByMremap) {
  map(p1(), W, 4 * P);
  map(p1(), W + 16 * P, 4 * P);
  ASSERT_EQ(madv(p1(), W + 16 * P, 4 * P, kMadvWipeonfork), Errno::kOk);
  ASSERT_EQ(madv(p1(), W + P, P, kMadvGuardInstall), Errno::kOk);
  ASSERT_EQ(madv(p1(), W + 17 * P, P, kMadvGuardInstall), Errno::kOk);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  EXPECT_FALSE(touch_read(child.value(), W + P).ok());
  EXPECT_TRUE(touch_read(child.value(), W + 17 * P).ok());
  ASSERT_TRUE(sys().mremap(p1(), W, 4 * P, 4 * P, 3, W + 64 * P).ok());  // MAYMOVE|FIXED
  EXPECT_FALSE(touch_read(p1(), W + 65 * P).ok());
  map(p1(), W, 4 * P);
  EXPECT_TRUE(touch_read(p1(), W + P).ok());  // munmap (MAP_FIXED) took the marker
}

TEST_F(AdviceTest, GuardInstallGivesAnAnonVma) {
  map(p1(), W, 2 * P);
  // An unfaulted VMA moved next to a neighbour merges; a guarded one keeps its offset.
  map(p1(), W + 16 * P, 2 * P);
  ASSERT_EQ(madv(p1(), W + 16 * P, P, kMadvGuardInstall), Errno::kOk);
  map(p1(), W + 32 * P, 2 * P);
  ASSERT_TRUE(sys().mremap(p1(), W + 16 * P, 2 * P, 2 * P, 3, W + 34 * P).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000020000-200000022000 rw-p; "
                        "200000022000-200000024000 rw-p");
}

// ---- huge-page flags, map types ----

TEST_F(AdviceTest, HugepageFlagsSplitAndMergeLikeOtherFlags) {
  map(p1(), W, 4 * P);
  ASSERT_EQ(madv(p1(), W + P, P, kMadvHugepage), Errno::kOk);
  ASSERT_EQ(madv(p1(), W + 2 * P, P, kMadvNohugepage), Errno::kOk);
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-p; 200000001000-200000002000 rw-p; "
                        "200000002000-200000003000 rw-p; 200000003000-200000004000 rw-p");
  ASSERT_EQ(madv(p1(), W + P, P, kMadvNohugepage), Errno::kOk);  // joins its nh neighbour
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-p; 200000001000-200000003000 rw-p; "
                        "200000003000-200000004000 rw-p");
  // MAP_STACK is VM_NOHUGEPAGE: it merges with the nh piece.
  map(p1(), W + 4 * P, P, RW, PRIV | kMapStack);
  ASSERT_EQ(madv(p1(), W + 3 * P, P, kMadvNohugepage), Errno::kOk);
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-p; 200000001000-200000005000 rw-p");
}

TEST_F(AdviceTest, MapTypes) {
  EXPECT_EQ(sys().mmap(p1(), W, P, RW, kMapSharedValidate | kMapAnonymous | kMapFixed).error(), Errno::kInval);
  ASSERT_TRUE(sys().memfd("f", 4 * P).ok());
  EXPECT_TRUE(sys().mmap_file(p1(), W, P, RW, kMapSharedValidate | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  EXPECT_EQ(sys().mmap_file(p1(), W + P, P, RW, kMapSharedValidate | kMapFixedNoReplace, "f", 0, System::FileMode::kReadWrite).error(),
            Errno::kOpNotSupp);
  EXPECT_EQ(sys().mmap_file(p1(), W + P, P, RW, kMapDroppable | kMapFixed, "f", 0, System::FileMode::kReadWrite).error(), Errno::kInval);
  const uint64_t kDrop = kMapDroppable | kMapAnonymous | kMapFixed;
  EXPECT_EQ(sys().mmap(p1(), W + 8 * P, P, RW, kDrop | kMapGrowsDown).error(), Errno::kInval);
  map(p1(), W + 8 * P, 2 * P, RW, kDrop);
  map(p1(), W + 10 * P, 2 * P, RW, kDrop);
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-s 0 f; 200000008000-20000000c000 rw-p");
  write_pattern(p1(), W + 8 * P, 4 * P, 1);
  EXPECT_FALSE(has_flag(info(p1(), W + 8 * P), "swapbacked"));
  EXPECT_EQ(madv(p1(), W + 8 * P, P, kMadvKeeponfork), Errno::kInval);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  EXPECT_TRUE(all_zero(child.value(), W + 8 * P, 4 * P));  // wiped on fork
  ASSERT_EQ(madv(p1(), W + 8 * P, 4 * P, kMadvPageout), Errno::kOk);
  EXPECT_TRUE(all_zero(p1(), W + 8 * P, 4 * P));  // dropped although dirty
}

// ---- mseal ----

TEST_F(AdviceTest, MsealChecksAndSplits) {
  map(p1(), W, 8 * P);
  EXPECT_EQ(seal(W, P, 1), Errno::kInval);
  EXPECT_EQ(seal(W + 1, P), Errno::kInval);
  EXPECT_EQ(seal(W, 0), Errno::kOk);
  EXPECT_EQ(seal(W, 16 * P), Errno::kNoMem);  // a hole: nothing sealed
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");
  EXPECT_EQ(seal(W + 2 * P, 2 * P), Errno::kOk);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000002000-200000004000 rw-p; "
                        "200000004000-200000008000 rw-p");
  EXPECT_EQ(seal(W + 4 * P, P), Errno::kOk);  // merges into the sealed piece
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000002000-200000005000 rw-p; "
                        "200000005000-200000008000 rw-p");
}

TEST_F(AdviceTest, SealedVmasRefuseChangeAndKeepTheirData) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  ASSERT_EQ(seal(W + 2 * P, 2 * P), Errno::kOk);
  EXPECT_EQ(sys().munmap(p1(), W, 4 * P).error(), Errno::kPerm);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000002000-200000004000 rw-p");
  EXPECT_EQ(sys().mprotect(p1(), W, 4 * P, kProtRead).error(), Errno::kPerm);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 r--p; 200000002000-200000004000 rw-p");  // partial
  EXPECT_EQ(sys().mremap(p1(), W + 2 * P, 2 * P, 2 * P, 0, 0).error(), Errno::kPerm);
  EXPECT_EQ(sys().mmap(p1(), W + 2 * P, P, RW, PRIV).error(), Errno::kPerm);
  EXPECT_EQ(madv(p1(), W + 2 * P, 2 * P, kMadvDontneed), Errno::kOk);  // writable: allowed
  map(p1(), W + 16 * P, 2 * P, kProtRead);
  ASSERT_EQ(seal(W + 16 * P, 2 * P), Errno::kOk);
  for (uint64_t advice : {kMadvDontneed, kMadvFree, kMadvDontneedLocked, kMadvRemove, kMadvDontfork,
                          kMadvWipeonfork, kMadvGuardInstall})
    EXPECT_EQ(madv(p1(), W + 16 * P, P, advice), Errno::kPerm) << advice;
  for (uint64_t advice : {kMadvGuardRemove, kMadvPageout, kMadvCold, kMadvWillneed, kMadvDofork})
    EXPECT_EQ(madv(p1(), W + 16 * P, P, advice), Errno::kOk) << advice;
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(sys().munmap(child.value(), W + 16 * P, P).error(), Errno::kPerm);
}

// ---- process_madvise ----

TEST_F(AdviceTest, ProcessMadviseAllowsOnlyNonDestructiveAdviceRemotely) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Process* c = child.value();
  EXPECT_EQ(pmadv(c, p1(), W, 4 * P, kMadvCold), Errno::kOk);
  EXPECT_EQ(pmadv(c, p1(), W, 4 * P, kMadvPageout), Errno::kOk);
  EXPECT_EQ(pmadv(c, p1(), W, 4 * P, kMadvWillneed), Errno::kOk);
  for (uint64_t advice : {kMadvDontneed, kMadvFree, kMadvGuardInstall, kMadvHugepage, kMadvDontfork})
    EXPECT_EQ(pmadv(c, p1(), W, 4 * P, advice), Errno::kInval) << advice;
  EXPECT_EQ(pmadv(c, p1(), W + 64 * P, 4 * P, kMadvCold), Errno::kNoMem);
  EXPECT_EQ(pmadv(c, p1(), W + 1, 0, kMadvCold), Errno::kOk);
  EXPECT_EQ(pmadv(c, nullptr, W, 4 * P, kMadvDontneed), Errno::kSrch);
  EXPECT_EQ(pmadv(p1(), p1(), W, P, kMadvGuardInstall), Errno::kOk);  // its own: anything
  EXPECT_FALSE(touch_read(p1(), W).ok());
  EXPECT_TRUE(has_pattern(c, W, 4 * P, 1));  // the child's data is untouched
}

}  // namespace
}  // namespace mirrormm::testing
