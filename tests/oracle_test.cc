// The model against the host kernel on random scripts.
//
// Environment: MIRRORMM_ORACLE_SEEDS (how many seeds, default 200), MIRRORMM_ORACLE_SEED0
// (first seed, default 1), MIRRORMM_ORACLE_PROFILE (anon, files, all, lock or advise; default anon),
// MIRRORMM_ORACLE_COMMANDS (commands per script, default 300). The first diverging seed
// fails the test with the divergence and a reduced script that still diverges; both
// scripts are also written next to the test's temporary files for replaying. The campaign's
// summary itself is tested on given scripts that a model with too little memory fails.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/oracle.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"
#include "support/watchdog.h"

namespace mirrormm::oracle {
namespace {

// A hang fails the test within this limit with a message (tests/support/watchdog.h). A
// campaign kicks the watchdog after every script, so the limit bounds one script.
const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(120)));

uint64_t env_u64(const char* name, uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 0);
}

std::string save(const std::string& name, const std::string& text) {
  std::string path = ::testing::TempDir() + name;
  std::ofstream(path) << text;
  return path;
}

TEST(Oracle, LinesAgree) {
  script::Command hint;
  hint.op = script::Op::kMmap;
  hint.map_flags = script::kMapPrivate | script::kMapAnon;
  EXPECT_TRUE(lines_agree(hint, "0x200000000000", "0x200000000000"));
  EXPECT_TRUE(lines_agree(hint, "0x7f0000001000", "0x7e0000000000"));   // both chosen outside
  EXPECT_FALSE(lines_agree(hint, "0x7f0000001000", "0x200000001000"));  // the model used the window
  EXPECT_FALSE(lines_agree(hint, "0x7f0000001000", "-ENOMEM"));
  EXPECT_FALSE(lines_agree(hint, "0x7f00000010001234567", "0x7f0000001000"));
  script::Command fixed = hint;
  fixed.map_flags |= script::kMapFixed;
  EXPECT_FALSE(lines_agree(fixed, "0x7f0000001000", "0x7e0000000000"));
  script::Command maps;
  maps.op = script::Op::kMaps;
  EXPECT_TRUE(lines_agree(maps, "none", "none"));
  EXPECT_FALSE(lines_agree(maps, "none", "none "));
}

// Runs MIRRORMM_ORACLE_SEEDS seeds of one profile (every profile runs unless
// MIRRORMM_ORACLE_PROFILE names one).
void run_profile(const char* name) {
  const char* profile_env = std::getenv("MIRRORMM_ORACLE_PROFILE");
  if (profile_env && *profile_env && std::string(profile_env) != name) GTEST_SKIP() << "profile " << name << " not selected";
  const uint64_t seeds = env_u64("MIRRORMM_ORACLE_SEEDS", 200);
  gen::Options first;
  first.seed = env_u64("MIRRORMM_ORACLE_SEED0", 1);
  first.profile = gen::parse_profile(name);
  first.commands = static_cast<int>(env_u64("MIRRORMM_ORACLE_COMMANDS", 300));
  CampaignOptions o;
  o.model = replay::Options{SystemConfig::from_host()};
  o.on_script = [](const ScriptOutcome&) { testing::kick_test_watchdog(); };

  CampaignSummary sum = run_campaign(first, seeds, o);
  ASSERT_TRUE(sum.error.empty()) << sum.error;
  if (sum.first) {
    // One divergence at a time: the campaign stopped there.
    std::string message = describe(*sum.first) + "saved as " +
                          save("oracle-seed-" + std::to_string(sum.first->seed) + ".mms", sum.first->script) + "\n";
    if (sum.reduced)
      message += "\nreduced:\n" + describe(*sum.reduced) + "saved as " +
                 save("oracle-seed-" + std::to_string(sum.first->seed) + "-reduced.mms", sum.reduced->script) + "\n";
    ADD_FAILURE() << message;
    return;
  }
  EXPECT_EQ(sum.scripts, seeds);
  EXPECT_EQ(sum.passed, seeds);
}

TEST(Oracle, RandomAnonymousScriptsMatchTheHost) { run_profile("anon"); }
TEST(Oracle, RandomFileScriptsMatchTheHost) { run_profile("files"); }
TEST(Oracle, RandomMixedScriptsMatchTheHost) { run_profile("all"); }
TEST(Oracle, RandomAdviceScriptsMatchTheHost) { run_profile("advise"); }
TEST(Oracle, RandomLockScriptsMatchTheHost) { run_profile("lock"); }

// ---- the campaign's summary, on given scripts ----

script::Script parsed(const std::string& text, const std::string& file) {
  std::string error;
  std::optional<script::Script> s = script::parse(text, file, &error);
  EXPECT_TRUE(s.has_value()) << error;
  return s.value_or(script::Script{});
}

// Two scripts that need little memory and two that write 4 MiB: a model given 1 MiB of
// physical memory kills the writer (the OOM killer) where the host does not, so exactly the
// two big scripts diverge, each at its write.
std::vector<script::Script> small_and_big_scripts() {
  const std::string small = "mmap 0x200000000000 16K rw- private+anon+fixed\nwrite 0x200000000000 16K 1\nmaps\n";
  const std::string big = "mmap 0x200000000000 4M rw- private+anon+fixed\nwrite 0x200000000000 4M 2\nmaps\n";
  return {parsed(small, "small-1.mms"), parsed(big, "big-1.mms"), parsed(small, "small-2.mms"),
          parsed("memfd f 4M\nmmap 0x200000000000 4M rw- shared+fixed f 0\n" + big.substr(big.find('\n') + 1),
                 "big-2.mms")};
}

CampaignOptions small_memory_model(CampaignOptions::OnDivergence on_divergence) {
  CampaignOptions o;
  o.model = replay::Options{SystemConfig::from_host()};
  o.model.config.memory_bytes = 1ull << 20;
  o.on_divergence = on_divergence;
  o.reduce = CampaignOptions::Reduce::kNo;
  return o;
}

TEST(OracleCampaign, AModelWithEnoughMemoryPassesEveryScript) {
  CampaignOptions o = small_memory_model(CampaignOptions::OnDivergence::kContinue);
  o.model.config = SystemConfig::from_host();
  CampaignSummary sum = run_campaign(small_and_big_scripts(), o);
  ASSERT_TRUE(sum.error.empty()) << sum.error;
  EXPECT_EQ(sum.scripts, 4u);
  EXPECT_EQ(sum.passed, 4u);
  EXPECT_EQ(sum.failed, 0u);
  EXPECT_FALSE(sum.first.has_value());
  EXPECT_TRUE(sum.ok());
  EXPECT_EQ(describe(sum), "4 scripts: 4 passed, 0 failed\n");
}

TEST(OracleCampaign, KeepGoingCountsEveryDivergence) {
  CampaignOptions o = small_memory_model(CampaignOptions::OnDivergence::kContinue);
  std::vector<uint64_t> diverged;
  uint64_t seen = 0;
  o.on_script = [&](const ScriptOutcome& r) {
    EXPECT_EQ(r.index, seen++);
    if (r.divergence) diverged.push_back(r.index);
  };
  CampaignSummary sum = run_campaign(small_and_big_scripts(), o);
  ASSERT_TRUE(sum.error.empty()) << sum.error;
  EXPECT_EQ(sum.scripts, 4u);
  EXPECT_EQ(sum.passed, 2u);
  EXPECT_EQ(sum.failed, 2u);
  EXPECT_FALSE(sum.ok());
  EXPECT_EQ(diverged, (std::vector<uint64_t>{1, 3}));
  ASSERT_TRUE(sum.first.has_value());
  EXPECT_EQ(sum.first->line, 2u);  // big-1's write
  EXPECT_EQ(sum.first->host, "ok");
  EXPECT_EQ(sum.first->model, "SIGKILL");
  EXPECT_FALSE(sum.reduced.has_value());  // not asked for
  const std::string report = describe(sum);
  EXPECT_NE(report.find(describe(*sum.first)), std::string::npos) << report;
  EXPECT_NE(report.find("4 scripts: 2 passed, 2 failed\n"), std::string::npos) << report;
}

TEST(OracleCampaign, StopsAtTheFirstDivergenceAndReducesIt) {
  CampaignOptions o = small_memory_model(CampaignOptions::OnDivergence::kStop);
  o.reduce = CampaignOptions::Reduce::kFirst;
  CampaignSummary sum = run_campaign(small_and_big_scripts(), o);
  ASSERT_TRUE(sum.error.empty()) << sum.error;
  EXPECT_EQ(sum.scripts, 2u);
  EXPECT_EQ(sum.passed, 1u);
  EXPECT_EQ(sum.failed, 1u);
  ASSERT_TRUE(sum.first.has_value());
  EXPECT_EQ(sum.first->command, "write 0x200000000000 0x400000 2");
  // The write diverges only after the mmap: the reduced script keeps both lines, drops maps.
  ASSERT_TRUE(sum.reduced.has_value());
  EXPECT_EQ(sum.reduced->line, 2u);
  EXPECT_NE(describe(sum).find("2 scripts: 1 passed, 1 failed\n"), std::string::npos);
}

}  // namespace
}  // namespace mirrormm::oracle
