// The scenario scripts of tests/scenarios/: ports of upstream test scenarios (the kernel's
// selftests/mm/merge.c, LTP's mprotect/munmap/mremap tests) as host-comparable `.mms` files.
//
// Each NAME.mms is one test: it runs on the model and on the host kernel, the two outputs
// must agree line by line (oracle::lines_agree), and the model's output must equal
// NAME.expected, the host output recorded when the script was written (regenerate it with
// `mirrormm host NAME.mms > NAME.expected` after checking it against what the upstream
// test asserts). The host comparison catches model bugs; the .expected comparison also
// catches a host kernel whose behaviour drifted from the one the scripts were checked on.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/host.h"
#include "mirrormm/oracle.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "scenario_files.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

namespace fs = std::filesystem;

// A hang fails the test within this limit with a message (tests/support/watchdog.h).
const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(120)));

fs::path scenario_dir() { return scenario::dir("scenarios"); }
std::vector<std::string> scenario_files() { return scenario::files(scenario_dir()); }
using scenario::read_lines;
using scenario::test_name;

// "FILE:LINE: COMMAND" for messages about one command.
std::string where(const script::Script& s, const script::Command& c) {
  return s.file + ":" + std::to_string(c.line) + ": " + script::format(c);
}

// Whether a command leaves every process's memory as it found it.
bool observes_only(const script::Command& c) {
  return !script::model_only(c) &&
         (c.op == script::Op::kMaps || c.op == script::Op::kSmaps || c.op == script::Op::kMincore ||
          c.op == script::Op::kMlocked);
}

// The script with `@N smaps` for every process number that may exist (1 and one per fork so
// far; the number of a process that has exited or was never created gets -ESRCH on both
// sides) after each command that can change memory. *original receives the index in the
// result of each of s's own commands.
script::Script with_smaps(const script::Script& s, std::vector<size_t>* original) {
  script::Script out;
  out.file = s.file;
  uint64_t processes = 1;
  for (const script::Command& c : s.commands) {
    original->push_back(out.commands.size());
    out.commands.push_back(c);
    if (!script::model_only(c) && c.op == script::Op::kFork) ++processes;
    if (observes_only(c)) continue;
    for (uint64_t pid = 1; pid <= processes; ++pid) {
      script::Command smaps;
      smaps.op = script::Op::kSmaps;
      smaps.line = c.line;
      smaps.pid = pid;
      out.commands.push_back(smaps);
    }
  }
  return out;
}

class ScenarioTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ScenarioTest, ModelMatchesHostAndExpected) {
  const fs::path path = GetParam();
  std::string error;
  std::optional<script::Script> s = script::parse_file(path.string(), &error);
  ASSERT_TRUE(s.has_value()) << error;
  ASSERT_FALSE(s->commands.empty()) << path << " has no commands";

  std::vector<size_t> original;
  const script::Script run = with_smaps(*s, &original);
  std::vector<std::string> model_all = replay::run(run, replay::Options{SystemConfig::from_host()});
  std::vector<std::string> host_all;
  ASSERT_TRUE(host::run(run, &host_all, &error)) << path << ": host run failed: " << error;
  ASSERT_EQ(host_all.size(), run.commands.size()) << "host printed a wrong number of lines";
  ASSERT_EQ(model_all.size(), run.commands.size()) << "model printed a wrong number of lines";

  for (size_t i = 0; i < run.commands.size(); ++i) {
    const script::Command& c = run.commands[i];
    EXPECT_TRUE(oracle::lines_agree(c, host_all[i], model_all[i])) << "model and host disagree\n"
                                                                   << "  command: " << where(run, c) << "\n"
                                                                   << "  host:    " << host_all[i] << "\n"
                                                                   << "  model:   " << model_all[i];
  }

  // The lines of the script's own commands.
  std::vector<std::string> model, host;
  for (size_t i : original) {
    model.push_back(model_all[i]);
    host.push_back(host_all[i]);
  }

  fs::path expected_path = path;
  expected_path.replace_extension(".expected");
  std::optional<std::vector<std::string>> expected = read_lines(expected_path);
  ASSERT_TRUE(expected.has_value()) << "cannot read " << expected_path << "; record it with `mirrormm host "
                                    << path.filename().string() << " > " << expected_path.filename().string()
                                    << "` and check it against the upstream test";
  EXPECT_EQ(expected->size(), model.size()) << expected_path << " has a wrong number of lines";
  for (size_t i = 0; i < std::min(expected->size(), model.size()); ++i) {
    const script::Command& c = s->commands[i];
    EXPECT_EQ((*expected)[i], model[i]) << "model output differs from " << expected_path.filename().string() << "\n"
                                        << "  command:  " << where(*s, c) << "\n"
                                        << "  expected: " << (*expected)[i] << "\n"
                                        << "  model:    " << model[i] << "\n"
                                        << "  host:     " << host[i];
  }
}

INSTANTIATE_TEST_SUITE_P(Scenarios, ScenarioTest, ::testing::ValuesIn(scenario_files()), test_name);

// An empty or missing directory would otherwise pass silently (and leave the suite above
// without instances).
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ScenarioTest);

TEST(Scenarios, DirectoryHasScripts) {
  EXPECT_FALSE(scenario_files().empty()) << "no .mms scripts in " << scenario_dir();
}

}  // namespace
}  // namespace mirrormm
