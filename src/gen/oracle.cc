// The host-as-oracle comparison (see oracle.h).
#include "mirrormm/oracle.h"

#include <algorithm>
#include <vector>

#include "mirrormm/host.h"
#include "mirrormm/scriptgen.h"

namespace mirrormm::oracle {
namespace {

constexpr const char* kMissing = "<missing>";
constexpr const char* kSkip = "SKIP";  // the host runner's line for a model-only command
constexpr int kHostReruns = 2;         // host runs again before a divergence is reported

// Parses "0x..." as printed by the executors; false for anything else.
bool parse_address(const std::string& s, uint64_t* out) {
  if (s.size() < 3 || s.size() > 18 || s[0] != '0' || s[1] != 'x') return false;
  uint64_t v = 0;
  for (size_t i = 2; i < s.size(); ++i) {
    char c = s[i];
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) return false;
    v = (v << 4) | static_cast<uint64_t>(d);
  }
  *out = v;
  return true;
}

bool outside_window(uint64_t a) { return a < script::kWindowStart || a >= script::kWindowEnd; }

std::string render(const script::Script& s) {
  std::string text;
  for (const script::Command& c : s.commands) {
    text += script::format(c);
    text += '\n';
  }
  return text;
}

// The first index where the outputs disagree, looking at no more than `limit` lines. After a
// `swapon` or `reclaim` (the model's swap, which the host does not share) residency is the
// model's own: `mincore` lines are not compared.
std::optional<size_t> first_difference(const script::Script& s, const std::vector<std::string>& host,
                                       const std::vector<std::string>& model, size_t limit) {
  bool residency_differs = false;
  for (size_t i = 0; i < s.commands.size() && i < limit; ++i) {
    const script::Command& c = s.commands[i];
    residency_differs |= c.model == script::ModelOp::kSwapon || c.model == script::ModelOp::kReclaim;
    bool have_host = i < host.size(), have_model = i < model.size();
    if (!have_host || !have_model) {
      if (have_host != have_model) return i;
      continue;
    }
    if (residency_differs && c.op == script::Op::kMincore && !script::model_only(c)) continue;
    if (!lines_agree(c, host[i], model[i])) return i;
  }
  return std::nullopt;
}

}  // namespace

bool lines_agree(const script::Command& c, const std::string& host, const std::string& model) {
  if (host == model) return true;
  // A model-only command (format version 2) has no host answer to compare with.
  if (script::model_only(c) && host == kSkip) return true;
  if (c.op != script::Op::kMmap || (c.map_flags & (script::kMapFixed | script::kMapNoreplace))) return false;
  uint64_t h = 0, m = 0;
  return parse_address(host, &h) && parse_address(model, &m) && outside_window(h) && outside_window(m);
}

std::optional<Divergence> compare(const script::Script& s, const replay::Options& model_opts, std::string* error) {
  std::vector<std::string> host_out;
  std::string host_error;
  bool host_ok = host::run(s, &host_out, &host_error);
  size_t limit = s.commands.size();
  if (!host_ok) {
    // Lines before the first failure are still the kernel's answers.
    limit = 0;
    while (limit < host_out.size() && host_out[limit].rfind("ERROR", 0) != 0) ++limit;
  }
  std::vector<std::string> model_out = replay::run(s, model_opts);
  std::optional<size_t> i = first_difference(s, host_out, model_out, limit);
  // Some answers depend on kernel state that other processes share (the per-CPU folio
  // batches that mlock and the LRU go through, say). A model answer the kernel also gives
  // is not a divergence: the host runs the script again, up to twice, before one is reported.
  for (int again = 0; i && host_ok && again < kHostReruns; again++) {
    std::vector<std::string> rerun;
    std::string rerun_error;
    if (!host::run(s, &rerun, &rerun_error)) break;
    if (!first_difference(s, rerun, model_out, s.commands.size())) i.reset();
  }
  if (!i) {
    if (!host_ok && error) *error = "host run failed: " + host_error;
    return std::nullopt;
  }
  Divergence d;
  d.script = render(s);
  d.line = *i + 1;
  d.command = script::format(s.commands[*i]);
  d.host = *i < host_out.size() ? host_out[*i] : kMissing;
  d.model = *i < model_out.size() ? model_out[*i] : kMissing;
  return d;
}

std::optional<Divergence> reduce(const script::Script& s, const replay::Options& model_opts, std::string* error) {
  std::optional<Divergence> best = compare(s, model_opts, error);
  if (!best) return std::nullopt;
  script::Script current = s;
  // Everything after the diverging command is irrelevant.
  current.commands.resize(best->line);
  script::Op op = current.commands.back().op;

  auto diverges_on_op = [&](const script::Script& candidate) -> std::optional<Divergence> {
    std::string ignored;
    std::optional<Divergence> d = compare(candidate, model_opts, &ignored);
    if (d && candidate.commands[d->line - 1].op == op) return d;
    return std::nullopt;
  };

  // ddmin-style: try removing chunks, halving the chunk size when nothing can go.
  size_t chunk = current.commands.size() / 2;
  while (chunk >= 1) {
    bool removed = false;
    for (size_t start = 0; start < current.commands.size();) {
      script::Script candidate = current;
      size_t end = std::min(start + chunk, candidate.commands.size());
      candidate.commands.erase(candidate.commands.begin() + static_cast<long>(start),
                               candidate.commands.begin() + static_cast<long>(end));
      if (candidate.commands.empty()) {
        start = end;
        continue;
      }
      if (std::optional<Divergence> d = diverges_on_op(candidate)) {
        candidate.commands.resize(d->line);
        current = std::move(candidate);
        best = d;
        removed = true;
      } else {
        start = end;
      }
    }
    if (!removed) chunk /= 2;
  }
  // Renumber lines so that Divergence::line matches the rendered script.
  for (size_t i = 0; i < current.commands.size(); ++i) current.commands[i].line = static_cast<uint32_t>(i + 1);
  std::string ignored;
  std::optional<Divergence> final_d = compare(current, model_opts, &ignored);
  return final_d ? final_d : best;
}

namespace {

// One script of a campaign: the script, its seed (0 if given) and, for a generated one, the
// generator's text.
struct CampaignScript {
  script::Script script;
  uint64_t seed = 0;
  std::string text;
};

// The campaign loop. next(i, &cs) produces script i, returning false when there are no more
// (or, having set *error, when script i cannot be produced).
CampaignSummary campaign(const std::function<bool(uint64_t, CampaignScript*, std::string*)>& next,
                         const CampaignOptions& o) {
  CampaignSummary sum;
  CampaignScript cs;
  for (uint64_t i = 0; next(i, &cs, &sum.error); ++i) {
    std::string error;
    std::optional<Divergence> d = compare(cs.script, o.model, &error);
    if (!d && !error.empty()) {
      sum.error = cs.script.file + ": " + error;
      if (o.on_script) o.on_script(ScriptOutcome{i, cs.seed, nullptr, &sum.error});
      break;
    }
    sum.scripts++;
    if (d) {
      sum.failed++;
      d->seed = cs.seed;
      if (!cs.text.empty()) d->script = cs.text;
    } else {
      sum.passed++;
    }
    if (o.on_script) o.on_script(ScriptOutcome{i, cs.seed, d ? &*d : nullptr});
    if (!d) continue;
    if (!sum.first) {
      sum.first = *d;
      std::string reduce_error;
      if (o.reduce == CampaignOptions::Reduce::kFirst) sum.reduced = reduce(cs.script, o.model, &reduce_error);
      if (sum.reduced) sum.reduced->seed = cs.seed;
    }
    if (o.on_divergence == CampaignOptions::OnDivergence::kStop) break;
  }
  return sum;
}

}  // namespace

CampaignSummary run_campaign(const gen::Options& first, uint64_t seeds, const CampaignOptions& options) {
  const campaign::Shard& shard = options.shard;
  auto next = [&](uint64_t i, CampaignScript* cs, std::string* error) {
    if (i >= shard.size(seeds)) return false;
    gen::Options g = first;
    g.seed = shard.seed(first.seed, i);
    cs->seed = g.seed;
    cs->text = gen::generate(g);
    std::optional<script::Script> s =
        script::parse(cs->text, "seed-" + std::to_string(g.seed) + ".mms", error);
    if (!s) {
      *error = "the generator produced an unparsable script: " + *error;
      return false;
    }
    cs->script = std::move(*s);
    return true;
  };
  return campaign(next, options);
}

CampaignSummary run_campaign(const std::vector<script::Script>& scripts, const CampaignOptions& options) {
  auto next = [&](uint64_t i, CampaignScript* cs, std::string*) {
    if (i >= scripts.size()) return false;
    cs->script = scripts[i];
    return true;
  };
  return campaign(next, options);
}

std::string describe(const CampaignSummary& s) {
  std::string text;
  if (s.first) text += describe(*s.first);
  if (s.reduced) text += "\nreduced:\n" + describe(*s.reduced);
  if (!text.empty()) text += '\n';
  text += campaign::verdict_line(campaign::Kind::kOracle, s.scripts, s.passed, s.failed) + "\n";
  if (!s.error.empty()) text += "stopped: " + s.error + "\n";
  return text;
}

std::string describe(const Divergence& d) {
  std::string text = "mirrormm oracle: the model diverges from the host kernel";
  if (d.seed != 0) text += " (generator seed " + std::to_string(d.seed) + ")";
  text += " at script line " + std::to_string(d.line) + "\n";
  text += "  command: " + d.command + "\n";
  text += "  host:    " + d.host + "\n";
  text += "  model:   " + d.model + "\n";
  text += "script (" + std::to_string(d.line) + " of its lines reach the divergence):\n";
  text += d.script;
  if (!d.script.empty() && d.script.back() != '\n') text += '\n';
  return text;
}

}  // namespace mirrormm::oracle
