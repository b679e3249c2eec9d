// The VmFlags line of /proc/PID/smaps (show_smap_vma_flags, src/mm/task_mmu.cc) for the
// model's VMAs after the calls that set the flags users look for. Each expected line is what
// /proc/self/smaps printed on the 6.18 reference host for the same call on a 4-page mapping
// (a small C program; the script format prints only the lock flags of VmFlags, in `mlocked`).
#include <gtest/gtest.h>

#include <string>

#include "mirrormm/mman.h"
#include "mm/mm.h"
#include "mm/task_mmu.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class VmFlagsTest : public ModelTest {
 protected:
  // Maps 4 pages with `flags` (MAP_FIXED added) at the next free spot, 64 pages after the
  // last one (a sealed mapping cannot be replaced), applies `then(p, addr)` and returns the
  // mapping's VmFlags.
  template <class Then>
  std::string vmflags(uint64_t prot, uint64_t flags, Then then) {
    Process* p = p1();
    const uint64_t addr = W + 64 * P * next_++;
    EXPECT_TRUE(sys().mmap(p, addr, 4 * P, prot, flags | kMapFixed).ok());
    then(p, addr);
    Vma* vma = vma_at(p, addr);
    return vma ? show_smap_vma_flags(vma->vm_flags) : "none";
  }
  std::string vmflags(uint64_t prot, uint64_t flags) {
    return vmflags(prot, flags, [](Process*, uint64_t) {});
  }
  auto advise(uint64_t advice) {
    return [this, advice](Process* p, uint64_t a) { EXPECT_TRUE(sys().madvise(p, a, 4 * P, advice).ok()); };
  }

 private:
  uint64_t next_ = 0;
};

constexpr uint64_t kPriv = kMapPrivate | kMapAnonymous;

TEST_F(VmFlagsTest, PlainMappingsShowTheirAccessAndAccounting) {
  EXPECT_EQ(vmflags(RW, kPriv), "rd wr mr mw me ac ");
  EXPECT_EQ(vmflags(RW, kPriv | kMapNoReserve), "rd wr mr mw me nr ");
  EXPECT_EQ(vmflags(RW, kMapShared | kMapAnonymous), "rd wr sh mr mw me ms ");
  EXPECT_EQ(vmflags(kProtExec, kPriv), "ex mr mw me ");
  EXPECT_EQ(vmflags(kProtNone, kPriv), "mr mw me ");
  EXPECT_EQ(vmflags(RW, kPriv | kMapGrowsDown), "rd wr mr mw me gd ac ");
}

TEST_F(VmFlagsTest, HugePageAdviceAndStacks) {
  EXPECT_EQ(vmflags(RW, kPriv, advise(kMadvHugepage)), "rd wr mr mw me ac hg ");
  EXPECT_EQ(vmflags(RW, kPriv, advise(kMadvNohugepage)), "rd wr mr mw me ac nh ");
  EXPECT_EQ(vmflags(RW, kPriv | kMapStack), "rd wr mr mw me ac nh ");
}

TEST_F(VmFlagsTest, ForkAdvice) {
  EXPECT_EQ(vmflags(RW, kPriv, advise(kMadvDontfork)), "rd wr mr mw me dc ac ");
  EXPECT_EQ(vmflags(RW, kPriv, advise(kMadvWipeonfork)), "rd wr mr mw me ac wf ");
}

TEST_F(VmFlagsTest, SealedGuardedAndDroppable) {
  EXPECT_EQ(vmflags(RW, kPriv, [this](Process* p, uint64_t a) { EXPECT_TRUE(sys().mseal(p, a, 4 * P, 0).ok()); }),
            "rd wr mr mw me ac sl ");
  // One page of guard markers flags the whole VMA without splitting it.
  EXPECT_EQ(vmflags(RW, kPriv,
                    [this](Process* p, uint64_t a) { EXPECT_TRUE(sys().madvise(p, a, P, kMadvGuardInstall).ok()); }),
            "rd wr mr mw me gu ac ");
  EXPECT_EQ(vmflags(RW, kMapDroppable | kMapAnonymous), "rd wr mr mw me nr wf dd dp ");
}

TEST_F(VmFlagsTest, LockedAndLockedOnFault) {
  EXPECT_EQ(vmflags(RW, kPriv, [this](Process* p, uint64_t a) { EXPECT_TRUE(sys().mlock(p, a, 4 * P).ok()); }),
            "rd wr mr mw me lo ac ");
  EXPECT_EQ(vmflags(RW, kPriv,
                    [this](Process* p, uint64_t a) { EXPECT_TRUE(sys().mlock2(p, a, 4 * P, kMlockOnfault).ok()); }),
            "rd wr mr mw me lo lf ac ");
  // A droppable mapping never takes the lock flags, not even from mlockall(MCL_FUTURE).
  EXPECT_TRUE(sys().mlockall(p1(), kMclFuture).ok());
  EXPECT_EQ(vmflags(RW, kMapDroppable | kMapAnonymous), "rd wr mr mw me nr wf dd dp ");
}

}  // namespace
}  // namespace mirrormm::testing
