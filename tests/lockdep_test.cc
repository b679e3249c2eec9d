// The run-time lock-order checker: out-of-order and unannotated same-class nesting abort.
#include <gtest/gtest.h>

#include "mirrormm/base/locking.h"
#include "mm/lock_order.h"
#include "mm/physmem.h"

namespace mirrormm {
namespace {

class LockdepTest : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_ = lockdep::enabled.load();
    lockdep::enabled.store(true);
  }
  void TearDown() override { lockdep::enabled.store(saved_); }
  bool saved_ = false;
};

TEST_F(LockdepTest, OrderedNestingIsAllowed) {
  RwSem mmap_lock(lock_class::kMmapLock);
  SpinLock ptl(lock_class::kPtl);
  SpinLock ptl2(lock_class::kPtl);
  SpinLock tlb(lock_class::kTlb);
  WriteGuard<RwSem> m(mmap_lock);
  SpinGuard a(ptl);
  NestedSpinGuard b(ptl2);  // annotated: one level of same-class nesting
  SpinGuard c(tlb);
  SUCCEED();
}

void inversion() {
  SpinLock ptl(lock_class::kPtl);
  SpinLock tlb(lock_class::kTlb);
  SpinGuard a(tlb);
  SpinGuard b(ptl);  // the PTE lock ranks above the TLB lock
}

void unannotated_nesting() {
  SpinLock p1(lock_class::kPtl);
  SpinLock p2(lock_class::kPtl);
  SpinGuard a(p1);
  SpinGuard b(p2);
}

void double_nesting() {
  SpinLock p1(lock_class::kPtl);
  SpinLock p2(lock_class::kPtl);
  SpinLock p3(lock_class::kPtl);
  SpinGuard a(p1);
  NestedSpinGuard b(p2);
  NestedSpinGuard c(p3);
}

void rwsem_inversion() {
  RwSem anon(lock_class::kAnonVma);
  RwSem mmap_lock(lock_class::kMmapLock);
  WriteGuard<RwSem> a(anon);
  WriteGuard<RwSem> b(mmap_lock);  // the mmap_lock ranks first
}

using LockdepDeathTest = LockdepTest;

TEST_F(LockdepDeathTest, InversionAborts) { EXPECT_DEATH(inversion(), "lock order inversion"); }
TEST_F(LockdepDeathTest, UnannotatedSameClassNestingAborts) {
  EXPECT_DEATH(unannotated_nesting(), "same-class nesting without a nested annotation");
}
TEST_F(LockdepDeathTest, DoubleNestingAborts) { EXPECT_DEATH(double_nesting(), "deeper than one level"); }
TEST_F(LockdepDeathTest, RwSemInversionAborts) { EXPECT_DEATH(rwsem_inversion(), "lock order inversion"); }

}  // namespace
}  // namespace mirrormm

namespace mirrormm {
namespace {

TEST(PageLock, ExcludesAndOrdersBeforeAnonVma) {
  Page page;
  ASSERT_TRUE(trylock_page(&page));
  EXPECT_FALSE(trylock_page(&page));
  unlock_page(&page);
  lock_page(&page);
  EXPECT_TRUE(page.test(PG_locked));
  unlock_page(&page);
  EXPECT_FALSE(page.test(PG_locked));
}

void page_lock_inside_anon_vma() {
  lockdep::enabled.store(true);
  RwSem anon(lock_class::kAnonVma);
  Page page;
  WriteGuard<RwSem> a(anon);
  lock_page(&page);  // the page lock ranks before the anon_vma lock
}

TEST(PageLockDeathTest, InsideAnonVmaLockAborts) {
  EXPECT_DEATH(page_lock_inside_anon_vma(), "lock order inversion");
}

}  // namespace
}  // namespace mirrormm
