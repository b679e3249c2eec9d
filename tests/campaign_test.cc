// Campaigns split into shards: the partition of a seed range, the JSON Lines records of
// oracle scripts and stress runs, the merge of shard files into the unsharded verdict, and
// the mirrormm program's --shard, --json and merge as users run them.
#include "mirrormm/campaign.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/oracle.h"
#include "mirrormm/stress.h"
#include "support/watchdog.h"

namespace mirrormm::campaign {
namespace {

// A hang fails the test within this limit with a message (tests/support/watchdog.h).
const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(180)));

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(Shard, PartitionIsExactAndDisjoint) {
  for (uint64_t seeds : {0u, 1u, 2u, 7u, 100u, 101u}) {
    for (uint64_t n = 1; n <= 9; ++n) {
      std::vector<uint64_t> all;
      for (uint64_t i = 0; i < n; ++i) {
        const Shard s{i, n};
        std::vector<uint64_t> mine = s.seeds_of(1000, seeds);
        EXPECT_EQ(mine.size(), s.size(seeds));
        for (uint64_t seed : mine) EXPECT_TRUE(s.contains(seed - 1000)) << seed << " in " << s.name();
        EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
        all.insert(all.end(), mine.begin(), mine.end());
      }
      // Disjoint (no seed twice) and exact (every seed of the range, nothing else).
      std::sort(all.begin(), all.end());
      std::vector<uint64_t> range;
      for (uint64_t i = 0; i < seeds; ++i) range.push_back(1000 + i);
      EXPECT_EQ(all, range) << seeds << " seeds in " << n << " shards";
    }
  }
  // Near the end of the seed space nothing wraps around.
  EXPECT_THAT((Shard{1, 2}.seeds_of(UINT64_MAX - 3, 4)), ElementsAre(UINT64_MAX - 2, UINT64_MAX));
}

TEST(Shard, ParseAcceptsIOfNAndRejectsTheRest) {
  std::string error;
  std::optional<Shard> s = parse_shard("3/4", &error);
  ASSERT_TRUE(s);
  EXPECT_EQ(*s, (Shard{3, 4}));
  EXPECT_EQ(s->name(), "3/4");
  EXPECT_EQ(parse_shard("0/1", &error), (Shard{0, 1}));
  for (const char* bad :
       {"4/4", "1/0", "0/0", "a/4", "1/", "/4", "-1/4", "1/4x", " 1/4", "", "1", "1/2/3", "99999999999999999999/1"}) {
    error.clear();
    EXPECT_FALSE(parse_shard(bad, &error)) << bad;
    EXPECT_FALSE(error.empty()) << bad;
  }
  parse_shard("4/4", &error);
  EXPECT_THAT(error, HasSubstr("numbered from 0"));
}

TEST(Shard, VerdictLineIsTheUnshardedOne) {
  EXPECT_EQ(verdict_line(Kind::kOracle, 200, 199, 1), "200 scripts: 199 passed, 1 failed");
  EXPECT_EQ(verdict_line(Kind::kStress, 8, 8, 0), "8 runs: 8 passed, 0 failed");
  oracle::CampaignSummary sum;
  sum.scripts = 200;
  sum.passed = 199;
  sum.failed = 1;
  EXPECT_EQ(oracle::describe(sum), verdict_line(Kind::kOracle, 200, 199, 1) + "\n");
}

// An oracle record of the campaign seeds 1..12 in 3 shards.
Record oracle_record(uint64_t seed, Verdict v = Verdict::kPass) {
  Record r;
  r.kind = Kind::kOracle;
  r.campaign = "mirrormm oracle --seed 1 --seeds 12 --commands 50 --profile anon";
  r.first_seed = 1;
  r.seeds = 12;
  r.shard = Shard{(seed - 1) % 3, 3};
  r.seed = seed;
  r.profile = "anon";
  r.commands = 50;
  r.verdict = v;
  r.replay = "mirrormm oracle --seed " + std::to_string(seed) + " --seeds 1 --commands 50 --profile anon";
  if (v == Verdict::kFinding) r.divergence = {7, "munmap 0x200000000000 0x1000", "0", "-EINVAL"};
  if (v == Verdict::kError) r.error = "seed-" + std::to_string(seed) + ".mms: host run failed: worker died";
  return r;
}

TEST(Record, OracleFieldsAndRoundTrip) {
  Record r = oracle_record(5, Verdict::kFinding);
  r.divergence.model = "odd \"quoted\"\tbytes \x01";
  r.stop = true;
  const std::string line = to_json(r);
  EXPECT_EQ(line.find('\n'), std::string::npos);
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["kind"], "oracle");
  EXPECT_EQ(j["version"], kRecordVersion);
  EXPECT_EQ(j["campaign"], r.campaign);
  EXPECT_EQ(j["first_seed"], 1);
  EXPECT_EQ(j["seeds"], 12);
  EXPECT_EQ(j["shard"], "1/3");
  EXPECT_EQ(j["seed"], 5);
  EXPECT_EQ(j["profile"], "anon");
  EXPECT_EQ(j["commands"], 50);
  EXPECT_EQ(j["verdict"], "divergence");
  EXPECT_EQ(j["divergence"]["line"], 7);
  EXPECT_EQ(j["divergence"]["command"], "munmap 0x200000000000 0x1000");
  EXPECT_EQ(j["divergence"]["model"], r.divergence.model);
  EXPECT_EQ(j["divergence"]["host"], "-EINVAL");
  EXPECT_EQ(j["stop"], true);
  EXPECT_EQ(j["replay"], "mirrormm oracle --seed 5 --seeds 1 --commands 50 --profile anon");

  std::string error;
  std::optional<Record> back = parse_record(line, &error);
  ASSERT_TRUE(back) << error;
  EXPECT_EQ(back->seed, 5u);
  EXPECT_EQ(back->shard, (Shard{1, 3}));
  EXPECT_EQ(back->verdict, Verdict::kFinding);
  EXPECT_EQ(back->divergence.line, 7u);
  EXPECT_EQ(back->divergence.model, r.divergence.model);
  EXPECT_TRUE(back->stop);
  EXPECT_EQ(back->replay, r.replay);

  // A passing record has no divergence and no stop; an error one says why.
  const nlohmann::json pass = nlohmann::json::parse(to_json(oracle_record(4)));
  EXPECT_EQ(pass["verdict"], "pass");
  EXPECT_FALSE(pass.contains("divergence"));
  EXPECT_FALSE(pass.contains("stop"));
  const nlohmann::json err = nlohmann::json::parse(to_json(oracle_record(4, Verdict::kError)));
  EXPECT_EQ(err["verdict"], "error");
  EXPECT_THAT(err["error"].get<std::string>(), HasSubstr("host run failed"));
}

TEST(Record, ParseNamesWhatIsWrong) {
  const std::string good = to_json(oracle_record(4));
  auto error_of = [](const std::string& line) {
    std::string error;
    EXPECT_FALSE(parse_record(line, &error)) << line;
    return error;
  };
  EXPECT_THAT(error_of("{\"kind\": "), HasSubstr("not JSON"));
  EXPECT_THAT(error_of("[1, 2]"), HasSubstr("object"));
  // The good record with one field changed (or removed, when the value is null), and what
  // the error must name.
  const std::vector<std::tuple<const char*, nlohmann::json, const char*>> edits = {
      {"seed", nullptr, "\"seed\""},
      {"version", 2, "version 2"},
      {"kind", "fuzz", "\"kind\""},
      {"seed", 5, "does not belong to shard 0/3"},  // seed 5 is index 4: shard 1/3
      {"seed", 13, "outside"},
      {"verdict", "violation", "\"verdict\""},
      {"shard", "3/3", "\"shard\""},
  };
  for (const auto& [key, value, message] : edits) {
    nlohmann::json j = nlohmann::json::parse(good);
    if (value.is_null()) {
      j.erase(key);
    } else {
      j[key] = value;
    }
    EXPECT_THAT(error_of(j.dump()), HasSubstr(message)) << key << " = " << value;
  }
}

// Record lines as a shard file holds them.
std::string lines(const std::vector<Record>& records) {
  std::string text;
  for (const Record& r : records) text += to_json(r) + "\n";
  return text;
}

MergeSummary merge_texts(const std::vector<std::string>& texts) {
  std::vector<std::istringstream> streams;
  for (const std::string& t : texts) streams.emplace_back(t);
  std::vector<MergeInput> inputs;
  for (size_t i = 0; i < streams.size(); ++i) inputs.push_back({"shard" + std::to_string(i) + ".jsonl", &streams[i]});
  return merge(inputs);
}

// The three shard files of the 12-seed campaign, every script passing unless `verdicts`
// says otherwise.
std::vector<std::string> shard_files(const std::map<uint64_t, Verdict>& verdicts = {}) {
  std::vector<std::string> files(3);
  for (uint64_t seed = 1; seed <= 12; ++seed) {
    auto it = verdicts.find(seed);
    files[(seed - 1) % 3] += to_json(oracle_record(seed, it == verdicts.end() ? Verdict::kPass : it->second)) + "\n";
  }
  return files;
}

TEST(Merge, AllPassingShardsGiveTheUnshardedVerdict) {
  std::vector<std::string> files = shard_files();
  files[1] += "\n";  // blank lines are allowed
  const MergeSummary s = merge_texts(files);
  ASSERT_TRUE(s.error.empty()) << s.error;
  EXPECT_TRUE(s.complete());
  EXPECT_EQ(s.total, 12u);
  EXPECT_EQ(s.passed, 12u);
  EXPECT_EQ(s.exit_status(), 0);
  const std::string text = describe(s);
  EXPECT_THAT(text, HasSubstr("campaign: mirrormm oracle --seed 1 --seeds 12"));
  EXPECT_THAT(text, HasSubstr("shards: 3 of 3"));
  EXPECT_THAT(text, HasSubstr("\n12 scripts: 12 passed, 0 failed\n"));
}

TEST(Merge, FindingExitsOneWithItsReplayCommand) {
  const MergeSummary s = merge_texts(shard_files({{8, Verdict::kFinding}}));
  ASSERT_TRUE(s.error.empty()) << s.error;
  EXPECT_EQ(s.exit_status(), 1);
  ASSERT_EQ(s.findings.size(), 1u);
  EXPECT_EQ(s.findings[0].seed, 8u);
  const std::string text = describe(s);
  EXPECT_THAT(text, HasSubstr("seed 8: diverges at line 7: munmap 0x200000000000 0x1000"));
  EXPECT_THAT(text, HasSubstr("replay: mirrormm oracle --seed 8 --seeds 1 --commands 50 --profile anon"));
  EXPECT_THAT(text, HasSubstr("12 scripts: 11 passed, 1 failed"));
}

TEST(Merge, MissingShardIsAnIncompleteCampaign) {
  std::vector<std::string> files = shard_files();
  files.erase(files.begin() + 2);  // shard 2/3: seeds 3, 6, 9, 12
  const MergeSummary s = merge_texts(files);
  ASSERT_TRUE(s.error.empty()) << s.error;
  EXPECT_FALSE(s.complete());
  EXPECT_THAT(s.missing.first, ElementsAre(3, 6, 9, 12));
  EXPECT_THAT(s.absent_shards.first, ElementsAre(2));
  EXPECT_EQ(s.exit_status(), 2);
  const std::string text = describe(s);
  EXPECT_THAT(text, HasSubstr("shards: 2 of 3 sent records (none from 2/3)"));
  EXPECT_THAT(text, HasSubstr("missing: 4 of 12 seeds have no record: 3 6 9 12"));
  EXPECT_THAT(text, HasSubstr("8 scripts: 8 passed, 0 failed"));

  // One record lost from the middle of a shard is found too.
  files = shard_files();
  files[0] = lines({oracle_record(1), oracle_record(7), oracle_record(10)});
  EXPECT_THAT(merge_texts(files).missing.first, ElementsAre(4));
}

// A record states the size of its campaign's range; the merge's work is bounded by the
// records it reads, whatever that size, and its counts stay exact.
TEST(Merge, HugeRangeIsCountedNotWalked) {
  Record r = oracle_record(1);
  r.seeds = uint64_t{1} << 62;
  r.shard = Shard{0, uint64_t{1} << 40};
  Record stopped = r;
  stopped.seed = 2;
  stopped.shard = Shard{1, uint64_t{1} << 40};
  stopped.verdict = Verdict::kFinding;
  stopped.divergence = {1, "munmap 0x0 0x0", "0", "-EINVAL"};
  stopped.stop = true;
  const MergeSummary s = merge_texts({lines({r, stopped})});
  ASSERT_TRUE(s.error.empty()) << s.error;
  const uint64_t per_shard = uint64_t{1} << 22;
  EXPECT_EQ(s.not_run.count, per_shard - 1);
  EXPECT_EQ(s.missing.count, s.seeds - 2 - s.not_run.count);
  EXPECT_THAT(s.missing.first, ElementsAre(3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22));
  EXPECT_EQ(s.not_run.first.size(), SeedSet::kListed);
  EXPECT_EQ(s.not_run.first[0], 2 + (uint64_t{1} << 40));
  EXPECT_EQ(s.absent_shards.count, (uint64_t{1} << 40) - 2);
  EXPECT_THAT(describe(s), HasSubstr("missing: " + std::to_string(s.missing.count) + " of " + std::to_string(s.seeds) +
                                     " seeds have no record: 3 4 5"));
  EXPECT_EQ(s.exit_status(), 1);
}

TEST(Merge, DuplicatedShardIsAnIncompleteCampaign) {
  std::vector<std::string> files = shard_files();
  files.push_back(files[1]);
  const MergeSummary s = merge_texts(files);
  EXPECT_THAT(s.duplicated.first, ElementsAre(2, 5, 8, 11));
  EXPECT_EQ(s.exit_status(), 2);
  EXPECT_THAT(describe(s), HasSubstr("duplicated: 4 seeds have more than one record: 2 5 8 11"));
}

TEST(Merge, ShardThatStoppedAtItsFindingExplainsItsMissingSeeds) {
  std::vector<std::string> files = shard_files();
  Record stop = oracle_record(5, Verdict::kFinding);
  stop.stop = true;
  files[1] = lines({oracle_record(2), stop});  // 8 and 11 not run
  const MergeSummary s = merge_texts(files);
  EXPECT_TRUE(s.missing.empty());
  EXPECT_THAT(s.not_run.first, ElementsAre(8, 11));
  EXPECT_EQ(s.exit_status(), 1);
  EXPECT_THAT(describe(s), HasSubstr("not run (their shard stopped at a divergence or an error): 2 seeds: 8 11"));

  // An error stops a shard too, and prints as the unsharded run prints it.
  Record error = oracle_record(5, Verdict::kError);
  error.stop = true;
  files[1] = lines({oracle_record(2), error});
  const MergeSummary e = merge_texts(files);
  EXPECT_EQ(e.exit_status(), 1);
  EXPECT_EQ(e.total, 9u);
  EXPECT_THAT(describe(e), HasSubstr("9 scripts: 9 passed, 0 failed\nstopped: seed-5.mms: host run failed"));
}

TEST(Merge, BadInputIsAUsageErrorWithFileAndLine) {
  std::vector<std::string> files = shard_files();
  files[1] = to_json(oracle_record(2)) + "\nnot json\n";
  MergeSummary s = merge_texts(files);
  EXPECT_EQ(s.exit_status(), 2);
  EXPECT_THAT(s.error, HasSubstr("shard1.jsonl:2: not JSON"));

  // Records of two campaigns do not merge.
  Record other = oracle_record(3);
  other.campaign = "mirrormm oracle --seed 1 --seeds 12 --commands 50 --profile files";
  files = shard_files();
  files[2] = lines({other});
  s = merge_texts(files);
  EXPECT_EQ(s.exit_status(), 2);
  EXPECT_THAT(s.error, HasSubstr("shard2.jsonl:1: a record of another campaign"));
  EXPECT_THAT(s.error, HasSubstr("shard0.jsonl:1"));

  s = merge_texts({"", "\n"});
  EXPECT_EQ(s.exit_status(), 2);
  EXPECT_THAT(s.error, HasSubstr("no records"));
}

// The library's sharded oracle runs exactly the shard's seeds, and the shards together run
// exactly the unsharded campaign's.
TEST(OracleShard, ShardsRunTheirSeeds) {
  gen::Options first;
  first.seed = 40;
  first.commands = 20;
  std::multiset<uint64_t> union_of_shards;
  uint64_t scripts = 0;
  for (uint64_t i = 0; i < 3; ++i) {
    oracle::CampaignOptions o;
    o.model = replay::Options{SystemConfig::from_host()};
    o.shard = Shard{i, 3};
    std::vector<uint64_t> ran;
    o.on_script = [&](const oracle::ScriptOutcome& r) {
      testing::kick_test_watchdog();
      ran.push_back(r.seed);
    };
    const oracle::CampaignSummary sum = oracle::run_campaign(first, 8, o);
    EXPECT_TRUE(sum.ok()) << oracle::describe(sum);
    EXPECT_EQ(ran, o.shard.seeds_of(40, 8));
    union_of_shards.insert(ran.begin(), ran.end());
    scripts += sum.scripts;
  }
  EXPECT_EQ(scripts, 8u);
  EXPECT_EQ(union_of_shards, (std::multiset<uint64_t>{40, 41, 42, 43, 44, 45, 46, 47}));
}

// A stress run of a deliberately broken kernel (TLB shootdowns leave stale entries) gives a
// violation record whose merge is a finding with the run's replay command.
TEST(StressRecord, BrokenKernelRunIsAFindingWithItsReplay) {
  stress::Options o;
  o.threads = 2;
  o.seconds = 60;  // an upper bound for loaded machines: the run ends at the first violation
  o.seed = 6;
  o.break_shootdown = true;
  o.stop_on_violation = true;
  const stress::Report report = stress::run(o);
  ASSERT_GT(report.violations, 0u);
  Record r = stress_record(o, report);
  r.campaign = "mirrormm stress --threads 2 --seconds 60 --seed 5 --break-shootdown --stop-on-violation --seeds 2";
  r.first_seed = 5;
  r.seeds = 2;
  r.shard = Shard{1, 2};
  EXPECT_EQ(r.verdict, Verdict::kFinding);
  EXPECT_EQ(r.replay, stress::replay_command(o));
  EXPECT_THAT(r.replay, HasSubstr("--seed 6 --break-shootdown"));

  const nlohmann::json j = nlohmann::json::parse(to_json(r));
  EXPECT_EQ(j["kind"], "stress");
  EXPECT_EQ(j["verdict"], "violation");
  EXPECT_EQ(j["seed"], 6);
  EXPECT_EQ(j["options"]["threads"], 2);
  EXPECT_EQ(j["options"]["break_shootdown"], true);
  EXPECT_EQ(j["counts"]["ops"], report.ops);
  EXPECT_EQ(j["counts"]["violations"], report.violations);
  EXPECT_EQ(j["violation"]["message"], report.messages.at(0));
  if (report.kinds.size() == 1) {
    EXPECT_EQ(j["violation"]["kind"], report.kinds[0].first);
  }
  EXPECT_EQ(j["kinds"].size(), report.kinds.size());

  Record pass = r;  // the other shard's run, passing
  pass.seed = 5;
  pass.shard = Shard{0, 2};
  pass.verdict = Verdict::kPass;
  pass.violations = 0;
  pass.kinds.clear();
  pass.options.break_shootdown = false;
  const MergeSummary s = merge_texts({lines({pass}), lines({r})});
  ASSERT_TRUE(s.error.empty()) << s.error;
  EXPECT_EQ(s.exit_status(), 1);
  const std::string text = describe(s);
  EXPECT_THAT(text, HasSubstr("seed 6: " + std::to_string(report.violations) + " violations"));
  EXPECT_THAT(text, HasSubstr("replay: " + stress::replay_command(o)));
  EXPECT_THAT(text, HasSubstr("\n2 runs: 1 passed, 1 failed\n"));
}

// ---- the program ----

struct CliRun {
  int status = -1;
  std::string out, err;
};

// The directory the program runs in: its record files are there.
const std::string& scratch_dir() {
  static const std::string dir = ::testing::TempDir() + "campaign-test-" + std::to_string(getpid());
  static const int made = std::system(("mkdir -p " + dir).c_str());
  (void)made;
  return dir;
}

// Runs `mirrormm ARGS` through the shell (MIRRORMM_CLI) in scratch_dir(), `input` as its
// standard input unless ARGS redirect it.
CliRun mirrormm(const std::string& args, const std::string& input = "") {
  const std::string& dir = scratch_dir();
  std::ofstream(dir + "/stdin") << input;
  const std::string err_file = dir + "/stderr";
  const std::string cmd = "cd " + dir + " && " + MIRRORMM_CLI + " " + args + " 2>" + err_file +
                          (args.find('<') == std::string::npos ? " <stdin" : "");
  CliRun r;
  FILE* p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  for (size_t n; (n = fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int ws = pclose(p);
  if (WIFEXITED(ws)) r.status = WEXITSTATUS(ws);
  std::ifstream in(err_file);
  std::ostringstream s;
  s << in.rdbuf();
  r.err = s.str();
  return r;
}

// The last line of a report: the verdict.
std::string last_line(const std::string& text) {
  const size_t end = text.find_last_not_of('\n');
  if (end == std::string::npos) return "";
  const size_t start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

// Runs `mirrormm ARGS` and expects a usage error (exit status 2) that says `message` on
// standard error.
void expect_usage_error(const std::string& args, const std::string& message, const std::string& input = "") {
  const CliRun r = mirrormm(args, input);
  EXPECT_EQ(r.status, 2) << args;
  EXPECT_THAT(r.err, HasSubstr(message)) << args;
}

TEST(Cli, BadShardIsAUsageError) {
  for (const char* bad : {"4/4", "1/0", "x", "-1/2"})
    expect_usage_error(std::string("oracle --seeds 1 --shard ") + bad, "--shard");
  expect_usage_error("stress --seconds 0.1 --shard 2/2", "numbered from 0");
  expect_usage_error("oracle --seed 18446744073709551615 --seeds 2", "largest seed");
  expect_usage_error("oracle --seeds 1 --json /nonexistent-dir/x.jsonl", "/nonexistent-dir/x.jsonl: cannot open");
}

TEST(Cli, ShardedOracleMergesToTheUnshardedVerdict) {
  const std::string campaign = "oracle --seed 3 --seeds 10 --commands 30 --profile anon";
  const CliRun whole = mirrormm(campaign + " --json whole.jsonl");
  ASSERT_EQ(whole.status, 0) << whole.out << whole.err;
  EXPECT_EQ(last_line(whole.out), "10 scripts: 10 passed, 0 failed");
  for (int i = 0; i < 3; ++i) {
    const CliRun shard =
        mirrormm(campaign + " --shard " + std::to_string(i) + "/3 --json shard" + std::to_string(i) + ".jsonl");
    ASSERT_EQ(shard.status, 0) << shard.out << shard.err;
  }
  CliRun merged = mirrormm("merge shard0.jsonl shard1.jsonl shard2.jsonl");
  EXPECT_EQ(merged.status, 0) << merged.out << merged.err;
  EXPECT_EQ(last_line(merged.out), last_line(whole.out));
  EXPECT_THAT(merged.out, HasSubstr("campaign: mirrormm oracle --seed 3 --seeds 10 --commands 30 --profile anon"));
  // The records of the whole run merge to the same verdict, from standard input too.
  merged = mirrormm("merge < whole.jsonl");
  EXPECT_EQ(merged.status, 0) << merged.err;
  EXPECT_EQ(last_line(merged.out), last_line(whole.out));
  // --json - puts the records on standard output and the report on standard error.
  const CliRun stdout_records = mirrormm(campaign + " --shard 1/3 --json -");
  ASSERT_EQ(stdout_records.status, 0) << stdout_records.err;
  std::istringstream in(stdout_records.out);
  std::vector<uint64_t> seeds;
  for (std::string line; std::getline(in, line);) seeds.push_back(nlohmann::json::parse(line)["seed"].get<uint64_t>());
  EXPECT_THAT(seeds, ElementsAre(4, 7, 10));
  EXPECT_EQ(last_line(stdout_records.err), "3 scripts: 3 passed, 0 failed");
  // Without one shard the campaign is incomplete.
  merged = mirrormm("merge shard0.jsonl shard2.jsonl");
  EXPECT_EQ(merged.status, 2);
  EXPECT_THAT(merged.out, HasSubstr("missing: 3 of 10 seeds have no record: 4 7 10"));
  // A file that is not records is a usage error naming the file and line.
  expect_usage_error("merge shard0.jsonl /dev/null -", "<stdin>:1: not JSON", "garbage\n");
  expect_usage_error("merge no-such-file.jsonl", "no-such-file.jsonl: cannot open");
}

// A host runner that cannot run stops the oracle with an error record, which the merge
// reports as the unsharded run does.
TEST(Cli, OracleErrorIsRecordedAndStopsTheShard) {
  ASSERT_EQ(setenv("MIRRORMM_HOST_WORKER", "/nonexistent", 1), 0);
  const CliRun shard = mirrormm("oracle --seeds 7 --commands 20 --shard 1/2 --json error.jsonl");
  unsetenv("MIRRORMM_HOST_WORKER");
  EXPECT_EQ(shard.status, 1);
  std::ifstream in(scratch_dir() + "/error.jsonl");
  std::string line;
  ASSERT_TRUE(std::getline(in, line));
  const nlohmann::json j = nlohmann::json::parse(line);
  EXPECT_EQ(j["seed"], 2);
  EXPECT_EQ(j["verdict"], "error");
  EXPECT_EQ(j["stop"], true);
  EXPECT_THAT(j["error"].get<std::string>(), HasSubstr("seed-2.mms: host run failed"));
  EXPECT_FALSE(std::getline(in, line)) << "a second record after the error: " << line;
  const CliRun merged = mirrormm("merge error.jsonl");
  EXPECT_EQ(merged.status, 1);
  EXPECT_THAT(merged.out, HasSubstr("not run (their shard stopped at a divergence or an error): 2 seeds: 4 6"));
  EXPECT_THAT(merged.out, HasSubstr("shards: 1 of 2 sent records (none from 0/2)"));
  EXPECT_THAT(merged.out, HasSubstr("missing: 4 of 7 seeds have no record: 1 3 5 7"));
  EXPECT_THAT(merged.out, HasSubstr("\n0 scripts: 0 passed, 0 failed\nstopped: seed-2.mms: host run failed"));
}

TEST(Cli, ShardedStressWithABrokenKernelMergesToAFinding) {
  const std::string campaign =
      "stress --threads 2 --seconds 30 --seed 11 --seeds 3 --break-shootdown --stop-on-violation";
  for (int i = 0; i < 2; ++i) {
    const CliRun shard =
        mirrormm(campaign + " --shard " + std::to_string(i) + "/2 --json stress" + std::to_string(i) + ".jsonl");
    EXPECT_EQ(shard.status, 1) << shard.out << shard.err;
    EXPECT_EQ(last_line(shard.out), i == 0 ? "2 runs: 0 passed, 2 failed" : "1 runs: 0 passed, 1 failed");
  }
  const CliRun merged = mirrormm("merge stress0.jsonl stress1.jsonl");
  EXPECT_EQ(merged.status, 1) << merged.out << merged.err;
  EXPECT_THAT(merged.out, HasSubstr("replay: mirrormm stress --threads 2 --seconds 30 --seed 12 --break-shootdown"));
  EXPECT_EQ(last_line(merged.out), "3 runs: 0 passed, 3 failed");
  EXPECT_THAT(merged.out, Not(HasSubstr("missing")));
}

}  // namespace
}  // namespace mirrormm::campaign
