// Linked into every test binary: the whole suite runs with the MMU coherence checker on (every
// SystemConfig made in a test binary starts with mmu_checker set: the default is switched
// before main), and a test during which a checker reported a violation fails, unless that
// test asked for a broken kernel (mmu_debug_drop_bracket). This is how "the checker reports
// nothing during the whole suite" is enforced rather than hoped for. The count of reports is
// process-wide (mmu_checker_reports), so that it covers every System a test builds.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "mirrormm/config.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm {
namespace {

class CheckerListener : public ::testing::EmptyTestEventListener {
 public:
  void OnTestStart(const ::testing::TestInfo&) override {
    SystemConfig::set_default_mmu_checker(true);  // in case a test changed it
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
  SystemConfig::set_default_mmu_checker(true);
  ::testing::UnitTest::GetInstance()->listeners().Append(new CheckerListener);
  return true;
}();

}  // namespace
}  // namespace mirrormm
