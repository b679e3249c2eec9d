// Format version 2 of `.mms` (docs/mms-v2.md): the model-only commands `dev …`, `stats` and
// `check`. Parsing (accepted forms, usage errors, format()), their results on the model, the
// host runner's SKIP, the oracle's treatment of SKIP lines, and the scenarios of
// tests/scenarios-v2/ (model output against NAME.expected; v1 lines against the host).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/host.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/oracle.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"
#include "scenario_files.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

namespace fs = std::filesystem;

// A hang fails the test within this limit with a message (tests/support/watchdog.h).
const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(120)));
using ::testing::ElementsAre;
using ::testing::StartsWith;

script::Command parse_one(const std::string& line) {
  std::string error;
  std::optional<script::Script> s = script::parse(line, "t.mms", &error);
  EXPECT_TRUE(s.has_value()) << line << ": " << error;
  if (!s || s->commands.size() != 1) {
    ADD_FAILURE() << "expected one command from: " << line;
    return script::Command{};
  }
  return s->commands[0];
}

std::string parse_error(const std::string& text) {
  std::string error;
  std::optional<script::Script> s = script::parse(text, "t.mms", &error);
  EXPECT_FALSE(s.has_value()) << "parsed: " << text;
  return error;
}

script::Script parse_text(const std::string& text) {
  std::string error;
  std::optional<script::Script> s = script::parse(text, "t.mms", &error);
  EXPECT_TRUE(s.has_value()) << error;
  return s ? *s : script::Script{};
}

std::vector<std::string> replay_text(const std::string& text) {
  return replay::run(parse_text(text), replay::Options{SystemConfig::from_host()});
}

// ---- parsing ----

TEST(ScriptV2Parse, AcceptedForms) {
  using script::ModelOp;
  script::Command c = parse_one("dev attach gpu0 interval 0x200000000000 64K");
  EXPECT_EQ(c.model, ModelOp::kDevAttach);
  EXPECT_TRUE(script::model_only(c));
  EXPECT_EQ(c.name, "gpu0");
  EXPECT_EQ(c.dev_mode, script::DevMode::kInterval);
  EXPECT_EQ(c.addr, 0x200000000000u);
  EXPECT_EQ(c.len, 65536u);

  c = parse_one("@3 dev attach _Kvm classic");
  EXPECT_EQ(c.model, ModelOp::kDevAttach);
  EXPECT_EQ(c.dev_mode, script::DevMode::kClassic);
  EXPECT_EQ(c.pid, 3u);
  EXPECT_EQ(c.name, "_Kvm");

  c = parse_one("dev fault A 0x1000 8K read");
  EXPECT_EQ(c.model, ModelOp::kDevFault);
  EXPECT_FALSE(c.dev_write);
  EXPECT_EQ(c.len, 8192u);
  c = parse_one("dev fault A 0x1000 8K write   # comment");
  EXPECT_TRUE(c.dev_write);

  EXPECT_EQ(parse_one("dev show A 0 4K").model, ModelOp::kDevShow);
  EXPECT_EQ(parse_one("dev read A 0 4K").model, ModelOp::kDevRead);
  c = parse_one("dev write A 0 4K 0x10");
  EXPECT_EQ(c.model, ModelOp::kDevWrite);
  EXPECT_EQ(c.seed, 16u);
  EXPECT_EQ(parse_one("dev log A").model, ModelOp::kDevLog);
  EXPECT_EQ(parse_one("dev detach A").model, ModelOp::kDevDetach);
  EXPECT_EQ(parse_one("stats").model, ModelOp::kStats);
  EXPECT_EQ(parse_one("\tcheck ").model, ModelOp::kCheck);

  // v1 commands are not model-only, and a script with only them does not use v2.
  EXPECT_FALSE(script::model_only(parse_one("maps")));
  EXPECT_FALSE(script::uses_model_only(parse_text("maps\nfork\n")));
  EXPECT_TRUE(script::uses_model_only(parse_text("maps\nstats\n")));
}

TEST(ScriptV2Parse, FormatRoundTrips) {
  const char* lines[] = {
      "dev attach A interval 0x200000000000 0x10000",
      "@2 dev attach B classic",
      "dev fault A 0x200000000000 0x4000 read",
      "dev fault A 0x200000000000 0x4000 write",
      "dev show A 0x200000000000 0x4000",
      "dev read A 0x200000000000 0x1",
      "dev write A 0x200000000000 0x2000 7",
      "dev log A",
      "@4 dev detach A",
      "dev begin A 0x200000000000 0x4000 write",
      "dev walk A",
      "@2 dev retry A",
      "dev map A",
      "dev map A unchecked",
      "stats",
      "@2 check",
      "nodes 2",
      "@2 migrate 0x200000000000 0x4000 1",
  };
  for (const char* line : lines) {
    script::Command c = parse_one(line);
    EXPECT_EQ(script::format(c), line);
    script::Command again = parse_one(script::format(c));
    EXPECT_EQ(again.model, c.model) << line;
    EXPECT_EQ(again.name, c.name) << line;
    EXPECT_EQ(again.dev_mode, c.dev_mode) << line;
    EXPECT_EQ(again.dev_write, c.dev_write) << line;
    EXPECT_EQ(again.dev_unchecked, c.dev_unchecked) << line;
    EXPECT_EQ(again.addr, c.addr) << line;
    EXPECT_EQ(again.len, c.len) << line;
    EXPECT_EQ(again.seed, c.seed) << line;
    EXPECT_EQ(again.pid, c.pid) << line;
    EXPECT_EQ(again.size, c.size) << line;
  }
}

TEST(ScriptV2Parse, NodesAndMigrate) {
  using script::ModelOp;
  script::Command c = parse_one("nodes 4");
  EXPECT_EQ(c.model, ModelOp::kNodes);
  EXPECT_EQ(c.size, 4u);
  c = parse_one("@3 migrate 0x200000000000 8K 1");
  EXPECT_EQ(c.model, ModelOp::kMigrate);
  EXPECT_EQ(c.pid, 3u);
  EXPECT_EQ(c.addr, 0x200000000000u);
  EXPECT_EQ(c.len, 8192u);
  EXPECT_EQ(c.size, 1u);
  EXPECT_EQ(parse_error("nodes"), "t.mms:1: nodes: expected 1 argument (N), got 0");
  EXPECT_EQ(parse_error("migrate 0 4K"), "t.mms:1: migrate: expected 3 arguments (ADDR LEN NODE), got 2");
  // Out-of-range values are the command's result, not usage errors.
  EXPECT_EQ(replay_text("nodes 0\nnodes 65\nnodes 2\nmigrate 0x200000000000 4K 2\nmigrate 0x200000000000 4K 1\n"),
            (std::vector<std::string>{"-EINVAL", "-EINVAL", "0", "-EINVAL", "-EFAULT"}));
}

TEST(ScriptV2Parse, Hmm) {
  using script::ModelOp;
  script::Command c = parse_one("@2 hmm open 3");
  EXPECT_EQ(c.model, ModelOp::kHmmOpen);
  EXPECT_TRUE(script::model_only(c));
  EXPECT_EQ(c.pid, 2u);
  EXPECT_EQ(c.size, 3u);
  c = parse_one("hmm write 1 0x200000000000 4 7");
  EXPECT_EQ(c.model, ModelOp::kHmmWrite);
  EXPECT_EQ(c.mirror, 1u);
  EXPECT_EQ(c.addr, 0x200000000000u);
  EXPECT_EQ(c.len, 4u);
  EXPECT_EQ(c.seed, 7u);
  EXPECT_EQ(parse_one("hmm migrate_sys 0 0 1").model, ModelOp::kHmmMigrateSys);
  EXPECT_EQ(parse_one("hmm check_exclusive 0 0 1").model, ModelOp::kHmmCheckExclusive);
  EXPECT_EQ(parse_one("hmm fail_alloc 2").model, ModelOp::kHmmFailAlloc);
  const char* lines[] = {"@2 hmm open 0",           "hmm close 1",
                         "hmm read 0 0x200000000000 8", "hmm write 0 0x200000000000 8 3",
                         "hmm migrate 0 0x200000000000 1", "hmm migrate_sys 0 0x200000000000 1",
                         "hmm snapshot 0 0x200000000000 7", "hmm exclusive 0 0x200000000000 2",
                         "hmm check_exclusive 0 0x200000000000 2", "hmm release 0",
                         "hmm fail_alloc 0"};
  for (const char* line : lines) EXPECT_EQ(script::format(parse_one(line)), line);
  EXPECT_EQ(parse_error("hmm"),
            "t.mms:1: hmm: missing subcommand (open, close, read, write, migrate, migrate_sys, snapshot, exclusive, "
            "check_exclusive, release, fail_alloc or mmap)");
  EXPECT_EQ(parse_error("hmm map 0"),
            "t.mms:1: hmm: unknown subcommand 'map' (expected open, close, read, write, migrate, migrate_sys, "
            "snapshot, exclusive, check_exclusive, release, fail_alloc or mmap)");
  const script::Command mm = parse_one("@2 hmm mmap 1 0x200000000000 8K rw- shared+fixed");
  EXPECT_EQ(mm.model, ModelOp::kHmmMmap);
  EXPECT_EQ(mm.mirror, 1u);
  EXPECT_EQ(mm.len, 8192u);
  EXPECT_EQ(script::format(mm), "@2 hmm mmap 1 0x200000000000 0x2000 rw- shared+fixed");
  EXPECT_EQ(parse_error("hmm mmap 0 0 4K rw- private+anon"),
            "t.mms:1: hmm mmap: bad FLAGS 'private+anon': anon maps no file");
  EXPECT_EQ(parse_error("hmm mmap 0 0 4K rw- fixed"),
            "t.mms:1: hmm mmap: bad FLAGS 'fixed': exactly one of private/shared/shared_validate/droppable is required");
  EXPECT_EQ(parse_error("hmm mmap 0 0 4K"), "t.mms:1: hmm mmap: expected 5 arguments (M ADDR LEN PROT FLAGS), got 3");
  EXPECT_EQ(parse_error("hmm read 0 0x1000"), "t.mms:1: hmm read: expected 3 arguments (M ADDR NPAGES), got 2");
  EXPECT_EQ(parse_error("hmm open"), "t.mms:1: hmm open: expected 1 argument (DEV), got 0");
  EXPECT_EQ(parse_error("hmm write 0 0 1 x"), "t.mms:1: hmm write: bad SEED 'x': not a number");
  // The driver's answers: devices 0-3, -EBADF for a mirror never opened or closed, -EINVAL
  // for an unaligned address or no pages.
  std::vector<std::string> out = replay_text(
      "mmap 0x200000000000 16K rw- private+anon+fixed\n"
      "hmm open 4\nhmm open 1\nhmm read 1 0x200000000000 1\n"
      "hmm read 0 0x200000000800 1\nhmm read 0 0x200000000000 0\n"
      "hmm write 0 0x200000000000 4 1\nhmm read 0 0x200000000000 4\n"
      "hmm close 0\nhmm close 0\nhmm release 0\n@9 hmm open 0\nread 0x200000000000 16K\n");
  ASSERT_EQ(out.size(), 13u);
  EXPECT_EQ(out[12].substr(0, 4), "fnv:");
  // The device read back what it wrote, as the CPU sees it.
  EXPECT_EQ(out, (std::vector<std::string>{"0x200000000000", "-ENODEV", "0", "-EBADF", "-EINVAL", "-EINVAL",
                                           "cpages=4 faults=1", "cpages=4 faults=0 " + out[12], "0", "-EBADF",
                                           "-EBADF", "-ESRCH", out[12]}));
}

TEST(ScriptV2Parse, UsageErrors) {
  EXPECT_EQ(parse_error("dev"),
            "t.mms:1: dev: missing subcommand (attach, fault, show, read, write, log, detach, begin, walk, retry or "
            "map)");
  EXPECT_EQ(parse_error("maps\n\ndev mapp A"),
            "t.mms:3: dev: unknown subcommand 'mapp' (expected attach, fault, show, read, write, log, detach, begin, "
            "walk, retry or map)");
  EXPECT_EQ(parse_error("dev begin A 0 4K"),
            "t.mms:1: dev begin: expected 4 arguments (NAME ADDR LEN read|write), got 3");
  EXPECT_EQ(parse_error("dev walk A 0"), "t.mms:1: dev walk: expected 1 argument (NAME), got 2");
  EXPECT_EQ(parse_error("dev retry"), "t.mms:1: dev retry: expected 1 argument (NAME), got 0");
  EXPECT_EQ(parse_error("dev map A checked"), "t.mms:1: dev map: bad argument 'checked' (expected unchecked)");
  EXPECT_EQ(parse_error("dev map A unchecked 1"),
            "t.mms:1: dev map: expected 1 or 2 arguments (NAME [unchecked]), got 3");
  EXPECT_EQ(parse_error("dev attach A"),
            "t.mms:1: dev attach: expected 2 or 4 arguments (NAME classic | NAME interval ADDR LEN | NAME KIND "
            "[ADDR LEN]), got 1");
  EXPECT_EQ(parse_error("dev attach A interval 0x1000"),
            "t.mms:1: dev attach: expected 4 arguments (NAME interval ADDR LEN), got 3");
  EXPECT_EQ(parse_error("dev attach A classic 0 4K"),
            "t.mms:1: dev attach: expected 2 arguments (NAME classic), got 4");
  EXPECT_EQ(parse_error("dev attach A hmm"),
            "t.mms:1: dev attach: bad KIND 'hmm' (expected one of interval, classic, shadow, iotlb, xpmem, dmirror, "
            "or KIND:VARIANT)");
  EXPECT_EQ(parse_error("dev attach A shadow 0x1000"),
            "t.mms:1: dev attach: expected 4 arguments (NAME KIND [ADDR LEN]), got 3");
  EXPECT_EQ(parse_error("dev attach 0dev classic"),
            "t.mms:1: dev attach: bad NAME '0dev' (expected [A-Za-z_][A-Za-z0-9_]*)");
  EXPECT_EQ(parse_error("dev log a-b"), "t.mms:1: dev log: bad NAME 'a-b' (expected [A-Za-z_][A-Za-z0-9_]*)");
  EXPECT_EQ(parse_error("dev attach A interval 0x1000 4Q"),
            "t.mms:1: dev attach: bad LEN '4Q': not a number");
  EXPECT_EQ(parse_error("dev fault A 0 4K"),
            "t.mms:1: dev fault: expected 4 arguments (NAME ADDR LEN read|write), got 3");
  EXPECT_EQ(parse_error("dev fault A 0 4K rw"), "t.mms:1: dev fault: bad ACCESS 'rw' (expected read or write)");
  EXPECT_EQ(parse_error("dev show A 0"), "t.mms:1: dev show: expected 3 arguments (NAME ADDR LEN), got 2");
  EXPECT_EQ(parse_error("dev read A 0 4K 1"), "t.mms:1: dev read: expected 3 arguments (NAME ADDR LEN), got 4");
  EXPECT_EQ(parse_error("dev write A 0 4K"), "t.mms:1: dev write: expected 4 arguments (NAME ADDR LEN SEED), got 3");
  EXPECT_EQ(parse_error("dev write A 0 4K 0x1ffffffffffffffff"),
            "t.mms:1: dev write: bad SEED '0x1ffffffffffffffff': does not fit in 64 bits");
  EXPECT_EQ(parse_error("dev log"), "t.mms:1: dev log: expected 1 argument (NAME), got 0");
  EXPECT_EQ(parse_error("dev detach A B"), "t.mms:1: dev detach: expected 1 argument (NAME), got 2");
  EXPECT_EQ(parse_error("stats now"), "t.mms:1: stats: expected 0 arguments (no arguments), got 1");
  EXPECT_EQ(parse_error("check 1"), "t.mms:1: check: expected 0 arguments (no arguments), got 1");
  EXPECT_EQ(parse_error("@x dev log A"), "t.mms:1: bad process prefix '@x': not a number");
  // The whole script is checked first: an error on a later line refuses the script.
  EXPECT_EQ(parse_error("dev attach A classic\nstats\ndev fault A 0 4K exec\n"),
            "t.mms:3: dev fault: bad ACCESS 'exec' (expected read or write)");
}

// ---- replay ----

constexpr const char* kMap4 = "mmap 0x200000000000 16K rw- private+anon+fixed\n";

TEST(ScriptV2Replay, AttachFaultShowRead) {
  auto out = replay_text(std::string(kMap4) +
                         "dev attach A interval 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 16K read\n"   // zero page: read-only
                         "dev show A 0x200000000000 16K\n"
                         "dev read A 0x200000000000 4K\n"
                         "read 0x200000000000 4K\n"
                         "dev write A 0x200000000000 4K 1\n"       // not writable on the device
                         "dev fault A 0x200000001000 4K write\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev write A 0x200000001000 100 9\n"
                         "read 0x200000001000 100\n"              // the CPU sees the device's bytes
                         "dev read A 0x200000001000 100\n"
                         "dev read A 0x200000000000 8K\n"
                         "dev show A 0x200000003000 1\n"
                         "dev show A 0x200000000000 0\n"
                         "check\n");
  // Hashes computed independently: 4K of zeros; the 100 pattern bytes of seed 9 at
  // 0x200000001000; 4K of zeros followed by those bytes and zeros to the end of the page.
  EXPECT_THAT(out, ElementsAre("0x200000000000", "0", "4", "rrrr", "fnv:b93a0c83ce3b6325", "fnv:b93a0c83ce3b6325",
                               "DEVFAULT", "1", "rwrr", "ok", "fnv:3a49e7016790da21", "fnv:3a49e7016790da21",
                               "fnv:e0e65a11aaebb311", "r", "", "ok"));
}

TEST(ScriptV2Replay, MprotectAndMunmapInvalidate) {
  auto out = replay_text(std::string(kMap4) +
                         "write 0x200000000000 16K 1\n"
                         "dev attach A interval 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 16K read\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev log A\n"
                         "mprotect 0x200000000000 8K r--\n"
                         "dev log A\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 16K read\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 4K write\n"  // no VM_WRITE
                         "munmap 0x200000000000 16K\n"
                         "dev log A\n"
                         "dev log A\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev read A 0x200000000000 1\n"
                         "dev fault A 0x200000000000 4K read\n"  // no VMA
                         "check\n");
  EXPECT_THAT(out, ElementsAre("0x200000000000", "ok", "0", "4", "wwww", "none", "0",
                               "protection_vma 200000000000-200000002000", "--ww", "4", "rrww", "-EPERM", "0",
                               "unmap 200000000000-200000004000", "none", "----", "DEVFAULT", "-EFAULT", "ok"));
}

TEST(ScriptV2Replay, ForkWriteProtectsAndCowClears) {
  auto out = replay_text(std::string(kMap4) +
                         "write 0x200000000000 16K 1\n"
                         "dev attach A interval 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 16K write\n"
                         "fork\n"
                         "dev log A\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 16K read\n"
                         "dev show A 0x200000000000 16K\n"
                         "@2 write 0x200000000000 4K 2\n"  // the child's COW: not the parent's PTEs
                         "dev log A\n"
                         "dev fault A 0x200000001000 4K write\n"  // the parent's COW break
                         "dev log A\n"
                         "dev show A 0x200000000000 16K\n"
                         "stats\n"
                         "check\n");
  ASSERT_EQ(out.size(), 16u);
  EXPECT_EQ(out[3], "4");
  EXPECT_EQ(out[4], "2");
  // Fork write-protects the parent's private pages: one bracket over the VMA.
  EXPECT_THAT(out[5], ::testing::MatchesRegex("[a-z_]+ 200000000000-200000004000"));
  EXPECT_EQ(out[6], "----");
  EXPECT_EQ(out[7], "4");
  EXPECT_EQ(out[8], "rrrr");
  EXPECT_EQ(out[9], "ok");
  EXPECT_EQ(out[10], "none");
  EXPECT_EQ(out[11], "1");
  EXPECT_EQ(out[12], "clear 200000001000-200000002000");
  EXPECT_EQ(out[13], "rwrr");
  EXPECT_EQ(out[14], "processes=2 devices=1 mirrored=4 invalidations=2 violations=0");
  EXPECT_EQ(out[15], "ok");
}

TEST(ScriptV2Replay, ExitReleasesIntervalAndClassicDevices) {
  auto out = replay_text(std::string(kMap4) +
                         "fork\n"
                         "@2 dev attach I interval 0x200000000000 16K\n"
                         "@2 dev attach K classic\n"
                         "@2 dev fault I 0x200000000000 8K write\n"
                         "@2 dev fault K 0x200000000000 8K read\n"
                         "stats\n"
                         "@2 exit\n"
                         "dev log I\n"
                         "dev log K\n"
                         "dev show I 0x200000000000 16K\n"
                         "dev show K 0x200000000000 16K\n"
                         "dev fault I 0x200000000000 4K read\n"
                         "@2 dev attach J classic\n"  // the process is gone
                         "stats\n"
                         "dev detach I\n"
                         "dev detach K\n"
                         "stats\n"
                         "check\n");
  EXPECT_THAT(out, ElementsAre("0x200000000000", "2", "0", "0", "2", "2",
                               "processes=2 devices=2 mirrored=4 invalidations=0 violations=0", "0",
                               "release 0-800000000000; unmap 200000000000-200000004000", "release", "----", "----",
                               "-EFAULT", "-ESRCH", "processes=1 devices=2 mirrored=0 invalidations=3 violations=0",
                               "0", "0", "processes=1 devices=0 mirrored=0 invalidations=0 violations=0", "ok"));
}

TEST(ScriptV2Replay, ClassicDeviceSeesEveryRange) {
  auto out = replay_text(std::string(kMap4) +
                         "mmap 0x200000100000 8K rw- private+anon+fixed\n"
                         "dev attach K classic\n"
                         "dev attach S interval 0x200000100000 8K\n"
                         "write 0x200000000000 4K 1\n"
                         "write 0x200000100000 4K 1\n"
                         "dev fault K 0x200000000000 4K read\n"
                         "dev fault K 0x200000100000 4K read\n"
                         "dev fault S 0x200000000000 4K read\n"  // outside its interval
                         "madvise 0x200000000000 16K dontneed\n"
                         "dev log K\n"
                         "dev log S\n"  // the interval does not overlap
                         "dev show K 0x200000000000 4K\n"
                         "dev show K 0x200000100000 4K\n");
  EXPECT_THAT(out, ElementsAre("0x200000000000", "0x200000100000", "0", "0", "ok", "ok", "1", "1", "-EFAULT", "0",
                               "clear 200000000000-200000004000", "none", "-", "w"));
}

TEST(ScriptV2Replay, DeviceErrors) {
  auto out = replay_text(std::string(kMap4) +
                         "dev attach A interval 0x200000000000 0\n"
                         "dev attach A interval 0xffffffffffff0000 0x20000\n"
                         "dev attach A classic\n"
                         "dev attach A interval 0x200000000000 4K\n"
                         "dev fault B 0x200000000000 4K read\n"
                         "dev show B 0 4K\n"
                         "dev read B 0 4K\n"
                         "dev write B 0 4K 1\n"
                         "dev log B\n"
                         "dev detach B\n"
                         "@9 dev attach B classic\n"
                         "dev show A 0 2G\n"
                         "dev read A 0xfffffffffffff000 0x2000\n"
                         "dev log A\n"
                         "dev detach A\n"
                         "dev log A\n"
                         "dev attach A interval 0x200000000000 4K\n"
                         "check\n");
  EXPECT_THAT(out, ElementsAre("0x200000000000", "-EOVERFLOW", "-EOVERFLOW", "0", "-EEXIST", "-ENOENT", "-ENOENT",
                               "-ENOENT", "-ENOENT", "-ENOENT", "-ENOENT", "-ESRCH", "-EINVAL", "-EINVAL", "none", "0",
                               "-ENOENT", "0", "ok"));
}

// The device fault in steps: a fault with nothing in between installs; an invalidation
// between the walk and the install makes read_retry say so and `dev map` install nothing
// (-EAGAIN); one between begin and the walk makes the walk give up (-EBUSY); `dev map
// unchecked` installs a walk's stale result anyway, which the checker reports. Steps out of
// order are -EINVAL; a kind without steps answers -EOPNOTSUPP.
TEST(ScriptV2Replay, SteppedFault) {
  auto out = replay_text(std::string(kMap4) +
                         "write 0x200000000000 16K 1\n"
                         "dev attach A interval 0x200000000000 16K\n"
                         "dev attach S shadow 0x200000000000 16K\n"
                         "dev walk A\n"
                         "dev map A\n"
                         "dev begin A 0x200000000000 8K write\n"
                         "dev walk A\n"
                         "dev retry A\n"
                         "dev map A\n"
                         "dev show A 0x200000000000 16K\n"
                         "dev begin A 0x200000000000 4K read\n"
                         "dev walk A\n"
                         "madvise 0x200000000000 4K dontneed\n"
                         "dev retry A\n"
                         "dev map A\n"
                         "dev map A\n"
                         "dev begin A 0x200000002000 4K read\n"
                         "madvise 0x200000002000 4K dontneed\n"
                         "dev walk A\n"
                         "dev begin A 0x200000003000 4K read\n"
                         "dev walk A\n"
                         "madvise 0x200000003000 4K dontneed\n"
                         "dev map A unchecked\n"
                         "dev begin S 0x200000000000 4K read\n"
                         "check\n");
  ASSERT_EQ(out.size(), 26u);
  EXPECT_THAT(std::vector<std::string>(out.begin(), out.begin() + 24),
              ElementsAre("0x200000000000", "ok", "0", "0", "-EINVAL", "-EINVAL", "0", "2", "0", "2", "ww--", "0",
                          "1", "0", "1", "-EAGAIN", "-EINVAL", "0", "0", "-EBUSY", "0", "1", "0", "1"));
  EXPECT_EQ(out[24], "-EOPNOTSUPP");
  EXPECT_NE(out[25], "ok");  // the unchecked install is reported
}

TEST(ScriptV2Replay, StatsOnAFreshModel) {
  EXPECT_THAT(replay_text("stats\ncheck\n"),
              ElementsAre("processes=1 devices=0 mirrored=0 invalidations=0 violations=0", "ok"));
}

// A deliberately broken kernel (mprotect without its bracket) leaves a writable device
// mapping over a read-only PTE: `check` reports the checker's first message.
TEST(ScriptV2Replay, CheckReportsViolations) {
  mmu_debug_drop_bracket(static_cast<int>(MmuNotifyEvent::kProtectionVma));
  auto out = replay_text(std::string(kMap4) +
                         "dev attach A interval 0x200000000000 16K\n"
                         "dev fault A 0x200000000000 4K write\n"
                         "mprotect 0x200000000000 16K r--\n"
                         "stats\n"
                         "check\n");
  mmu_debug_drop_bracket(-1);
  ASSERT_EQ(out.size(), 6u);
  EXPECT_THAT(out[4], ::testing::MatchesRegex(".* violations=[1-9][0-9]*"));
  EXPECT_THAT(out[5], StartsWith("violations "));
  EXPECT_THAT(out[5], ::testing::HasSubstr(": mmu checker"));
  EXPECT_EQ(out[5].find('\n'), std::string::npos);
}

// The checker is switched per System: a v2 script's machine has it on from the first
// command even when the configuration asks for it off; a v1-only script's machine and any
// other machine keep their own setting.
TEST(ScriptV2Replay, CheckerIsOnForV2Scripts) {
  SystemConfig off = SystemConfig::from_host();
  off.mmu_checker = false;
  // The checker must see the device mapping made before the unbracketed downgrade.
  mmu_debug_drop_bracket(static_cast<int>(MmuNotifyEvent::kProtectionVma));
  auto out = replay::run(parse_text(std::string(kMap4) +
                                    "dev attach A interval 0x200000000000 16K\n"
                                    "dev fault A 0x200000000000 4K write\n"
                                    "mprotect 0x200000000000 16K r--\n"
                                    "check\n"),
                         replay::Options{off});
  mmu_debug_drop_bracket(-1);
  ASSERT_EQ(out.size(), 5u);
  EXPECT_THAT(out[4], StartsWith("violations "));
  // The Replayer turns its System's checker on at its first model-only command.
  {
    replay::Replayer r(replay::Options{off});
    EXPECT_EQ(r.run(parse_one("mmap 0x200000000000 4K rw- private+anon+fixed")), "0x200000000000");
    EXPECT_FALSE(r.system().mmu_checker());
    EXPECT_EQ(r.run(parse_one("dev attach A classic")), "0");
    EXPECT_TRUE(r.system().mmu_checker());
    EXPECT_EQ(r.run(parse_one("dev fault A 0x200000000000 4K write")), "1");
    // Another machine keeps its own setting.
    System other(off);
    EXPECT_FALSE(other.mmu_checker());
    // Destroyed with A still attached: the Replayer detaches it.
  }
}

// ---- host runner and oracle ----

constexpr const char* kMixed =
    "mmap 0x200000000000 16K rw- private+anon+fixed\n"
    "dev attach A interval 0x200000000000 16K\n"
    "write 0x200000000000 16K 1\n"
    "dev fault A 0x200000000000 16K read\n"
    "@7 dev show A 0x200000000000 16K\n"  // SKIP even for a process that does not exist
    "mprotect 0x200000000000 8K r--\n"
    "dev log A\n"
    "stats\n"
    "read 0x200000000000 16K\n"
    "check\n"
    "dev detach A\n"
    "maps\n";

TEST(ScriptV2Host, ModelOnlyLinesPrintSkip) {
  script::Script s = parse_text(kMixed);
  std::vector<std::string> host;
  std::string error;
  ASSERT_TRUE(host::run(s, &host, &error)) << error;
  std::vector<std::string> model = replay::run(s, replay::Options{SystemConfig::from_host()});
  ASSERT_EQ(host.size(), s.commands.size());
  ASSERT_EQ(model.size(), s.commands.size());
  for (size_t i = 0; i < s.commands.size(); ++i) {
    const script::Command& c = s.commands[i];
    if (script::model_only(c)) {
      EXPECT_EQ(host[i], "SKIP") << script::format(c);
      EXPECT_NE(model[i], "SKIP") << script::format(c);
    } else {
      EXPECT_EQ(host[i], model[i]) << script::format(c);
    }
    EXPECT_TRUE(oracle::lines_agree(c, host[i], model[i])) << script::format(c);
  }
}

TEST(ScriptV2Oracle, SkipLinesAreNotCompared) {
  script::Script s = parse_text(kMixed);
  std::string error;
  std::optional<oracle::Divergence> d = oracle::compare(s, replay::Options{SystemConfig::from_host()}, &error);
  EXPECT_FALSE(d.has_value()) << oracle::describe(*d);
  EXPECT_EQ(error, "");
  // SKIP is accepted for model-only commands only.
  EXPECT_TRUE(oracle::lines_agree(parse_one("stats"), "SKIP", "processes=1"));
  EXPECT_FALSE(oracle::lines_agree(parse_one("maps"), "SKIP", "none"));
  EXPECT_FALSE(oracle::lines_agree(parse_one("dev log A"), "none", "unmap 0-1000"));
}

TEST(ScriptV2Gen, GeneratorNeverProducesModelOnlyCommands) {
  for (gen::Profile profile : {gen::Profile::kAnon, gen::Profile::kFiles, gen::Profile::kAll}) {
    for (uint64_t seed = 1; seed <= 20; ++seed) {
      gen::Options o;
      o.seed = seed;
      o.commands = 200;
      o.profile = profile;
      script::Script s = parse_text(gen::generate(o));
      EXPECT_FALSE(script::uses_model_only(s)) << "seed " << seed;
    }
  }
}

// ---- tests/scenarios-v2 ----

fs::path scenario_dir() { return scenario::dir("scenarios-v2"); }
std::vector<std::string> scenario_files() { return scenario::files(scenario_dir()); }
using scenario::read_lines;
using scenario::test_name;

class ScenarioV2Test : public ::testing::TestWithParam<std::string> {};

// The model's output equals NAME.expected (recorded with `mirrormm replay NAME.mms` and
// reviewed by hand); the host prints SKIP for every model-only line and agrees with the
// model on the other lines (see below for the exception).
TEST_P(ScenarioV2Test, ModelMatchesExpectedAndHostOnV1Lines) {
  const fs::path path = GetParam();
  std::string error;
  std::optional<script::Script> s = script::parse_file(path.string(), &error);
  ASSERT_TRUE(s.has_value()) << error;
  ASSERT_TRUE(script::uses_model_only(*s)) << path << " has no model-only command";
  std::vector<std::string> model = replay::run(*s, replay::Options{SystemConfig::from_host()});
  ASSERT_EQ(model.size(), s->commands.size());

  fs::path expected_path = path;
  expected_path.replace_extension(".expected");
  std::optional<std::vector<std::string>> expected = read_lines(expected_path);
  ASSERT_TRUE(expected.has_value()) << "cannot read " << expected_path;
  EXPECT_EQ(expected->size(), model.size()) << expected_path << " has a wrong number of lines";
  for (size_t i = 0; i < std::min(expected->size(), model.size()); ++i) {
    EXPECT_EQ((*expected)[i], model[i]) << s->file << ":" << s->commands[i].line << ": "
                                        << script::format(s->commands[i]);
  }

  // The host does not run the devices: once a `dev fault` has faulted pages in or a `dev
  // write` has changed memory, `read`, `mincore` and `smaps` may legitimately differ from the
  // host. Nor does it share the model's swap: after `swapon` or `reclaim`, `mincore` and
  // `smaps` may differ (pages the model swapped out); the bytes a `read` sees may not. After
  // `hmm mmap` the host lacks a mapping the model has, so no later v1 result is compared.
  // Every other v1 result must still agree.
  std::vector<std::string> host;
  ASSERT_TRUE(host::run(*s, &host, &error)) << error;
  ASSERT_EQ(host.size(), s->commands.size());
  bool device_touched_memory = false;
  bool residency_differs = false;
  bool layout_differs = false;
  for (size_t i = 0; i < s->commands.size(); ++i) {
    const script::Command& c = s->commands[i];
    if (script::model_only(c)) {
      layout_differs |= c.model == script::ModelOp::kHmmMmap;
      EXPECT_EQ(host[i], "SKIP") << script::format(c);
      device_touched_memory |= c.model == script::ModelOp::kDevFault || c.model == script::ModelOp::kDevWrite ||
                               c.model >= script::ModelOp::kHmmRead;  // dmirror faults, writes, migrates
      residency_differs |= c.model == script::ModelOp::kSwapon || c.model == script::ModelOp::kReclaim;
    } else if (layout_differs || (residency_differs && (c.op == script::Op::kMincore || c.op == script::Op::kSmaps))) {
      continue;
    } else if (!device_touched_memory ||
               (c.op != script::Op::kRead && c.op != script::Op::kMincore && c.op != script::Op::kSmaps)) {
      EXPECT_EQ(host[i], model[i]) << s->file << ":" << c.line << ": " << script::format(c);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(ScenariosV2, ScenarioV2Test, ::testing::ValuesIn(scenario_files()), test_name);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(ScenarioV2Test);

TEST(ScenariosV2, DirectoryHasScripts) {
  EXPECT_GE(scenario_files().size(), 3u) << "expected scenarios in " << scenario_dir();
}

// The example of examples/ parses, uses v2, and runs without checker violations.
TEST(ScenariosV2, DeviceMirrorExampleRunsClean) {
  std::string error;
  std::optional<script::Script> s =
      script::parse_file((fs::path(MIRRORMM_SOURCE_DIR) / "examples" / "device_mirror.mms").string(), &error);
  ASSERT_TRUE(s.has_value()) << error;
  EXPECT_TRUE(script::uses_model_only(*s));
  std::vector<std::string> out = replay::run(*s, replay::Options{SystemConfig::from_host()});
  ASSERT_EQ(out.size(), s->commands.size());
  for (size_t i = 0; i < out.size(); ++i) {
    if (s->commands[i].model == script::ModelOp::kCheck) {
      EXPECT_EQ(out[i], "ok") << "line " << s->commands[i].line;
    }
  }
}

}  // namespace
}  // namespace mirrormm
