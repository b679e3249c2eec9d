// The merge of a campaign's shard files into one verdict (see campaign.h).
#include <fmt/format.h>

#include <algorithm>
#include <istream>
#include <set>

#include "mirrormm/campaign.h"

namespace mirrormm::campaign {
namespace {

// At most this many seeds are listed by number in a report line; the count is always given.
constexpr size_t kSeedsListed = 20;

std::string seed_list(const std::vector<uint64_t>& seeds) {
  const size_t listed = std::min(seeds.size(), kSeedsListed);
  std::string s = fmt::format("{}", fmt::join(seeds.begin(), seeds.begin() + static_cast<long>(listed), " "));
  if (seeds.size() > kSeedsListed) s += fmt::format(" ... ({} more)", seeds.size() - kSeedsListed);
  return s;
}

// Where a record came from, for messages about the records after it.
struct Origin {
  std::string name;
  uint64_t line = 0;
  std::string where() const { return fmt::format("{}:{}", name, line); }
};

}  // namespace

MergeSummary merge(const std::vector<MergeInput>& inputs) {
  MergeSummary s;
  std::optional<Origin> first;  // the first record: its campaign is the one merged
  std::vector<uint64_t> seen;
  // The seed at which each shard stopped early, if it did.
  std::map<uint64_t, uint64_t> stopped_at;
  std::set<uint64_t> shards_seen;
  for (const MergeInput& input : inputs) {
    std::string line;
    for (uint64_t lineno = 1; std::getline(*input.in, line); ++lineno) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      const Origin here{input.name, lineno};
      std::string error;
      std::optional<Record> r = parse_record(line, &error);
      if (!r) {
        s.error = here.where() + ": " + error;
        return s;
      }
      if (!first) {
        first = here;
        s.kind = r->kind;
        s.campaign = r->campaign;
        s.first_seed = r->first_seed;
        s.seeds = r->seeds;
        s.shard_count = r->shard.count;
      } else if (r->campaign != s.campaign || r->kind != s.kind || r->first_seed != s.first_seed ||
                 r->seeds != s.seeds) {
        s.error = fmt::format("{}: a record of another campaign ({}) than the first record's at {} ({})",
                              here.where(), r->campaign, first->where(), s.campaign);
        return s;
      } else if (r->shard.count != s.shard_count) {
        s.error = fmt::format("{}: shard {} of a campaign split into {} shards (the record at {} says {})",
                              here.where(), r->shard.name(), s.shard_count, first->where(), s.shard_count);
        return s;
      }
      seen.push_back(r->seed);
      shards_seen.insert(r->shard.index);
      if (r->stop) {
        auto [it, inserted] = stopped_at.emplace(r->shard.index, r->seed);
        if (!inserted) it->second = std::min(it->second, r->seed);
      }
      s.total += r->verdict != Verdict::kError;
      s.passed += r->verdict == Verdict::kPass;
      s.failed += r->verdict == Verdict::kFinding;
      if (r->verdict != Verdict::kPass) s.findings.push_back(std::move(*r));
    }
    if (input.in->bad()) {
      s.error = input.name + ": read error";
      return s;
    }
  }
  if (!first) {
    s.error = "no records: every input is empty";
    return s;
  }
  std::sort(s.findings.begin(), s.findings.end(), [](const Record& a, const Record& b) { return a.seed < b.seed; });
  std::sort(seen.begin(), seen.end());
  for (size_t i = 1; i < seen.size(); ++i)
    if (seen[i] == seen[i - 1] && (s.duplicated.empty() || s.duplicated.back() != seen[i]))
      s.duplicated.push_back(seen[i]);
  // Every seed of the range that has no record; parse_record() has checked that each seen
  // one is inside the range and in its shard.
  auto next_seen = seen.begin();
  for (uint64_t i = 0; i < s.seeds; ++i) {
    const uint64_t seed = s.first_seed + i;
    while (next_seen != seen.end() && *next_seen < seed) ++next_seen;
    if (next_seen != seen.end() && *next_seen == seed) continue;
    auto stop = stopped_at.find(i % s.shard_count);
    (stop != stopped_at.end() && seed > stop->second ? s.not_run : s.missing).push_back(seed);
  }
  for (uint64_t shard = 0; shard < s.shard_count && s.absent_shards.size() <= kSeedsListed; ++shard)
    if (!shards_seen.count(shard) && shard < s.seeds) s.absent_shards.push_back(shard);
  return s;
}

int MergeSummary::exit_status() const {
  if (!error.empty()) return 2;
  if (!findings.empty()) return 1;
  return complete() ? 0 : 2;
}

std::string describe(const MergeSummary& s) {
  if (!s.error.empty()) return "merge: " + s.error + "\n";
  std::string text = fmt::format("campaign: {}\n", s.campaign);
  const uint64_t shards_present = std::min(s.shard_count, s.seeds) - s.absent_shards.size();
  text += fmt::format("shards: {} of {} sent records", shards_present, s.shard_count);
  if (!s.absent_shards.empty()) {
    std::vector<std::string> names;
    for (uint64_t i : s.absent_shards) names.push_back(Shard{i, s.shard_count}.name());
    text += fmt::format(" (none from {})", fmt::join(names, " "));
  }
  text += "\n";
  for (const Record& r : s.findings) {
    if (r.verdict == Verdict::kError) {
      text += fmt::format("seed {}: error: {}\n", r.seed, r.error);
    } else if (r.kind == Kind::kOracle) {
      text += fmt::format("seed {}: diverges at line {}: {}\n  model: {}\n  host:  {}\n", r.seed, r.divergence.line,
                          r.divergence.command, r.divergence.model, r.divergence.host);
    } else {
      text += fmt::format("seed {}: {} violations{}\n  first: {}\n", r.seed, r.violations,
                          r.violation_kind.empty() ? "" : " (" + r.violation_kind + ")", r.violation_message);
    }
    text += fmt::format("  replay: {}\n", r.replay);
  }
  if (!s.not_run.empty())
    text += fmt::format("not run (their shard stopped at its first finding): {} seeds: {}\n", s.not_run.size(),
                        seed_list(s.not_run));
  if (!s.missing.empty())
    text += fmt::format("missing: {} of {} seeds have no record: {}\n", s.missing.size(), s.seeds, seed_list(s.missing));
  if (!s.duplicated.empty())
    text += fmt::format("duplicated: {} seeds have more than one record: {}\n", s.duplicated.size(),
                        seed_list(s.duplicated));
  text += verdict_line(s.kind, s.total, s.passed, s.failed) + "\n";
  for (const Record& r : s.findings)
    if (r.verdict == Verdict::kError) text += fmt::format("stopped: {}\n", r.error);
  return text;
}

}  // namespace mirrormm::campaign
