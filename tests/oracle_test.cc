// The model against the host kernel on random scripts.
//
// Environment: MIRRORMM_ORACLE_SEEDS (how many seeds, default 200), MIRRORMM_ORACLE_SEED0
// (first seed, default 1), MIRRORMM_ORACLE_PROFILE (anon, files or all; default anon),
// MIRRORMM_ORACLE_COMMANDS (commands per script, default 300). The first diverging seed
// fails the test with the divergence and a reduced script that still diverges; both
// scripts are also written next to the test's temporary files for replaying.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "mirrormm/config.h"
#include "mirrormm/oracle.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"

namespace mirrormm::oracle {
namespace {

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

// Runs MIRRORMM_ORACLE_SEEDS seeds of one profile (all three profiles run unless
// MIRRORMM_ORACLE_PROFILE names one).
void run_profile(const char* name) {
  const char* profile_env = std::getenv("MIRRORMM_ORACLE_PROFILE");
  if (profile_env && *profile_env && std::string(profile_env) != name) GTEST_SKIP() << "profile " << name << " not selected";
  uint64_t seeds = env_u64("MIRRORMM_ORACLE_SEEDS", 200);
  uint64_t seed0 = env_u64("MIRRORMM_ORACLE_SEED0", 1);
  gen::Profile profile = gen::parse_profile(name);
  int commands = static_cast<int>(env_u64("MIRRORMM_ORACLE_COMMANDS", 300));
  replay::Options options{SystemConfig::from_host()};

  for (uint64_t seed = seed0; seed < seed0 + seeds; ++seed) {
    gen::Options o;
    o.seed = seed;
    o.profile = profile;
    o.commands = commands;
    std::string text = gen::generate(o);
    std::string error;
    std::optional<script::Script> s = script::parse(text, "seed-" + std::to_string(seed) + ".mms", &error);
    ASSERT_TRUE(s.has_value()) << error;
    std::optional<Divergence> d = compare(*s, options, &error);
    ASSERT_TRUE(d.has_value() || error.empty()) << "seed " << seed << ": " << error;
    if (!d) continue;
    d->seed = seed;
    d->script = text;  // the generator's text is canonical: same lines
    std::string full = save("oracle-seed-" + std::to_string(seed) + ".mms", text);
    std::string message = describe(*d) + "saved as " + full + "\n";
    std::string reduce_error;
    if (std::optional<Divergence> r = reduce(*s, options, &reduce_error)) {
      r->seed = seed;
      message += "\nreduced:\n" + describe(*r) + "saved as " +
                 save("oracle-seed-" + std::to_string(seed) + "-reduced.mms", r->script) + "\n";
    }
    ADD_FAILURE() << message;
    return;  // one divergence at a time
  }
}

TEST(Oracle, RandomAnonymousScriptsMatchTheHost) { run_profile("anon"); }
TEST(Oracle, RandomFileScriptsMatchTheHost) { run_profile("files"); }
TEST(Oracle, RandomMixedScriptsMatchTheHost) { run_profile("all"); }

}  // namespace
}  // namespace mirrormm::oracle
