// Device accesses (device_access_pfn, src/mm/hmm.cc) are checked when they happen: a device
// that keeps a stale secondary mapping (a broken kernel that skipped a bracket, or a broken
// driver that ignores invalidations) is reported and cannot write into the frame's next
// owner, a page table least of all. Also: what the checker's messages name, and how a flood
// of violations is counted (System::violation_kinds).
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "mirrormm/device_mirror.h"
#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/physmem.h"

namespace mirrormm {
namespace {

constexpr uint64_t P = 4096;
constexpr uint64_t A = 0x200000000000ull;  // process 1's page, mirrored by the device
constexpr uint64_t B = 0x200040000000ull;  // process 2's pages (another 1 GiB: its own tables)
constexpr uint64_t RW = kProtRead | kProtWrite;
constexpr uint64_t PRIV = kMapPrivate | kMapAnonymous | kMapFixed;

bool has(const std::vector<std::string>& messages, const std::string& what) {
  for (const std::string& m : messages)
    if (m.find(what) != std::string::npos) return true;
  return false;
}

std::string all(const std::vector<std::string>& messages) {
  std::string s;
  for (const std::string& m : messages) s += m + "\n";
  return s;
}

uint64_t count_of(System& sys, const std::string& kind) {
  for (const auto& [k, n] : sys.violation_kinds())
    if (k == kind) return n;
  return 0;
}

void fill(System& sys, Process* p, uint64_t addr, uint64_t len, uint8_t v) {
  AccessResult r = sys.access(p, 0, addr, len, true, [v](uint8_t* d, uint64_t, uint64_t n) { std::memset(d, v, n); });
  ASSERT_TRUE(r.ok());
}

// Every byte of [addr, addr+len) of p reads as v.
bool holds(System& sys, Process* p, uint64_t addr, uint64_t len, uint8_t v) {
  bool same = true;
  AccessResult r = sys.access(p, 0, addr, len, false, [&](uint8_t* d, uint64_t, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) same &= d[i] == v;
  });
  return r.ok() && same;
}

// The frame that backs addr in p now (faulted in for writing, from this thread: frames come
// from the global free list, most recently freed first).
uint64_t frame_of(Process* p, uint64_t addr, bool fault) {
  Mm* mm = get_task_mm(p);
  bool writable = false;
  Result<uint64_t> pfn = mm_get_pfn(mm, addr, fault, /*write=*/true, &writable);
  mmput_ref(mm);
  return pfn.ok() ? pfn.value() : 0;
}

// Process 1 maps two pages at A (the second keeps A's page table alive) and a device mirrors
// the first for writing; process 2 (a fork made before) has B's tables built. Then munmap of
// A's first page without its bracket (a broken kernel): the device is never told and keeps
// its mapping of the frame, which goes back to the free list.
class StaleDevice : public ::testing::Test {
 protected:
  void SetUp() override {
    p1 = sys.process(1);
    Result<Process*> c = sys.fork(p1);
    ASSERT_TRUE(c.ok());
    p2 = c.value();
    ASSERT_TRUE(sys.mmap(p2, B, 1024 * P, RW, PRIV).ok());
    ASSERT_NE(frame_of(p2, B, true), 0u);  // B's page tables
    ASSERT_TRUE(sys.mmap(p1, A, 2 * P, RW, PRIV).ok());
    fill(sys, p1, A, 2 * P, 0x11);
    auto m = DeviceMirror::attach(p1, DeviceMirror::Mode::kInterval, A, 2 * P);
    ASSERT_TRUE(m.ok());
    dev = std::move(m.value());
    dev->set_name("gpu0");
    ASSERT_TRUE(dev->fault(A, P, true).ok());
    ASSERT_EQ(dev->show(A, P), "w");
    pfn = frame_of(p1, A, false);
    ASSERT_NE(pfn, 0u);
    ASSERT_EQ(sys.violations(), 0u) << all(sys.violation_messages());
    mmu_debug_drop_bracket(static_cast<int>(MmuNotifyEvent::kUnmap));
    ASSERT_TRUE(sys.munmap(p1, A, P).ok());
    mmu_debug_drop_bracket(-1);
    ASSERT_EQ(dev->show(A, P), "w");  // never told
    ASSERT_TRUE(sys.mem().debug_is_free(static_cast<pfn_t>(pfn)));
  }
  void TearDown() override {
    mmu_debug_drop_bracket(-1);
    if (dev) dev->detach();
  }

  System sys{SystemConfig{}, 1};
  Process* p1 = nullptr;
  Process* p2 = nullptr;
  std::unique_ptr<DeviceMirror> dev;
  uint64_t pfn = 0;
};

TEST_F(StaleDevice, WriteIntoAFrameReusedByAnotherProcessIsRefused) {
  ASSERT_TRUE(sys.mmu_checker());
  // Process 2's next page gets the frame (B's page table exists: no table is allocated).
  ASSERT_EQ(frame_of(p2, B + P, true), pfn);
  fill(sys, p2, B + P, P, 0x22);
  const uint64_t before = sys.violations();
  std::vector<uint8_t> junk(64, 0xee);
  EXPECT_FALSE(dev->write(A, junk.size(), junk.data()));
  EXPECT_EQ(sys.violations(), before + 1);
  EXPECT_EQ(count_of(sys, "device write through a stale mapping"), 1u) << all(sys.violation_messages());
  EXPECT_TRUE(holds(sys, p2, B + P, P, 0x22)) << "the new owner's bytes changed";
  // A read through the same mapping gets none of process 2's data.
  std::vector<uint8_t> got;
  EXPECT_FALSE(dev->read(A, 64, &got));
  EXPECT_EQ(got, std::vector<uint8_t>(64, 0));
  EXPECT_EQ(count_of(sys, "device read through a stale mapping"), 1u) << all(sys.violation_messages());
}

// The page-table case is refused even with the checker off: the frame is not user data.
TEST_F(StaleDevice, WriteIntoAFrameReusedAsAPageTableIsRefusedWithTheCheckerOff) {
  sys.set_mmu_checker(false);
  // A page 2 MiB further needs a new PTE table, allocated before the data page: the frame.
  ASSERT_NE(frame_of(p2, B + 512 * P, true), pfn);
  ASSERT_TRUE(sys.mem().pfn_to_page(static_cast<pfn_t>(pfn))->test(PG_pgtable));
  fill(sys, p2, B + 512 * P, P, 0x33);
  std::vector<uint8_t> table(P);
  std::memcpy(table.data(), sys.mem().pfn_to_virt(static_cast<pfn_t>(pfn)), P);
  const uint64_t before = sys.violations();
  std::vector<uint8_t> junk(P, 0xee);
  EXPECT_FALSE(dev->write(A, P, junk.data()));
  EXPECT_EQ(sys.violations(), before + 1);
  EXPECT_EQ(count_of(sys, "device write to a foreign frame"), 1u) << all(sys.violation_messages());
  EXPECT_TRUE(has(sys.violation_messages(), "the frame is a page table")) << all(sys.violation_messages());
  EXPECT_EQ(std::memcmp(table.data(), sys.mem().pfn_to_virt(static_cast<pfn_t>(pfn)), P), 0)
      << "the page table was overwritten";
  EXPECT_TRUE(holds(sys, p2, B + 512 * P, P, 0x33));
  sys.set_mmu_checker(true);
}

TEST_F(StaleDevice, ReadOfAFreedFrameIsReportedAndReadsZeros) {
  const uint64_t before = sys.violations();
  std::vector<uint8_t> got;
  EXPECT_FALSE(dev->read(A + 8, 32, &got));
  EXPECT_EQ(got, std::vector<uint8_t>(32, 0));
  EXPECT_EQ(sys.violations(), before + 1);
  EXPECT_EQ(count_of(sys, "device read from a freed frame"), 1u) << all(sys.violation_messages());
  // The message names the subscriber, the process and the address.
  EXPECT_TRUE(has(sys.violation_messages(), "subscriber gpu0, pid 1 (mm 1), address 0x200000000008"))
      << all(sys.violation_messages());
}

// A driver whose invalidate() only bumps the sequence and keeps its device PTEs.
struct BuggyDevice : MmuIntervalNotifier {
  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange*, uint64_t cur_seq) {
    mmu_interval_set_seq(sub, cur_seq);
    return true;
  }
};
const MmuIntervalNotifierOps kBuggyOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &BuggyDevice::invalidate;
  return o;
}();

// A secondary TLB over the CPU page tables whose flush hook makes the buggy device read
// (a DMA racing the primary path, inside its bracket).
struct Snooper : MmuNotifier {
  BuggyDevice* dev = nullptr;
  uint64_t pfn = 0;
  bool armed = false;
  bool refused = false;
  static void flush(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end) {
    auto* s = static_cast<Snooper*>(sub);
    if (!s->armed || start > A || end <= A) return;
    s->armed = false;
    uint8_t b = 0xff;
    s->refused = !device_access_pfn(s->dev, mm, A, s->pfn, &b, 1, false);
  }
};
const MmuNotifierOps kSnooperOps = [] {
  MmuNotifierOps o;
  o.arch_invalidate_secondary_tlbs = &Snooper::flush;
  return o;
}();

TEST(DeviceAccess, MessagesNameSubscriberProcessAddressAndInvalidation) {
  mmu_debug_broken_driver();
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, A, 2 * P, RW, PRIV).ok());
  fill(sys, p, A, 2 * P, 0x11);
  Mm* mm = get_task_mm(p);
  BuggyDevice dev;
  ASSERT_EQ(mmu_interval_notifier_insert(&dev, mm, A, 2 * P, &kBuggyOps), Errno::kOk);
  mmu_checker_name(&dev, "buggy-gpu");
  Snooper snoop;
  snoop.ops = &kSnooperOps;
  snoop.dev = &dev;
  ASSERT_EQ(mmu_notifier_register(&snoop, mm), Errno::kOk);
  bool writable = false;
  Result<uint64_t> pfn = mm_get_pfn(mm, A, true, true, &writable);
  ASSERT_TRUE(pfn.ok());
  mmu_checker_map(&dev, mm, A, pfn.value(), writable);
  uint8_t b = 0;
  ASSERT_TRUE(device_access_pfn(&dev, mm, A + 1, pfn.value(), &b, 1, false));
  EXPECT_EQ(b, 0x11);
  ASSERT_EQ(sys.violations(), 0u) << all(sys.violation_messages());

  // An access through a mapping the driver never declared.
  EXPECT_FALSE(device_access_pfn(&dev, mm, A + P, pfn.value(), &b, 1, false));
  EXPECT_EQ(count_of(sys, "device read without a mapping"), 1u) << all(sys.violation_messages());

  // munmap with its bracket: the driver is told and ignores it.
  snoop.pfn = pfn.value();
  snoop.armed = true;
  ASSERT_TRUE(sys.munmap(p, A, P).ok());
  const std::string during = "during unmap [0x200000000000, 0x200000001000)";
  EXPECT_TRUE(has(sys.violation_messages(), "outlives its primary PTE: subscriber buggy-gpu, pid 1 (mm 1), "
                                            "address 0x200000000000, " + during))
      << all(sys.violation_messages());
  // The DMA inside the bracket names the invalidation in progress.
  EXPECT_TRUE(snoop.refused);
  EXPECT_TRUE(has(sys.violation_messages(), "device read of pfn")) << all(sys.violation_messages());
  EXPECT_TRUE(has(sys.violation_messages(), "subscriber buggy-gpu, pid 1 (mm 1), address 0x200000000000, " + during))
      << all(sys.violation_messages());
  EXPECT_EQ(count_of(sys, "device read through a stale mapping"), 1u) << all(sys.violation_messages());
  // The frame was freed under the mapping: named after the latest mapping of it.
  EXPECT_TRUE(has(sys.violation_messages(), "(the latest: subscriber buggy-gpu, pid 1 (mm 1), address 0x200000000000)"))
      << all(sys.violation_messages());
  // Without a name a subscriber is its address.
  mmu_checker_name(&dev, "");
  const uint64_t before = sys.violations();
  EXPECT_FALSE(device_access_pfn(&dev, mm, A, pfn.value(), &b, 1, true));
  EXPECT_EQ(sys.violations(), before + 1);
  char addr[32];
  std::snprintf(addr, sizeof addr, "%p", static_cast<const void*>(&dev));
  EXPECT_TRUE(has(sys.violation_messages(), std::string("subscriber ") + addr + ", pid 1"))
      << all(sys.violation_messages());

  mmu_checker_unmap_all(&dev);
  mmu_interval_notifier_remove(&dev);
  mmu_notifier_unregister(&snoop, mm);
  mmput_ref(mm);
}

// A mirror that follows the protocol is never refused, and moves the bytes both ways.
TEST(DeviceAccess, CoherentAccessesAreNotReported) {
  System sys;
  ASSERT_TRUE(sys.mmu_checker());  // the test suite's default
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, A, 4 * P, RW, PRIV).ok());
  fill(sys, p, A, 4 * P, 0x5a);
  for (DeviceMirror::Mode mode : {DeviceMirror::Mode::kInterval, DeviceMirror::Mode::kClassic}) {
    auto m = DeviceMirror::attach(p, mode);
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE(m.value()->fault(A, 4 * P, true).ok());
    std::vector<uint8_t> data(3 * P, 0x77);
    EXPECT_TRUE(m.value()->write(A + 100, data.size(), data.data()));
    std::vector<uint8_t> got;
    EXPECT_TRUE(m.value()->read(A + 100, data.size(), &got));
    EXPECT_EQ(got, data);
    EXPECT_TRUE(holds(sys, p, A + 100, data.size(), 0x77));
    fill(sys, p, A, 4 * P, 0x5a);  // a COW-free write: the mapping stays
    m.value()->detach();
  }
  EXPECT_EQ(sys.violations(), 0u) << all(sys.violation_messages());
}

// Every violation is counted; the first System::kMaxViolationMessages messages are kept, and
// every report is tallied by kind (kindless ones under "other").
TEST(DeviceAccess, FloodIsCountedByKind) {
  System sys;
  for (int i = 0; i < 30; i++) sys.report_violation("kind a", "a " + std::to_string(i));
  for (int i = 0; i < 5; i++) sys.report_violation("kind b", "b " + std::to_string(i));
  sys.report_violation("no kind");
  sys.report_violation("no kind either");
  EXPECT_EQ(sys.violations(), 37u);
  std::vector<std::string> m = sys.violation_messages();
  ASSERT_EQ(m.size(), System::kMaxViolationMessages);
  EXPECT_EQ(m.front(), "a 0");
  EXPECT_EQ(m.back(), "a 19");
  using Kinds = std::vector<std::pair<std::string, uint64_t>>;
  EXPECT_EQ(sys.violation_kinds(), (Kinds{{"kind a", 30}, {"kind b", 5}, {"other", 2}}));
}

}  // namespace
}  // namespace mirrormm
