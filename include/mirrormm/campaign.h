// Campaigns that scale out: a range of seeds split into shards that run anywhere (local
// cores, cluster nodes, a job array), one record per script or run written as JSON Lines,
// and the merge of the shards' records into the verdict the unsharded run would print.
//
// A campaign is `mirrormm oracle` over seeds S..S+K-1 (one generated script each) or
// `mirrormm stress` over them (one run each). Shard I of N (0-based, I < N) takes the seeds
// whose index in the range (seed - S) leaves remainder I when divided by N, so the shards
// are disjoint and together are exactly the unsharded campaign, whatever N. Every record
// names its campaign (the unsharded command line), its shard and its seed, so merge() can
// check that the files it was given are one whole campaign: no seed missing, none twice.
// The record format is documented in docs/campaigns.md.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "mirrormm/stress.h"

namespace mirrormm::campaign {

// Shard `index` of `count`, 0-based.
struct Shard {
  uint64_t index = 0;
  uint64_t count = 1;

  // Whether the seed at this position of the campaign's range belongs to the shard.
  bool contains(uint64_t seed_index) const { return seed_index % count == index; }
  // How many of a range of `seeds` seeds belong to the shard, and the k-th of them (k below
  // that) for a range that starts at `first`.
  uint64_t size(uint64_t seeds) const { return index >= seeds ? 0 : (seeds - 1 - index) / count + 1; }
  uint64_t seed(uint64_t first, uint64_t k) const { return first + index + k * count; }
  // The seeds of first..first+seeds-1 that belong to the shard, in increasing order.
  std::vector<uint64_t> seeds_of(uint64_t first, uint64_t seeds) const;
  // "I/N", as --shard spells it.
  std::string name() const;
  bool operator==(const Shard&) const = default;
};

// Parses --shard's "I/N": two decimal numbers, N at least 1 and I below N. On bad input
// returns nullopt and sets *error to a sentence that says what is wrong.
std::optional<Shard> parse_shard(const std::string& text, std::string* error);

// The verdict line of a campaign, identical for an unsharded run and for the merge of its
// shards: "N scripts: P passed, F failed" (oracle) or "N runs: P passed, F failed" (stress).
enum class Kind { kOracle, kStress };
std::string verdict_line(Kind kind, uint64_t total, uint64_t passed, uint64_t failed);

// The version of the record format that to_json() writes and parse_record() reads.
constexpr int kRecordVersion = 1;

// What one script or run came to. kFinding is a divergence (oracle) or a violation (stress);
// kError a script the oracle could not run (the host runner failed), which stops its shard.
enum class Verdict { kPass, kFinding, kError };

// Oracle: the first line where model and host disagree.
struct Divergence {
  uint64_t line = 0;  // 1-based line of the generated script
  std::string command, model, host;
};

struct Record {
  Kind kind = Kind::kOracle;
  // The campaign: the unsharded command line that runs all of it (the same in every record
  // of the campaign), its first seed and number of seeds.
  std::string campaign;
  uint64_t first_seed = 0, seeds = 0;
  Shard shard;
  uint64_t seed = 0;
  Verdict verdict = Verdict::kPass;
  // The shard stopped after this record (the oracle's first divergence without
  // --keep-going, or an error): its later seeds were not run.
  bool stop = false;
  // The command line that runs just this seed.
  std::string replay;

  // Oracle: the generator's profile and script length, the divergence (kFinding) or why the
  // script could not be run (kError).
  std::string profile;
  uint64_t commands = 0;
  Divergence divergence;
  std::string error;

  // Stress: the run's options (its seed is `seed`), operations and violations counted, the
  // first violation's message and, when the run counted a single kind, its kind (else
  // empty), and every kind with its count, most frequent first.
  stress::Options options;
  uint64_t ops = 0, violations = 0;
  std::string violation_kind, violation_message;
  std::vector<std::pair<std::string, uint64_t>> kinds;
};

// A record as one line of JSON (no newline).
std::string to_json(const Record& r);
// Parses one line written by to_json(). On failure returns nullopt and sets *error to a
// message (without the FILE:LINE: prefix, which the caller knows).
std::optional<Record> parse_record(const std::string& line, std::string* error);

// A stress record from the options and report of one run.
Record stress_record(const stress::Options& options, const stress::Report& report);

// ---- merging shard files ----

// One input of merge(): a name for messages (the file, or "<stdin>") and its text.
struct MergeInput {
  std::string name;
  std::istream* in = nullptr;
};

// A set of seeds (or shard indexes) as a report shows it: how many, and the first few.
struct SeedSet {
  static constexpr size_t kListed = 20;
  uint64_t count = 0;
  std::vector<uint64_t> first;  // the first kListed, in increasing order

  void add(uint64_t seed) {
    ++count;
    if (first.size() < kListed) first.push_back(seed);
  }
  // Whether every seed that will be listed is (count set beforehand, first filled after).
  bool listed_all() const { return first.size() == std::min<uint64_t>(count, kListed); }
  bool empty() const { return count == 0; }
};

struct MergeSummary {
  // A usage error (unreadable input, a line that is not a record, records of two campaigns,
  // a seed outside its shard): "FILE:LINE: message". When set, nothing else is meaningful.
  std::string error;

  Kind kind = Kind::kOracle;
  std::string campaign;
  uint64_t first_seed = 0, seeds = 0, shard_count = 1;
  uint64_t total = 0, passed = 0, failed = 0;  // scripts or runs that came to a verdict
  // Divergences, violations and errors, by seed.
  std::vector<Record> findings;
  // Completeness: seeds of the range with no record, split into those not run because their
  // shard stopped early at a finding (not_run) and the others (missing); seeds with more
  // than one record (duplicated); shards without a single record (absent_shards). The
  // counts are exact, whatever the size of the range; only the first few are listed.
  SeedSet missing, not_run, duplicated, absent_shards;

  bool complete() const { return missing.empty() && duplicated.empty(); }
  // 0 every seed passed; 1 a finding (whatever else); 2 a usage error or an incomplete
  // campaign without a finding.
  int exit_status() const;
};

// Reads every record of the inputs (blank lines are skipped) and sums them up.
MergeSummary merge(const std::vector<MergeInput>& inputs);

// The merge for people: the campaign, its shards, every finding with its replay command,
// what is missing or duplicated, and last the verdict line (verdict_line()).
std::string describe(const MergeSummary& s);

}  // namespace mirrormm::campaign
