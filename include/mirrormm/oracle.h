// Differential testing: the host kernel as the oracle for the model.
//
// compare() runs one script on the host (host::run) and on the model (replay::run) and
// finds the first line where they disagree; reduce() shrinks a diverging script to a short
// one that still diverges; describe() renders a divergence for a human, with everything
// needed to replay it. run_campaign() does all three over many scripts (generated from a
// range of seeds, or given) and sums up what it saw.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "mirrormm/campaign.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"

namespace mirrormm::oracle {

struct Divergence {
  uint64_t seed = 0;    // the generator seed, when the script came from gen::generate (else 0)
  std::string script;   // the whole script, one canonical command per line
  size_t line = 0;      // 1-based line of the diverging command in `script`
  std::string command;  // that command, canonical
  std::string host, model;  // the two result lines ("<missing>" if one side printed fewer)
};

// True when the two result lines agree: byte-identical, or both are addresses outside the
// window returned by an mmap without fixed/noreplace (the host picks those from its own
// layout, which the model does not know), or c is a model-only command (format version 2:
// dev, stats, check) for which the host printed `SKIP` (not compared). The generator never
// produces model-only commands; scripts written by hand may have them.
bool lines_agree(const script::Command& c, const std::string& host, const std::string& model);

// Runs the script on the host and on the model and returns the first divergence, if any.
// A difference is reported only if two more host runs of the script differ from the model
// too (an answer the kernel gives on some run is the kernel's: some depend on per-CPU state
// that other processes share).
// Divergence::script is the script re-rendered with format(), one command per line (so
// `line` counts commands; for generated scripts this is the original text).
// If the host run fails (host::run() returned false), a divergence before the failing line
// is still returned; otherwise the result is nullopt and *error says why. *error is left
// alone when the host run succeeds.
std::optional<Divergence> compare(const script::Script& s, const replay::Options& model_opts, std::string* error);

// Shrinks a script on which compare() finds a divergence: removes commands (in chunks, then
// one by one) as long as the result still diverges on a command of the same kind (same Op)
// as the original divergence. Returns the divergence of the smallest script found, or
// nullopt if s does not diverge at all (or the host fails; then *error says why). Runs the
// host and the model many times: seconds for a few hundred commands.
std::optional<Divergence> reduce(const script::Script& s, const replay::Options& model_opts, std::string* error);

// A human-readable report: seed, the first differing line (command, host, model), then the
// whole script, ready to be saved as a .mms file and replayed.
std::string describe(const Divergence& d);

// ---- campaigns: many scripts, one summary ----

// What one script of a campaign came to, as the campaign reports it after each script.
struct ScriptOutcome {
  uint64_t index = 0;  // 0-based position of the script among those this campaign runs
  uint64_t seed = 0;   // its generator seed, 0 for a given script
  const Divergence* divergence = nullptr;  // null when host and model agreed
  // Set when the script could not be run (CampaignSummary::error, which stops the campaign):
  // then there is no verdict and `divergence` is null.
  const std::string* error = nullptr;
};

struct CampaignOptions {
  replay::Options model;
  // At the first divergence, stop (the summary then ends with it) or go on and count.
  enum class OnDivergence { kStop, kContinue };
  OnDivergence on_divergence = OnDivergence::kStop;
  // Whether to reduce() the first divergence (seconds of host and model runs).
  enum class Reduce { kNo, kFirst };
  Reduce reduce = Reduce::kFirst;
  // Called after every script that ran to a verdict, and after one that could not be run
  // (progress reports, watchdogs, campaign records). Optional.
  std::function<void(const ScriptOutcome&)> on_script;
  // Of the generated scripts, run only this shard's seeds (campaign.h): seed first.seed + i
  // when shard.contains(i). Given scripts are all run.
  campaign::Shard shard;
};

struct CampaignSummary {
  uint64_t scripts = 0;  // scripts compared to a verdict: passed + failed
  uint64_t passed = 0;   // host and model agreed on every line
  uint64_t failed = 0;   // diverged
  std::optional<Divergence> first;    // the first divergence, with its seed
  std::optional<Divergence> reduced;  // the first divergence reduced, when asked and found
  // Why the campaign stopped early, if it did for something other than a divergence: a
  // script that could not be run ("FILE: host run failed: ..."), or an unparsable generated
  // script. Empty otherwise.
  std::string error;
  bool ok() const { return failed == 0 && error.empty(); }
};

// Compares the generated scripts of seeds [first.seed, first.seed + seeds) that belong to
// options.shard, each of first.commands commands of first.profile. Divergence::script is the
// generator's text.
CampaignSummary run_campaign(const gen::Options& first, uint64_t seeds, const CampaignOptions& options);
// Compares the given scripts, in order.
CampaignSummary run_campaign(const std::vector<script::Script>& scripts, const CampaignOptions& options);

// A human-readable report of a campaign: the first divergence described (and reduced), then
// "N scripts: P passed, F failed" (campaign::verdict_line), then the error if any.
std::string describe(const CampaignSummary& s);

}  // namespace mirrormm::oracle
