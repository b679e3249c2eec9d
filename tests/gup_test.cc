// The fault-in loop of src/mm/gup.cc: driver lookups (get_user_pfns) and the errnos of the
// populate paths. MAP_POPULATE and MADV_POPULATE_* are also covered in memory_test and
// remap_madvise_file_test.
#include "mirrormm/mmu_notifier.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

class GupTest : public ModelTest {
 protected:
  Errno pfns(uint64_t addr, uint64_t n, ForWrite write, FaultIn fault, std::vector<GupPfn>* out) NO_THREAD_SAFETY_ANALYSIS {
    out->assign(n, GupPfn{});
    Mm* mm = p1()->mm();
    MmapReadGuard g(mm);
    return get_user_pfns(mm, addr, n, write, fault, out->data());
  }
};

TEST_F(GupTest, WithoutFaultingUnmappedPagesComeBackInvalid) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(fill(p1(), W + P, 1, 1).ok());
  std::vector<GupPfn> out;
  ASSERT_EQ(pfns(W, 2, ForWrite::kNo, FaultIn::kNo, &out), Errno::kOk);
  EXPECT_FALSE(out[0].valid);
  ASSERT_TRUE(out[1].valid);
  EXPECT_EQ(out[1].pfn, pte_pfn(pte_at(p1(), W + P)));
  EXPECT_TRUE(out[1].writable);
  EXPECT_EQ(mincore(p1(), W, 2 * P), "01");  // nothing was faulted
}

TEST_F(GupTest, FaultingResolvesEveryPageAndWritesBreakCow) {
  map(p1(), W, 2 * P);
  std::vector<GupPfn> out;
  ASSERT_EQ(pfns(W, 2, ForWrite::kNo, FaultIn::kYes, &out), Errno::kOk);
  EXPECT_TRUE(out[0].valid && out[1].valid);
  EXPECT_EQ(out[0].pfn, sys().mem().zero_pfn());  // a read maps the zero page
  EXPECT_FALSE(out[0].writable);
  ASSERT_EQ(pfns(W, 2, ForWrite::kYes, FaultIn::kYes, &out), Errno::kOk);
  EXPECT_NE(out[0].pfn, sys().mem().zero_pfn());
  EXPECT_TRUE(out[0].writable && out[1].writable);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 2);
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(GupTest, RangesSpanVmasAndRefuseHolesAndWritesToReadOnlyVmas) {
  map(p1(), W, P);
  map(p1(), W + P, P, kProtRead);
  std::vector<GupPfn> out;
  EXPECT_EQ(pfns(W, 2, ForWrite::kNo, FaultIn::kYes, &out), Errno::kOk);
  EXPECT_EQ(pfns(W, 2, ForWrite::kYes, FaultIn::kYes, &out), Errno::kPerm);
  EXPECT_EQ(pfns(W, 3, ForWrite::kNo, FaultIn::kYes, &out), Errno::kFault);
  map(p1(), W + 4 * P, P, kProtNone);
  EXPECT_EQ(pfns(W + 4 * P, 1, ForWrite::kNo, FaultIn::kYes, &out), Errno::kFault);
  // The checks come first: a refused range faults nothing in.
  map(p1(), W + 8 * P, P);
  EXPECT_EQ(pfns(W + 8 * P, 2, ForWrite::kNo, FaultIn::kYes, &out), Errno::kFault);
  EXPECT_EQ(mincore(p1(), W + 8 * P, P), "0");
}

TEST_F(GupTest, FileBeyondItsEndIsEfault) {
  ASSERT_TRUE(sys().memfd("f", P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 2 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  std::vector<GupPfn> out;
  EXPECT_EQ(pfns(W, 2, ForWrite::kYes, FaultIn::kYes, &out), Errno::kFault);
  EXPECT_TRUE(pte_present(pte_at(p1(), W)));  // the page before the end was resolved
}

TEST_F(GupTest, GetUserPagesReportsHowFarItGot) NO_THREAD_SAFETY_ANALYSIS {
  map(p1(), W, 2 * P);
  Mm* mm = p1()->mm();
  MmapReadGuard g(mm);
  GupResult r = get_user_pages(mm, W, 3, FOLL_WRITE, nullptr);
  EXPECT_EQ(r.nr_done, 2u);
  EXPECT_EQ(r.error, Errno::kFault);
  r = get_user_pages(mm, W, 3, FOLL_WRITE | FOLL_MADV_POPULATE, nullptr);
  EXPECT_EQ(r.error, Errno::kNoMem);
}


TEST_F(GupTest, TouchingWritesDirtyPagesTheyFindWritableAndClean) {
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  ASSERT_TRUE(sys().mmap_file(p1(), W, 2 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
  ASSERT_TRUE(touch_read(p1(), W).ok());
  ASSERT_TRUE(touch_read(p1(), W + P).ok());
  ASSERT_TRUE(pte_write(pte_at(p1(), W)) && !pte_dirty(pte_at(p1(), W)));
  // A driver lookup for writing does not touch (hmm_range_fault does not dirty)...
  std::vector<GupPfn> out;
  ASSERT_EQ(pfns(W, 2, ForWrite::kYes, FaultIn::kYes, &out), Errno::kOk);
  EXPECT_FALSE(sys().debug_file_page_dirty("f", 0));
  // ...MADV_POPULATE_WRITE does (FOLL_TOUCH), without a fault: the PTE stays clean.
  ASSERT_TRUE(sys().madvise(p1(), W + P, P, kMadvPopulateWrite).ok());
  EXPECT_TRUE(sys().debug_file_page_dirty("f", 1));
  EXPECT_FALSE(pte_dirty(pte_at(p1(), W + P)));
  EXPECT_FALSE(sys().debug_file_page_dirty("f", 0));
}

// get_user_pfns answers one page as mm_get_pfn (the driver lookup of mmu_notifier.h) does, on
// two machines built the same way: the same errno, pfn and writable bit, and the same faults.
TEST(GupPfnTest, OnePageAnswersAsMmGetPfn) NO_THREAD_SAFETY_ANALYSIS {
  auto build = [](System& sys) {
    Process* p = sys.process(1);
    EXPECT_TRUE(sys.mmap(p, W, 4 * P, RW, PRIV).ok());
    EXPECT_TRUE(sys.mmap(p, W + 4 * P, 2 * P, kProtRead, PRIV).ok());
    EXPECT_TRUE(sys.mmap(p, W + 6 * P, P, kProtNone, PRIV).ok());
    EXPECT_TRUE(sys.memfd("f", P).ok());
    EXPECT_TRUE(sys.mmap_file(p, W + 8 * P, 2 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite).ok());
    sys.access(p, 0, W + P, 1, true, [](uint8_t* d, uint64_t, uint64_t) { *d = 1; });
  };
  System a, b;
  build(a);
  build(b);
  Mm* ma = a.process(1)->mm();
  Mm* mb = b.process(1)->mm();
  for (uint64_t page : {0, 1, 4, 6, 7, 8, 9, 1, 0}) {
    for (bool fault : {false, true}) {
      for (bool write : {false, true}) {
        const uint64_t addr = W + page * P;
        bool writable = false;
        Result<uint64_t> want = mm_get_pfn(ma, addr, fault, write, &writable);
        GupPfn got;
        Errno e;
        {
          MmapReadGuard g(mb);
          e = get_user_pfns(mb, addr, 1, write ? ForWrite::kYes : ForWrite::kNo, fault ? FaultIn::kYes : FaultIn::kNo, &got);
        }
        SCOPED_TRACE(::testing::Message() << "page " << page << " fault " << fault << " write " << write);
        if (!want.ok()) {
          EXPECT_EQ(e == Errno::kOk && !got.valid ? Errno::kNoEnt : e, want.error());
        } else {
          ASSERT_EQ(e, Errno::kOk);
          ASSERT_TRUE(got.valid);
          EXPECT_EQ(got.pfn, want.value());
          EXPECT_EQ(got.writable, writable);
        }
      }
    }
  }
}
}  // namespace
}  // namespace mirrormm::testing
