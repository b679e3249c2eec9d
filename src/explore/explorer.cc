// The depth-first, preemption-bounded search over schedules (mirrormm/explore.h).
#include <fmt/format.h>

#include <chrono>
#include <charconv>

#include "explore/scheduler.h"
#include "mirrormm/bugs.h"
#include "mirrormm/explore.h"
#include "mirrormm/system.h"

namespace mirrormm::explore {

namespace {

// One run of one schedule prefix. A run that could not finish leaves its threads parked in
// the model for good, so everything they may touch (the System, the instance, the
// scheduler) is kept for the life of the process (park()).
struct Run {
  RunResult result;
  std::vector<Scheduler::Decision> decisions;
};

// What the parked threads of the runs that could not finish may still reference: kept for the
// life of the process (and reachable, so that leak checkers do not report it). Never
// destroyed: a parked thread must not outlive what it points into.
template <class T>
[[maybe_unused]] void park(std::unique_ptr<T> p) {
  static auto* graveyard = new std::vector<std::shared_ptr<void>>;
  if (p) graveyard->push_back(std::shared_ptr<T>(p.release(), [](T*) {}));
}

[[maybe_unused]] std::string first_violation(System& sys) {
  const auto kinds = sys.violation_kinds();
  const auto messages = sys.violation_messages();
  return fmt::format("{} violation(s); first kind \"{}\": {}", sys.violations(),
                     kinds.empty() ? "other" : kinds[0].first, messages.empty() ? "" : messages[0]);
}

#if defined(MIRRORMM_NO_EXPLORE_HOOKS)
Run run_one(const Scenario&, std::vector<int>, const Options&, bool) {
  Run r;
  r.result.failure = "this build has no scheduling hooks (MIRRORMM_EXPLORE_HOOKS=OFF)";
  return r;
}
#else
// Runs fn as the only scenario thread of a scheduler of its own: the setup, check and
// teardown of a run, so that their grace periods and deferred frees are the explorer's
// (immediate, deterministic) rather than liburcu's (milliseconds each). Returns false if fn
// could not finish (it blocked for good).
bool solo(const Options& o, const std::function<void()>& fn) {
  auto sched = std::make_unique<Scheduler>(std::vector<int>{}, o.max_steps, false);
  auto fns = std::make_unique<std::vector<std::function<void()>>>(1, fn);
  explore_hook::active.store(true, std::memory_order_relaxed);
  const bool ok = sched->run(*fns);
  explore_hook::active.store(false, std::memory_order_relaxed);
  if (!ok) {
    park(std::move(sched));
    park(std::move(fns));
    return false;
  }
  sched->run_deferred();
  return true;
}

Run run_one(const Scenario& s, std::vector<int> prefix, const Options& o, bool trace) {
  Run r;
  SystemConfig cfg = s.config;
  cfg.mmu_checker = true;
  std::unique_ptr<System> own;
  std::unique_ptr<Instance> inst;
  const bugs::Bug* bug = s.inject.empty() ? nullptr : bugs::find_bug(s.inject);
  if (!s.inject.empty() && !bug && !s.setup_own_system) {
    r.result.failure = fmt::format("no bug named {} in the catalog", s.inject);
    return r;
  }
  const bool set_up = solo(o, [&] {
    if (s.setup_own_system) {
      inst = std::make_unique<Instance>(s.setup_own_system());
      return;
    }
    own = std::make_unique<System>(cfg);
    if (bug) bugs::inject(*own, *bug);
    inst = std::make_unique<Instance>(s.setup(*own));
    inst->system = own.get();
  });
  if (!set_up) {
    r.result.failure = "setup: it blocked for good";
    park(std::move(own));
    park(std::move(inst));
    return r;
  }
  System* sys = inst->system;
  auto finish = [&] {
    (void)solo(o, [&] {
      if (inst->teardown) inst->teardown();
      inst.reset();
      own.reset();
    });
  };
  if (sys->violations()) {
    r.result.failure = "setup: " + first_violation(*sys);
    finish();
    return r;
  }
  sys->debug_pause_reclaim();
  auto sched = std::make_unique<Scheduler>(std::move(prefix), o.max_steps, trace);
  explore_hook::active.store(true, std::memory_order_relaxed);
  const bool finished = sched->run(inst->threads);
  explore_hook::active.store(false, std::memory_order_relaxed);
  r.decisions = sched->decisions();
  r.result.schedule = format_schedule(sched->choices());
  r.result.preemptions = sched->preemptions();
  r.result.trace = sched->trace();
  r.result.diverged = sched->diverged();
  if (!finished) {
    r.result.failure = sched->failure();
    park(std::move(own));
    park(std::move(inst));
    park(std::move(sched));
    return r;
  }
  sched->run_deferred();
  (void)solo(o, [&] {
    if (s.check_consistency) (void)sys->debug_check_consistency();
    if (sys->violations()) r.result.failure = first_violation(*sys);
    if (r.result.failure.empty() && inst->check) r.result.failure = inst->check();
    sys->debug_resume_reclaim();
  });
  finish();
  return r;
}
#endif

}  // namespace

std::string format_schedule(const std::vector<int>& choices) {
  std::string out;
  for (size_t i = 0; i < choices.size();) {
    size_t j = i;
    while (j < choices.size() && choices[j] == choices[i]) j++;
    out += fmt::format("{}{}*{}", out.empty() ? "" : ",", choices[i], j - i);
    i = j;
  }
  return out;
}

bool parse_schedule(const std::string& text, std::vector<int>* choices, std::string* error) {
  choices->clear();
  size_t at = 0;
  while (at < text.size()) {
    size_t end = text.find(',', at);
    if (end == std::string::npos) end = text.size();
    const std::string item = text.substr(at, end - at);
    const size_t star = item.find('*');
    int thread = -1;
    uint64_t n = 1;
    const std::string t = item.substr(0, star);
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), thread);
    bool ok = ec == std::errc() && p == t.data() + t.size() && thread >= 0 && !t.empty();
    if (ok && star != std::string::npos) {
      const std::string c = item.substr(star + 1);
      auto [q, ec2] = std::from_chars(c.data(), c.data() + c.size(), n);
      ok = ec2 == std::errc() && q == c.data() + c.size() && n > 0 && n <= 100000000 && !c.empty();
    }
    if (!ok) {
      *error = fmt::format("bad schedule item \"{}\" (expected THREAD or THREAD*COUNT)", item);
      return false;
    }
    choices->insert(choices->end(), n, thread);
    at = end + 1;
    if (end == text.size() - 1) {
      *error = "a schedule must not end with a comma";
      return false;
    }
  }
  return true;
}

RunResult replay(const Scenario& s, const std::string& schedule, bool trace, const Options& o) {
  std::vector<int> choices;
  std::string error;
  if (!parse_schedule(schedule, &choices, &error)) {
    RunResult r;
    r.failure = error;
    r.diverged = true;
    return r;
  }
  return run_one(s, std::move(choices), o, trace).result;
}

Result explore(const Scenario& s, const Options& o) {
  Result res;
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<int> prefix;
  for (;;) {
    Run r = run_one(s, prefix, o, false);
    res.schedules++;
    res.max_points = std::max<uint64_t>(res.max_points, r.decisions.size());
    if (!r.result.failure.empty()) {
      if (res.failures++ == 0) res.first_failure = r.result;
      if (o.stop_on_failure || r.decisions.empty()) break;
    }
    if (o.max_schedules && res.schedules >= o.max_schedules) break;
    // Backtrack: the deepest decision with an untried runnable thread within the bound.
    bool found = false;
    for (size_t i = r.decisions.size(); i-- > 0 && !found;) {
      const Scheduler::Decision& d = r.decisions[i];
      for (size_t k = d.chosen_index + 1; k < d.order.size(); k++) {
        const int alt = d.order[k];
        const int cost = d.preemptions_before + (d.prev_runnable && alt != d.prev ? 1 : 0);
        if (cost > o.preemption_bound) continue;
        prefix.resize(i);
        for (size_t j = 0; j < i; j++) prefix[j] = r.decisions[j].order[r.decisions[j].chosen_index];
        prefix.push_back(alt);
        found = true;
        break;
      }
    }
    if (!found) {
      res.complete = true;
      break;
    }
  }
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

std::string summary(const std::string& name, const Result& r, const Options& o) {
  std::string out = fmt::format(
      "explore {}: {} interleavings in {:.2f} s ({:.0f}/s), preemption bound {}, {}, longest run {} points\n", name,
      r.schedules, r.seconds, r.per_second(), o.preemption_bound,
      r.complete ? "all explored" : r.failures ? "stopped at a failure" : "capped", r.max_points);
  if (r.failures) {
    out += fmt::format("FAIL: {}\n", r.first_failure.failure);
    out += fmt::format("schedule: {} ({} preemptions)\n", r.first_failure.schedule, r.first_failure.preemptions);
  } else {
    out += "clean\n";
  }
  return out;
}

std::string format_trace(const std::vector<Step>& trace) {
  std::string out;
  for (size_t i = 0; i < trace.size(); i++) {
    const Step& s = trace[i];
    out += fmt::format("{:6} {:>2} {:<12} -> {}{}\n", i, s.thread, s.kind, s.chosen, s.chosen != s.thread ? " *" : "");
  }
  return out;
}

void point() { MM_EXPLORE_POINT(kUser, nullptr); }

}  // namespace mirrormm::explore
