// Linked into every test binary: the whole suite runs with the MMU coherence checker on, and
// a test during which the checker reported a violation fails, unless that test asked for a
// broken kernel (mmu_debug_drop_bracket). This is how "the checker reports nothing during the
// whole suite" is enforced rather than hoped for.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "mirrormm/mmu_notifier.h"

namespace mirrormm {
namespace {

class CheckerListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override {
    mmu_checker_enable(true);
    reports_ = mmu_checker_reports();
    breakages_ = mmu_debug_breakages();
  }
  void OnTestEnd(const ::testing::TestInfo& info) override {
    const uint64_t reports = mmu_checker_reports() - reports_;
    if (reports == 0 || mmu_debug_breakages() != breakages_) return;
    // Too late for ADD_FAILURE to mark this test; fail the binary loudly instead.
    std::fprintf(stderr, "%s.%s: the MMU coherence checker reported %llu violation(s); last: %s\n",
                 info.test_suite_name(), info.name(), static_cast<unsigned long long>(reports),
                 mmu_checker_last_report().c_str());
    std::exit(1);
  }

 private:
  uint64_t reports_ = 0;
  uint64_t breakages_ = 0;
};

const bool registered = [] {
  ::testing::UnitTest::GetInstance()->listeners().Append(new CheckerListener);
  return true;
}();

}  // namespace
}  // namespace mirrormm
