// Demand paging, copy-on-write, the zero page, TLB shootdown and the frame pool.
#include <atomic>
#include <chrono>
#include <thread>

#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class MemoryTest : public ModelTest {};

TEST_F(MemoryTest, ReadFaultMapsTheZeroPage) {
  map(p1(), W, 2 * P);
  EXPECT_EQ(mincore(p1(), W, 2 * P), "00");
  EXPECT_EQ(bytes(p1(), W, 16), std::vector<uint8_t>(16, 0));
  pteval_t v = pte_at(p1(), W);
  EXPECT_TRUE(pte_present(v));
  EXPECT_EQ(pte_pfn(v), sys().mem().zero_pfn());
  EXPECT_FALSE(pte_write(v));
  EXPECT_EQ(mincore(p1(), W, 2 * P), "10");
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 0);
}

TEST_F(MemoryTest, WriteAfterZeroPageAllocatesAPrivateFrame) {
  map(p1(), W, P);
  ASSERT_TRUE(touch_read(p1(), W).ok());
  ASSERT_TRUE(fill(p1(), W + 10, 1, 0xab).ok());
  pteval_t v = pte_at(p1(), W);
  EXPECT_NE(pte_pfn(v), sys().mem().zero_pfn());
  EXPECT_TRUE(pte_write(v) && pte_dirty(v));
  std::vector<uint8_t> b = bytes(p1(), W, 11);
  EXPECT_EQ(b[10], 0xab);
  EXPECT_EQ(b[0], 0);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 1);
}

TEST_F(MemoryTest, AccessesWithoutPermissionOrMappingFault) {
  map(p1(), W, P, kProtRead);
  map(p1(), W + P, P, kProtNone);
  map(p1(), W + 2 * P, P, kProtWrite);  // x86: write-only is readable
  EXPECT_EQ(fill(p1(), W, 1, 1).kind, AccessResult::Kind::kSegv);
  EXPECT_EQ(touch_read(p1(), W + P).kind, AccessResult::Kind::kSegv);
  EXPECT_TRUE(touch_read(p1(), W + 2 * P).ok());
  EXPECT_TRUE(fill(p1(), W + 2 * P, 1, 1).ok());
  EXPECT_EQ(touch_read(p1(), W + 8 * P).kind, AccessResult::Kind::kSegv);
}

TEST_F(MemoryTest, WriteStopsAtTheFirstFaultingPage) {
  map(p1(), W, 2 * P);
  map(p1(), W + 2 * P, P, kProtRead);
  AccessResult r = fill(p1(), W + P, 3 * P, 5);
  EXPECT_EQ(r.kind, AccessResult::Kind::kSegv);
  EXPECT_EQ(r.fault_addr, W + 2 * P);
  EXPECT_EQ(bytes(p1(), W + 2 * P - 1, 1), std::vector<uint8_t>{5});
  EXPECT_EQ(bytes(p1(), W + P - 1, 1), std::vector<uint8_t>{0});
}

TEST_F(MemoryTest, ForkSharesPagesCopyOnWrite) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W, 2 * P, 1).ok());
  sys().lru_add_drain_all();  // the LRU add batch's references go
  Page* page = page_at(p1(), W);
  ASSERT_NE(page, nullptr);
  EXPECT_TRUE(page->test(PG_anon_exclusive));
  Process* child = sys().fork(p1()).value();
  // Both processes map the same frame, write-protected, no longer exclusive.
  EXPECT_EQ(page_at(child, W), page);
  EXPECT_EQ(page->mapcount.load(), 2);
  EXPECT_EQ(page->refcount.load(), 2);
  EXPECT_FALSE(page->test(PG_anon_exclusive));
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_FALSE(pte_write(pte_at(child, W)));
  EXPECT_FALSE(pte_young(pte_at(child, W)));
  // The child's write copies; the parent keeps the original.
  ASSERT_TRUE(fill(child, W, 1, 2).ok());
  EXPECT_NE(page_at(child, W), page);
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{1});
  EXPECT_EQ(bytes(child, W, 2), (std::vector<uint8_t>{2, 1}));
  EXPECT_EQ(page->mapcount.load(), 1);
  // The parent is now the only user: its write reuses the frame instead of copying.
  ASSERT_TRUE(fill(p1(), W, 1, 3).ok());
  EXPECT_EQ(page_at(p1(), W), page);
  EXPECT_TRUE(page->test(PG_anon_exclusive));
}

TEST_F(MemoryTest, ForkCopiesZeroPageEntriesOnlyForFaultedVmas) {
  map(p1(), W, P);
  map(p1(), W + 4 * P, 2 * P);
  ASSERT_TRUE(touch_read(p1(), W).ok());          // zero page, VMA without anon_vma
  ASSERT_TRUE(touch_read(p1(), W + 4 * P).ok());
  ASSERT_TRUE(fill(p1(), W + 5 * P, 1, 1).ok());  // this VMA has an anon_vma
  Process* child = sys().fork(p1()).value();
  EXPECT_EQ(mincore(child, W, P), "0");           // not copied: refaults lazily
  EXPECT_EQ(mincore(child, W + 4 * P, 2 * P), "11");
}

TEST_F(MemoryTest, SharedAnonymousMemoryIsSharedAcrossFork) {
  map(p1(), W, 2 * P, RW, SHARED);
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(fill(child, W, 2 * P, 9).ok());
  EXPECT_EQ(bytes(p1(), W + P, 1), std::vector<uint8_t>{9});
  // The parent's read fault also mapped the other cached page (fault-around).
  EXPECT_EQ(mincore(p1(), W, 2 * P), "11");
  EXPECT_EQ(p1()->mm()->rss(MM_SHMEMPAGES), 2);
}

TEST_F(MemoryTest, UnmapShootsDownTheTlb) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  ASSERT_TRUE(touch_read(p1(), W).ok());  // the translation is cached now
  uint64_t hits = sys().cpu(0).debug_tlb_hits();
  ASSERT_TRUE(touch_read(p1(), W).ok());
  EXPECT_GT(sys().cpu(0).debug_tlb_hits(), hits);
  ASSERT_TRUE(sys().munmap(p1(), W, P).ok());
  EXPECT_EQ(touch_read(p1(), W).kind, AccessResult::Kind::kSegv);
}

TEST_F(MemoryTest, MprotectShootsDownWritableTranslations) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  ASSERT_TRUE(fill(p1(), W, 1, 2).ok());  // TLB hit on a dirty writable entry
  ASSERT_TRUE(sys().mprotect(p1(), W, P, kProtRead).ok());
  EXPECT_EQ(fill(p1(), W, 1, 3).kind, AccessResult::Kind::kSegv);
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{2});
}

TEST_F(MemoryTest, ChangeProtectionKeepsAccessedAndDirtyBits) {
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  pteval_t before = pte_at(p1(), W);
  ASSERT_TRUE(pte_dirty(before) && pte_young(before));
  ASSERT_TRUE(sys().mprotect(p1(), W, P, kProtRead).ok());
  pteval_t after = pte_at(p1(), W);
  EXPECT_TRUE(pte_dirty(after) && pte_young(after));
  EXPECT_FALSE(pte_write(after));
  EXPECT_EQ(pte_pfn(after), pte_pfn(before));
  // Back to RW: an exclusive anonymous page is made writable at once (no fault needed).
  ASSERT_TRUE(sys().mprotect(p1(), W, P, RW).ok());
  EXPECT_TRUE(pte_write(pte_at(p1(), W)));
  // PROT_NONE keeps the entry present to software but not to the CPU.
  ASSERT_TRUE(sys().mprotect(p1(), W, P, kProtNone).ok());
  EXPECT_TRUE(pte_protnone(pte_at(p1(), W)));
  EXPECT_EQ(mincore(p1(), W, P), "1");
  EXPECT_EQ(touch_read(p1(), W).kind, AccessResult::Kind::kSegv);
}

TEST_F(MemoryTest, PartialMprotectKeepsThePrefixOnError) {
  map(p1(), W, 2 * P);
  map(p1(), W + 4 * P, 2 * P);
  Status s = sys().mprotect(p1(), W, 6 * P, kProtRead);
  EXPECT_EQ(s.error(), Errno::kNoMem);
  EXPECT_EQ(maps(p1()), "200000000000-200000002000 r--p; 200000004000-200000006000 rw-p");
}

TEST_F(MemoryTest, PopulateFaultsInWritablePrivateMemory) {
  map(p1(), W, 4 * P, RW, PRIV | kMapPopulate);
  EXPECT_EQ(mincore(p1(), W, 4 * P), "1111");
  EXPECT_NE(vma_at(p1(), W)->anon_vma, nullptr);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 4);
  map(p1(), W + 8 * P, 2 * P, kProtRead, PRIV | kMapPopulate);
  EXPECT_EQ(mincore(p1(), W + 8 * P, 2 * P), "11");  // the zero page
  EXPECT_EQ(vma_at(p1(), W + 8 * P)->anon_vma, nullptr);
}

TEST_F(MemoryTest, StackGrowsDownOnAFaultBelowIt) {
  map(p1(), W + 64 * P, 4 * P, RW, PRIV | kMapGrowsDown);
  ASSERT_TRUE(fill(p1(), W + 60 * P, 1, 1).ok());
  EXPECT_EQ(maps(p1()), "20000003c000-200000044000 rw-p");
  EXPECT_NE(vma_at(p1(), W + 60 * P)->anon_vma, nullptr);
  // Beyond RLIMIT_STACK (8 MiB from the top) the stack does not grow.
  EXPECT_EQ(touch_read(p1(), W + 68 * P - (8ull << 20) - P).kind, AccessResult::Kind::kSegv);
  // An accessible mapping within stack_guard_gap below blocks growth.
  map(p1(), W + 32 * P, P);
  EXPECT_EQ(touch_read(p1(), W + 40 * P).kind, AccessResult::Kind::kSegv);
}

TEST_F(MemoryTest, ExitReturnsEveryFrame) {
  const uint64_t baseline = sys().mem().nr_used();
  Process* child = sys().fork(p1()).value();
  map(child, W, 64 * P);
  map(child, W + 128 * P, 8 * P, RW, SHARED);
  ASSERT_TRUE(fill(child, W, 64 * P, 1).ok());
  ASSERT_TRUE(fill(child, W + 128 * P, 8 * P, 1).ok());
  Process* grandchild = sys().fork(child).value();
  ASSERT_TRUE(fill(grandchild, W, 8 * P, 2).ok());
  sys().exit(child);
  sys().exit(grandchild);
  EXPECT_EQ(sys().mem().nr_used(), baseline);
}

TEST_F(MemoryTest, MunmapFreesFramesAndPageTables) {
  const uint64_t baseline = sys().mem().nr_used();
  map(p1(), W + 0x40000000, 1024 * P);
  ASSERT_TRUE(fill(p1(), W + 0x40000000, 1024 * P, 1).ok());
  EXPECT_GE(sys().mem().nr_used(), baseline + 1024 + 2);
  ASSERT_TRUE(sys().munmap(p1(), W + 0x40000000, 1024 * P).ok());
  EXPECT_EQ(sys().mem().nr_used(), baseline + 1);  // the PUD table under the PGD entry stays
}

class SmallMemoryTest : public ModelTest {
 protected:
  static SystemConfig small() {
    SystemConfig c;
    c.memory_bytes = 64 * P;
    return c;
  }
  SmallMemoryTest() : ModelTest(small()) {}
};

TEST_F(SmallMemoryTest, ExhaustedPoolKillsTheFaultingProcess) {
  Process* child = sys().fork(p1()).value();
  map(child, W, 256 * P);
  AccessResult r = fill(child, W, 256 * P, 1);
  EXPECT_EQ(r.kind, AccessResult::Kind::kOom);
  EXPECT_FALSE(child->alive());
  EXPECT_EQ(sys().process(2), nullptr);
  // Everything the victim held came back.
  map(p1(), W, 32 * P);
  EXPECT_TRUE(fill(p1(), W, 32 * P, 1).ok());
}

TEST_F(SmallMemoryTest, PopulateIgnoresExhaustion) {
  Result<uint64_t> r = sys().mmap(p1(), W, 256 * P, RW, PRIV | kMapPopulate);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value(), W);
}


// Two CPUs fault the same page while the first is held at the fault gate, after its unlocked
// read of the PTE and before the PTE lock: the second installs first, and the first must find
// the entry taken when it rechecks under the lock (as do_anonymous_page, finish_fault do).
class FaultRaceTest : public ModelTest {
 protected:
  FaultRaceTest() { sys_ = std::make_unique<System>(SystemConfig{}, 2); }
  ~FaultRaceTest() override { sys().debug_set_fault_gate(nullptr); }

  // CPU 0 faults addr (writing 1 or reading) and is held at the gate until CPU 1 has faulted
  // it (writing 2 or reading). Returns CPU 0's access result.
  AccessResult race(uint64_t addr, bool write) {
    std::atomic<int> calls{0};
    std::atomic<bool> held{false}, go{false};
    sys().debug_set_fault_gate([&](uint64_t a) {
      if (a != addr || calls.fetch_add(1) != 0) return;
      held.store(true);
      while (!go.load()) std::this_thread::yield();
    });
    AccessResult first{};
    auto access = [&](int cpu, uint8_t v) {
      return sys().access(p1(), cpu, addr, 1, write, [&](uint8_t* d, uint64_t, uint64_t) {
        if (write) *d = v;
      });
    };
    std::thread t([&] { first = access(0, 1); });
    while (!held.load()) std::this_thread::yield();
    AccessResult second = access(1, 2);
    go.store(true);
    t.join();
    sys().debug_set_fault_gate(nullptr);
    EXPECT_TRUE(second.ok());
    return first;
  }
};

TEST_F(FaultRaceTest, HeldAnonymousWriteFaultFindsThePteTaken) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W + P, 1, 7).ok());  // the anon_vma exists: no retry path
  ASSERT_TRUE(race(W, true).ok());
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 2);
  EXPECT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{1});  // CPU 0 wrote last, to the same page
}

TEST_F(FaultRaceTest, HeldReadFaultsFindThePteTaken) {
  map(p1(), W, P);
  ASSERT_TRUE(race(W, false).ok());
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), sys().mem().zero_pfn());
  ASSERT_TRUE(sys().memfd("f", 16 * P).ok());
  const uint64_t f = W + 16 * P;
  ASSERT_TRUE(sys().mmap_file(p1(), f, 16 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  ASSERT_TRUE(race(f + 3 * P, false).ok());
  ASSERT_TRUE(race(f + 4 * P, true).ok());
  EXPECT_EQ(page_at(p1(), f + 3 * P)->mapcount.load(), 1);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(FaultRaceTest, WithoutTheRecheckTheRaceIsReported) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W + P, 1, 7).ok());
  sys().debug_break(System::DebugBreak::kNoPteNoneRecheck, true);
  EXPECT_TRUE(race(W, true).ok());
  sys().debug_break(System::DebugBreak::kNoPteNoneRecheck, false);
  // CPU 0 overwrote CPU 1's entry: the page it mapped is counted but no longer mapped.
  EXPECT_GT(sys().debug_check_consistency(), 0u);
  EXPECT_GT(sys().violations(), 0u);
}

TEST_F(FaultRaceTest, WithoutTheRecheckAFileRaceIsReported) {
  ASSERT_TRUE(sys().memfd("f", P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  sys().debug_break(System::DebugBreak::kNoPteNoneRecheck, true);
  EXPECT_TRUE(race(W, true).ok());
  sys().debug_break(System::DebugBreak::kNoPteNoneRecheck, false);
  EXPECT_GT(sys().debug_check_consistency(), 0u);  // mapcount 2, one mapping
}
}  // namespace
}  // namespace mirrormm::testing
