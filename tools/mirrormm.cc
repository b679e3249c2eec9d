// mirrormm: the command-line front end. A thin layer over the library: every subcommand
// parses its arguments, calls one library entry point and prints what it returns.
#include <CLI/CLI.hpp>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>

#include "mirrormm/bugs.h"
#include "mirrormm/campaign.h"
#include "mirrormm/config.h"
#include "mirrormm/explore.h"
#include "mirrormm/host.h"
#include "mirrormm/oracle.h"
#include "mirrormm/replay.h"
#include "mirrormm/run.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/stress.h"
#include "mirrormm/version.h"

namespace {

using namespace mirrormm;

// The exit statuses of every command; main() maps CLI11's own error codes onto them.
constexpr int kExitFinding = 1;
constexpr int kExitUsage = 2;
constexpr const char* kExitStatusHelp =
    "Exit status: 0 success; 1 a finding (oracle: a divergence, stress and run: a violation, merge:\n"
    "records that hold one) or a host run that failed; 2 a usage error (a bad option or argument, a\n"
    "script or record that cannot be read or does not parse: FILE:LINE: message; merge: a campaign\n"
    "with seeds missing). No other value.";

// The terminal's width in columns (stdout's, else $COLUMNS, else 100).
int terminal_width() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  if (const char* c = std::getenv("COLUMNS")) {
    const int n = std::atoi(c);
    if (n > 0) return n;
  }
  return 100;
}

// Colour on stdout: a terminal that is not "dumb", and no NO_COLOR in the environment
// (https://no-color.org: any non-empty value switches colour off).
bool stdout_color() {
  const char* no_color = std::getenv("NO_COLOR");
  const char* term = std::getenv("TERM");
  return isatty(STDOUT_FILENO) && !(no_color && *no_color) && !(term && std::string(term) == "dumb");
}

replay::TranscriptStyle transcript_style() { return {terminal_width(), stdout_color()}; }

// The two forms of a script's results: one raw result line per command (the format of
// docs/mms-format.md, for programs) or a transcript for people. The transcript is the default
// on a terminal only.
struct OutputForm {
  bool pretty = false, raw = false;

  void add(CLI::App* app) {
    auto* p = app->add_flag("--pretty", pretty,
                            "print each command beside its result with its line number (default when standard "
                            "output is a terminal)");
    auto* r = app->add_flag("--raw", raw,
                            "print one result line per command, exactly as docs/mms-format.md specifies (default "
                            "when standard output is not a terminal)");
    p->excludes(r);
  }
  bool transcript() const { return pretty || (!raw && isatty(STDOUT_FILENO)); }
  void print(const script::Script& s, const std::vector<std::string>& results) const {
    if (transcript()) {
      std::cout << replay::format_transcript(s, results, transcript_style());
      return;
    }
    for (const std::string& line : results) std::cout << line << "\n";
  }
};

// Model settings shared by the subcommands that run the model.
struct ModelFlags {
  std::string pku = "auto";
  uint64_t memory_mib = 1024;

  void add(CLI::App* app) {
    app->add_option("--pku", pku, "x86 protection keys: auto (as this host), on, off")
        ->check(CLI::IsMember({"auto", "on", "off"}));
    app->add_option("--memory", memory_mib, "physical memory of the model, MiB")->check(CLI::Range(1, 1 << 20));
  }
  SystemConfig config() const {
    SystemConfig c = SystemConfig::from_host();
    if (pku == "on") c.exec_only_pkey = true;
    if (pku == "off") c.exec_only_pkey = false;
    c.memory_bytes = memory_mib << 20;
    return c;
  }
};

// --trace and --report (docs/tracing.md): the files are opened before the run starts, so that
// a path that cannot be written is a usage error, not a lost run.
struct TraceFlags {
  std::string trace_path, report_path;
  std::ofstream trace, report;

  void add(CLI::App* app) {
    app->add_option("--trace", trace_path,
                    "record the run and write it as Chrome/Perfetto trace-event JSON to this file (open it in "
                    "ui.perfetto.dev or chrome://tracing)");
    app->add_option("--report", report_path,
                    "write a self-contained HTML report of the run (address spaces with device residency, "
                    "invalidation timeline, latency histograms) to this file");
  }
  // Opens the files asked for; false (after a message) when one cannot be.
  bool open() {
    for (auto [path, out] : {std::pair{&trace_path, &trace}, std::pair{&report_path, &report}}) {
      if (path->empty()) continue;
      out->open(*path, std::ios::binary | std::ios::trunc);
      if (!*out) {
        std::cerr << *path << ": cannot be written\n";
        return false;
      }
    }
    return true;
  }
  std::ostream* trace_stream() { return trace_path.empty() ? nullptr : &trace; }
  std::ostream* report_stream() { return report_path.empty() ? nullptr : &report; }
  // Whether everything was written (a full disk shows here).
  bool written() {
    for (auto [path, out] : {std::pair{&trace_path, &trace}, std::pair{&report_path, &report}}) {
      if (path->empty()) continue;
      out->close();
      if (!*out) {
        std::cerr << *path << ": write failed\n";
        return false;
      }
    }
    return true;
  }
};

int load(const std::string& path, script::Script* s) {
  std::string error;
  auto parsed = script::parse_file(path, &error);
  if (!parsed) {
    std::cerr << error << "\n";
    return kExitUsage;
  }
  *s = std::move(*parsed);
  return 0;
}

int cmd_replay(const std::string& path, const ModelFlags& mf, const OutputForm& form, TraceFlags& tf,
               const std::string& inject) {
  script::Script s;
  if (int rc = load(path, &s)) return rc;
  if (!tf.open()) return kExitUsage;
  replay::Options o;
  o.config = mf.config();
  o.inject = inject;
  o.trace_json = tf.trace_stream();
  o.report_html = tf.report_stream();
  form.print(s, replay::run(s, o));
  return tf.written() ? 0 : kExitFinding;
}

int cmd_host(const std::string& path, const OutputForm& form) {
  script::Script s;
  if (int rc = load(path, &s)) return rc;
  std::vector<std::string> out;
  std::string error;
  const bool ok = host::run(s, &out, &error);
  // The lines of a failed run still show where it failed (ERROR ...).
  form.print(s, out);
  if (!ok) {
    std::cerr << "host runner: " << error << "\n";
    return kExitFinding;
  }
  return 0;
}

int cmd_gen(uint64_t seed, int commands, const std::string& profile) {
  gen::Options o;
  o.seed = seed;
  o.commands = commands;
  o.profile = gen::parse_profile(profile);
  std::cout << gen::generate(o);
  return 0;
}

// The diverging script of d side by side: model | host around its diverging command (the
// two runs repeated to get every line), from `before` commands before it.
void print_side_by_side(std::ostream& out, const oracle::Divergence& d, const replay::Options& model,
                        size_t before) {
  std::string error;
  std::optional<script::Script> s = script::parse(d.script, "divergence", &error);
  if (!s || s->commands.empty()) return;
  std::vector<std::string> host_lines;
  (void)host::run(*s, &host_lines, &error);  // a failed run still has its lines (ERROR ...)
  const std::vector<std::string> model_lines = replay::run(*s, model);
  size_t at = 0;
  while (at + 1 < s->commands.size() && s->commands[at].line < d.line) at++;
  out << replay::format_side_by_side(*s, model_lines, host_lines, at, before, 2, transcript_style());
}

// --shard and --json: a campaign (a range of seeds) split among machines, with one JSON record
// per script or run (docs/campaigns.md).
struct CampaignFlags {
  std::string shard_text, json_path;
  campaign::Shard shard;
  CLI::Option* shard_opt = nullptr;
  CLI::Option* json_opt = nullptr;

  void add(CLI::App* app, const char* unit) {
    shard_opt = app->add_option("--shard", shard_text,
                                "run only shard I of N (0-based: 0 <= I < N), the seeds whose index in the range "
                                "(seed - --seed) leaves remainder I when divided by N")
                    ->type_name("I/N");
    json_opt = app->add_option("--json", json_path,
                               std::string("write one JSON record per ") + unit +
                                   " to this file (-: standard output, and the report goes to standard error)")
                   ->type_name("FILE");
  }
  bool given() const { return shard_opt->count() > 0 || json_opt->count() > 0; }
  // Checks --shard and the seed range; prints why and returns false on a usage error.
  bool parse(const char* command, uint64_t seed0, uint64_t seeds) {
    std::string error;
    if (shard_opt->count()) {
      std::optional<campaign::Shard> s = campaign::parse_shard(shard_text, &error);
      if (!s) {
        std::cerr << "mirrormm " << command << ": --shard " << error << "\n";
        return false;
      }
      shard = *s;
    }
    if (seeds > 0 && seed0 > UINT64_MAX - (seeds - 1)) {
      std::cerr << "mirrormm " << command << ": --seed " << seed0 << " --seeds " << seeds
                << " goes past the largest seed, " << UINT64_MAX << "\n";
      return false;
    }
    return true;
  }
};

// Where a campaign's records go: nowhere, a file or standard output. Each record is flushed
// as a whole line, so a shard that is killed leaves only whole records behind.
class RecordSink {
 public:
  // Opens --json's file (truncating it); prints why and returns false if it cannot.
  bool open(const CampaignFlags& f) {
    if (!f.json_opt->count()) return true;
    path_ = f.json_path;
    if (path_ == "-") {
      out_ = &std::cout;
      return true;
    }
    file_.open(path_, std::ios::out | std::ios::trunc);
    if (!file_) {
      std::cerr << path_ << ": cannot open for writing: " << std::strerror(errno) << "\n";
      return false;
    }
    out_ = &file_;
    return true;
  }
  void write(const campaign::Record& r) {
    if (out_) *out_ << campaign::to_json(r) << '\n' << std::flush;
  }
  // Standard error when the records take standard output, else standard output.
  std::ostream& report() const { return out_ == &std::cout ? std::cerr : std::cout; }
  // False, having said so, if a record could not be written.
  bool close() {
    if (!out_ || *out_) return true;
    std::cerr << path_ << ": write error\n";
    return false;
  }

 private:
  std::string path_;
  std::ofstream file_;
  std::ostream* out_ = nullptr;
};

// The model options of a command line, as `replay` spells them.
std::string model_flags(const ModelFlags& mf) {
  std::string f;
  if (mf.pku != "auto") f += " --pku " + mf.pku;
  if (mf.memory_mib != ModelFlags{}.memory_mib) f += " --memory " + std::to_string(mf.memory_mib);
  return f;
}

// The `mirrormm oracle` command line of seeds seed0..seed0+seeds-1 (the campaign's own, or
// with one seed the one that replays it).
std::string oracle_command(uint64_t seed0, uint64_t seeds, int commands, const std::string& profile,
                           const ModelFlags& mf) {
  return "mirrormm oracle --seed " + std::to_string(seed0) + " --seeds " + std::to_string(seeds) + " --commands " +
         std::to_string(commands) + " --profile " + profile + model_flags(mf);
}

int cmd_oracle(uint64_t seed0, uint64_t seeds, int commands, const std::string& profile, bool keep_going,
               const ModelFlags& mf, CampaignFlags& cf) {
  if (!cf.parse("oracle", seed0, seeds)) return kExitUsage;
  RecordSink sink;
  if (!sink.open(cf)) return kExitUsage;
  std::ostream& out = sink.report();
  gen::Options first;
  first.seed = seed0;
  first.commands = commands;
  first.profile = gen::parse_profile(profile);
  oracle::CampaignOptions o;
  o.model.config = mf.config();
  o.on_divergence = keep_going ? oracle::CampaignOptions::OnDivergence::kContinue
                               : oracle::CampaignOptions::OnDivergence::kStop;
  o.shard = cf.shard;
  campaign::Record record;
  record.kind = campaign::Kind::kOracle;
  record.campaign = oracle_command(seed0, seeds, commands, profile, mf);
  record.first_seed = seed0;
  record.seeds = seeds;
  record.shard = cf.shard;
  record.profile = profile;
  record.commands = static_cast<uint64_t>(commands);
  o.on_script = [&](const oracle::ScriptOutcome& r) {
    if (const oracle::Divergence* d = r.divergence)
      std::cerr << "seed " << r.seed << ": diverges at line " << d->line << ": " << d->command << "\n";
    if ((r.index + 1) % 100 == 0) std::cerr << "seeds checked: " << (r.index + 1) << "\n";
    campaign::Record rec = record;
    rec.seed = r.seed;
    rec.replay = oracle_command(r.seed, 1, commands, profile, mf);
    rec.verdict = r.error ? campaign::Verdict::kError
                          : r.divergence ? campaign::Verdict::kFinding : campaign::Verdict::kPass;
    if (r.error) rec.error = *r.error;
    if (const oracle::Divergence* d = r.divergence)
      rec.divergence = campaign::Divergence{d->line, d->command, d->model, d->host};
    rec.stop = r.error || (r.divergence && !keep_going);
    sink.write(rec);
  };
  oracle::CampaignSummary sum = oracle::run_campaign(first, seeds, o);
  if (!sink.close()) return kExitUsage;
  out << oracle::describe(sum);
  if (sum.first) {
    const oracle::Divergence& d = *sum.first;
    out << "\nmodel | host around the divergence (seed " << d.seed << "):\n";
    print_side_by_side(out, d, o.model, 8);
    if (sum.reduced) {
      out << "\nmodel | host of the reduced script:\n";
      print_side_by_side(out, *sum.reduced, o.model, sum.reduced->line);
    }
    const std::string file = "seed-" + std::to_string(d.seed) + ".mms";
    out << "\nreproduce: mirrormm gen --seed " << d.seed << " --commands " << commands << " --profile " << profile
        << " > " << file << " && mirrormm replay --pretty" << model_flags(mf) << " " << file
        << " && mirrormm host --pretty " << file << "\n";
  }
  return sum.ok() ? 0 : kExitFinding;
}

// Resolves --drop-bracket's event name into o->drop_bracket; prints why and returns false if
// no primary path brackets with that event.
bool resolve_drop_bracket(const std::string& drop, stress::Options* o) {
  for (int e = 0; e <= static_cast<int>(MmuNotifyEvent::kExclusive); ++e)
    if (drop == mmu_notify_event_name(static_cast<MmuNotifyEvent>(e))) o->drop_bracket = e;
  if (o->drop_bracket >= 0 && mmu_debug_bracket_used(static_cast<MmuNotifyEvent>(o->drop_bracket))) return true;
  std::cerr << "--drop-bracket " << drop
            << ": no primary path brackets its PTE changes with this event yet, so dropping it "
               "cannot break anything; use unmap, clear, protection_vma or protection_page\n";
  return false;
}

// One stress run with its report on `out`, ending with "violations: N".
stress::Report stress_one(stress::Options o, std::ostream& out) {
  o.progress = &std::cerr;
  std::string drivers;
  for (const std::string& d : o.drivers) drivers += (drivers.empty() ? "" : ",") + d;
  out << "stress: " << o.threads << " CPUs, " << o.seconds << " s, seed " << o.seed
      << (o.break_shootdown ? ", shootdown deliberately broken" : "")
      << (!o.devices ? ", no devices" : drivers.empty() ? ", devices attached" : ", drivers " + drivers + " attached")
      << (o.drop_bracket >= 0
              ? std::string(", brackets of ") + mmu_notify_event_name(static_cast<MmuNotifyEvent>(o.drop_bracket)) +
                    " deliberately dropped"
              : "")
      << (o.stop_on_violation ? ", stopping at the first violation" : "") << ", " << o.memory_mib << " MiB memory"
      << (o.swap_mib ? ", " + std::to_string(o.swap_mib) + " MiB swap" : ", no swap")
      << (o.nodes > 1 ? ", " + std::to_string(o.nodes) + " NUMA nodes with migration threads" : "")
      << (o.writeback ? ", regular files with writeback" : "") << "\n";
  out.flush();
  stress::Report r = stress::run(o);
  out << "ops " << r.ops << " (accesses " << r.accesses << ", system calls " << r.syscalls << ", forks " << r.forks
      << "), device operations " << r.device_ops << ", consistency checks " << r.checks << "\n";
  const uint64_t scanned = r.pgscan_kswapd + r.pgscan_direct, stolen = r.pgsteal_kswapd + r.pgsteal_direct;
  out << "swap: " << r.pswpout << " pages out, " << r.pswpin << " back in, " << r.swap_slots_used << " of "
      << r.swap_slots_total << " slots in use at the end; reclaim: scanned " << scanned << ", stole " << stolen
      << " (kswapd " << (stolen ? 100 * r.pgsteal_kswapd / stolen : 0) << "%, " << r.kswapd_runs
      << " kswapd runs, " << r.allocstall << " direct reclaim stalls), workingset refaults " << r.workingset_refault
      << "; oom kills " << r.oom_kill << ", reaper retries " << r.oom_reap_retries
      << (r.workload_oom_killed ? " (process 1 killed: the run ended there)" : "") << "\n";
  if (o.writeback) out << "writeback: " << r.pages_written_back << " page writes to the disk\n";
  for (const auto& [kind, t] : r.mirrors_by_kind) {
    out << "driver " << kind << ": " << t.attached << " attached, " << t.faults << " faults, " << t.retries
              << " retries, " << t.invalidations << " invalidations (";
    const char* sep = "";
    for (int e = 0; e < stress::MirrorTotals::kEvents; e++) {
      if (!t.by_event[e]) continue;
      out << sep << mmu_notify_event_name(static_cast<MmuNotifyEvent>(e)) << " " << t.by_event[e];
      sep = ", ";
    }
    out << "), " << t.pages_dropped << " pages dropped";
    if (t.young_queries) out << ", aging " << t.young_answers << " young of " << t.young_queries;
    if (t.waits || t.nonblock_refusals)
      out << ", " << t.waits << " invalidations waited, " << t.nonblock_refusals << " non-blockable refused";
    out << "\n";
  }
  out << "locked memory: " << r.mlock_calls << " mlock/munlock/mlockall/munlockall calls, " << r.pgs_mlocked
      << " pages mlocked, " << r.pgs_culled << " locked pages reclaim kept\n";
  if (o.nodes > 1)
    out << "migration: " << r.pgmigrate_success << " pages migrated, " << r.pgmigrate_fail
        << " attempts failed, in " << r.migrate_calls << " migrate_pages calls\n";
  if (r.violations) {
    const size_t shown = r.messages.size();
    for (const std::string& m : r.messages) out << "violation: " << m << "\n";
    if (r.violations > shown) out << "(" << r.violations - shown << " more not shown)\n";
    out << "violations by kind:\n";
    for (const auto& [kind, n] : r.kinds) out << "  " << n << "  " << kind << "\n";
    if (r.stopped_on_violation) out << "stopped at the first violation after " << r.seconds << " s\n";
    out << "replay: " << stress::replay_command(o) << "\n";
  }
  out << "violations: " << r.violations << "\n";
  return r;
}

// `mirrormm stress`: one run, or with --seeds, --shard or --json a campaign of one run per
// seed of the shard, ending with the verdict line "N runs: P passed, F failed".
// --trace and --report record one run only.
int cmd_stress(stress::Options o, bool has_drop, const std::string& drop, uint64_t seeds, CampaignFlags& cf,
               bool campaign_form, TraceFlags& tf) {
  if (has_drop && !resolve_drop_bracket(drop, &o)) return kExitUsage;
  if (const bugs::Bug* bug = bugs::find_bug(o.inject)) {
    // The setup that shows the bug, where the command line chose none.
    if (o.drivers.empty()) o.drivers = bug->drivers;
    if (bug->needs_migration && o.nodes < 2) o.nodes = 2;
    if (bug->needs_swap && o.swap_mib == 0) o.swap_mib = 256;
  }
  if (!campaign_form) {
    if (!tf.open()) return kExitUsage;
    o.trace_json = tf.trace_stream();
    o.report_html = tf.report_stream();
    const bool found = stress_one(o, std::cout).violations > 0;
    if (!tf.written()) return kExitFinding;
    return found ? kExitFinding : 0;
  }
  if (tf.trace_stream() || tf.report_stream()) {
    std::cerr << "stress: --trace and --report record a single run; they cannot be combined with --seeds, "
                 "--shard or --json\n";
    return kExitUsage;
  }
  if (!cf.parse("stress", o.seed, seeds)) return kExitUsage;
  RecordSink sink;
  if (!sink.open(cf)) return kExitUsage;
  std::ostream& out = sink.report();
  const uint64_t first = o.seed;
  stress::Options whole = o;
  const std::string campaign_line = stress::replay_command(whole) + " --seeds " + std::to_string(seeds);
  uint64_t passed = 0, failed = 0;
  for (uint64_t k = 0; k < cf.shard.size(seeds); ++k) {
    o.seed = cf.shard.seed(first, k);
    const stress::Report r = stress_one(o, out);
    campaign::Record rec = campaign::stress_record(o, r);
    rec.campaign = campaign_line;
    rec.first_seed = first;
    rec.seeds = seeds;
    rec.shard = cf.shard;
    sink.write(rec);
    (r.violations ? failed : passed)++;
  }
  if (!sink.close()) return kExitUsage;
  out << campaign::verdict_line(campaign::Kind::kStress, passed + failed, passed, failed) << "\n";
  return failed ? kExitFinding : 0;
}

// `mirrormm merge`: the shard files of one campaign summed up as the unsharded run would.
int cmd_merge(const std::vector<std::string>& files) {
  std::vector<std::ifstream> streams(files.size());
  std::vector<campaign::MergeInput> inputs;
  for (size_t i = 0; i < files.size(); ++i) {
    if (files[i] == "-") {
      inputs.push_back({"<stdin>", &std::cin});
      continue;
    }
    streams[i].open(files[i]);
    if (!streams[i]) {
      std::cerr << "merge: " << files[i] << ": cannot open: " << std::strerror(errno) << "\n";
      return kExitUsage;
    }
    inputs.push_back({files[i], &streams[i]});
  }
  if (files.empty()) inputs.push_back({"<stdin>", &std::cin});
  const campaign::MergeSummary sum = campaign::merge(inputs);
  (sum.error.empty() ? std::cout : std::cerr) << campaign::describe(sum);
  return sum.exit_status();
}

// Redraws a progress bar in place on a terminal (standard error), or prints a plain line
// every few seconds elsewhere.
class RunProgress {
 public:
  explicit RunProgress(double seconds) : seconds_(seconds), tty_(isatty(STDERR_FILENO)) {
    winsize ws{};
    if (tty_ && ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) width_ = ws.ws_col;
  }
  void update(const stress::Progress& p) {
    if (tty_) {
      std::cerr << "\r" << run::progress_bar(p, seconds_, width_ - 1) << "\x1b[K" << std::flush;
      drawn_ = true;
    } else if (p.seconds >= next_line_) {
      std::cerr << run::progress_line(p, seconds_) << "\n";
      next_line_ += kLineEvery;
    }
  }
  // Clears the bar before the summary.
  void finish() {
    if (drawn_) std::cerr << "\r\x1b[K" << std::flush;
  }

 private:
  static constexpr double kLineEvery = 2;  // seconds between plain lines
  const double seconds_;
  const bool tty_;
  int width_ = 80;
  bool drawn_ = false;
  double next_line_ = kLineEvery;
};

int cmd_run(const run::Options& o, TraceFlags& tf) {
  if (!tf.open()) return kExitUsage;
  std::cout << run::describe(o) << "\n\n" << std::flush;
  stress::Options so = run::stress_options(o);
  so.trace_json = tf.trace_stream();
  so.report_html = tf.report_stream();
  so.report_title = "mirrormm run";
  so.report_command = run::command_line(o);
  RunProgress progress(o.seconds);
  so.on_progress = [&progress](const stress::Progress& p) { progress.update(p); };
  const stress::Report r = stress::run(so);
  progress.finish();
  std::cout << run::summary(o, r);
  if (!tf.written()) return kExitFinding;
  return r.violations ? kExitFinding : 0;
}

// explore: a scenario script, or a catalog entry's own scenario (with its bug when --inject
// names it); every schedule within the bound, or the one --schedule gives.
int cmd_explore(const std::string& path, const std::string& inject, const std::string& scenario,
                const explore::Options& o, bool bound_given, const std::string& schedule, bool schedule_given,
                bool trace) {
  std::optional<explore::Scenario> s;
  std::string error;
  if (!path.empty()) {
    s = explore::parse_scenario_file(path, inject, &error);
    if (!s) {
      std::cerr << error << "\n";
      return kExitUsage;
    }
  } else {
    const std::string name = scenario.empty() ? inject : scenario;
    std::unique_ptr<explore::Scenario> b = explore::bug_scenario(name, !inject.empty());
    if (!b) {
      std::cerr << "explore: " << (name.empty() ? "no scenario: give FILE, --inject NAME or --scenario NAME"
                                                : "catalog entry " + name + " has no explore scenario")
                << "\n";
      return kExitUsage;
    }
    s = std::move(*b);
  }
  explore::Options opts = o;
  if (!bound_given) opts.preemption_bound = s->preemption_bound;
  if (schedule_given) {
    std::vector<int> choices;
    if (!explore::parse_schedule(schedule, &choices, &error)) {
      std::cerr << "explore: --schedule: " << error << "\n";
      return kExitUsage;
    }
    const explore::RunResult r = explore::replay(*s, schedule, trace, opts);
    if (trace) std::cout << explore::format_trace(r.trace);
    std::cout << "schedule " << r.schedule << " (" << r.preemptions << " preemptions): "
              << (r.failure.empty() ? "clean" : "FAIL: " + r.failure) << "\n";
    return r.failure.empty() ? 0 : kExitFinding;
  }
  const explore::Result r = explore::explore(*s, opts);
  std::cout << explore::summary(s->name, r, opts);
  if (r.failures) {
    std::cout << "replay: mirrormm explore " << (path.empty() ? "" : path + " ")
              << (inject.empty() ? "" : "--inject " + inject + " ")
              << (scenario.empty() || !path.empty() ? "" : "--scenario " + scenario + " ") << "--schedule "
              << r.first_failure.schedule << "\n";
  }
  return r.failures ? kExitFinding : 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mirrormm: a userspace model of the Linux VM and its MMU notifiers"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "mirrormm " MIRRORMM_VERSION, "print the version and exit");
  // Both are inherited by the subcommands created below.
  app.option_defaults()->always_capture_default();
  app.footer(kExitStatusHelp);
  ModelFlags mf;

  std::string path;
  auto* replay = app.add_subcommand("replay", "run a .mms script against the model");
  replay->add_option("FILE", path, "the .mms script; - reads standard input")->required();
  mf.add(replay);

  OutputForm form;
  form.add(replay);
  TraceFlags tf;
  tf.add(replay);
  // The catalog of re-injectable bugs, and --inject on the commands that run the model.
  std::vector<std::string> bug_names;
  for (const bugs::Bug& b : bugs::catalog()) bug_names.push_back(b.name);
  const std::string inject_help = "re-inject a bug of the catalog (`mirrormm bugs` lists them) to see it caught";
  std::string replay_inject;
  replay->add_option("--inject", replay_inject, inject_help)->check(CLI::IsMember(bug_names));
  auto* bugs_cmd = app.add_subcommand(
      "bugs", "list the catalog of real bugs that --inject turns back on: NAME, year, subsystem, what went wrong, "
              "the fix, how it is caught");

  auto* host = app.add_subcommand("host", "run a .mms script against the host kernel (model-only v2 commands print SKIP)");
  host->add_option("FILE", path, "the .mms script; - reads standard input")->required();
  form.add(host);

  uint64_t seed = 1, seeds = 100;
  int commands = 300;
  std::string profile = "anon";
  auto* gen = app.add_subcommand("gen", "print a random host-comparable script");
  gen->add_option("--seed", seed, "random seed: the same seed prints the same script");
  gen->add_option("--commands", commands, "number of commands")->check(CLI::Range(1, 1000000));
  gen->add_option("--profile", profile, "anon (anonymous memory, fork, exit), files (memfd and regular files: mappings, truncate, msync, fsync, pread), all, lock (anonymous memory with mlock, munlock, mlockall, munlockall, MAP_LOCKED and setrlimit) or advise (every madvise advice, guard regions, mseal, process_madvise, map types)")
      ->check(CLI::IsMember({"anon", "files", "all", "lock", "advise"}));

  auto* oracle = app.add_subcommand("oracle", "compare model and host kernel on random scripts");
  oracle->add_option("--seed", seed, "first seed");
  oracle->add_option("--seeds", seeds, "number of seeds");
  oracle->add_option("--commands", commands, "commands per script")->check(CLI::Range(1, 1000000));
  oracle->add_option("--profile", profile, "script profile, as for gen")->check(CLI::IsMember({"anon", "files", "all", "lock", "advise"}));
  bool keep_going = false;
  oracle->add_flag("--keep-going", keep_going, "count every diverging seed instead of stopping at the first");
  mf.add(oracle);
  CampaignFlags oracle_cf;
  oracle_cf.add(oracle, "script");

  stress::Options so;
  auto* stress_cmd = app.add_subcommand("stress", "random concurrent workload with invariant checks");
  stress_cmd->add_option("--threads", so.threads, "software CPUs (threads)")->check(CLI::Range(1, 64));
  stress_cmd->add_option("--seconds", so.seconds, "how long to run")->check(CLI::Range(0.1, 86400.0));
  stress_cmd->add_option("--seed", so.seed, "random seed (a failure prints the command that replays it)");
  stress_cmd->add_flag("--break-shootdown", so.break_shootdown, "leave stale TLB entries (tests the checker)");
  bool no_devices = false;
  std::string drop_bracket;
  stress_cmd->add_flag("--no-devices", no_devices, "attach no secondary MMUs");
  auto* drop_opt = stress_cmd
      ->add_option("--drop-bracket", drop_bracket,
                   "skip the primary paths' brackets of this event (tests the coherence checker): unmap, clear, "
                   "protection_vma or protection_page")
      ->check(CLI::IsMember({"unmap", "clear", "protection_vma", "protection_page", "soft_dirty", "release", "migrate",
                             "exclusive"}));
  stress_cmd->add_flag("--stop-on-violation", so.stop_on_violation, "end the run at the first violation");
  stress_cmd->add_option("--inject", so.inject,
                         inject_help + "; with no --driver, the drivers that show it are attached (and two NUMA "
                                       "nodes or swap where it needs them)")
      ->check(CLI::IsMember(bug_names));
  auto* race_delay_opt =
      stress_cmd
          ->add_option("--race-delay", so.race_delay_us,
                       "pause this many microseconds inside the windows of the catalog's races (after an "
                       "invalidation's start, between a device's walk and its install, inside a migration, inside "
                       "an rmap walk's lookup), so that they show in seconds (default: 20 with --inject, else 0)")
          ->check(CLI::Range(0, 100000));
  std::string driver_help =
      "secondary MMUs to attach, KIND[:VARIANT][,...]: process 1 gets the first, each forked child one at random "
      "(default: interval and classic DeviceMirrors). Kinds:";
  for (const SecondaryMmuKind& k : secondary_mmu_kinds()) {
    driver_help += " " + k.name;
    for (const std::string& v : k.variants) driver_help += ", " + k.name + ":" + v;
    driver_help += " (" + k.description + ");";
  }
  driver_help.back() = '.';
  stress_cmd->add_option("--driver", so.drivers, driver_help)
      ->delimiter(',')
      ->check(CLI::Validator(
          [](std::string& v) { return secondary_mmu_kind_known(v) ? std::string() : "no such secondary MMU kind: " + v; },
          "KIND[:VARIANT]"));
  stress_cmd->add_option("--memory", so.memory_mib, "physical memory of the model, MiB")->check(CLI::Range(1, 1 << 20));
  stress_cmd
      ->add_option("--swap", so.swap_mib,
                   "a swap device of this size, MiB, switched on at the start; the CPUs then also write and verify "
                   "regions of about 1.75 times the memory, so that reclaim swaps all the time (0: no swap)")
      ->check(CLI::Range(0, 1 << 20));
  stress_cmd
      ->add_option("--nodes", so.nodes,
                   "NUMA nodes of the model's memory; above 1, migration threads move random ranges of every "
                   "process between them, racing everything else (1: no migration)")
      ->check(CLI::Range(1, 64));
  stress_cmd->add_flag("--writeback", so.writeback,
                       "each CPU also writes, verifies, syncs and pages out a shared mapping of its own regular file "
                       "while the flusher writes back");
  tf.add(stress_cmd);
  uint64_t stress_seeds = 1;
  auto* stress_seeds_opt = stress_cmd->add_option(
      "--seeds", stress_seeds,
      "run K seeds, --seed to --seed + K - 1, one run each, ending with \"K runs: P passed, F failed\"");
  CampaignFlags stress_cf;
  stress_cf.add(stress_cmd, "run");

  std::vector<std::string> merge_files;
  auto* merge = app.add_subcommand(
      "merge", "sum up the --json records of a campaign's shards: findings, missing seeds and the verdict line");
  merge->add_option("FILE", merge_files, "shard record files (JSON Lines); none or - reads standard input");

  run::Options ro;
  auto* run_cmd = app.add_subcommand(
      "run", "the whole system at work: processes, devices, memory pressure and swap, every checker on");
  run_cmd->add_option("--seconds", ro.seconds, "how long the workload runs")->check(CLI::Range(0.1, 86400.0));
  run_cmd->add_option("--seed", ro.seed, "the randomness of the run (a violation prints the command that reproduces it)");
  run_cmd->add_option("--threads", ro.threads, "software CPUs (threads)")->check(CLI::Range(1, 64));
  run_cmd->add_option("--memory", ro.memory_mib, "physical memory of the model, MiB")->check(CLI::Range(4, 1 << 20));
  run_cmd
      ->add_option("--swap", ro.swap_mib,
                   "swap device, MiB; the CPUs write and verify regions of about 1.75 times the memory (0: no swap "
                   "and no such regions)")
      ->check(CLI::Range(0, 1 << 20));
  run_cmd
      ->add_option("--nodes", ro.nodes,
                   "NUMA nodes of the model's memory; above 1, migration threads move pages of every process "
                   "between them (1: no migration)")
      ->check(CLI::Range(1, 64));
  std::vector<std::string> break_names;
  std::string break_help =
      "break the kernel on purpose to see the checkers catch it (the run then exits 1; default: nothing broken):";
  for (const run::DebugBreakInfo& b : run::debug_break_names()) {
    break_names.emplace_back(b.name);
    break_help += std::string(" ") + b.name + " (" + b.what + ");";
  }
  break_help.back() = '.';
  run_cmd->add_option("--debug-break", ro.debug_break, break_help)->check(CLI::IsMember(break_names));
  run_cmd->add_option("--inject", ro.inject, inject_help + "; the drivers that show it are attached")
      ->check(CLI::IsMember(bug_names));
  tf.add(run_cmd);

  std::string explore_path, explore_inject, explore_scenario, explore_schedule;
  explore::Options eo;
  std::vector<std::string> explore_names = explore::bug_scenarios();
  auto* explore_cmd = app.add_subcommand(
      "explore", "every interleaving of a small race up to a preemption bound (a scenario script's thread blocks, "
                 "or a catalog entry's own scenario)");
  explore_cmd->add_option("FILE", explore_path, "a .mms scenario with thread blocks (docs/mms-v2.md)");
  explore_cmd
      ->add_option("--inject", explore_inject,
                   inject_help + "; with no FILE, that entry's own scenario runs with the bug (exit 1 when found)")
      ->check(CLI::IsMember(bug_names));
  explore_cmd
      ->add_option("--scenario", explore_scenario,
                   "with no FILE: run this catalog entry's scenario (without its bug unless --inject names it)")
      ->check(CLI::IsMember(explore_names));
  auto* explore_bound_opt = explore_cmd
                                ->add_option("--bound", eo.preemption_bound,
                                             "preemption bound (default: the scenario's, 2 for scripts)")
                                ->check(CLI::Range(0, 16));
  explore_cmd->add_option("--max", eo.max_schedules, "stop after this many interleavings (0: no cap)");
  explore_cmd->add_flag("--keep-going", [&eo](int64_t) { eo.stop_on_failure = false; },
                        "count every failing interleaving instead of stopping at the first");
  auto* explore_schedule_opt = explore_cmd->add_option(
      "--schedule", explore_schedule, "replay this one schedule (as a failure prints it: 0*5,1*3,0*2)");
  bool explore_list = false;
  explore_cmd->add_flag("--list", explore_list, "print the catalog entries that have a scenario, one per line");
  bool explore_trace = false;
  explore_cmd->add_flag("--trace", explore_trace,
                        "with --schedule: print every scheduling point (step, thread, kind, thread chosen)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version end here with status 0; every parse error is a usage error.
    return app.exit(e) == 0 ? 0 : kExitUsage;
  }
  if (*stress_cmd) {
    so.devices = !no_devices;
    if (!so.inject.empty() && race_delay_opt->count() == 0) so.race_delay_us = bugs::kRaceDelayUs;
    return cmd_stress(so, drop_opt->count() > 0, drop_bracket, stress_seeds, stress_cf,
                      stress_seeds_opt->count() > 0 || stress_cf.given(), tf);
  }
  if (*run_cmd) return cmd_run(ro, tf);
  if (*explore_cmd && explore_list) {
    for (const std::string& n : explore_names) std::cout << n << "\n";
    return 0;
  }
  if (*explore_cmd)
    return cmd_explore(explore_path, explore_inject, explore_scenario, eo, explore_bound_opt->count() > 0, explore_schedule,
                       explore_schedule_opt->count() > 0, explore_trace);
  if (*replay) return cmd_replay(path, mf, form, tf, replay_inject);
  if (*bugs_cmd) {
    std::cout << bugs::catalog_listing();
    return 0;
  }
  if (*host) return cmd_host(path, form);
  if (*gen) return cmd_gen(seed, commands, profile);
  if (*oracle) return cmd_oracle(seed, seeds, commands, profile, keep_going, mf, oracle_cf);
  if (*merge) return cmd_merge(merge_files);
  return kExitUsage;
}
