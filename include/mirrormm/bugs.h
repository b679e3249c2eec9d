// The catalog of real MMU-notifier and memory-management bugs, each re-injectable.
//
// Every entry is a bug that Linux once had, written from its history: what went wrong, the
// commit that fixed it, and how mirrormm catches it. Injecting one turns the model back into
// the broken kernel (a System::DebugBreak switch) or replaces a built-in driver with its
// broken variant (a SecondaryMmu kind's "KIND:VARIANT"), so that a driver developer can see
// the checkers find the bug in seconds, and a checker developer can prove a checker still
// does. `mirrormm bugs` lists the catalog; `--inject NAME` on stress, run, replay and explore
// turns an entry on.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "mirrormm/system.h"

namespace mirrormm::bugs {

struct Bug {
  std::string name;       // the --inject name
  int year = 0;           // when Linux had it (or fixed it)
  std::string subsystem;  // mmu_notifier, rmap, mprotect, fork, kvm, iommu, driver
  std::string what;       // what went wrong
  std::string fix;        // the Linux change that fixed it (commit subject)
  // How mirrormm catches it: the violation kinds (System::violation_kinds) that show it, the
  // usual first. Which one a run reports first depends on the interleaving.
  std::vector<std::string> caught;
  // The injection: a kernel switch (kernel_break) or a driver variant (driver, "KIND:VARIANT",
  // which replaces the drivers of kind KIND), or both.
  bool has_kernel_break = false;
  System::DebugBreak kernel_break = System::DebugBreak::kCount;
  std::string driver;
  // The stress setup that shows it: the drivers to attach when a run names none, and whether
  // it needs NUMA migration (two nodes) or swap.
  std::vector<std::string> drivers;
  bool needs_migration = false;
  bool needs_swap = false;
  // Whether `stress --inject NAME` with that setup finds it (within a minute, with the race
  // widening of kRaceDelayUs). The others need a scenario of their own (tests/bugs_test.cc).
  bool stress_finds = true;
  // Where stress does not: the test that shows it ("Suite.Name in tests/FILE").
  std::string scenario;
};

// The race widening a re-injected bug runs with by default (System::debug_set_race_delay_us).
inline constexpr unsigned kRaceDelayUs = 20;

// Every entry, in the order `mirrormm bugs` prints them (by year).
const std::vector<Bug>& catalog();
// The entry named name, or nullptr.
const Bug* find_bug(std::string_view name);

// Turns the bug's kernel switch on in sys (nothing for a driver-only bug).
void inject(System& sys, const Bug& bug);
// The kind to attach instead of kind under this bug: the bug's driver variant when kind is
// the variant's base kind (or that kind with any variant), else kind unchanged.
std::string driver_kind(const Bug& bug, const std::string& kind);

// Whether a violation of this kind shows the bug (one of Bug::caught).
bool caught_as(const Bug& bug, std::string_view kind);

// One line per entry: NAME, year, subsystem, what went wrong, how mirrormm catches it.
std::string catalog_listing();

}  // namespace mirrormm::bugs
