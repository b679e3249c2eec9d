// `mirrormm run` (see mirrormm/run.h): the stress workload with everything on, presented.
#include "mirrormm/run.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "mirrormm/bugs.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm::run {

namespace {

// The debug_break values, with the MmuNotifyEvent whose brackets they drop (-1: the TLB
// shootdown instead).
struct Break {
  DebugBreakInfo info;
  int drop_bracket;
};
const std::vector<Break>& breaks() {
  static const std::vector<Break> b = {
      {{"shootdown", "TLB shootdowns do nothing: CPUs keep stale TLB entries"}, -1},
      {{"unmap-bracket", "unmap paths skip invalidate_range_start/end"}, static_cast<int>(MmuNotifyEvent::kUnmap)},
      {{"clear-bracket", "zap paths of madvise, COW and truncate skip invalidate_range_start/end"},
       static_cast<int>(MmuNotifyEvent::kClear)},
      {{"protection-vma-bracket", "mprotect skips invalidate_range_start/end"},
       static_cast<int>(MmuNotifyEvent::kProtectionVma)},
      {{"protection-page-bracket", "per-page protection changes skip invalidate_range_start/end"},
       static_cast<int>(MmuNotifyEvent::kProtectionPage)},
  };
  return b;
}

// A table of right-aligned figures under column headings, with indented row labels:
//   section               interval   classic
//     row                      123        45
class Table {
 public:
  // A heading row: its label and, optionally, the column headings.
  void section(const std::string& label, std::vector<std::string> headings = {}) {
    rows_.push_back({label, std::move(headings)});
  }
  void row(const std::string& label, std::vector<std::string> values) {
    rows_.push_back({fmt::format("  {}", label), std::move(values)});
  }
  std::string render() const {
    size_t label_w = 0;
    std::vector<size_t> col_w;
    for (const Row& r : rows_) {
      label_w = std::max(label_w, r.label.size());
      if (col_w.size() < r.values.size()) col_w.resize(r.values.size(), 0);
      for (size_t i = 0; i < r.values.size(); i++) col_w[i] = std::max(col_w[i], r.values[i].size());
    }
    std::string out;
    for (const Row& r : rows_) {
      std::string line = fmt::format("{:<{}}", r.label, label_w);
      for (size_t i = 0; i < r.values.size(); i++) line += fmt::format("  {:>{}}", r.values[i], col_w[i]);
      while (!line.empty() && line.back() == ' ') line.pop_back();
      out += line + "\n";
    }
    return out;
  }

 private:
  struct Row {
    std::string label;
    std::vector<std::string> values;
  };
  std::vector<Row> rows_;
};

std::string num(uint64_t v) { return std::to_string(v); }

// Events per second, without decimals from 100 on.
std::string rate(uint64_t n, double seconds) {
  if (seconds <= 0) return "-";
  const double r = static_cast<double>(n) / seconds;
  return r >= 100 ? fmt::format("{:.0f}", r) : fmt::format("{:.1f}", r);
}

std::string percent(uint64_t part, uint64_t whole) {
  return whole ? fmt::format("{:.1f}%", 100.0 * static_cast<double>(part) / static_cast<double>(whole)) : "-";
}

}  // namespace

const std::vector<DebugBreakInfo>& debug_break_names() {
  static const std::vector<DebugBreakInfo> names = [] {
    std::vector<DebugBreakInfo> v;
    for (const Break& b : breaks()) v.push_back(b.info);
    return v;
  }();
  return names;
}

stress::Options stress_options(const Options& o) {
  stress::Options s;
  s.threads = o.threads;
  s.seconds = o.seconds;
  s.seed = o.seed;
  s.memory_mib = o.memory_mib;
  s.swap_mib = o.swap_mib;
  s.nodes = o.nodes;
  s.writeback = true;
  s.devices = true;
  for (const Break& b : breaks()) {
    if (o.debug_break != b.info.name) continue;
    if (b.drop_bracket < 0) s.break_shootdown = true;
    else s.drop_bracket = b.drop_bracket;
  }
  if (const bugs::Bug* bug = bugs::find_bug(o.inject)) {
    s.inject = o.inject;
    s.drivers = bug->drivers;
    s.race_delay_us = bugs::kRaceDelayUs;
    if (bug->needs_migration) s.nodes = std::max(s.nodes, 2);
  }
  return s;
}

std::string command_line(const Options& o) {
  std::string s = fmt::format("mirrormm run --seed {} --seconds {} --threads {} --memory {} --swap {} --nodes {}",
                              o.seed, o.seconds, o.threads, o.memory_mib, o.swap_mib, o.nodes);
  if (!o.debug_break.empty()) s += " --debug-break " + o.debug_break;
  if (!o.inject.empty()) s += " --inject " + o.inject;
  return s;
}

std::string describe(const Options& o) {
  std::string s = fmt::format(
      "mirrormm run: {} CPUs for {} s, seed {}; {} MiB of memory, {}, {}\n"
      "processes forking and exiting, a secondary MMU on each (interval and classic mirrors), "
      "regular files written back, coherence checker and consistency checks on",
      o.threads, o.seconds, o.seed, o.memory_mib,
      o.swap_mib ? fmt::format("{} MiB of swap", o.swap_mib) : std::string("no swap"),
      o.nodes > 1 ? fmt::format("{} NUMA nodes with page migration", o.nodes) : std::string("one NUMA node"));
  if (!o.debug_break.empty()) s += fmt::format("\nkernel deliberately broken: {}", o.debug_break);
  if (const bugs::Bug* bug = bugs::find_bug(o.inject))
    s += fmt::format("\nbug re-injected: {} ({}, {})", bug->name, bug->year, bug->what);
  return s;
}

std::string progress_bar(const stress::Progress& p, double seconds, int width) {
  const std::string figures = fmt::format(" {:5.1f}/{} s  ops {}  swap out {} in {}  violations {}", p.seconds, seconds,
                                          p.ops, p.pswpout, p.pswpin, p.violations);
  // A bar of fixed size (the figures after it grow; they are cut at the width).
  const int bar = width >= 60 ? 20 : 10;
  const double share = seconds > 0 ? std::clamp(p.seconds / seconds, 0.0, 1.0) : 1.0;
  const int filled = static_cast<int>(std::lround(share * bar));
  std::string s = fmt::format("[{:#<{}}{:.<{}}]{}", "", filled, "", bar - filled, figures);
  if (width > 0 && s.size() > static_cast<size_t>(width)) s.resize(width);
  return s;
}

std::string progress_line(const stress::Progress& p, double seconds) {
  return fmt::format("[run] {:.0f}/{} s  ops {}  accesses {}  system calls {}  forks {}  device ops {}  checks {}  "
                     "swap out {} in {}  violations {}",
                     p.seconds, seconds, p.ops, p.accesses, p.syscalls, p.forks, p.device_ops, p.checks, p.pswpout,
                     p.pswpin, p.violations);
}

std::string summary(const Options& o, const stress::Report& r) {
  const double t = r.seconds;
  std::string out = fmt::format("ran {:.1f} s\n\n", t);

  Table work;
  work.section("workload", {"total", "per second"});
  work.row("operations", {num(r.ops), rate(r.ops, t)});
  work.row("accesses (written or verified)", {num(r.accesses), rate(r.accesses, t)});
  work.row("system calls", {num(r.syscalls), rate(r.syscalls, t)});
  work.row("forks", {num(r.forks), rate(r.forks, t)});
  work.row("device operations", {num(r.device_ops), rate(r.device_ops, t)});
  work.row("CPU page faults", {num(r.pgfault), rate(r.pgfault, t)});
  work.row("  major (swap-in)", {num(r.pgmajfault), rate(r.pgmajfault, t)});
  work.row("consistency checks", {num(r.checks), rate(r.checks, t)});
  out += work.render() + "\n";

  const stress::MirrorTotals &iv = r.interval_mirrors, &cl = r.classic_mirrors;
  auto both = [](uint64_t a, uint64_t b) { return std::vector<std::string>{num(a), num(b), num(a + b)}; };
  Table mirrors;
  mirrors.section("secondary MMUs (by subscriber)", {"interval", "classic", "total"});
  mirrors.row("mirrors attached", both(iv.attached, cl.attached));
  mirrors.row("device faults", both(iv.faults, cl.faults));
  mirrors.row("read_retry collisions", both(iv.retries, cl.retries));
  mirrors.row("pages dropped", both(iv.pages_dropped, cl.pages_dropped));
  mirrors.row("invalidations", both(iv.invalidations, cl.invalidations));
  for (int e = 0; e < stress::MirrorTotals::kEvents; e++) {
    if (iv.by_event[e] == 0 && cl.by_event[e] == 0) continue;
    mirrors.row(fmt::format("  {}", mmu_notify_event_name(static_cast<MmuNotifyEvent>(e))),
                both(iv.by_event[e], cl.by_event[e]));
  }
  out += mirrors.render() + "\n";

  const uint64_t scanned = r.pgscan_kswapd + r.pgscan_direct, stolen = r.pgsteal_kswapd + r.pgsteal_direct;
  Table reclaim;
  reclaim.section("reclaim and swap");
  reclaim.row("pages swapped out (pswpout)", {num(r.pswpout)});
  reclaim.row("pages swapped in (pswpin)", {num(r.pswpin)});
  reclaim.row("swap slots in use at the end", {fmt::format("{} of {}", r.swap_slots_used, r.swap_slots_total)});
  reclaim.row("pages scanned", {num(scanned)});
  reclaim.row("pages reclaimed", {num(stolen)});
  reclaim.row("  by kswapd", {percent(r.pgsteal_kswapd, stolen)});
  reclaim.row("kswapd runs", {num(r.kswapd_runs)});
  reclaim.row("direct reclaim stalls", {num(r.allocstall)});
  reclaim.row("workingset refaults", {num(r.workingset_refault)});
  reclaim.row("OOM kills", {num(r.oom_kill)});
  reclaim.row("OOM reaper retries", {num(r.oom_reap_retries)});
  out += reclaim.render() + "\n";

  if (r.migrate_calls) {
    Table migration;
    migration.section("page migration");
    migration.row("migrate_pages calls", {num(r.migrate_calls)});
    migration.row("pages migrated (pgmigrate_success)", {num(r.pgmigrate_success)});
    migration.row("failed attempts (pgmigrate_fail)", {num(r.pgmigrate_fail)});
    out += migration.render() + "\n";
  }
  if (r.pages_written_back) {
    Table writeback;
    writeback.section("regular files");
    writeback.row("page writes to the disk (writeback)", {num(r.pages_written_back)});
    out += writeback.render() + "\n";
  }

  if (r.violations == 0) {
    out += fmt::format(
        "checkers: no violation (coherence checker, stale TLB entries, freed frames, data and dirty bits verified, "
        "{} consistency checks)\n",
        r.checks);
  } else {
    out += "checkers: VIOLATIONS, by kind:\n";
    for (const auto& [kind, n] : r.kinds) out += fmt::format("  {:>8}  {}\n", n, kind);
    constexpr size_t kShown = 10;
    const size_t shown = std::min(kShown, r.messages.size());
    out += "first violations:\n";
    for (size_t i = 0; i < shown; i++) out += fmt::format("  {}\n", r.messages[i]);
    if (r.violations > shown) out += fmt::format("  ({} more not shown)\n", r.violations - shown);
    out += "reproduce: " + command_line(o) + "\n";
  }
  if (r.workload_oom_killed) out += "process 1 died of OOM: the run ended there\n";
  out += fmt::format("violations: {}\n", r.violations);
  return out;
}

}  // namespace mirrormm::run
