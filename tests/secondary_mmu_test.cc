// The SecondaryMmu interface and registry (src/secondary/secondary_mmu.cc), the example
// secondary MMUs (shadow_mmu.cc, sva_iotlb.cc, xpmem.cc) and their deliberately broken
// variants, each caught by the coherence checker or by the behaviour it breaks.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <thread>

#include "mirrormm/mman.h"
#include "mirrormm/script.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/shadow_mmu.h"
#include "mirrormm/stress.h"
#include "mirrormm/sva_iotlb.h"
#include "mirrormm/system.h"
#include "mirrormm/xpmem.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

const bool kWatchdog =
    testing::install_test_watchdog(std::chrono::seconds(240) + testing::scaled(std::chrono::seconds(60)));

constexpr uint64_t W = 0x200000000000ull, P = 4096;
const char* const kKinds[] = {"interval", "classic", "shadow", "iotlb", "xpmem", "dmirror"};

SystemConfig checked() {
  SystemConfig c;
  c.mmu_checker = true;
  return c;
}

void map_anon(System& sys, Process* p, uint64_t addr, uint64_t len, uint64_t prot = kProtRead | kProtWrite) {
  ASSERT_TRUE(sys.mmap(p, addr, len, prot, kMapPrivate | kMapAnonymous | kMapFixed).ok());
}

void cpu_write(System& sys, Process* p, uint64_t addr, uint64_t len, uint8_t v) {
  AccessResult r = sys.access(p, 0, addr, len, true, [v](uint8_t* d, uint64_t, uint64_t n) {
    for (uint64_t i = 0; i < n; i++) d[i] = v;
  });
  ASSERT_EQ(r.kind, AccessResult::Kind::kOk);
}

uint8_t cpu_read(System& sys, Process* p, uint64_t addr) {
  uint8_t out = 0;
  AccessResult r = sys.access(p, 0, addr, 1, false, [&out](uint8_t* d, uint64_t, uint64_t) { out = d[0]; });
  EXPECT_EQ(r.kind, AccessResult::Kind::kOk);
  return out;
}

TEST(SecondaryMmuRegistry, BuiltInKindsAndUserKinds) {
  std::vector<std::string> names;
  for (const SecondaryMmuKind& k : secondary_mmu_kinds()) names.push_back(k.name);
  for (const char* k : kKinds) EXPECT_NE(std::find(names.begin(), names.end(), k), names.end()) << k;
  EXPECT_TRUE(secondary_mmu_kind_known("shadow:broken-aging"));
  EXPECT_FALSE(secondary_mmu_kind_known("shadow:broken-nothing"));
  EXPECT_FALSE(secondary_mmu_kind_known("gpu"));

  System sys(checked());
  Process* p = sys.process(1);
  EXPECT_EQ(attach_secondary_mmu("gpu", p).error(), Errno::kNoEnt);
  EXPECT_EQ(attach_secondary_mmu("shadow:broken-nothing", p).error(), Errno::kInval);
  EXPECT_EQ(attach_secondary_mmu("xpmem", p, W, 0).error(), Errno::kOverflow);

  // A user kind: the interval mirror under another name.
  SecondaryMmuKind mine;
  mine.name = "mine";
  mine.description = "a test kind";
  mine.factory = [](Process* p, uint64_t start, uint64_t length, const std::string& variant) {
    return variant.empty() ? attach_secondary_mmu("interval", p, start, length)
                           : Result<std::unique_ptr<SecondaryMmu>>(Errno::kInval);
  };
  EXPECT_EQ(register_secondary_mmu_kind(mine), Errno::kOk);
  EXPECT_EQ(register_secondary_mmu_kind(mine), Errno::kExist);
  SecondaryMmuKind bad = mine;
  bad.name = "Bad Name";
  EXPECT_EQ(register_secondary_mmu_kind(bad), Errno::kInval);
  map_anon(sys, p, W, 2 * P);
  auto m = attach_secondary_mmu("mine", p, W, 2 * P);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m.value()->fault(W, 2 * P, false).value(), 2u);
  EXPECT_EQ(sys.violations(), 0u);
}

// `dev attach NAME KIND [ADDR LEN]` names any registered kind, a variant included, and
// formats back as written; an unknown kind is a parse error that lists the kinds.
TEST(SecondaryMmuScripts, DevAttachTakesAKind) {
  for (const std::string line : {"dev attach g shadow", "dev attach g iotlb:broken-keep 0x200000000000 0x4000",
                                 "dev attach g xpmem 0x200000000000 0x1000", "dev attach g interval 0x0 0x1000",
                                 "dev attach g classic"}) {
    std::string error;
    std::optional<script::Script> s = script::parse(line, "t.mms", &error);
    ASSERT_TRUE(s.has_value()) << line << ": " << error;
    ASSERT_EQ(s->commands.size(), 1u);
    EXPECT_EQ(script::format(s->commands[0]), line);
  }
  std::string error;
  EXPECT_FALSE(script::parse("dev attach g gpu", "t.mms", &error).has_value());
  // (the list goes on with the kinds a program registered, here the registry test's)
  EXPECT_EQ(error.rfind("t.mms:1: dev attach: bad KIND 'gpu' (expected one of interval, classic, shadow, iotlb, xpmem", 0),
            0u)
      << error;
  EXPECT_FALSE(script::parse("dev attach g shadow 0x1000", "t.mms", &error).has_value());
}

// Every kind does the same job the same way seen from outside: it maps what the CPU wrote,
// reads and writes it, and loses the pages the CPU unmaps.
TEST(SecondaryMmuKinds, FaultReadWriteAndUnmap) {
  for (const char* kind : kKinds) {
    SCOPED_TRACE(kind);
    System sys(checked());
    Process* p = sys.process(1);
    map_anon(sys, p, W, 4 * P);
    cpu_write(sys, p, W, 4 * P, 0x5a);
    auto r = attach_secondary_mmu(kind, p, W, 4 * P);
    ASSERT_TRUE(r.ok());
    SecondaryMmu& m = *r.value();
    EXPECT_EQ(m.kind(), kind);
    ASSERT_EQ(m.fault(W, 4 * P, true).value(), 4u);
    EXPECT_EQ(m.show(W, 4 * P), "wwww");
    std::vector<uint8_t> buf;
    ASSERT_TRUE(m.read(W + 10, 2 * P, &buf));
    EXPECT_EQ(buf, std::vector<uint8_t>(2 * P, 0x5a));
    const std::vector<uint8_t> data(P, 0xc3);
    ASSERT_TRUE(m.write(W + P, P, data.data()));
    EXPECT_EQ(cpu_read(sys, p, W + P), 0xc3);
    ASSERT_TRUE(sys.munmap(p, W + 2 * P, 2 * P).ok());
    EXPECT_EQ(m.show(W, 4 * P), "ww--");
    EXPECT_FALSE(m.read(W + 2 * P, P, &buf));
    EXPECT_EQ(m.fault(W + 3 * P, P, false).error(), Errno::kFault);
    const SecondaryMmu::Stats s = m.stats();
    EXPECT_GT(s.invalidations, 0u);
    uint64_t sum = 0;
    for (uint64_t n : s.by_event) sum += n;
    EXPECT_EQ(sum, s.invalidations);
    sys.exit(p);
    EXPECT_EQ(m.pages_mapped(), 0u);
    m.detach();
    m.detach();  // idempotent
    EXPECT_EQ(sys.violations(), 0u);
  }
}

// The SVA IOTLB keeps only a cache: the CPU's flush of a range (here munmap's) is what
// empties it, and the log shows arch_invalidate_secondary_tlbs calls, never start/end.
TEST(SvaIotlb, KeptCoherentByTheTlbFlushOnly) {
  System sys(checked());
  Process* p = sys.process(1);
  map_anon(sys, p, W, 2 * P);
  cpu_write(sys, p, W, 2 * P, 1);
  auto t = SvaIotlb::attach(p);
  ASSERT_TRUE(t.ok());
  std::vector<uint8_t> buf;
  ASSERT_TRUE(t.value()->read(W, 2 * P, &buf));  // misses, walks, fills
  EXPECT_EQ(t.value()->show(W, 2 * P), "ww");
  (void)t.value()->take_events();
  ASSERT_TRUE(sys.madvise(p, W, P, kMadvDontneed).ok());
  EXPECT_EQ(t.value()->show(W, 2 * P), "-w");
  const std::vector<SecondaryMmu::Event> ev = t.value()->take_events();
  ASSERT_FALSE(ev.empty());
  for (const SecondaryMmu::Event& e : ev) EXPECT_TRUE(e.secondary_tlb);
  // The device reaches the zapped page again through a page request (a fresh zero page).
  ASSERT_TRUE(t.value()->read(W, 1, &buf));
  EXPECT_EQ(buf[0], 0);
  EXPECT_EQ(sys.violations(), 0u);
}

// One munmap over two VMAs whose pages fill the gather's batch inside the second VMA's first
// page table: the batch's flush frees the pages queued so far, so their translations must be
// in its range already (tlb_remove_tlb_entry before the page is queued), or the IOTLB entry
// of the second VMA's first page would outlive its frame.
TEST(SvaIotlb, ZapBatchFlushCoversEveryQueuedPage) {
  System sys(checked());
  Process* p = sys.process(1);
  constexpr uint64_t kFirst = 4090, kSecond = 64;  // the batch (4096 pages) fills in the second
  map_anon(sys, p, W, (kFirst + kSecond) * P);
  cpu_write(sys, p, W, (kFirst + kSecond) * P, 2);
  ASSERT_TRUE(sys.mprotect(p, W + kFirst * P, kSecond * P, kProtRead).ok());  // a second VMA
  auto t = SvaIotlb::attach(p);
  ASSERT_TRUE(t.ok());
  std::vector<uint8_t> buf;
  ASSERT_TRUE(t.value()->read(W + kFirst * P, 1, &buf));
  EXPECT_EQ(buf[0], 2);
  ASSERT_TRUE(sys.munmap(p, W, (kFirst + kSecond) * P).ok());
  EXPECT_EQ(t.value()->show(W + kFirst * P, P), "-");
  EXPECT_EQ(sys.violations(), 0u);
}

// A permission upgrade reaches the secondary TLBs (Linux 6.6, "Invalidate secondary IOMMU TLB
// on permission upgrade"): a device that cached a read-only translation can write after
// mprotect makes the page writable. Without it (the machine deliberately broken), the device
// faults forever, and says so.
TEST(SvaIotlb, PermissionUpgradeInvalidatesTheIotlb) {
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken-upgrade" : "correct");
    System sys(checked());
    Process* p = sys.process(1);
    map_anon(sys, p, W, P);
    cpu_write(sys, p, W, P, 7);  // an exclusive anonymous page: mprotect may upgrade it in place
    ASSERT_TRUE(sys.mprotect(p, W, P, kProtRead).ok());
    auto t = attach_secondary_mmu(broken ? "iotlb:broken-upgrade" : "iotlb", p);
    ASSERT_TRUE(t.ok());
    std::vector<uint8_t> buf;
    ASSERT_TRUE(t.value()->read(W, 1, &buf));
    EXPECT_EQ(t.value()->show(W, P), "r");
    ASSERT_TRUE(sys.mprotect(p, W, P, kProtRead | kProtWrite).ok());
    EXPECT_EQ(t.value()->show(W, P), broken ? "r" : "-");
    const uint8_t v = 9;
    EXPECT_EQ(t.value()->write(W, 1, &v), !broken);
    if (broken) {
      EXPECT_EQ(sys.violations(), 1u);
      const auto kinds = sys.violation_kinds();
      ASSERT_FALSE(kinds.empty());
      EXPECT_EQ(kinds[0].first, "iotlb fault loop");
    } else {
      EXPECT_EQ(cpu_read(sys, p, W), 9);
      EXPECT_EQ(sys.violations(), 0u);
    }
  }
}

// The same for the write fault that reuses a page in place (wp_page_reuse): after the fork's
// child is gone the parent's read-only PTE becomes writable without a new frame.
TEST(SvaIotlb, WriteFaultReuseInvalidatesTheIotlb) {
  System sys(checked());
  Process* p = sys.process(1);
  map_anon(sys, p, W, P);
  cpu_write(sys, p, W, P, 3);
  Result<Process*> child = sys.fork(p);
  ASSERT_TRUE(child.ok());
  sys.exit(child.value());
  auto t = SvaIotlb::attach(p);
  ASSERT_TRUE(t.ok());
  std::vector<uint8_t> buf;
  ASSERT_TRUE(t.value()->read(W, 1, &buf));
  EXPECT_EQ(t.value()->show(W, P), "r");  // write-protected by the fork
  cpu_write(sys, p, W, 1, 4);              // the CPU's write fault reuses the page
  EXPECT_EQ(t.value()->show(W, P), "-");
  const uint8_t v = 5;
  EXPECT_TRUE(t.value()->write(W + 1, 1, &v));
  EXPECT_EQ(sys.violations(), 0u);
}

// KVM's aging: a page the guest keeps touching (through its SPTE's accessed bit) is young to
// the LRU through clear_flush_young, so reclaim keeps it while it takes the pages nobody
// touches. The variant without the aging callbacks loses it.
TEST(ShadowMmu, HotGuestPageSurvivesReclaimOnlyWithAging) {
  constexpr uint64_t kPages = 64;
  const uint64_t hot = W + 5 * P;
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "broken-aging" : "correct");
    SystemConfig config = checked();
    config.memory_bytes = 16ull << 20;
    System sys(config);
    ASSERT_TRUE(sys.swapon(32ull << 20).ok());
    Process* p = sys.process(1);
    map_anon(sys, p, W, kPages * P);
    cpu_write(sys, p, W, kPages * P, 0x11);
    auto s = ShadowMmu::attach(p, W, kPages * P,
                               broken ? ShadowMmu::Broken::kNoAging : ShadowMmu::Broken::kNone);
    ASSERT_TRUE(s.ok());
    ShadowMmu& shadow = *s.value();
    ASSERT_EQ(shadow.fault(W, kPages * P, false).value(), kPages);
    std::vector<uint8_t> buf;
    for (int round = 0; round < 8; round++) {
      (void)shadow.read(hot, 8, &buf);  // the guest's access: its SPTE becomes young
      (void)sys.reclaim(4096);
    }
    std::vector<uint8_t> vec;
    ASSERT_TRUE(sys.mincore(p, W, kPages * P, &vec).ok());
    uint64_t resident = 0;
    for (uint8_t b : vec) resident += b & 1;
    EXPECT_LT(resident, kPages / 2) << "reclaim took the cold pages";
    EXPECT_EQ(vec[5] & 1, broken ? 0 : 1);
    EXPECT_EQ(shadow.show(hot, P), broken ? "-" : "w");
    if (!broken) {
      EXPECT_GT(shadow.stats().young_answers, 0u);
    }
    EXPECT_EQ(cpu_read(sys, p, hot), 0x11);  // swapped back in when it was taken
    EXPECT_EQ(sys.violations(), 0u);
  }
}

// XPMEM's invalidation sleeps until the remote accesses in flight finish, and a non-blockable
// one refuses instead (the OOM reaper's retry is the core's business).
TEST(XpmemMapper, InvalidationWaitsForInFlightAccesses) {
  System sys(checked());
  Process* exporter = sys.process(1);
  map_anon(sys, exporter, W, 256 * P);
  cpu_write(sys, exporter, W, 256 * P, 0x42);
  Result<Process*> importer = sys.fork(exporter);
  ASSERT_TRUE(importer.ok());
  auto x = XpmemMapper::attach(exporter, W, 256 * P, XpmemMapper::Broken::kNone, importer.value(), 0x100000000ull);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x.value()->exporter_address(0x100000000ull + 3 * P), W + 3 * P);
  EXPECT_EQ(x.value()->exporter_address(0x100000000ull + 256 * P), ~0ull);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    std::vector<uint8_t> buf;
    while (!stop.load()) {
      if (x.value()->fault(W, 256 * P, false).ok()) (void)x.value()->read(W, 256 * P, &buf);
    }
  });
  for (int i = 0; i < 200; i++) ASSERT_TRUE(sys.mprotect(exporter, W, 256 * P, i % 2 ? kProtRead : kProtRead | kProtWrite).ok());
  stop = true;
  reader.join();
  EXPECT_GT(x.value()->stats().invalidations, 0u);
  EXPECT_EQ(sys.violations(), 0u);
}

// ---- the deliberately broken variants, each caught ----

// A short stress of one broken kind ends at its first violation, quickly; the same stress
// with the correct kind reports none.
void expect_caught_under_stress(const std::string& broken, const std::string& correct,
                                const std::vector<std::string>& kinds) {
  for (const std::string& d : {correct, broken}) {
    SCOPED_TRACE(d);
    stress::Options o;
    o.threads = 4;
    o.seed = 1;
    o.drivers = {d};
    o.seconds = d == correct ? 3 : 60;  // an upper bound for loaded machines
    o.stop_on_violation = d == broken;
    const stress::Report r = stress::run(o);
    if (d == correct) {
      EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
      continue;
    }
    EXPECT_TRUE(r.stopped_on_violation);
    EXPECT_LT(r.seconds, 30.0);
    bool named = false;
    for (const auto& [k, n] : r.kinds) named |= std::find(kinds.begin(), kinds.end(), k) != kinds.end();
    EXPECT_TRUE(named) << (r.kinds.empty() ? "" : r.kinds[0].first);
  }
}

TEST(SecondaryMmuBroken, ShadowKeepingMappingsIsCaught) {
  // Which of its consequences the checker meets first depends on the interleaving.
  expect_caught_under_stress("shadow:broken-keep", "shadow",
                             {"stale secondary mapping", "secondary mapping outranks its PTE",
                              "frame freed under a secondary mapping",
                              "mappings outlive their mm", "device read during an invalidation",
                              "device write during an invalidation"});
}

TEST(SecondaryMmuBroken, IotlbIgnoringFlushesIsCaught) {
  expect_caught_under_stress("iotlb:broken-keep", "iotlb", {"secondary TLB entry survives its flush"});
}

TEST(SecondaryMmuBroken, MissingUpgradeInvalidationIsCaught) {
  expect_caught_under_stress("iotlb:broken-upgrade", "iotlb", {"iotlb fault loop"});
}

// Without read_retry a fault installs what it looked up before an invalidation it raced: a
// thread that keeps faulting a range in while another keeps zapping it shows it at once.
TEST(SecondaryMmuBroken, SkippedReadRetryIsCaught) {
  for (bool broken : {false, true}) {
    SCOPED_TRACE(broken ? "xpmem:broken-retry" : "xpmem");
    System sys(checked());
    Process* p = sys.process(1);
    map_anon(sys, p, W, 16 * P);
    auto x = attach_secondary_mmu(broken ? "xpmem:broken-retry" : "xpmem", p, W, 16 * P);
    ASSERT_TRUE(x.ok());
    std::atomic<bool> stop{false};
    std::thread zapper([&] {
      while (!stop.load()) (void)sys.madvise(p, W, 16 * P, kMadvDontneed);
    });
    const auto t0 = std::chrono::steady_clock::now();
    const auto limit = broken ? std::chrono::seconds(30) : std::chrono::seconds(2);
    while (std::chrono::steady_clock::now() - t0 < limit && sys.violations() == 0)
      (void)x.value()->fault(W, 16 * P, true);
    stop = true;
    zapper.join();
    if (!broken) {
      EXPECT_EQ(sys.violations(), 0u);
      continue;
    }
    ASSERT_GT(sys.violations(), 0u);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(30));
    // Installed after the zap changed the PTE, or before it and then left behind by it; when
    // the zap has also freed the frame, the checker names that first.
    const std::string kind = sys.violation_kinds()[0].first;
    EXPECT_TRUE(kind == "mapping over a different PTE" || kind == "stale secondary mapping" ||
                kind == "frame freed under a secondary mapping")
        << kind;
  }
}

// The stress summary counts every kind it attached.
TEST(SecondaryMmuStress, AllKindsTogetherHaveNoViolations) {
  stress::Options o;
  o.threads = 4;
  o.seconds = 3;
  o.seed = 11;
  o.memory_mib = 64;
  o.swap_mib = 256;
  o.drivers = {"interval", "shadow", "iotlb", "xpmem", "classic"};
  const stress::Report r = stress::run(o);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
  ASSERT_FALSE(r.mirrors_by_kind.empty());
  EXPECT_EQ(r.mirrors_by_kind[0].first, "interval");  // process 1's
  for (const auto& [kind, t] : r.mirrors_by_kind) {
    uint64_t sum = 0;
    for (uint64_t n : t.by_event) sum += n;
    EXPECT_EQ(sum, t.invalidations) << kind;
  }
  EXPECT_EQ(stress::replay_command(o),
            "mirrormm stress --threads 4 --seconds 3 --seed 11 --driver interval,shadow,iotlb,xpmem,classic "
            "--memory 64 --swap 256");
}

}  // namespace
}  // namespace mirrormm
