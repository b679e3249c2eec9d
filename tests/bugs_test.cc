// The catalog of re-injectable bugs (mirrormm/bugs.h): every entry is caught within a minute,
// with the command line that reproduces it, and the same setup without the bug is clean.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <thread>

#include "mirrormm/bugs.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/replay.h"
#include "mirrormm/run.h"
#include "mirrormm/script.h"
#include "mirrormm/stress.h"
#include "mirrormm/system.h"
#include "mm/mmu_notifier_internal.h"  // the OOM reaper's non-blocking start

namespace mirrormm {
namespace {

constexpr uint64_t P = 4096;

stress::Options setup_of(const bugs::Bug& bug) {
  stress::Options o;
  o.threads = 4;
  o.seed = 1;
  o.drivers = bug.drivers;
  if (bug.needs_migration) o.nodes = 2;
  if (bug.needs_swap) {
    o.memory_mib = 64;
    o.swap_mib = 256;
  }
  o.race_delay_us = bugs::kRaceDelayUs;
  return o;
}

TEST(BugCatalog, NamesAreUniqueAndEntriesComplete) {
  std::set<std::string> names;
  int last_year = 0;
  for (const bugs::Bug& b : bugs::catalog()) {
    SCOPED_TRACE(b.name);
    EXPECT_TRUE(names.insert(b.name).second);
    EXPECT_EQ(bugs::find_bug(b.name), &b);
    EXPECT_GE(b.year, last_year);  // listed by year
    last_year = b.year;
    EXPECT_FALSE(b.what.empty());
    EXPECT_FALSE(b.fix.empty());
    EXPECT_FALSE(b.caught.empty());
    EXPECT_TRUE(b.has_kernel_break || !b.driver.empty());
    EXPECT_FALSE(b.drivers.empty());
    if (!b.stress_finds) {
      // Its scenario test exists where the entry says.
      const size_t in = b.scenario.find(" in ");
      ASSERT_NE(in, std::string::npos) << b.scenario;
      const std::string name = b.scenario.substr(0, in), file = b.scenario.substr(in + 4);
      const std::string suite = name.substr(0, name.find('.')), test = name.substr(name.find('.') + 1);
      std::ifstream f(std::string(MIRRORMM_SOURCE_DIR) + "/" + file);
      ASSERT_TRUE(f.good()) << file;
      const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      EXPECT_TRUE(text.find("(" + suite + ", " + test + ")") != std::string::npos) << b.scenario;
    }
    for (const std::string& d : b.drivers) EXPECT_TRUE(secondary_mmu_kind_known(d)) << d;
  }
  EXPECT_EQ(bugs::find_bug("no-such-bug"), nullptr);
  // One line per entry, NAME first.
  const std::string listing = bugs::catalog_listing();
  size_t lines = 0, at = 0;
  for (const bugs::Bug& b : bugs::catalog()) {
    EXPECT_EQ(listing.compare(at, b.name.size(), b.name), 0) << b.name;
    at = listing.find('\n', at) + 1;
    lines++;
  }
  EXPECT_EQ(at, listing.size());
  EXPECT_EQ(lines, bugs::catalog().size());
}

TEST(BugCatalog, DriverVariantsReplaceTheirKindOnly) {
  const bugs::Bug* kvm = bugs::find_bug("kvm-ignores-in-progress");
  ASSERT_NE(kvm, nullptr);
  EXPECT_EQ(bugs::driver_kind(*kvm, "shadow"), "shadow:broken-inprogress");
  EXPECT_EQ(bugs::driver_kind(*kvm, "shadow:broken-keep"), "shadow:broken-inprogress");
  EXPECT_EQ(bugs::driver_kind(*kvm, "iotlb"), "iotlb");
  const bugs::Bug* kernel = bugs::find_bug("release-twice");
  ASSERT_NE(kernel, nullptr);
  EXPECT_EQ(bugs::driver_kind(*kernel, "shadow"), "shadow");
}

// ---- each bug caught by the stress workload ----

class StressFindsBug : public ::testing::TestWithParam<std::string> {};

TEST_P(StressFindsBug, WithinAMinuteWithItsReproducer) {
  const bugs::Bug* bug = bugs::find_bug(GetParam());
  ASSERT_NE(bug, nullptr);
  stress::Options o = setup_of(*bug);
  o.inject = bug->name;
  o.seconds = 60;
  o.stop_on_violation = true;
  const stress::Report r = stress::run(o);
  EXPECT_TRUE(r.stopped_on_violation);
  EXPECT_LT(r.seconds, 60.0);
  bool named = false;
  std::string kinds;
  for (const auto& [k, n] : r.kinds) {
    named |= bugs::caught_as(*bug, k);
    kinds += k + "; ";
  }
  EXPECT_TRUE(named) << "got " << kinds;
  // The line a run prints to reproduce it names the bug and the race widening.
  const std::string again = stress::replay_command(o);
  EXPECT_NE(again.find("--inject " + bug->name), std::string::npos) << again;
  EXPECT_NE(again.find("--race-delay"), std::string::npos) << again;
}

TEST_P(StressFindsBug, SameSetupWithoutItIsClean) {
  const bugs::Bug* bug = bugs::find_bug(GetParam());
  ASSERT_NE(bug, nullptr);
  stress::Options o = setup_of(*bug);
  o.seconds = 3;
  const stress::Report r = stress::run(o);
  EXPECT_EQ(r.violations, 0u) << (r.messages.empty() ? "" : r.messages[0]);
}

std::vector<std::string> stress_found() {
  std::vector<std::string> v;
  for (const bugs::Bug& b : bugs::catalog())
    if (b.stress_finds) v.push_back(b.name);
  return v;
}

INSTANTIATE_TEST_SUITE_P(Catalog, StressFindsBug, ::testing::ValuesIn(stress_found()),
                         [](const ::testing::TestParamInfo<std::string>& i) {
                           std::string n;
                           for (char c : i.param) n += c == '-' ? '_' : c;
                           return n;
                         });

// ---- the entries stress cannot reach, each shown by a scenario of its own ----

// nonblock-start-no-end needs two subscribers on one address space and a non-blocking
// invalidation that one of them refuses: the OOM reaper's, here started directly.
struct Refuser : MmuNotifier {
  static int start(MmuNotifier*, const MmuNotifierRange* r) { return mmu_notifier_range_blockable(r) ? 0 : -11; }
};
struct Paired : MmuNotifier {
  std::atomic<int> open{0};
  static int start(MmuNotifier* s, const MmuNotifierRange*) {
    static_cast<Paired*>(s)->open++;
    return 0;
  }
  static void end(MmuNotifier* s, const MmuNotifierRange*) { static_cast<Paired*>(s)->open--; }
};

TEST(BugScenario, NonblockStartNoEnd) {
  for (bool injected : {false, true}) {
    SCOPED_TRACE(injected ? "injected" : "correct");
    System sys;
    if (injected) bugs::inject(sys, *bugs::find_bug("nonblock-start-no-end"));
    Process* p = sys.process(1);
    MmuNotifierOps paired_ops;
    paired_ops.invalidate_range_start = &Paired::start;
    paired_ops.invalidate_range_end = &Paired::end;
    MmuNotifierOps refuser_ops;
    refuser_ops.invalidate_range_start = &Refuser::start;
    Paired paired;
    paired.ops = &paired_ops;
    Refuser refuser;
    refuser.ops = &refuser_ops;
    ASSERT_EQ(mmu_notifier_register(&paired, p->mm()), Errno::kOk);
    ASSERT_EQ(mmu_notifier_register(&refuser, p->mm()), Errno::kOk);
    MmuNotifierRange range;
    mmu_notifier_range_init(&range, MmuNotifyEvent::kClear, 0, p->mm(), 0x100000, 0x100000 + P);
    EXPECT_EQ(mmu_notifier_invalidate_range_start_nonblock(&range), Errno::kAgain);
    if (injected) {
      EXPECT_EQ(paired.open.load(), 1);  // left "in progress" for good
      ASSERT_GT(sys.violations(), 0u);
      EXPECT_TRUE(bugs::caught_as(*bugs::find_bug("nonblock-start-no-end"), sys.violation_kinds()[0].first));
    } else {
      EXPECT_EQ(paired.open.load(), 0);
      EXPECT_EQ(sys.violations(), 0u);
    }
    mmu_notifier_unregister(&refuser, p->mm());
    mmu_notifier_unregister(&paired, p->mm());
  }
}

// kvm-ignores-in-progress: an invalidation held between its start callbacks (a blocking
// subscriber registered before the shadow MMU, so called after it) while the shadow MMU
// faults the page it has just zapped. The correct fault sees the in-progress count and gives
// up (-EBUSY after its retries); the broken one maps the page the invalidation is taking away.
struct Holder : MmuNotifier {
  std::atomic<bool> entered{false}, go{false};
  static int start(MmuNotifier* s, const MmuNotifierRange* r) {
    auto* h = static_cast<Holder*>(s);
    if (!mmu_notifier_range_blockable(r)) return 0;
    h->entered = true;
    for (int i = 0; i < 100000 && !h->go.load(); i++) std::this_thread::sleep_for(std::chrono::microseconds(100));
    return 0;
  }
  static void end(MmuNotifier*, const MmuNotifierRange*) {}
};

// release-frees-notifier, deterministically: the broken shadow MMU frees its subscription in
// release(), and the core's next touch of it is reported, whether release() came from exit
// (then the driver's detach unregisters) or from the detach's own unregister (then the unhash
// that follows). The correct driver, detached the same ways, is clean.
TEST(BugScenario, ReleaseFreesNotifier) {
  const bugs::Bug* bug = bugs::find_bug("release-frees-notifier");
  ASSERT_NE(bug, nullptr);
  for (bool injected : {false, true}) {
    for (bool exit_first : {false, true}) {
      SCOPED_TRACE(::testing::Message() << (injected ? "injected" : "correct") << (exit_first ? ", exit" : ", detach"));
      System sys;
      Process* p = sys.process(1);
      Result<Process*> child = sys.fork(p);
      ASSERT_TRUE(child.ok());
      auto shadow = attach_secondary_mmu(injected ? bugs::driver_kind(*bug, "shadow") : "shadow", child.value());
      ASSERT_TRUE(shadow.ok());
      if (exit_first) sys.exit(child.value());
      shadow.value()->detach();
      if (!injected) {
        EXPECT_EQ(sys.violations(), 0u);
        continue;
      }
      ASSERT_GT(sys.violations(), 0u);
      for (const auto& [k, n] : sys.violation_kinds()) EXPECT_TRUE(bugs::caught_as(*bug, k)) << k;
    }
  }
}

// unmap-put-before-end, deterministically: a lazily freed page that an IOTLB caches, paged
// out (MADV_PAGEOUT reclaims it at once). The broken unmap frees the frame through the last
// mapping's put before the IOTLB hears of the unmap; the correct one keeps the page until the
// invalidation is over, and the page is gone afterwards in both.
TEST(BugScenario, UnmapPutBeforeEnd) {
  const bugs::Bug* bug = bugs::find_bug("unmap-put-before-end");
  ASSERT_NE(bug, nullptr);
  for (bool injected : {false, true}) {
    SCOPED_TRACE(injected ? "injected" : "correct");
    System sys;
    if (injected) bugs::inject(sys, *bug);
    Process* p = sys.process(1);
    const uint64_t a = 0x200000000000;
    ASSERT_TRUE(sys.mmap(p, a, 4 * P, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok());
    ASSERT_TRUE(sys.access(p, 0, a, 4 * P, true, [](uint8_t* d, uint64_t, uint64_t n) {
                      for (uint64_t i = 0; i < n; i++) d[i] = 7;
                    }).ok());
    ASSERT_TRUE(sys.madvise(p, a, 4 * P, kMadvFree).ok());
    auto iotlb = attach_secondary_mmu("iotlb", p, a, 4 * P);
    ASSERT_TRUE(iotlb.ok());
    std::vector<uint8_t> buf;
    ASSERT_TRUE(iotlb.value()->read(a, 4 * P, &buf));
    ASSERT_TRUE(sys.madvise(p, a, 4 * P, kMadvPageout).ok());
    for (uint64_t off = 0; off < 4 * P; off += P) EXPECT_EQ(sys.pageinfo(p, a + off).value().entry, PageInfo::Entry::kNone);
    if (injected) {
      ASSERT_GT(sys.violations(), 0u);
      for (const auto& [k, n] : sys.violation_kinds()) EXPECT_TRUE(bugs::caught_as(*bug, k)) << k;
    } else {
      EXPECT_EQ(sys.violations(), 0u);
    }
    iotlb.value()->detach();
  }
}

TEST(BugScenario, KvmIgnoresInProgress) {
  const bugs::Bug* bug = bugs::find_bug("kvm-ignores-in-progress");
  ASSERT_NE(bug, nullptr);
  for (bool injected : {false, true}) {
    SCOPED_TRACE(injected ? "injected" : "correct");
    SystemConfig cfg;
    cfg.mmu_checker = true;
    System sys(cfg);
    Process* p = sys.process(1);
    const uint64_t a = 0x200000000000;
    ASSERT_TRUE(sys.mmap(p, a, P, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok());
    ASSERT_TRUE(sys.access(p, 0, a, 1, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] = 1; }).ok());
    MmuNotifierOps hold_ops;
    hold_ops.invalidate_range_start = &Holder::start;
    hold_ops.invalidate_range_end = &Holder::end;
    Holder holder;
    holder.ops = &hold_ops;
    ASSERT_EQ(mmu_notifier_register(&holder, p->mm()), Errno::kOk);
    auto shadow = attach_secondary_mmu(injected ? bugs::driver_kind(*bug, "shadow") : "shadow", p);
    ASSERT_TRUE(shadow.ok());
    std::thread zapper([&] { EXPECT_TRUE(sys.madvise(p, a, P, kMadvDontneed).ok()); });
    while (!holder.entered.load()) std::this_thread::sleep_for(std::chrono::microseconds(100));
    // The shadow MMU's start has run (it was called first): its SPTEs are gone, the count is up.
    Result<uint64_t> r = shadow.value()->fault(a, P, false);
    holder.go = true;
    zapper.join();
    if (injected) {
      EXPECT_TRUE(r.ok());
      ASSERT_GT(sys.violations(), 0u);
      bool named = false;
      for (const auto& [k, n] : sys.violation_kinds()) named |= bugs::caught_as(*bug, k);
      EXPECT_TRUE(named) << sys.violation_kinds()[0].first;
    } else {
      EXPECT_EQ(r.error(), Errno::kBusy);
      EXPECT_EQ(sys.violations(), 0u);
    }
    shadow.value()->detach();
    mmu_notifier_unregister(&holder, p->mm());
  }
}

// ---- --inject on run and replay ----

TEST(BugInject, RunAttachesTheDriversThatShowIt) {
  run::Options o;
  o.inject = "secondary-tlb-upgrade";
  const stress::Options s = run::stress_options(o);
  EXPECT_EQ(s.inject, "secondary-tlb-upgrade");
  EXPECT_EQ(s.drivers, bugs::find_bug("secondary-tlb-upgrade")->drivers);
  EXPECT_EQ(s.race_delay_us, bugs::kRaceDelayUs);
  EXPECT_NE(run::command_line(o).find("--inject secondary-tlb-upgrade"), std::string::npos);
}

TEST(BugInject, ReplaySwitchesTheKernelAndTheDriverKind) {
  std::string error;
  std::optional<script::Script> s =
      script::parse("mmap 0x200000000000 0x4000 rw- private+anon+fixed\ndev attach d shadow\ndev attach i iotlb\n",
                    "inject.mms", &error);
  ASSERT_TRUE(s.has_value()) << error;
  replay::Options o;
  o.inject = "kvm-ignores-in-progress";
  replay::Replayer r(o);
  for (const script::Command& c : s->commands) EXPECT_EQ(r.run(c), c.op == script::Op::kMmap ? "0x200000000000" : "0");
  EXPECT_EQ(r.device_kind("d"), "shadow:broken-inprogress");
  EXPECT_EQ(r.device_kind("i"), "iotlb");
  replay::Options k;
  k.inject = "release-twice";
  replay::Replayer rk(k);
  EXPECT_TRUE(rk.system().debug_broken(System::DebugBreak::kReleaseTwice));
  EXPECT_FALSE(rk.system().debug_broken(System::DebugBreak::kUnregisterSkipsRelease));
  replay::Replayer plain(replay::Options{});
  EXPECT_FALSE(plain.system().debug_broken(System::DebugBreak::kReleaseTwice));
}

}  // namespace
}  // namespace mirrormm
