// Locked memory (src/mm/mlock.cc): the VMA flags and their merges, population, mlocked pages
// on the unevictable list and out of reclaim's reach, fork, mremap and munmap; the
// unprivileged rules of RLIMIT_MEMLOCK; setrlimit and the limits of mmap, mremap, mprotect
// and stack growth. The host-comparable side is also covered by tests/scenarios/mlock_*.mms,
// mlockall.mms and rlimits.mms; these tests check what the host cannot show (page state,
// reclaim, a process without CAP_IPC_LOCK).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mirrormm/mman.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/vmstat.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class MlockTest : public ModelTest {
 protected:
  explicit MlockTest(SystemConfig c = SystemConfig{}) : ModelTest(c) {}

  // The lock flags of the VMA containing addr: "lo", "lo+lf" or "-".
  std::string lock_of(Process* p, uint64_t addr) {
    Result<std::vector<SmapsEntry>> r = sys().smaps(p);
    EXPECT_TRUE(r.ok());
    for (const SmapsEntry& e : r.value())
      if (e.vma.start <= addr && addr < e.vma.end) return e.vm_locked ? (e.vm_lockonfault ? "lo+lf" : "lo") : "-";
    return "none";
  }
  PageInfo info(Process* p, uint64_t addr) {
    sys().lru_add_drain_all();
    Result<PageInfo> r = sys().pageinfo(p, addr);
    EXPECT_TRUE(r.ok());
    return r.value();
  }
  bool mlocked(Process* p, uint64_t addr) {
    const PageInfo i = info(p, addr);
    for (const std::string& f : i.flags)
      if (f == "mlocked") return i.lru == "unevictable";
    return false;
  }
  int64_t event(VmEvent e) { return sys().mem().events().sum(e); }
  VmCounts counts(Process* p) { return sys().vm_counts(p).value(); }
};

SystemConfig unprivileged(uint64_t memlock = 4 * 4096) {
  SystemConfig c;
  c.cap_ipc_lock = false;
  c.memlock_rlimit = memlock;
  return c;
}

SystemConfig small_machine(uint64_t mib) {
  SystemConfig c;
  c.memory_bytes = mib << 20;
  return c;
}

TEST_F(MlockTest, MlockSplitsPopulatesAndMunlockMergesBack) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(sys().mlock(p1(), W + 2 * P, 2 * P).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 rw-p; 200000002000-200000004000 rw-p; 200000004000-200000008000 rw-p");
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00110000");
  EXPECT_EQ(lock_of(p1(), W + 2 * P), "lo");
  EXPECT_TRUE(mlocked(p1(), W + 2 * P));
  EXPECT_TRUE(mlocked(p1(), W + 3 * P));
  ASSERT_TRUE(sys().munlock(p1(), W, 8 * P).ok());
  EXPECT_EQ(maps(p1()), "200000000000-200000008000 rw-p");
  EXPECT_FALSE(mlocked(p1(), W + 2 * P));
  EXPECT_EQ(info(p1(), W + 2 * P).lru, "inactive_anon");
  EXPECT_EQ(event(UNEVICTABLE_PGMLOCKED), 2);
  EXPECT_EQ(event(UNEVICTABLE_PGMUNLOCKED), 2);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

// A page faulted into a locked mapping enters this CPU's add batch and then its mlock batch;
// the mlock entry counts the lock only if the add batch linked the page first. Both batches
// hold 31 pages, so when they fill in step every page is counted; when the add batch already
// held k pages, the last k of every 31 are not. A second locked mapping counts every page
// (they are on the lists by then), and unlocking the first leaves exactly the pages counted
// twice mlocked. (The 6.18 host shows the same two patterns, the offset depending on what
// else ran on the CPU.)
TEST_F(MlockTest, LockCountsFollowTheOrderOfTheAddAndMlockBatches) {
  const int saved = System::bound_cpu();
  System::bind_thread_to_cpu(0);
  Process* p = p1();
  constexpr uint64_t kPages = 62;
  auto twice_mapped_then_unlocked = [&](const char* file, uint64_t at) {
    EXPECT_TRUE(sys().memfd(file, kPages * P).ok());
    constexpr uint64_t kLockedShared = kMapShared | kMapFixed | kMapLocked | kMapPopulate;
    for (uint64_t m = 0; m < 2; m++) {
      EXPECT_TRUE(
          sys().mmap_file(p, at + m * 64 * P, kPages * P, RW, kLockedShared, file, 0, System::FileMode::kReadWrite)
              .ok());
    }
    EXPECT_TRUE(sys().munlock(p, at, kPages * P).ok());
    std::string still;
    for (uint64_t i = 0; i < kPages; i++) still += mlocked(p, at + 64 * P + i * P) ? '1' : '0';
    return still;
  };
  sys().lru_add_drain_all();
  EXPECT_EQ(twice_mapped_then_unlocked("f", W), std::string(kPages, '1'));
  // Ten new anonymous pages wait in the add batch.
  ASSERT_TRUE(sys().mmap(p, W + 256 * P, 10 * P, RW, PRIV).ok());
  ASSERT_TRUE(fill(p, W + 256 * P, 10 * P, 1).ok());
  const std::string period = std::string(21, '1') + std::string(10, '0');
  EXPECT_EQ(twice_mapped_then_unlocked("g", W + 512 * P), period + period);
  System::bind_thread_to_cpu(saved);
}

TEST_F(MlockTest, LockOnFaultPopulatesNothingButLocksWhatFaultsIn) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, P, 1).ok());  // present before the lock: mlocked by it
  ASSERT_TRUE(sys().mlock2(p1(), W, 4 * P, kMlockOnfault).ok());
  EXPECT_EQ(lock_of(p1(), W), "lo+lf");
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1000");
  EXPECT_TRUE(mlocked(p1(), W));
  ASSERT_TRUE(fill(p1(), W + 2 * P, P, 2).ok());  // a new page of a locked VMA
  EXPECT_TRUE(mlocked(p1(), W + 2 * P));
  EXPECT_EQ(sys().mlock2(p1(), W, P, 2).error(), Errno::kInval);
}

TEST_F(MlockTest, PopulationStopsAtProtNoneAndAtTheEndOfAFile) {
  map(p1(), W, 4 * P, kProtNone);
  map(p1(), W + 4 * P, 4 * P, kProtRead);
  EXPECT_EQ(sys().mlock(p1(), W, 8 * P).error(), Errno::kNoMem);
  EXPECT_EQ(lock_of(p1(), W), "lo");
  EXPECT_EQ(lock_of(p1(), W + 4 * P), "lo");
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00000000");
  // Private and locked, it becomes writable: mprotect populates it.
  ASSERT_TRUE(sys().mprotect(p1(), W, 4 * P, RW).ok());
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1111");
  EXPECT_TRUE(mlocked(p1(), W + P));

  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W + 16 * P, 6 * P, kProtRead, kMapShared | kMapFixed, "f", 0,
                              System::FileMode::kReadWrite)
                  .ok());
  EXPECT_EQ(sys().mlock(p1(), W + 16 * P, 6 * P).error(), Errno::kNoMem);
  EXPECT_EQ(mincore(p1(), W + 16 * P, 6 * P), "110000");
  EXPECT_TRUE(mlocked(p1(), W + 16 * P));  // a page-cache page
}

TEST_F(MlockTest, HolesAndRoundingFollowLinux) {
  map(p1(), W, 4 * P);
  EXPECT_EQ(sys().mlock(p1(), W + 8 * P, P).error(), Errno::kNoMem);     // starts in a hole
  EXPECT_EQ(sys().mlock(p1(), W, 8 * P).error(), Errno::kNoMem);         // locked, then the hole
  EXPECT_EQ(lock_of(p1(), W), "lo");
  EXPECT_TRUE(sys().mlock(p1(), W, ~0ull).ok());                         // PAGE_ALIGN wraps to 0
  EXPECT_EQ(sys().mlock(p1(), W, ~0ull - P + 1 - P).error(), Errno::kInval);  // the end wraps
  ASSERT_TRUE(sys().munlock(p1(), W + P + 17, 1).ok());                   // one page, rounded
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-p; 200000001000-200000002000 rw-p; 200000002000-200000004000 rw-p");
  EXPECT_EQ(lock_of(p1(), W + P), "-");
}

TEST_F(MlockTest, LockedVmasRefuseDontneedColdAndPageout) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(sys().mlock(p1(), W, 4 * P).ok());
  EXPECT_EQ(sys().madvise(p1(), W, P, kMadvDontneed).error(), Errno::kInval);
  EXPECT_EQ(sys().madvise(p1(), W, P, kMadvCold).error(), Errno::kInval);
  EXPECT_EQ(sys().madvise(p1(), W, P, kMadvPageout).error(), Errno::kInval);
  EXPECT_TRUE(sys().madvise(p1(), W, P, kMadvWillneed).ok());
}

TEST_F(MlockTest, MapLockedAndMlockallFuturePopulateUnlessOnFault) {
  ASSERT_TRUE(sys().mmap(p1(), W, 4 * P, RW, PRIV | kMapLocked).ok());
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1111");
  EXPECT_TRUE(mlocked(p1(), W + 3 * P));
  ASSERT_TRUE(sys().mlockall(p1(), kMclFuture | kMclOnfault).ok());
  ASSERT_TRUE(sys().mmap(p1(), W + 16 * P, 4 * P, RW, PRIV | kMapPopulate).ok());
  EXPECT_EQ(mincore(p1(), W + 16 * P, 4 * P), "0000");  // VM_LOCKONFAULT: populate does nothing
  EXPECT_EQ(lock_of(p1(), W + 16 * P), "lo+lf");
  EXPECT_EQ(sys().mlockall(p1(), kMclOnfault).error(), Errno::kInval);
  EXPECT_EQ(sys().mlockall(p1(), 0).error(), Errno::kInval);
  ASSERT_TRUE(sys().mlockall(p1(), kMclCurrent).ok());  // clears future, locks the rest
  EXPECT_EQ(lock_of(p1(), W + 16 * P), "lo");
  EXPECT_EQ(mincore(p1(), W + 16 * P, 4 * P), "1111");
  ASSERT_TRUE(sys().mmap(p1(), W + 32 * P, P, RW, PRIV).ok());
  EXPECT_EQ(lock_of(p1(), W + 32 * P), "-");
  ASSERT_TRUE(sys().munlockall(p1()).ok());
  EXPECT_EQ(lock_of(p1(), W), "-");
  EXPECT_FALSE(mlocked(p1(), W));
  EXPECT_EQ(counts(p1()).locked, 0u);
}

TEST_F(MlockTest, APageCountsItsLockedMappings) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 4).ok());
  // Read-only, so that the child's mlock populates without breaking COW.
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, kProtRead).ok());
  ASSERT_TRUE(sys().mlock(p1(), W, 2 * P).ok());
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  ASSERT_TRUE(sys().mlock(child.value(), W, 2 * P).ok());  // the shared pages: two locks
  ASSERT_TRUE(sys().munlock(p1(), W, 2 * P).ok());
  EXPECT_TRUE(mlocked(p1(), W));  // the child's lock still counts
  ASSERT_TRUE(sys().munmap(child.value(), W, 2 * P).ok());
  EXPECT_FALSE(mlocked(p1(), W));
  EXPECT_EQ(info(p1(), W).lru, "inactive_anon");
}

TEST_F(MlockTest, DontunmapLeavesTheSourcePagesMlocked) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(sys().mlock(p1(), W, 4 * P).ok());
  ASSERT_TRUE(sys().mremap(p1(), W, 2 * P, 2 * P, 7, W + 64 * P).ok());
  EXPECT_EQ(lock_of(p1(), W), "-");
  EXPECT_TRUE(mlocked(p1(), W + 3 * P));  // not moved, still mlocked: as in Linux
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(MlockTest, ForkInheritsNeitherLocksNorFuture) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(sys().mlockall(p1(), kMclCurrent | kMclFuture).ok());
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(lock_of(child.value(), W), "-");
  ASSERT_TRUE(sys().mmap(child.value(), W + 8 * P, P, RW, PRIV).ok());
  EXPECT_EQ(lock_of(child.value(), W + 8 * P), "-");
  // The page both map stays mlocked through the parent's locked VMA; the child's COW copy
  // is an ordinary page.
  EXPECT_TRUE(mlocked(p1(), W));
  ASSERT_TRUE(fill(child.value(), W, P, 5).ok());
  EXPECT_FALSE(mlocked(child.value(), W));
  EXPECT_TRUE(mlocked(p1(), W));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(MlockTest, MremapCarriesTheLockAndPopulatesGrowth) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(sys().mlock(p1(), W, 4 * P).ok());
  ASSERT_TRUE(sys().mremap(p1(), W, 4 * P, 8 * P, 0, 0).ok());
  EXPECT_EQ(mincore(p1(), W, 8 * P), "11111111");
  EXPECT_TRUE(mlocked(p1(), W + 7 * P));
  Result<uint64_t> moved = sys().mremap(p1(), W, 8 * P, 8 * P, 3, W + 64 * P);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(lock_of(p1(), W + 64 * P), "lo");
  EXPECT_TRUE(mlocked(p1(), W + 64 * P));
  // DONTUNMAP: the source keeps its range but loses the lock.
  ASSERT_TRUE(sys().mremap(p1(), W + 64 * P, 2 * P, 2 * P, 7, W + 128 * P).ok());
  EXPECT_EQ(lock_of(p1(), W + 64 * P), "-");
  EXPECT_EQ(lock_of(p1(), W + 128 * P), "lo");
  ASSERT_TRUE(sys().munmap(p1(), W + 128 * P, 2 * P).ok());
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

class MlockReclaimTest : public MlockTest {
 protected:
  MlockReclaimTest() : MlockTest(small_machine(64)) {}
};

TEST_F(MlockReclaimTest, ReclaimAndPageoutNeverTakeALockedPageAndMunlockReturnsIt) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 16 * P);
  ASSERT_TRUE(fill(p1(), W, 16 * P, 7).ok());
  ASSERT_TRUE(sys().mlock(p1(), W, 8 * P).ok());
  for (int pass = 0; pass < 6; pass++) (void)sys().reclaim(64);
  EXPECT_EQ(mincore(p1(), W, 16 * P), "1111111100000000");
  for (int i = 0; i < 8; i++) EXPECT_TRUE(mlocked(p1(), W + i * P)) << i;
  EXPECT_EQ(event(PSWPOUT), 8);
  ASSERT_TRUE(sys().munlock(p1(), W, 8 * P).ok());
  EXPECT_EQ(info(p1(), W).lru, "inactive_anon");
  ASSERT_TRUE(sys().madvise(p1(), W, 8 * P, kMadvPageout).ok());
  EXPECT_EQ(mincore(p1(), W, 8 * P), "00000000");
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(MlockReclaimTest, ReclaimCullsALockedPageThatLostItsMlock) {
  ASSERT_TRUE(sys().swapon(16 << 20).ok());
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 3).ok());
  ASSERT_TRUE(sys().mlockall(p1(), kMclCurrent).ok());
  // A lock the page's count lost (as a lock taken while it was off the LRU is lost): the
  // page returns to the evictable lists while its VMA stays locked. Reclaim must keep it
  // and put it back on the unevictable list.
  munlock_folio(sys().mem(), page_at(p1(), W));
  EXPECT_FALSE(mlocked(p1(), W));
  for (int pass = 0; pass < 6; pass++) (void)sys().reclaim(64);
  EXPECT_EQ(mincore(p1(), W, 2 * P), "11");
  EXPECT_TRUE(mlocked(p1(), W));
  EXPECT_GE(event(UNEVICTABLE_PGCULLED), 1);
  EXPECT_EQ(event(PSWPOUT), 0);
}

class UnprivilegedMlockTest : public MlockTest {
 protected:
  UnprivilegedMlockTest() : MlockTest(unprivileged()) {}
};

TEST_F(UnprivilegedMlockTest, MemlockLimitBindsMlockMapLockedMremapAndMlockall) {
  map(p1(), W, 16 * P);
  EXPECT_TRUE(sys().mlock(p1(), W, 2 * P).ok());
  EXPECT_TRUE(sys().mlock(p1(), W, 4 * P).ok());  // what is locked already counts once
  EXPECT_EQ(sys().mlock(p1(), W, 5 * P).error(), Errno::kNoMem);
  EXPECT_EQ(sys().mlock2(p1(), W, 5 * P, kMlockOnfault).error(), Errno::kNoMem);
  EXPECT_EQ(sys().mmap(p1(), W + 32 * P, P, RW, PRIV | kMapLocked).error(), Errno::kAgain);
  ASSERT_TRUE(sys().munlock(p1(), W, 16 * P).ok());
  ASSERT_TRUE(sys().mmap(p1(), W + 32 * P, 4 * P, RW, PRIV | kMapLocked).ok());
  EXPECT_EQ(sys().mmap(p1(), W + 40 * P, P, RW, PRIV | kMapLocked).error(), Errno::kAgain);
  EXPECT_EQ(sys().mremap(p1(), W + 32 * P, 4 * P, 5 * P, 1, 0).error(), Errno::kAgain);
  EXPECT_EQ(sys().mlockall(p1(), kMclCurrent).error(), Errno::kNoMem);  // total_vm above the limit
  ASSERT_TRUE(sys().mlockall(p1(), kMclFuture).ok());
  EXPECT_EQ(sys().mmap(p1(), W + 64 * P, P, RW, PRIV).error(), Errno::kAgain);
  ASSERT_TRUE(sys().munlockall(p1()).ok());
}

TEST_F(UnprivilegedMlockTest, AZeroLimitIsEpermAfterTheFlagChecks) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitMemlock, 0, 0).ok());
  EXPECT_EQ(sys().mlock(p1(), W, P).error(), Errno::kPerm);
  EXPECT_EQ(sys().mlock2(p1(), W, P, 4).error(), Errno::kInval);
  EXPECT_EQ(sys().mlockall(p1(), kMclFuture).error(), Errno::kPerm);
  EXPECT_EQ(sys().mlockall(p1(), 0).error(), Errno::kInval);
  EXPECT_EQ(sys().mmap(p1(), W + 8 * P, P, RW, PRIV | kMapLocked).error(), Errno::kPerm);
  EXPECT_TRUE(sys().munlock(p1(), W, P).ok());
  EXPECT_TRUE(sys().munlockall(p1()).ok());
  // Lowering a hard limit cannot be undone: nobody has CAP_SYS_RESOURCE.
  EXPECT_EQ(sys().setrlimit(p1(), kRlimitMemlock, P, P).error(), Errno::kPerm);
}

TEST_F(MlockTest, PrivilegedProcessesLockBeyondTheLimit) {
  map(p1(), W, 16 * P);
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitMemlock, 0, 0).ok());
  EXPECT_TRUE(sys().mlock(p1(), W, 16 * P).ok());
  EXPECT_EQ(sys().setrlimit(p1(), kRlimitMemlock, P, P).error(), Errno::kPerm);
  EXPECT_EQ(sys().setrlimit(p1(), kRlimitStack, 2 * P, P).error(), Errno::kInval);
  EXPECT_EQ(sys().setrlimit(p1(), 99, 0, 0).error(), Errno::kInval);
}

TEST_F(MlockTest, AddressSpaceAndDataLimits) {
  const uint64_t base = counts(p1()).total;
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitAs, (base + 4) * P, kRlimInfinity).ok());
  EXPECT_TRUE(sys().mmap(p1(), W, 4 * P, RW, PRIV).ok());
  EXPECT_EQ(sys().mmap(p1(), W + 8 * P, P, kProtRead, PRIV).error(), Errno::kNoMem);
  EXPECT_TRUE(sys().mmap(p1(), W, 4 * P, kProtRead, PRIV).ok());  // net zero
  EXPECT_EQ(sys().mremap(p1(), W, 4 * P, 5 * P, 0, 0).error(), Errno::kNoMem);
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitAs, kRlimInfinity, kRlimInfinity).ok());

  const uint64_t data = counts(p1()).data;
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitData, (data + 2) * P, kRlimInfinity).ok());
  EXPECT_EQ(sys().mmap(p1(), W + 16 * P, 3 * P, RW, PRIV).error(), Errno::kNoMem);
  EXPECT_TRUE(sys().mmap(p1(), W + 16 * P, 3 * P, RW, SHARED).ok());  // not data
  EXPECT_TRUE(sys().mmap(p1(), W + 32 * P, 3 * P, kProtRead, PRIV).ok());
  EXPECT_EQ(sys().mprotect(p1(), W + 32 * P, 3 * P, RW).error(), Errno::kNoMem);
  EXPECT_TRUE(sys().mprotect(p1(), W + 32 * P, 2 * P, RW).ok());
  EXPECT_EQ(counts(p1()).data, data + 2);
  // A soft limit of 0 lets data grow up to the hard limit (ignore_rlimit_data's rule).
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitData, 0, (data + 3) * P).ok());
  EXPECT_TRUE(sys().mmap(p1(), W + 48 * P, P, RW, PRIV).ok());
  EXPECT_EQ(sys().mmap(p1(), W + 50 * P, P, RW, PRIV).error(), Errno::kNoMem);
}

TEST_F(MlockTest, StackLimitBoundsGrowthAndForkCopiesLimits) {
  const uint64_t top = W + 0x10000000;
  ASSERT_TRUE(sys().mmap(p1(), top, P, RW, PRIV | kMapGrowsDown).ok());
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitStack, 4 * P, kRlimInfinity).ok());
  EXPECT_TRUE(fill(p1(), top - 3 * P, 1, 1).ok());  // 4 pages: at the limit
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(sys().getrlimit(child.value(), kRlimitStack).value().first, 4 * P);
  EXPECT_EQ(fill(p1(), top - 4 * P, 1, 1).kind, AccessResult::Kind::kSegv);
  ASSERT_TRUE(sys().setrlimit(p1(), kRlimitStack, 8 * P, kRlimInfinity).ok());
  EXPECT_TRUE(fill(p1(), top - 4 * P, 1, 1).ok());
}

}  // namespace
}  // namespace mirrormm::testing
