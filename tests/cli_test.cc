// The mirrormm program as its users run it: --version, --help (every default and the exit
// statuses), scripts from standard input, and the exit status of every kind of failure
// (0 success, 1 a finding, 2 a usage error, nothing else).
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "support/watchdog.h"

namespace {

// A hang fails the test within this limit with a message (tests/support/watchdog.h).
const bool kWatchdog = mirrormm::testing::install_test_watchdog(mirrormm::testing::scaled(std::chrono::seconds(120)));

using ::testing::HasSubstr;

struct CliRun {
  int status = -1;  // the exit status, or -1 if the program did not exit normally
  std::string out, err;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs the built program (MIRRORMM_CLI) with args, `input` as its standard input.
CliRun run_cli(const std::vector<std::string>& args, const std::string& input = "") {
  char dir_template[] = "/tmp/mirrormm-cli-test.XXXXXX";
  const char* dir = mkdtemp(dir_template);
  EXPECT_NE(dir, nullptr);
  if (!dir) return {};
  const std::string in = std::string(dir) + "/in", out = std::string(dir) + "/out", err = std::string(dir) + "/err";
  std::ofstream(in) << input;
  std::vector<char*> argv;
  std::string prog = MIRRORMM_CLI;
  argv.push_back(prog.data());
  std::vector<std::string> copies = args;
  for (std::string& a : copies) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int fds[3] = {open(in.c_str(), O_RDONLY), open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600),
                  open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600)};
    for (int i = 0; i < 3; ++i) {
      if (fds[i] < 0 || dup2(fds[i], i) < 0) _exit(127);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  CliRun r;
  int ws = 0;
  EXPECT_EQ(waitpid(pid, &ws, 0), pid);
  if (WIFEXITED(ws)) r.status = WEXITSTATUS(ws);
  r.out = read_all(out);
  r.err = read_all(err);
  for (const std::string& f : {in, out, err}) unlink(f.c_str());
  rmdir(dir);
  return r;
}

const char* const kScript =
    "mmap 0x200000000000 4K rw- private+anon+fixed\n"
    "write 0x200000000000 4K 1\n"
    "munmap 0x200000000000 4K\n";
const char* const kScriptOutput = "0x200000000000\nok\n0\n";

TEST(Cli, VersionPrintsTheProjectVersion) {
  CliRun r = run_cli({"--version"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, std::string("mirrormm ") + MIRRORMM_PROJECT_VERSION + "\n");
}

TEST(Cli, HelpEndsWithTheExitStatuses) {
  for (const char* cmd : {"", "replay", "host", "gen", "oracle", "stress", "run"}) {
    std::vector<std::string> args;
    if (*cmd) args.push_back(cmd);
    args.push_back("--help");
    CliRun r = run_cli(args);
    EXPECT_EQ(r.status, 0) << cmd;
    EXPECT_THAT(r.out, HasSubstr("Exit status: 0 success; 1 a finding")) << cmd;
    EXPECT_THAT(r.out, HasSubstr("2 a usage error")) << cmd;
  }
  EXPECT_THAT(run_cli({"--help"}).out, HasSubstr("--version"));
}

// CLI11 shows a default as `=VALUE` after the option's type.
TEST(Cli, HelpShowsEveryDefault) {
  CliRun gen = run_cli({"gen", "--help"});
  EXPECT_THAT(gen.out, HasSubstr("--seed UINT=1 "));
  EXPECT_THAT(gen.out, HasSubstr("--commands INT:INT in [1 - 1000000]=300\n"));
  EXPECT_THAT(gen.out, HasSubstr("--profile TEXT:{anon,files,all,lock,advise}=anon\n"));
  CliRun oracle = run_cli({"oracle", "--help"});
  EXPECT_THAT(oracle.out, HasSubstr("--seeds UINT=100 "));
  EXPECT_THAT(oracle.out, HasSubstr("--pku TEXT:{auto,on,off}=auto\n"));
  EXPECT_THAT(oracle.out, HasSubstr("--memory UINT:INT in [1 - 1048576]=1024\n"));
  CliRun replay = run_cli({"replay", "--help"});
  EXPECT_THAT(replay.out, HasSubstr("- reads standard input"));
  EXPECT_THAT(replay.out, HasSubstr("--memory UINT:INT in [1 - 1048576]=1024\n"));
  CliRun stress = run_cli({"stress", "--help"});
  EXPECT_THAT(stress.out, HasSubstr("--threads INT:INT in [1 - 64]=4\n"));
  EXPECT_THAT(stress.out, HasSubstr("--seconds FLOAT:FLOAT in [0.1 - 86400]=10\n"));
  CliRun run = run_cli({"run", "--help"});
  EXPECT_THAT(run.out, HasSubstr("--seconds FLOAT:FLOAT in [0.1 - 86400]=10\n"));
  EXPECT_THAT(run.out, HasSubstr("--seed UINT=1 "));
  EXPECT_THAT(run.out, HasSubstr("--threads INT:INT in [1 - 64]=4\n"));
  EXPECT_THAT(run.out, HasSubstr("--memory UINT:INT in [4 - 1048576]=64\n"));
  EXPECT_THAT(run.out, HasSubstr("--swap UINT:INT in [0 - 1048576]=256\n"));
  EXPECT_THAT(run.out, HasSubstr("shootdown (TLB shootdowns do nothing"));
  for (const char* cmd : {"replay", "host"}) {
    CliRun r = run_cli({cmd, "--help"});
    EXPECT_THAT(r.out, HasSubstr("--pretty")) << cmd;
    EXPECT_THAT(r.out, HasSubstr("--raw")) << cmd;
  }
}

// Every option line of every help text carries a description: after the option's name, type
// and default (or on the next line, when they are long), some words.
TEST(Cli, EveryOptionIsDescribed) {
  for (const char* cmd : {"replay", "host", "gen", "oracle", "stress", "run"}) {
    std::istringstream help(run_cli({cmd, "--help"}).out);
    std::vector<std::string> lines;
    for (std::string l; std::getline(help, l);) lines.push_back(l);
    for (size_t i = 0; i < lines.size(); ++i) {
      const std::string& l = lines[i];
      if (l.rfind("  -", 0) != 0 && l.rfind("  FILE", 0) != 0) continue;
      // CLI11 puts the description at column 30, or on the next line when the name is longer.
      bool described = (l.size() > 30 && l[29] == ' ' && l.find_first_not_of(' ', 30) != std::string::npos &&
                        l.find("  ", 2) != std::string::npos) ||
                       (i + 1 < lines.size() && lines[i + 1].rfind(std::string(30, ' '), 0) == 0 &&
                        lines[i + 1].find_first_not_of(' ') != std::string::npos);
      EXPECT_TRUE(described) << cmd << ": " << l;
    }
  }
}

TEST(Cli, ReplayReadsStandardInput) {
  CliRun r = run_cli({"replay", "-"}, kScript);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, kScriptOutput);
}

TEST(Cli, ReplayWritesATraceAndAReport) {
  char dir_template[] = "/tmp/mirrormm-cli-trace.XXXXXX";
  const std::string dir = mkdtemp(dir_template);
  const std::string trace = dir + "/t.json", report = dir + "/r.html";
  CliRun r = run_cli({"replay", "--raw", "--trace", trace, "--report", report, "-"}, kScript);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, kScriptOutput);
  EXPECT_THAT(read_all(trace), HasSubstr("\"traceEvents\":["));
  EXPECT_THAT(read_all(trace), HasSubstr("\"name\":\"fault\""));
  EXPECT_THAT(read_all(report), HasSubstr("<title>mirrormm replay &lt;stdin&gt;</title>"));
  unlink(trace.c_str());
  unlink(report.c_str());
  rmdir(dir.c_str());
  // A file that cannot be written is a usage error, found before anything runs.
  r = run_cli({"replay", "--trace", "/nonexistent/dir/t.json", "-"}, kScript);
  EXPECT_EQ(r.status, 2);
  EXPECT_THAT(r.err, HasSubstr("/nonexistent/dir/t.json: cannot be written"));
  EXPECT_EQ(r.out, "");
}

TEST(Cli, HostReadsStandardInput) {
  CliRun r = run_cli({"host", "-"}, kScript);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, kScriptOutput);
}

TEST(Cli, UsageErrorsExit2) {
  const std::vector<std::vector<std::string>> bad = {
      {},                                  // no subcommand
      {"frobnicate"},                      // unknown subcommand
      {"replay"},                          // missing FILE
      {"replay", "--no-such-option", "-"}, // unknown option
      {"replay", "--pku", "maybe", "-"},   // value not in the set
      {"replay", "--memory", "0", "-"},    // value out of range
      {"gen", "--commands", "many"},       // not a number
      {"stress", "--threads", "1000"},     // out of range
      {"oracle", "--seeds"},               // missing value
      {"replay", "/nonexistent/script.mms"},
      {"replay", "--pretty", "--raw", "-"},  // the two forms exclude each other
      {"run", "--debug-break", "everything"},
      {"run", "--memory", "1"},
      {"host", "/nonexistent/script.mms"},
  };
  for (const auto& args : bad) {
    CliRun r = run_cli(args);
    std::string line;
    for (const std::string& a : args) line += a + " ";
    EXPECT_EQ(r.status, 2) << line << "\n" << r.err;
    EXPECT_FALSE(r.err.empty()) << line;
  }
}

TEST(Cli, UnparsableScriptExits2WithFileAndLine) {
  for (const char* cmd : {"replay", "host"}) {
    CliRun r = run_cli({cmd, "-"}, "mmap 0x200000000000 4K rw- private+anon+fixed\nmunmap 7f0000000000 4096\n");
    EXPECT_EQ(r.status, 2) << cmd;
    EXPECT_EQ(r.out, "") << cmd << ": nothing runs when the script does not parse";
    EXPECT_EQ(r.err, "<stdin>:2: munmap: bad ADDR '7f0000000000': hex digits need the 0x prefix (0x7f0000000000)\n")
        << cmd;
  }
}

TEST(Cli, GenOutputReplays) {
  CliRun gen = run_cli({"gen", "--seed", "3", "--commands", "20"});
  ASSERT_EQ(gen.status, 0) << gen.err;
  CliRun replay = run_cli({"replay", "-"}, gen.out);
  EXPECT_EQ(replay.status, 0) << replay.err;
  EXPECT_FALSE(replay.out.empty());
}

// ---- transcripts: the raw form for programs, the readable one for people ----

// A script with a comment and a blank line; its commands are on lines 2, 4 and 5.
const char* const kCommentedScript =
    "# a page, written and unmapped\n"
    "mmap 0x200000000000 4K rw- private+anon+fixed\n"
    "\n"
    "write 0x200000000000 4K 1   # the pattern of seed 1\n"
    "munmap 0x200000000000 4K\n";

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// Each command beside its result, with its line number; the comments and the blank line have
// no line; nothing is coloured when standard output is not a terminal.
TEST(Cli, PrettyShowsEachCommandBesideItsResult) {
  for (const char* cmd : {"replay", "host"}) {
    CliRun r = run_cli({cmd, "--pretty", "-"}, kCommentedScript);
    ASSERT_EQ(r.status, 0) << cmd << ": " << r.err;
    const std::vector<std::string> lines = lines_of(r.out);
    ASSERT_EQ(lines.size(), 3u) << cmd << ":\n" << r.out;
    EXPECT_THAT(lines[0], ::testing::MatchesRegex("  +2  mmap 0x200000000000 0x1000 rw- private\\+anon\\+fixed +0x200000000000"));
    EXPECT_THAT(lines[1], ::testing::MatchesRegex("  +4  write 0x200000000000 0x1000 1 +ok"));
    EXPECT_THAT(lines[2], ::testing::MatchesRegex("  +5  munmap 0x200000000000 0x1000 +0"));
    // The results stand in one column.
    EXPECT_EQ(lines[0].rfind(' ') + 1, lines[1].rfind(' ') + 1) << r.out;
    EXPECT_EQ(lines[1].rfind(' ') + 1, lines[2].rfind(' ') + 1) << r.out;
    EXPECT_EQ(r.out.find('\x1b'), std::string::npos) << cmd;
  }
}

// On a pipe (as here) the raw form is the default, and --raw asks for it anywhere.
TEST(Cli, RawIsTheDefaultOnAPipe) {
  for (const char* cmd : {"replay", "host"}) {
    CliRun def = run_cli({cmd, "-"}, kCommentedScript);
    EXPECT_EQ(def.status, 0) << cmd << ": " << def.err;
    EXPECT_EQ(def.out, kScriptOutput) << cmd;
    CliRun raw = run_cli({cmd, "--raw", "-"}, kCommentedScript);
    EXPECT_EQ(raw.status, 0) << cmd << ": " << raw.err;
    EXPECT_EQ(raw.out, kScriptOutput) << cmd;
  }
}

// A divergence is shown side by side (command | model | host) around the diverging line,
// marked, with the commands that reproduce it. The model is given the other answer than the
// host's CPU about execute-only protection keys, so that reading an execute-only mapping
// diverges.
TEST(Cli, OracleShowsADivergenceSideBySide) {
  const bool host_pku = mirrormm::SystemConfig::from_host().exec_only_pkey;
  CliRun r = run_cli({"oracle", "--seeds", "20", "--commands", "100", "--pku", host_pku ? "off" : "on"});
  ASSERT_EQ(r.status, 1) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("model | host around the divergence (seed "));
  EXPECT_THAT(r.out, HasSubstr("model | host of the reduced script:"));
  EXPECT_THAT(r.out, ::testing::ContainsRegex("line  command +\\| model +\\| host"));
  // The marked line is the diverging read: the model and the host disagree on it.
  bool marked = false;
  for (const std::string& l : lines_of(r.out)) {
    if (l.rfind("=>", 0) != 0) continue;
    marked = true;
    EXPECT_THAT(l, ::testing::ContainsRegex("^=> +[0-9]+  [^|]+\\| [^|]+ \\| ")) << l;
    const size_t a = l.find(" | "), b = l.find(" | ", a + 3);
    ASSERT_NE(b, std::string::npos) << l;
    std::string model = l.substr(a + 3, b - a - 3), host = l.substr(b + 3);
    while (!model.empty() && model.back() == ' ') model.pop_back();
    EXPECT_NE(model, host) << l;
  }
  EXPECT_TRUE(marked) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("reproduce: mirrormm gen --seed [0-9]+ --commands 100 --profile anon > "
                                              "seed-[0-9]+.mms && mirrormm replay --pretty --pku (on|off) seed-"));
}

// ---- mirrormm run ----

// The main job ends with its summary, the checkers' verdict last; stdout not being a
// terminal, its progress comes as plain lines on standard error.
TEST(Cli, RunEndsWithNoViolation) {
  CliRun r = run_cli({"run", "--seconds", "3"});
  EXPECT_EQ(r.status, 0) << r.out << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_EQ(lines.back(), "violations: 0") << r.out;
  EXPECT_THAT(r.out, HasSubstr("mirrormm run: 4 CPUs for 3 s, seed 1; 64 MiB of memory, 256 MiB of swap, 2 NUMA nodes"));
  for (const char* row : {"operations", "CPU page faults", "secondary MMUs (by subscriber)", "read_retry collisions",
                          "invalidations", "    unmap", "pages swapped out (pswpout)", "pages swapped in (pswpin)",
                          "kswapd runs", "OOM kills", "checkers: no violation"})
    EXPECT_THAT(r.out, HasSubstr(row)) << r.out;
  // Both kinds of secondary MMU were attached and told about invalidations.
  EXPECT_THAT(r.out, ::testing::ContainsRegex("mirrors attached +[1-9][0-9]* +[1-9][0-9]* +[1-9]")) << r.out;
  EXPECT_THAT(r.out, ::testing::ContainsRegex("pages swapped out \\(pswpout\\) +[1-9]")) << r.out;
  EXPECT_THAT(r.err, HasSubstr("[run] ")) << r.err;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "no progress bar on a pipe";
}

// A deliberately broken kernel: the checkers report it, the run exits 1 and prints the
// command that reproduces it.
TEST(Cli, RunWithABrokenKernelReportsAndExits1) {
  CliRun r = run_cli({"run", "--seconds", "1", "--threads", "2", "--seed", "5", "--debug-break", "shootdown"});
  EXPECT_EQ(r.status, 1) << r.out << r.err;
  const std::vector<std::string> lines = lines_of(r.out);
  ASSERT_FALSE(lines.empty());
  EXPECT_THAT(lines.back(), ::testing::MatchesRegex("violations: [1-9][0-9]*")) << r.out;
  EXPECT_THAT(r.out, HasSubstr("checkers: VIOLATIONS"));
  EXPECT_THAT(r.out, HasSubstr("first violations:\n  "));
  EXPECT_THAT(r.out, HasSubstr("reproduce: mirrormm run --seed 5 --seconds 1 --threads 2 --memory 64 --swap 256 "
                               "--nodes 2 --debug-break shootdown\n"));
}

}  // namespace
