// DeviceMirror (src/secondary/device_mirror.cc): what its statistics count.
#include <gtest/gtest.h>

#include <numeric>

#include "mirrormm/device_mirror.h"
#include "mirrormm/mman.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t kBase = 0x200000000000ull, kPage = 4096;

uint64_t events(const DeviceMirror::Stats& s, MmuNotifyEvent e) { return s.by_event[static_cast<size_t>(e)]; }

// Every notification is counted once, under its event: mprotect's protection_vma, munmap's
// unmap, and at exit an interval mirror's release and unmap of the teardown, a classic
// mirror's release().
TEST(DeviceMirror, StatsCountInvalidationsByEvent) {
  SystemConfig config;
  config.mmu_checker = true;
  System sys(config);
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, kBase, 4 * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok());
  auto interval = DeviceMirror::attach(p, DeviceMirror::Mode::kInterval, kBase, 4 * kPage);
  auto classic = DeviceMirror::attach(p, DeviceMirror::Mode::kClassic);
  ASSERT_TRUE(interval.ok() && classic.ok());
  for (DeviceMirror* m : {interval.value().get(), classic.value().get()}) {
    ASSERT_TRUE(m->fault(kBase, 4 * kPage, true).ok());
  }
  ASSERT_TRUE(sys.mprotect(p, kBase, kPage, kProtRead).ok());
  ASSERT_TRUE(sys.munmap(p, kBase + 2 * kPage, 2 * kPage).ok());
  sys.exit(p);
  for (DeviceMirror* m : {interval.value().get(), classic.value().get()}) {
    SCOPED_TRACE(m->mode() == DeviceMirror::Mode::kInterval ? "interval" : "classic");
    const DeviceMirror::Stats s = m->stats();
    EXPECT_EQ(std::accumulate(s.by_event.begin(), s.by_event.end(), uint64_t{0}), s.invalidations);
    EXPECT_EQ(events(s, MmuNotifyEvent::kProtectionVma), 1u);
    EXPECT_GE(events(s, MmuNotifyEvent::kUnmap), 1u);
    EXPECT_EQ(events(s, MmuNotifyEvent::kRelease), 1u);
    EXPECT_EQ(events(s, MmuNotifyEvent::kClear), 0u);
    EXPECT_EQ(s.faults, 1u);
    EXPECT_EQ(s.retries, 0u);
    m->detach();
  }
  EXPECT_EQ(sys.violations(), 0u);
}

}  // namespace
}  // namespace mirrormm
