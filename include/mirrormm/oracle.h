// Differential testing: the host kernel as the oracle for the model.
//
// compare() runs one script on the host (host::run) and on the model (replay::run) and
// finds the first line where they disagree; reduce() shrinks a diverging script to a short
// one that still diverges; describe() renders a divergence for a human, with everything
// needed to replay it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "mirrormm/replay.h"
#include "mirrormm/script.h"

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

}  // namespace mirrormm::oracle
