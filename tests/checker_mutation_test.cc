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
  void SetUp() override { ASSERT_TRUE(mmu_checker_enabled()); }  // the suite's default

  Process* p1() { return sys_.process(1); }
  AccessResult write(Process* p, int cpu, uint64_t addr, uint8_t v = 0x5a) {
    return sys_.access(p, cpu, addr, 1, true, [v](uint8_t* d, uint64_t, uint64_t) { *d = v; });
  }
  AccessResult read(Process* p, int cpu, uint64_t addr) {
    return sys_.access(p, cpu, addr, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
  }
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

}  // namespace
}  // namespace mirrormm::testing
