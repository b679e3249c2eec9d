// The catalog of re-injectable bugs (mirrormm/bugs.h).
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>

#include "mirrormm/bugs.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm::bugs {

namespace {

using DB = System::DebugBreak;

Bug kernel_bug(std::string name, int year, std::string subsystem, std::string what, std::string fix,
               std::vector<std::string> caught, DB b, std::vector<std::string> drivers) {
  Bug bug;
  bug.name = std::move(name);
  bug.year = year;
  bug.subsystem = std::move(subsystem);
  bug.what = std::move(what);
  bug.fix = std::move(fix);
  bug.caught = std::move(caught);
  bug.has_kernel_break = true;
  bug.kernel_break = b;
  bug.drivers = std::move(drivers);
  return bug;
}

Bug driver_bug(std::string name, int year, std::string subsystem, std::string what, std::string fix,
               std::vector<std::string> caught, std::string variant) {
  Bug bug;
  bug.name = std::move(name);
  bug.year = year;
  bug.subsystem = std::move(subsystem);
  bug.what = std::move(what);
  bug.fix = std::move(fix);
  bug.caught = std::move(caught);
  bug.driver = variant;
  bug.drivers = {std::move(variant)};
  return bug;
}

std::vector<Bug> make_catalog() {
  std::vector<Bug> c;
  c.push_back(kernel_bug(
      "anon-vma-not-typesafe", 2004, "rmap",
      "anon_vmas freed to ordinary memory: an rmap walk that reached one through page->mapping, with "
      "no reference, took a lock in freed memory",
      "rmaplock 2/6 SLAB_DESTROY_BY_RCU", {"slab debug report: a freed anon_vma used"},
      DB::kAnonVmaNotTypesafe, {"interval", "classic"}));
  c.back().stress_finds = false;  // the window is a few instructions; debug slab checks see it
  c.back().scenario = "RmapTypesafeTest.AnonVmaWithoutTypesafeMemoryIsAUseAfterFree in tests/rmap_test.cc";
  c.back().needs_swap = true;
  c.push_back(kernel_bug(
      "mprotect-write-migration", 2006, "mprotect",
      "mprotect(PROT_READ) left a write migration entry as it was, so the page came back writable in a "
      "read-only VMA",
      "Swapless page migration: add R/W migration entries", {"consistency check"},
      DB::kMprotectKeepsWriteMigration, {"interval", "classic"}));
  c.back().stress_finds = false;  // needs an mprotect inside one page's migration
  c.back().scenario = "MigrateTest.BrokenMprotectKeepingWriteEntriesIsCaught in tests/migrate_test.cc";
  c.back().needs_migration = true;
  c.push_back(kernel_bug(
      "fork-write-migration", 2006, "fork",
      "fork copied a COW mapping's write migration entry unchanged, so parent and child both got the "
      "page writable",
      "Swapless page migration: add R/W migration entries", {"consistency check"},
      DB::kForkCopiesWriteMigration, {"interval", "classic"}));
  c.back().stress_finds = false;  // needs a fork inside one page's migration
  c.back().scenario = "MigrateTest.BrokenForkCopyingWriteEntriesIsCaught in tests/migrate_test.cc";
  c.back().needs_migration = true;
  c.push_back(kernel_bug(
      "unregister-skips-release", 2012, "mmu_notifier",
      "mmu_notifier_unregister unhashed the subscription without calling release(), so a secondary MMU "
      "that tears down in release() kept mapping pages that exit then freed",
      "mm: mmu_notifier: fix freed page still mapped in secondary MMU",
      {"mappings outlive their mm", "stale secondary mapping", "frame freed under a secondary mapping"},
      DB::kUnregisterSkipsRelease, {"shadow", "iotlb"}));
  c.push_back(kernel_bug(
      "release-twice", 2013, "mmu_notifier",
      "mmu_notifier_unregister racing exit: both found the subscription hashed and both called release()",
      "mmu_notifier_unregister NULL Pointer deref and multiple ->release() callouts", {"release called twice"},
      DB::kReleaseTwice, {"shadow", "iotlb"}));
  c.push_back(kernel_bug(
      "invalidate-after-free", 2017, "rmap",
      "the secondary-TLB invalidation ran after the pages were freed (the invalidate_page era): an IOTLB "
      "that shares the CPU page tables kept translating to freed frames",
      "mm/rmap: update to new mmu_notifier semantic v2",
      {"frame freed under a secondary mapping", "frame freed under a TLB entry", "stale secondary mapping"},
      DB::kPutBeforeFlush, {"iotlb"}));
  c.push_back(kernel_bug(
      "unmap-put-before-end", 2017, "rmap",
      "try_to_unmap_one dropped the PTE's page reference before invalidate_range_end and left the "
      "secondary-TLB invalidation to the end; with a caller that held no reference of its own (here: "
      "reclaim discarding a lazily freed page) that put was the last, and the frame was freed while an "
      "IOTLB sharing the page tables still translated to it",
      "mm/rmap: update to new mmu_notifier semantic v2 (the rule: a try_to_unmap caller holds a "
      "reference on the page)",
      {"frame freed under a secondary mapping", "frame freed under a TLB entry", "stale secondary mapping"},
      DB::kUnmapPutBeforeEnd, {"iotlb"}));
  c.back().stress_finds = false;  // needs reclaim of a lazily freed page while an IOTLB caches it
  c.back().scenario = "BugScenario.UnmapPutBeforeEnd in tests/bugs_test.cc";
  c.push_back(kernel_bug(
      "nonblock-start-no-end", 2018, "mmu_notifier",
      "a non-blocking invalidate_range_start (the OOM reaper's) that failed with -EAGAIN on one subscriber "
      "called no end on the others, leaving them \"in progress\" for good",
      "mm/mmu_notifiers: ensure range_end() is paired with range_start()", {"invalidate_range_start without its end"},
      DB::kNonblockStartSkipsEnds, {"xpmem", "shadow"}));
  c.back().stress_finds = false;  // needs two subscribers on one mm and an OOM reap
  c.back().scenario = "BugScenario.NonblockStartNoEnd in tests/bugs_test.cc";
  c.push_back(kernel_bug(
      "interval-remove-race", 2022, "mmu_notifier",
      "mmu_interval_notifier_remove read invalidate_seq without the lock and returned while the interval "
      "was still on the deferred list: the last invalidate_range_end then erased freed memory",
      "mm/mmu_notifier.c: fix race in mmu_interval_notifier_remove()", {"interval notifier freed while queued"},
      DB::kIntervalRemoveNoWait, {"interval"}));
  c.push_back(kernel_bug(
      "secondary-tlb-upgrade", 2023, "iommu",
      "a PTE that gained write access did not invalidate the SMMU's TLB, whose read-only entry made the "
      "device fault forever (arm64 SVA)",
      "mmu_notifiers: call invalidate_range() when invalidating TLBs", {"iotlb fault loop"},
      DB::kNoSecondaryTlbUpgrade, {"iotlb"}));
  c.push_back(driver_bug(
      "kvm-ignores-in-progress", 2008, "kvm",
      "a shadow-MMU fault checked mmu_invalidate_seq but not the in-progress count, so it mapped a page "
      "an invalidation had started taking away",
      "KVM: Synchronize guest physical memory map to host virtual memory map (the rule: "
      "mmu_notifier_count and mmu_notifier_seq)",
      {"stale secondary mapping", "mapping over a different PTE", "frame freed under a secondary mapping"},
      "shadow:broken-inprogress"));
  c.back().stress_finds = false;  // usually within seconds, not reliably within a minute
  c.back().scenario = "BugScenario.KvmIgnoresInProgress in tests/bugs_test.cc";
  c.push_back(driver_bug(
      "release-frees-notifier", 2014, "driver",
      "a driver freed its subscription inside its release() callback, while the notifier core (an SRCU "
      "reader walking the list, unregister's unhash) could still reach it: a use after free",
      "mmu_notifier: add call_srcu and sync function for listener to delay call and sync (later "
      "mmu_notifier_put with free_notifier)",
      {"notifier used after free"}, "shadow:broken-release-free"));
  // Its stress setup attaches plain shadow MMUs, which the injection turns into the broken
  // variant, so that the same setup without the bug runs the correct driver.
  c.back().drivers = {"shadow"};
  c.push_back(driver_bug(
      "skip-read-retry", 2019, "driver",
      "a mirroring driver installed what it looked up without mmu_interval_read_retry, after an "
      "invalidation it raced had already passed",
      "mm/mmu_notifier: add an interval tree notifier (the rule: mmu_interval_read_retry)",
      {"mapping over a different PTE", "stale secondary mapping", "frame freed under a secondary mapping"},
      "xpmem:broken-retry"));
  c.back().stress_finds = false;  // usually within seconds, not reliably within a minute
  c.back().scenario = "SecondaryMmuBroken.SkippedReadRetryIsCaught in tests/secondary_mmu_test.cc";
  std::stable_sort(c.begin(), c.end(), [](const Bug& a, const Bug& b) { return a.year < b.year; });
  return c;
}

}  // namespace

const std::vector<Bug>& catalog() {
  static const std::vector<Bug> c = make_catalog();
  return c;
}

const Bug* find_bug(std::string_view name) {
  for (const Bug& b : catalog())
    if (b.name == name) return &b;
  return nullptr;
}

void inject(System& sys, const Bug& bug) {
  if (!bug.has_kernel_break) return;
  sys.debug_break(bug.kernel_break, true);
  mmu_debug_broken_driver();  // a breakage asked for: the checker's reports are expected
}

std::string driver_kind(const Bug& bug, const std::string& kind) {
  if (bug.driver.empty()) return kind;
  const std::string base = bug.driver.substr(0, bug.driver.find(':'));
  return kind.substr(0, kind.find(':')) == base ? bug.driver : kind;
}

bool caught_as(const Bug& bug, std::string_view kind) {
  return std::find(bug.caught.begin(), bug.caught.end(), kind) != bug.caught.end();
}

std::string catalog_listing() {
  std::string out;
  size_t width = 0;
  for (const Bug& b : catalog()) width = std::max(width, b.name.size());
  for (const Bug& b : catalog())
    out += fmt::format("{:<{}}  {}  {:<12}  {}; fixed by \"{}\"; caught as: {}{}\n", b.name, width, b.year,
                       b.subsystem, b.what, b.fix, fmt::join(b.caught, " or "),
                       b.stress_finds ? "" : " (shown by " + b.scenario + ")");
  return out;
}

}  // namespace mirrormm::bugs
