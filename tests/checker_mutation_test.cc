// The model's own checkers against deliberately broken kernels: each test breaks one rule
// through a System::DebugBreak switch and sees the checker's report (not a crash, not a hang),
// and runs the same steps with the switch off to see no report.
#include <gmock/gmock.h>

#include <string>
#include <vector>

#include <fmt/format.h>

#include "mirrormm/base/rcu.h"
#include "mirrormm/mmu_notifier.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

using ::testing::HasSubstr;
using Break = System::DebugBreak;

// A two-CPU machine whose tests read the violations the model reported.
class CheckerMutationTest : public ::testing::Test {
 protected:
  CheckerMutationTest() : sys_(SystemConfig{}, 2) {}
  void SetUp() override { ASSERT_TRUE(sys_.mmu_checker()); }  // the suite's default

  Process* p1() { return sys_.process(1); }
  AccessResult write(Process* p, int cpu, uint64_t addr, uint8_t v = 0x5a) {
    return sys_.access(p, cpu, addr, 1, true, [v](uint8_t* d, uint64_t, uint64_t) { *d = v; });
  }
  AccessResult read(Process* p, int cpu, uint64_t addr) {
    return sys_.access(p, cpu, addr, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
  }
  // The VMA containing addr (test-only peek; the model is quiescent).
  Vma* vma_of(Process* p, uint64_t addr) NO_THREAD_SAFETY_ANALYSIS { return p->mm()->vma_lookup(addr); }
  pfn_t pfn_at(Process* p, uint64_t addr) {
    pte_t* ptep = pte_offset(p->mm(), addr);
    return ptep ? pte_pfn(ptep_get(ptep)) : 0;
  }
  // Runs fn as a system call issued by CPU cpu (the shootdown's initiating CPU).
  template <class Fn>
  void as_cpu(int cpu, Fn fn) {
    System::bind_thread_to_cpu(cpu);
    fn();
    System::bind_thread_to_cpu(-1);
  }
  bool reported(const std::string& what) {
    for (const std::string& m : sys_.violation_messages())
      if (m.find(what) != std::string::npos) return true;
    return false;
  }
  std::string messages() {
    std::string s;
    for (const std::string& m : sys_.violation_messages()) s += m + "\n";
    return s;
  }

  System sys_;
};

// ---- pages freed before the TLB flush ----

TEST_F(CheckerMutationTest, PutBeforeFlushIsReportedAtTheFree) {
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    const uint64_t addr = W + (broken ? 16 * P : 0);
    ASSERT_EQ(sys_.mmap(p1(), addr, P, RW, PRIV).value(), addr);
    ASSERT_TRUE(write(p1(), 0, addr).ok());  // CPU 0 caches a writable translation
    const pfn_t pfn = pfn_at(p1(), addr);
    const uint64_t before = sys_.violations();
    sys_.debug_break(Break::kPutBeforeFlush, broken);
    ASSERT_TRUE(sys_.munmap(p1(), addr, P).ok());
    sys_.debug_break(Break::kPutBeforeFlush, false);
    if (broken) {
      EXPECT_GT(sys_.violations(), before);
      EXPECT_TRUE(reported(fmt::format("frame {} freed while CPU 0's TLB maps it at {:#x}", pfn, addr))) << messages();
    } else {
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
    // The flush still came: the translation is gone either way.
    EXPECT_EQ(read(p1(), 0, addr).kind, AccessResult::Kind::kSegv);
    EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  }
}

// The same check covers the paging-structure cache: a PTE table may be freed only once no
// CPU's cache points at it (asked directly here, since every path frees tables after the
// flush, the broken ones included). The cached table is dropped after the report.
TEST_F(CheckerMutationTest, FreeingAPteTableACpuStillCachesIsReported) {
  ASSERT_EQ(sys_.mmap(p1(), W, P, RW, PRIV).value(), W);
  ASSERT_TRUE(write(p1(), 1, W).ok());  // CPU 1 walked to W's PTE table
  const pfn_t table = sys_.mem().page_to_pfn(pte_table_page(p1()->mm(), pte_offset(p1()->mm(), W)));
  sys_.cpu(0).debug_check_frame_free(table);
  EXPECT_EQ(sys_.violations(), 0u) << messages();
  sys_.cpu(1).debug_check_frame_free(table);
  EXPECT_TRUE(reported(fmt::format("frame {} freed while CPU 1's paging-structure cache holds it as the PTE table of {:#x}",
                                   table, W & kPmdMask)))
      << messages();
  EXPECT_EQ(sys_.violations(), 1u) << messages();
  sys_.cpu(1).debug_check_frame_free(table);  // already dropped
  EXPECT_EQ(sys_.violations(), 1u) << messages();
  ASSERT_TRUE(write(p1(), 1, W + 1).ok());
}

// A shootdown that flushes only the initiating CPU, shown deterministically: CPU 0 and CPU 1
// both cache the translation, CPU 0 unmaps, CPU 1 uses its stale entry.
TEST_F(CheckerMutationTest, LocalOnlyShootdownOnMunmapIsCaught) {
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    const uint64_t addr = W + (broken ? 16 * P : 0);
    ASSERT_EQ(sys_.mmap(p1(), addr, P, RW, PRIV).value(), addr);
    ASSERT_TRUE(write(p1(), 0, addr).ok());
    ASSERT_TRUE(read(p1(), 1, addr).ok());
    const pfn_t pfn = pfn_at(p1(), addr);
    sys_.debug_break(Break::kShootdownLocal, broken);
    as_cpu(0, [&] { ASSERT_TRUE(sys_.munmap(p1(), addr, P).ok()); });
    sys_.debug_break(Break::kShootdownLocal, false);
    // CPU 1's access: refused either way (the stale entry is never used), reported when broken.
    EXPECT_EQ(read(p1(), 1, addr).kind, AccessResult::Kind::kSegv);
    EXPECT_EQ(read(p1(), 0, addr).kind, AccessResult::Kind::kSegv);
    if (broken) {
      EXPECT_TRUE(reported(fmt::format("frame {} freed while CPU 1's TLB maps it at {:#x}", pfn, addr))) << messages();
      EXPECT_TRUE(reported("stale TLB entry: access to a freed frame")) << messages();
      EXPECT_FALSE(reported("CPU 0's TLB")) << messages();
    } else {
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
  }
}

// The same breakage on mprotect: no frame is freed, so the stale writable entry on CPU 1 is
// seen by the quiescent check of the TLBs against the page tables.
TEST_F(CheckerMutationTest, LocalOnlyShootdownOnMprotectIsCaught) {
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    const uint64_t addr = W + (broken ? 16 * P : 0);
    ASSERT_EQ(sys_.mmap(p1(), addr, P, RW, PRIV).value(), addr);
    ASSERT_TRUE(write(p1(), 0, addr).ok());
    ASSERT_TRUE(write(p1(), 1, addr).ok());
    sys_.debug_break(Break::kShootdownLocal, broken);
    as_cpu(0, [&] { ASSERT_TRUE(sys_.mprotect(p1(), addr, P, kProtRead).ok()); });
    sys_.debug_break(Break::kShootdownLocal, false);
    EXPECT_EQ(write(p1(), 0, addr).kind, AccessResult::Kind::kSegv);  // the initiator flushed
    const uint64_t found = sys_.debug_check_consistency();
    if (broken) {
      EXPECT_EQ(found, 1u) << messages();
      EXPECT_TRUE(reported(fmt::format("CPU 1's TLB maps {:#x} (mm {}) writable but the PTE", addr, p1()->mm()->id())))
          << messages();
    } else {
      EXPECT_EQ(found, 0u) << messages();
      EXPECT_EQ(write(p1(), 1, addr).kind, AccessResult::Kind::kSegv);
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
    ASSERT_TRUE(sys_.munmap(p1(), addr, P).ok());
  }
}

// ---- leaked frame references ----

TEST_F(CheckerMutationTest, LeakedReferenceIsReported) {
  ASSERT_EQ(sys_.mmap(p1(), W, 2 * P, RW, PRIV).value(), W);
  ASSERT_TRUE(write(p1(), 0, W).ok());
  sys_.lru_add_drain_all();  // the LRU add batch's reference goes
  Page* page = sys_.mem().pfn_to_page(pfn_at(p1(), W));
  ASSERT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  sys_.mem().get_page(page);  // a reference nobody will ever drop
  EXPECT_EQ(sys_.debug_check_consistency(), 1u) << messages();
  EXPECT_TRUE(reported(fmt::format("frame {}: refcount 2 but 1 accounted for (1 PTE, 0 page cache, 0 page-table link, "
                                   "0 pending gather",
                                   pfn_at(p1(), W))))
      << messages();
  sys_.mem().put_page(page);
  const uint64_t before = sys_.violations();
  EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  EXPECT_EQ(sys_.violations(), before);
}

TEST_F(CheckerMutationTest, ReferencesOfAGatherUnderWayAreAccountedFor) {
  ASSERT_EQ(sys_.mmap(p1(), W, P, RW, PRIV).value(), W);
  ASSERT_TRUE(write(p1(), 0, W).ok());
  sys_.lru_add_drain_all();  // the LRU add batch's reference goes
  Page* page = sys_.mem().pfn_to_page(pfn_at(p1(), W));
  {
    MmuGather tlb(p1()->mm());
    sys_.mem().get_page(page);
    tlb.remove_page(page);  // dropped by the gather's end
    EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  }
  EXPECT_EQ(page->refcount.load(), 1);
  EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
}

TEST_F(CheckerMutationTest, CleanWorkloadLeaksNothing) {
  ASSERT_TRUE(sys_.memfd("f", 4 * P).ok());
  ASSERT_TRUE(sys_.mmap(p1(), W, 4 * P, RW, PRIV).ok());
  ASSERT_TRUE(sys_.mmap(p1(), W + 8 * P, 2 * P, RW, SHARED).ok());
  ASSERT_TRUE(sys_.mmap_file(p1(), W + 16 * P, 4 * P, RW, kMapShared | kMapFixed, "f", 0,
                             System::FileMode::kReadWrite)
                  .ok());
  ASSERT_TRUE(sys_.mmap_file(p1(), W + 24 * P, 4 * P, RW, kMapPrivate | kMapFixed, "f", 0,
                             System::FileMode::kReadWrite)
                  .ok());
  for (uint64_t a : {W, W + P, W + 8 * P, W + 16 * P, W + 17 * P, W + 24 * P}) ASSERT_TRUE(write(p1(), 0, a).ok());
  ASSERT_TRUE(read(p1(), 1, W + 2 * P).ok());   // the zero page
  ASSERT_TRUE(read(p1(), 1, W + 25 * P).ok());  // a file page read through a private mapping
  Result<Process*> child = sys_.fork(p1());
  ASSERT_TRUE(child.ok());
  ASSERT_TRUE(write(child.value(), 1, W).ok());  // COW
  EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  ASSERT_TRUE(sys_.mprotect(p1(), W + P, P, kProtRead).ok());
  ASSERT_TRUE(sys_.munmap(p1(), W, P).ok());
  ASSERT_TRUE(sys_.truncate("f", P).ok());
  EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  sys_.exit(child.value());
  EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  EXPECT_EQ(sys_.violations(), 0u) << messages();
}

// ---- the per-VMA lock's recheck ----

// Replaces mm's lockless-lookup snapshot by one that maps [start, end) to vma, valid at the
// current mmap_lock sequence: what a fault sees when its lookup ran just before a writer
// changed vma.
void plant_snapshot(Mm* mm, uint64_t start, uint64_t end, Vma* vma) {
  auto* snap = new Mm::VmaSnapshot{mm->mmap_lock_.seq(), {start}, {end}, {vma}};
  delete mm->snapshot_.exchange(snap);  // no lookup runs meanwhile
}

TEST_F(CheckerMutationTest, VmaLockWithoutRecheckOnADetachedVmaIsRefused) {
  Mm* mm = p1()->mm();
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    const uint64_t addr = W + (broken ? 16 * P : 0);
    ASSERT_EQ(sys_.mmap(p1(), addr, 2 * P, RW, PRIV).value(), addr);
    ASSERT_TRUE(write(p1(), 0, addr).ok());  // the fault slow path builds the snapshot
    // The VMA the lookup found was detached by munmap since (a fresh, unlinked one here, so
    // that it outlives the test's use of it).
    Vma* gone = vm_area_alloc(mm);
    gone->vm_start = addr;
    gone->vm_end = addr + 2 * P;
    ASSERT_TRUE(gone->detached.load());
    plant_snapshot(mm, addr, addr + 2 * P, gone);
    sys_.debug_break(Break::kNoVmaLockRecheck, broken);
    // The fault on the second page takes the per-VMA-lock path first, then the mmap_lock path.
    EXPECT_TRUE(write(p1(), 1, addr + P).ok());
    EXPECT_EQ(mm->lock_vma_under_rcu(addr), nullptr);
    sys_.debug_break(Break::kNoVmaLockRecheck, false);
    if (broken) {
      EXPECT_TRUE(reported(fmt::format("lock_vma_under_rcu({:#x}) read-locked VMA [{:#x}, {:#x}), which is detached",
                                       addr + P, addr, addr + 2 * P)))
          << messages();
    } else {
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
    EXPECT_EQ(gone->vm_refcnt.load(), 0);
    ASSERT_TRUE(sys_.munmap(p1(), addr, 2 * P).ok());  // a new sequence: the snapshot is stale
    vm_area_free(gone);
  }
}

TEST_F(CheckerMutationTest, VmaLockWithoutRecheckOnAWriteLockedVmaIsRefused) {
  Mm* mm = p1()->mm();
  ASSERT_EQ(sys_.mmap(p1(), W, P, RW, PRIV).value(), W);
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    // A writer (this thread) holds the mmap_lock and has write-locked the VMA that a fault's
    // lookup found just before the writer began.
    mm->mmap_lock_.down_write();
    Vma* vma = mm->vma_lookup(W);
    vma_start_write(vma);
    plant_snapshot(mm, W, W + P, vma);
    sys_.debug_break(Break::kNoVmaLockRecheck, broken);
    EXPECT_EQ(mm->lock_vma_under_rcu(W), nullptr);
    sys_.debug_break(Break::kNoVmaLockRecheck, false);
    EXPECT_EQ(vma->vm_refcnt.load(), 0);
    mm->mmap_lock_.up_write();
    if (broken) {
      EXPECT_TRUE(reported(fmt::format("read-locked VMA [{:#x}, {:#x}), which is write-locked", W, W + P)))
          << messages();
    } else {
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
  }
  EXPECT_TRUE(write(p1(), 0, W).ok());
}

TEST_F(CheckerMutationTest, VmaLockWithoutRecheckOfTheRangeIsRefused) {
  Mm* mm = p1()->mm();
  ASSERT_EQ(sys_.mmap(p1(), W, P, RW, PRIV).value(), W);
  Vma* vma = vma_of(p1(), W);
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    // The lookup's copy of the tree still says the VMA spans two pages (it shrank since).
    plant_snapshot(mm, W, W + 2 * P, vma);
    sys_.debug_break(Break::kNoVmaLockRecheck, broken);
    EXPECT_EQ(mm->lock_vma_under_rcu(W + P), nullptr);
    sys_.debug_break(Break::kNoVmaLockRecheck, false);
    EXPECT_EQ(vma->vm_refcnt.load(), 0);
    if (broken) {
      EXPECT_TRUE(reported(fmt::format("read-locked VMA [{:#x}, {:#x}), which does not contain the address", W, W + P))) << messages();
    } else {
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
  }
  ASSERT_TRUE(sys_.munmap(p1(), W, P).ok());
}

// ---- fork and the child's anon_vma_chain ----

bool in_own_chain(const Vma* v) {
  for (AnonVmaChain* avc : v->anon_vma_chain)
    if (avc->anon_vma == v->anon_vma) return true;
  return false;
}

TEST_F(CheckerMutationTest, ForkLeavingTheChildsAnonVmaUnchainedIsReportedAndRepaired) {
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken" : "correct");
    const uint64_t addr = W + (broken ? 64 * P : 0);
    ASSERT_EQ(sys_.mmap(p1(), addr, 4 * P, RW, PRIV).value(), addr);
    ASSERT_TRUE(write(p1(), 0, addr).ok());  // the parent's anon_vma
    sys_.debug_break(Break::kForkUnchainedAnonVma, broken);
    Result<Process*> child = sys_.fork(p1());
    sys_.debug_break(Break::kForkUnchainedAnonVma, false);
    ASSERT_TRUE(child.ok());
    Process* c = child.value();
    if (broken) {
      EXPECT_EQ(sys_.violations(), 1u) << messages();
      EXPECT_TRUE(reported(fmt::format("VMA [{:#x}, {:#x}) has anon_vma", addr, addr + 4 * P))) << messages();
      EXPECT_TRUE(reported("outside its own anon_vma_chain")) << messages();
    } else {
      EXPECT_EQ(sys_.violations(), 0u) << messages();
    }
    Vma* cv = vma_of(c, addr);
    ASSERT_NE(cv, nullptr);
    EXPECT_TRUE(in_own_chain(cv));
    // The child goes on: COW, a split, unmaps, a new VMA next to the old, exit.
    const uint64_t violations = sys_.violations();
    ASSERT_TRUE(write(c, 1, addr + P).ok());
    ASSERT_TRUE(sys_.mprotect(c, addr + 2 * P, P, kProtRead).ok());
    ASSERT_TRUE(sys_.munmap(c, addr + 2 * P, P).ok());
    ASSERT_EQ(sys_.mmap(c, addr + 2 * P, P, RW, PRIV).value(), addr + 2 * P);
    ASSERT_TRUE(write(c, 1, addr + 2 * P).ok());
    ASSERT_TRUE(sys_.munmap(c, addr + 2 * P, P).ok());
    ASSERT_TRUE(write(c, 0, addr + P).ok());
    EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
    sys_.exit(c);
    ASSERT_TRUE(sys_.munmap(p1(), addr, 4 * P).ok());  // the next fork copies no VMA of this one
    EXPECT_EQ(sys_.violations(), violations) << messages();
  }
}

TEST_F(CheckerMutationTest, AnonVmaOutsideItsChainIsReportedByTheConsistencyCheck) {
  ASSERT_EQ(sys_.mmap(p1(), W, P, RW, PRIV).value(), W);
  ASSERT_TRUE(write(p1(), 0, W).ok());
  Result<Process*> child = sys_.fork(p1());
  ASSERT_TRUE(child.ok());
  Vma* cv = vma_of(child.value(), W);
  ASSERT_EQ(cv->anon_vma_chain.back()->anon_vma, cv->anon_vma.load());
  AnonVmaChain* own = cv->anon_vma_chain.back();
  cv->anon_vma_chain.pop_back();  // the link fork leaves out when broken
  EXPECT_EQ(sys_.debug_check_consistency(), 1u) << messages();
  EXPECT_TRUE(reported(fmt::format("mm {}: VMA [{:#x}, {:#x}) has anon_vma", child.value()->mm()->id(), W, W + P)))
      << messages();
  cv->anon_vma_chain.push_back(own);
  const uint64_t before = sys_.violations();
  EXPECT_EQ(sys_.debug_check_consistency(), 0u) << messages();
  EXPECT_EQ(sys_.violations(), before);
}

}  // namespace
}  // namespace mirrormm::testing
