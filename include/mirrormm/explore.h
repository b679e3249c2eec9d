// Systematic interleaving exploration of small races (CHESS's preemption-bounded search).
//
// A scenario is a setup on a fresh System, two or three threads and a check. The explorer runs
// the threads as real OS threads of which exactly one runs at a time; at every synchronization
// point of the model (base/explore_hook.h: lock acquires, trylocks and releases, notifier
// callbacks and protocol steps, the race windows of System::debug_race_pause, wait loops, RCU)
// the schedule decides which thread continues. explore() enumerates, depth first, every
// schedule with at most `preemption_bound` preemptions: a switch away from a thread that could
// have continued is a preemption, a switch because the running thread blocked or finished is
// not. Each schedule runs from a fresh System; after it the model's own checkers (the
// coherence checker's violations, System::debug_check_consistency) and the scenario's check
// judge it, and a deadlock (every unfinished thread blocked) or a livelock (a run longer than
// `max_steps` points) is a failure too.
//
// A schedule is written as the thread chosen at each successive scheduling point, run-length
// encoded: "0*5,1*3,0*2" runs thread 0 for five points, thread 1 for three, then thread 0.
// Past the end of a schedule the running thread continues while it can (then the lowest
// runnable thread), so a failing schedule replays exactly with replay().
//
// Scheduling is deterministic as long as the scenario is: the model itself, run one thread at
// a time, takes the same path for the same choices. A replay whose choices stop matching the
// runnable threads reports the divergence instead of running on.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/errno.h"

namespace mirrormm {
class System;
}

namespace mirrormm::explore {

// One run's threads and check, built by a scenario's setup on that run's fresh System.
struct Instance {
  // The scenario threads (two or three; one is allowed), run under the scheduler.
  std::vector<std::function<void()>> threads;
  // After the threads finished: the empty string when the outcome is right, else what is
  // wrong. Optional.
  std::function<std::string()> check;
  // Runs after the check, before the System goes (detaching drivers, unregistering
  // notifiers). Optional.
  std::function<void()> teardown;
  // The run's System when the scenario made its own (Scenario::setup_own_system): owned by
  // what the threads and the check capture, so it lives as long as the instance.
  System* system = nullptr;
};

struct Scenario {
  std::string name;
  SystemConfig config;  // the System every run starts from (mmu_checker is forced on)
  // A bug of the catalog (mirrormm/bugs.h) injected into every run's System; empty for none.
  std::string inject;
  // Single-threaded setup on the run's fresh System; returns the run's threads and check.
  std::function<Instance(System&)> setup;
  // Instead of setup: a setup that makes the run's System itself (a script's replayer owns
  // its System) and returns it in Instance::system. `config` and `inject` are then the
  // scenario's business.
  std::function<Instance()> setup_own_system;
  // The preemption bound the scenario is meant to be explored with (Options::preemption_bound
  // when the caller has no other).
  int preemption_bound = 2;
  // Whether the model's consistency check (System::debug_check_consistency) runs after the
  // threads, as well as the coherence checker.
  bool check_consistency = true;
};

struct Options {
  int preemption_bound = 2;
  uint64_t max_schedules = 0;  // 0: every schedule within the bound
  uint64_t max_steps = 200000; // scheduling points in one run before it counts as a livelock
  bool stop_on_failure = true;
};

// One scheduling point of a run: the thread that ran to it, its kind and the thread chosen.
struct Step {
  int thread = -1;  // -1: the start of the run
  const char* kind = "start";
  int chosen = 0;
};

// One run of one schedule.
struct RunResult {
  std::string schedule;   // the choices made, in the compact form
  std::string failure;    // empty when the run was clean
  int preemptions = 0;
  std::vector<Step> trace;  // filled when asked for (replay's `trace`)
  bool diverged = false;    // a replayed schedule's choice was not runnable
};

struct Result {
  uint64_t schedules = 0;  // interleavings run
  double seconds = 0;
  bool complete = false;   // every schedule within the bound was run (no cap hit, no stop)
  uint64_t failures = 0;
  RunResult first_failure;  // the first failing run (failure empty when none)
  uint64_t max_points = 0;  // the longest run's scheduling points
  double per_second() const { return seconds > 0 ? schedules / seconds : 0; }
};

// The report of an exploration, as `mirrormm explore` prints it: the count of interleavings,
// the time and the rate, then the failure and its schedule when there is one.
std::string summary(const std::string& name, const Result& r, const Options& o);

// Every schedule within the bound (or up to the cap), depth first.
Result explore(const Scenario& s, const Options& o);
// One run of `schedule` (the compact form; "" is the default schedule); with `trace` the
// scheduling points are recorded.
RunResult replay(const Scenario& s, const std::string& schedule, bool trace = false, const Options& o = Options{});

// A run's trace, one line per scheduling point: "STEP THREAD KIND -> CHOSEN" (a switch to
// another thread marked with '*').
std::string format_trace(const std::vector<Step>& trace);

// The compact form and back: "0*5,1*3" <-> {0,0,0,0,0,1,1,1}. parse_schedule returns false
// (and sets *error) on a malformed string.
std::string format_schedule(const std::vector<int>& choices);
bool parse_schedule(const std::string& text, std::vector<int>* choices, std::string* error);

// A scheduling point of the scenario's own (for C++ scenarios that race plain code with the
// model): the schedule may switch threads here. Nothing outside an exploration.
void point();

// A scenario script (docs/mms-v2.md, "Thread blocks"): setup commands, `thread` … `end`
// blocks run by the explorer, then `expect COMMAND == RESULT` lines checked after the threads.
// Returns nullopt and sets *error ("FILE:LINE: message") when the text does not parse.
// `inject` names a catalog bug re-injected in every run (replay::Options::inject).
std::optional<Scenario> parse_scenario(std::string_view text, std::string_view file, const std::string& inject,
                                       std::string* error);
std::optional<Scenario> parse_scenario_file(const std::string& path, const std::string& inject, std::string* error);
// The catalog scenarios: the small race of a bug of mirrormm/bugs.h, with that bug injected
// when `injected`. Null when the entry has no explore scenario.
std::unique_ptr<Scenario> bug_scenario(const std::string& bug, bool injected);
// The names of the catalog entries that have one.
std::vector<std::string> bug_scenarios();

}  // namespace mirrormm::explore
