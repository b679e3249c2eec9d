// The merge of a campaign's shard files into one verdict (see campaign.h).
#include <fmt/format.h>

#include <algorithm>
#include <istream>
#include <map>

#include "mirrormm/campaign.h"

namespace mirrormm::campaign {
namespace {

// The seeds of a set as a report line lists them: the first few, then how many more.
std::string seed_list(const SeedSet& set) {
  std::string s = fmt::format("{}", fmt::join(set.first, " "));
  if (set.count > set.first.size()) s += fmt::format(" ... ({} more)", set.count - set.first.size());
  return s;
}

// Appends to *out the first SeedSet::kListed seeds of `shard`, from its from-th seed to
// before its end-th, that have no record (seen: the shard's seeds with one, in order).
void list_unseen(const Shard& shard, uint64_t first, uint64_t from, uint64_t end, const std::vector<uint64_t>& seen,
                 std::vector<uint64_t>* out) {
  auto next_seen = seen.begin();
  size_t listed = 0;
  for (uint64_t k = from; k < end && listed < SeedSet::kListed; ++k) {
    const uint64_t seed = shard.seed(first, k);
    while (next_seen != seen.end() && *next_seen < seed) ++next_seen;
    if (next_seen != seen.end() && *next_seen == seed) continue;
    out->push_back(seed);
    ++listed;
  }
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
        s.error = fmt::format("{}: a record of another campaign ({}) than the first record's at {} ({})", here.where(),
                              r->campaign, first->where(), s.campaign);
        return s;
      } else if (r->shard.count != s.shard_count) {
        s.error = fmt::format("{}: shard {} of a campaign split into {} shards (the record at {} says {})",
                              here.where(), r->shard.name(), s.shard_count, first->where(), s.shard_count);
        return s;
      }
      seen.push_back(r->seed);
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
    if (seen[i] == seen[i - 1] && (i < 2 || seen[i - 2] != seen[i])) s.duplicated.add(seen[i]);
  seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
  // What is missing is counted shard by shard and listed from each shard's start, so that
  // the work is bounded by the records read and not by the size of the range (which a
  // record states). parse_record() has checked that every seed seen is in its shard.
  const uint64_t n = s.shard_count;
  std::map<uint64_t, std::vector<uint64_t>> by_shard;  // seeds seen, in increasing order
  for (uint64_t seed : seen) by_shard[(seed - s.first_seed) % n].push_back(seed);
  std::vector<uint64_t> missing, not_run;  // candidates for the lists
  for (const auto& [index, seeds_seen] : by_shard) {
    const Shard shard{index, n};
    const uint64_t size = shard.size(s.seeds);
    auto stop = stopped_at.find(index);
    // The seeds after the one a shard stopped at were not run.
    const uint64_t end = stop == stopped_at.end() ? size : (stop->second - s.first_seed) / n + 1;
    list_unseen(shard, s.first_seed, 0, end, seeds_seen, &missing);
    if (end == size) continue;
    list_unseen(shard, s.first_seed, end, size, seeds_seen, &not_run);
    const uint64_t run_after_stop =
        seeds_seen.end() - std::upper_bound(seeds_seen.begin(), seeds_seen.end(), stop->second);
    s.not_run.count += size - end - run_after_stop;
  }
  s.missing.count = s.seeds - seen.size() - s.not_run.count;
  s.absent_shards.count = std::min(n, s.seeds) - by_shard.size();
  for (uint64_t index = 0; index < n && !s.absent_shards.listed_all(); ++index) {
    if (by_shard.count(index)) continue;
    s.absent_shards.first.push_back(index);
    const Shard shard{index, n};
    list_unseen(shard, s.first_seed, 0, shard.size(s.seeds), {}, &missing);
  }
  for (auto [candidates, set] : {std::pair{&missing, &s.missing}, std::pair{&not_run, &s.not_run}}) {
    std::sort(candidates->begin(), candidates->end());
    candidates->resize(std::min(candidates->size(), SeedSet::kListed));
    set->first = *candidates;
  }
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
  const uint64_t shards_present = std::min(s.shard_count, s.seeds) - s.absent_shards.count;
  text += fmt::format("shards: {} of {} sent records", shards_present, s.shard_count);
  if (!s.absent_shards.empty()) {
    std::vector<std::string> names;
    for (uint64_t i : s.absent_shards.first) names.push_back(Shard{i, s.shard_count}.name());
    text += fmt::format(" (none from {}{})", fmt::join(names, " "),
                        s.absent_shards.count > names.size()
                            ? fmt::format(" ... ({} more)", s.absent_shards.count - names.size())
                            : "");
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
    text += fmt::format("not run (their shard stopped at a divergence or an error): {} seeds: {}\n", s.not_run.count,
                        seed_list(s.not_run));
  if (!s.missing.empty())
    text += fmt::format("missing: {} of {} seeds have no record: {}\n", s.missing.count, s.seeds, seed_list(s.missing));
  if (!s.duplicated.empty())
    text += fmt::format("duplicated: {} seeds have more than one record: {}\n", s.duplicated.count,
                        seed_list(s.duplicated));
  text += verdict_line(s.kind, s.total, s.passed, s.failed) + "\n";
  for (const Record& r : s.findings)
    if (r.verdict == Verdict::kError) text += fmt::format("stopped: {}\n", r.error);
  return text;
}

}  // namespace mirrormm::campaign
