// The `.mms` parser: lexical rules, every command, every usage error, and format().
#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"

namespace mirrormm::script {
namespace {

Command parse_one(const std::string& line) {
  std::string error;
  std::optional<Script> s = parse(line, "t.mms", &error);
  EXPECT_TRUE(s.has_value()) << line << ": " << error;
  if (!s || s->commands.size() != 1) {
    ADD_FAILURE() << "expected one command from: " << line;
    return Command{};
  }
  return s->commands[0];
}

std::string parse_error(const std::string& text) {
  std::string error;
  std::optional<Script> s = parse(text, "t.mms", &error);
  EXPECT_FALSE(s.has_value()) << "parsed: " << text;
  return error;
}

// Every field of Command but its line number.
void expect_same(const Command& a, const Command& b, const std::string& context) {
  EXPECT_EQ(a.op, b.op) << context;
  EXPECT_EQ(a.pid, b.pid) << context;
  EXPECT_EQ(a.addr, b.addr) << context;
  EXPECT_EQ(a.len, b.len) << context;
  EXPECT_EQ(a.new_len, b.new_len) << context;
  EXPECT_EQ(a.new_addr, b.new_addr) << context;
  EXPECT_EQ(a.seed, b.seed) << context;
  EXPECT_EQ(a.offset, b.offset) << context;
  EXPECT_EQ(a.size, b.size) << context;
  EXPECT_EQ(a.prot, b.prot) << context;
  EXPECT_EQ(a.map_flags, b.map_flags) << context;
  EXPECT_EQ(a.remap_flags, b.remap_flags) << context;
  EXPECT_EQ(a.advice, b.advice) << context;
  EXPECT_EQ(a.has_file, b.has_file) << context;
  EXPECT_EQ(a.has_new_addr, b.has_new_addr) << context;
  EXPECT_EQ(a.name, b.name) << context;
}

uint64_t number(const std::string& tok) { return parse_one("munmap " + tok + " 0").addr; }

TEST(ScriptParse, Numbers) {
  EXPECT_EQ(number("0"), 0u);
  EXPECT_EQ(number("4096"), 4096u);
  EXPECT_EQ(number("0x1000"), 0x1000u);
  EXPECT_EQ(number("0xABCdef"), 0xabcdefu);
  EXPECT_EQ(number("007"), 7u);
  EXPECT_EQ(number("16K"), 16384u);
  EXPECT_EQ(number("3M"), 3u << 20);
  EXPECT_EQ(number("2G"), 2ull << 30);
  EXPECT_EQ(number("0x10K"), 16u << 10);
  EXPECT_EQ(number("0xffffffffffffffff"), ~0ull);
  EXPECT_EQ(number("18446744073709551615"), ~0ull);
  EXPECT_EQ(number("17179869183G"), 17179869183ull << 30);
  EXPECT_EQ(number("0x0000000000000000000001"), 1u);  // leading zeros do not overflow
}

TEST(ScriptParse, BadNumbers) {
  const char* bad[] = {"0x", "x10", "-1", "+1", "1.5", "12z", "0x1g", "K", "1KB", "1k", "0X10", "1T", ""};
  for (const char* tok : bad) {
    if (*tok == '\0') continue;
    std::string e = parse_error(std::string("munmap ") + tok + " 0");
    EXPECT_EQ(e, std::string("t.mms:1: munmap: bad ADDR '") + tok + "': not a number") << tok;
  }
  const char* overflow[] = {"0x10000000000000000", "18446744073709551616", "17179869184G", "0xffffffffffffffffK",
                            "99999999999999999999999"};
  for (const char* tok : overflow) {
    std::string e = parse_error(std::string("munmap 0 ") + tok);
    EXPECT_EQ(e, std::string("t.mms:1: munmap: bad LEN '") + tok + "': does not fit in 64 bits") << tok;
  }
}

// Hex digits without `0x` are never read as decimal (nor as decimal up to the first letter):
// the line is refused and the message shows the spelling that was probably meant.
TEST(ScriptParse, HexWithoutPrefixIsAnError) {
  EXPECT_EQ(parse_error("mmap 7f0000000000 4096 rw- private+anon+fixed"),
            "t.mms:1: mmap: bad ADDR '7f0000000000': hex digits need the 0x prefix (0x7f0000000000)");
  EXPECT_EQ(parse_error("munmap 0x200000000000 1000a"),
            "t.mms:1: munmap: bad LEN '1000a': hex digits need the 0x prefix (0x1000a)");
  EXPECT_EQ(parse_error("munmap 0 4K\nmunmap ff 4K"),
            "t.mms:2: munmap: bad ADDR 'ff': hex digits need the 0x prefix (0xff)");
  EXPECT_EQ(parse_error("munmap 0 1Ab0M"), "t.mms:1: munmap: bad LEN '1Ab0M': hex digits need the 0x prefix (0x1Ab0M)");
  EXPECT_EQ(parse_error("@2a maps"), "t.mms:1: bad process prefix '@2a': hex digits need the 0x prefix (0x2a)");
  // Decimal digits alone stay decimal, and the prefixed spelling is accepted.
  EXPECT_EQ(number("1000"), 1000u);
  EXPECT_EQ(number("0x1000a"), 0x1000au);
  EXPECT_EQ(number("0x7f0000000000"), 0x7f0000000000u);
}

TEST(ScriptParse, CommentsBlankLinesTabsAndLineNumbers) {
  std::string text =
      "# header comment\n"
      "\n"
      "   \t \n"
      "mmap\t0x200000000000  4K rw- private+anon+fixed   # trailing comment\n"
      "#munmap 0 0\n"
      "  maps#no space before the comment\n"
      "fork\r\n"
      "exit";  // no final newline
  std::string error;
  std::optional<Script> s = parse(text, "t.mms", &error);
  ASSERT_TRUE(s.has_value()) << error;
  EXPECT_EQ(s->file, "t.mms");
  ASSERT_EQ(s->commands.size(), 4u);
  EXPECT_EQ(s->commands[0].op, Op::kMmap);
  EXPECT_EQ(s->commands[0].line, 4u);
  EXPECT_EQ(s->commands[1].op, Op::kMaps);
  EXPECT_EQ(s->commands[1].line, 6u);
  EXPECT_EQ(s->commands[2].op, Op::kFork);
  EXPECT_EQ(s->commands[2].line, 7u);
  EXPECT_EQ(s->commands[3].op, Op::kExit);
  EXPECT_EQ(s->commands[3].line, 8u);
}

TEST(ScriptParse, EmptyScript) {
  std::string error;
  std::optional<Script> s = parse("# nothing\n\n", "t.mms", &error);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->commands.empty());
}

TEST(ScriptParse, ProcessPrefix) {
  EXPECT_EQ(parse_one("maps").pid, 1u);
  EXPECT_EQ(parse_one("@2 maps").pid, 2u);
  EXPECT_EQ(parse_one("@0 fork").pid, 0u);  // parses; executors answer -ESRCH
  EXPECT_EQ(parse_one("@0x10 exit").pid, 16u);
  EXPECT_EQ(parse_one("@1K maps").pid, 1024u);
  EXPECT_EQ(parse_one("@18446744073709551615 maps").pid, ~0ull);
  EXPECT_EQ(parse_error("@ maps"), "t.mms:1: bad process prefix '@': not a number");
  EXPECT_EQ(parse_error("@x maps"), "t.mms:1: bad process prefix '@x': not a number");
  EXPECT_EQ(parse_error("@3"), "t.mms:1: missing command after '@3'");
  EXPECT_EQ(parse_error("@99999999999999999999 maps"),
            "t.mms:1: bad process prefix '@99999999999999999999': does not fit in 64 bits");
  EXPECT_EQ(parse_error("@2 @3 maps"), "t.mms:1: unknown command '@3'");
}

TEST(ScriptParse, Mmap) {
  Command c = parse_one("mmap 0x200000000000 16K rw- private+anon+fixed");
  EXPECT_EQ(c.op, Op::kMmap);
  EXPECT_EQ(c.addr, 0x200000000000u);
  EXPECT_EQ(c.len, 16384u);
  EXPECT_EQ(c.prot, kProtRead | kProtWrite);
  EXPECT_EQ(c.map_flags, kMapPrivate | kMapAnon | kMapFixed);
  EXPECT_FALSE(c.has_file);

  c = parse_one("@3 mmap 0 1 --x shared+anon+noreplace+populate+noreserve+growsdown+rofd");
  EXPECT_EQ(c.pid, 3u);
  EXPECT_EQ(c.prot, kProtExec);
  EXPECT_EQ(c.map_flags,
            kMapShared | kMapAnon | kMapNoreplace | kMapPopulate | kMapNoreserve | kMapGrowsdown | kMapRofd);

  c = parse_one("mmap 0x200000000000 8K r-- shared+fixed+rofd my_file-1.x 0x1000");
  EXPECT_TRUE(c.has_file);
  EXPECT_EQ(c.name, "my_file-1.x");
  EXPECT_EQ(c.offset, 0x1000u);
  EXPECT_EQ(c.prot, kProtRead);
  EXPECT_EQ(c.map_flags, kMapShared | kMapFixed | kMapRofd);

  // anon together with NAME OFFSET is accepted: Linux ignores the fd of MAP_ANONYMOUS.
  c = parse_one("mmap 0x200000000000 8K --- private+anon+fixed f 0");
  EXPECT_TRUE(c.has_file);
  EXPECT_EQ(c.map_flags, kMapPrivate | kMapAnon | kMapFixed);
  EXPECT_EQ(c.prot, 0u);

  const char* prots[] = {"---", "r--", "-w-", "--x", "rw-", "r-x", "-wx", "rwx"};
  uint32_t expect[] = {0, 1, 2, 4, 3, 5, 6, 7};
  for (int i = 0; i < 8; ++i)
    EXPECT_EQ(parse_one(std::string("mmap 0 1 ") + prots[i] + " private+anon").prot, expect[i]);
}

TEST(ScriptParse, MmapErrors) {
  EXPECT_EQ(parse_error("mmap 0 1 rw-"),
            "t.mms:1: mmap: expected 4 or 6 arguments (ADDR LEN PROT FLAGS [NAME OFFSET]), got 3");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+anon f"),
            "t.mms:1: mmap: expected 4 or 6 arguments (ADDR LEN PROT FLAGS [NAME OFFSET]), got 5");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+anon f 0 7"),
            "t.mms:1: mmap: expected 4 or 6 arguments (ADDR LEN PROT FLAGS [NAME OFFSET]), got 7");
  EXPECT_EQ(parse_error("\n\n\n\nmmap 0 1 rwz private+anon"),
            "t.mms:5: mmap: bad PROT 'rwz' (expected three characters [r-][w-][x-])");
  EXPECT_EQ(parse_error("mmap 0 1 rw private+anon"),
            "t.mms:1: mmap: bad PROT 'rw' (expected three characters [r-][w-][x-])");
  EXPECT_EQ(parse_error("mmap 0 1 rw-- private+anon"),
            "t.mms:1: mmap: bad PROT 'rw--' (expected three characters [r-][w-][x-])");
  EXPECT_EQ(parse_error("mmap 0 1 wr- private+anon"),
            "t.mms:1: mmap: bad PROT 'wr-' (expected three characters [r-][w-][x-])");
  EXPECT_EQ(parse_error("mmap 0 1 RW- private+anon"),
            "t.mms:1: mmap: bad PROT 'RW-' (expected three characters [r-][w-][x-])");
  EXPECT_EQ(parse_error("mmap 0 1 rw- anon"),
            "t.mms:1: mmap: bad FLAGS 'anon': exactly one of private/shared/shared_validate/droppable is required");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+shared+anon"),
            "t.mms:1: mmap: bad FLAGS 'private+shared+anon': exactly one of private/shared/shared_validate/droppable is required");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+anon+anon"),
            "t.mms:1: mmap: bad FLAGS 'private+anon+anon': duplicate word 'anon'");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+anonymous"),
            "t.mms:1: mmap: bad FLAGS 'private+anonymous': unknown word 'anonymous'");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private++anon"), "t.mms:1: mmap: bad FLAGS 'private++anon': empty word");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+anon+"), "t.mms:1: mmap: bad FLAGS 'private+anon+': empty word");
  EXPECT_EQ(parse_error("mmap 0 1 rw- private+fixed"),
            "t.mms:1: mmap: bad FLAGS 'private+fixed': anon is required without NAME OFFSET");
  EXPECT_EQ(parse_error("mmap 0 1 rw- shared f/x 0"),
            "t.mms:1: mmap: bad NAME 'f/x' (expected characters [A-Za-z0-9_.-])");
  EXPECT_EQ(parse_error("mmap 0 1 rw- shared f zero"), "t.mms:1: mmap: bad OFFSET 'zero': not a number");
  EXPECT_EQ(parse_error("mmap zero 1 rw- shared+anon"), "t.mms:1: mmap: bad ADDR 'zero': not a number");
  EXPECT_EQ(parse_error("mmap 0 one rw- shared+anon"), "t.mms:1: mmap: bad LEN 'one': not a number");
}

TEST(ScriptParse, MunmapMprotect) {
  Command c = parse_one("munmap 0x200000001000 1");
  EXPECT_EQ(c.op, Op::kMunmap);
  EXPECT_EQ(c.addr, 0x200000001000u);
  EXPECT_EQ(c.len, 1u);

  c = parse_one("mprotect 0x200000000000 4K r-x");
  EXPECT_EQ(c.op, Op::kMprotect);
  EXPECT_EQ(c.prot, kProtRead | kProtExec);
  EXPECT_EQ(parse_one("mprotect 0 0 rw-+growsdown").prot, kProtRead | kProtWrite | kProtGrowsDown);
  EXPECT_EQ(parse_one("mprotect 0 0 ---+growsup").prot, kProtGrowsUp);
  EXPECT_EQ(parse_one("mprotect 0 0 r--+growsup+growsdown").prot, kProtRead | kProtGrowsUp | kProtGrowsDown);

  EXPECT_EQ(parse_error("munmap 0"), "t.mms:1: munmap: expected 2 arguments (ADDR LEN), got 1");
  EXPECT_EQ(parse_error("munmap 0 1 2"), "t.mms:1: munmap: expected 2 arguments (ADDR LEN), got 3");
  EXPECT_EQ(parse_error("mprotect 0 1"),
            "t.mms:1: mprotect: expected 3 arguments (ADDR LEN PROT[+growsdown|+growsup]), got 2");
  EXPECT_EQ(parse_error("mprotect 0 1 rw-+growsdown+growsdown"),
            "t.mms:1: mprotect: bad PROT 'rw-+growsdown+growsdown': duplicate suffix 'growsdown'");
  EXPECT_EQ(parse_error("mprotect 0 1 rw-+grows"),
            "t.mms:1: mprotect: bad PROT 'rw-+grows': unknown suffix 'grows' (expected growsdown or growsup)");
  EXPECT_EQ(parse_error("mprotect 0 1 rw-+"),
            "t.mms:1: mprotect: bad PROT 'rw-+': unknown suffix '' (expected growsdown or growsup)");
  EXPECT_EQ(parse_error("mprotect 0 1 +growsdown"),
            "t.mms:1: mprotect: bad PROT '+growsdown' (expected three characters [r-][w-][x-])");
  EXPECT_EQ(parse_error("mprotect 0 1 rwxx+growsdown"),
            "t.mms:1: mprotect: bad PROT 'rwxx+growsdown' (expected three characters [r-][w-][x-])");
}

TEST(ScriptParse, Madvise) {
  struct {
    const char* word;
    Advice advice;
  } cases[] = {
      {"dontneed", Advice::kDontneed},     {"dontfork", Advice::kDontfork},
      {"dofork", Advice::kDofork},         {"wipeonfork", Advice::kWipeonfork},
      {"keeponfork", Advice::kKeeponfork}, {"populate_read", Advice::kPopulateRead},
      {"populate_write", Advice::kPopulateWrite}, {"willneed", Advice::kWillneed},
      {"cold", Advice::kCold},             {"pageout", Advice::kPageout},
  };
  for (const auto& k : cases) {
    Command c = parse_one(std::string("madvise 0x200000000000 8K ") + k.word);
    EXPECT_EQ(c.op, Op::kMadvise);
    EXPECT_EQ(c.advice, k.advice) << k.word;
    EXPECT_EQ(c.len, 8192u);
  }
  EXPECT_EQ(parse_error("madvise 0 1 collapse"), "t.mms:1: madvise: bad ADVICE 'collapse'");
  EXPECT_EQ(parse_error("madvise 0 1 DONTNEED"), "t.mms:1: madvise: bad ADVICE 'DONTNEED'");
  EXPECT_EQ(parse_error("madvise 0 1"), "t.mms:1: madvise: expected 3 arguments (ADDR LEN ADVICE), got 2");
}

TEST(ScriptParse, Mremap) {
  Command c = parse_one("mremap 0x200000000000 4K 8K 0");
  EXPECT_EQ(c.op, Op::kMremap);
  EXPECT_EQ(c.addr, 0x200000000000u);
  EXPECT_EQ(c.len, 4096u);
  EXPECT_EQ(c.new_len, 8192u);
  EXPECT_EQ(c.remap_flags, 0u);
  EXPECT_FALSE(c.has_new_addr);

  c = parse_one("mremap 0x200000000000 4K 4K maymove+fixed+dontunmap 0x200000100000");
  EXPECT_EQ(c.remap_flags, kRemapMaymove | kRemapFixed | kRemapDontunmap);
  EXPECT_TRUE(c.has_new_addr);
  EXPECT_EQ(c.new_addr, 0x200000100000u);
  EXPECT_EQ(parse_one("mremap 0 0 0 fixed 0").remap_flags, kRemapFixed);  // parses; kernel says EINVAL

  EXPECT_EQ(parse_error("mremap 0 1 2"),
            "t.mms:1: mremap: expected 4 or 5 arguments (OLD OLDLEN NEWLEN FLAGS [NEWADDR]), got 3");
  EXPECT_EQ(parse_error("mremap 0 1 2 0 3 4"),
            "t.mms:1: mremap: expected 4 or 5 arguments (OLD OLDLEN NEWLEN FLAGS [NEWADDR]), got 6");
  EXPECT_EQ(parse_error("mremap 0 1 2 0x0"), "t.mms:1: mremap: bad FLAGS '0x0': unknown word '0x0'");
  EXPECT_EQ(parse_error("mremap 0 1 2 maymove+maymove"),
            "t.mms:1: mremap: bad FLAGS 'maymove+maymove': duplicate word 'maymove'");
  EXPECT_EQ(parse_error("mremap 0 1 2 private"), "t.mms:1: mremap: bad FLAGS 'private': unknown word 'private'");
  EXPECT_EQ(parse_error("mremap 0 1 2 maymove+0"), "t.mms:1: mremap: bad FLAGS 'maymove+0': unknown word '0'");
  EXPECT_EQ(parse_error("mremap 0 1 2 fixed x"), "t.mms:1: mremap: bad NEWADDR 'x': not a number");
  EXPECT_EQ(parse_error("mremap 0 1 z fixed"), "t.mms:1: mremap: bad NEWLEN 'z': not a number");
  EXPECT_EQ(parse_error("mremap 0 y 2 fixed"), "t.mms:1: mremap: bad OLDLEN 'y': not a number");
  EXPECT_EQ(parse_error("mremap x 1 2 fixed"), "t.mms:1: mremap: bad OLD 'x': not a number");
}

TEST(ScriptParse, AccessCommands) {
  Command c = parse_one("write 0x200000000fff 2 0xdead");
  EXPECT_EQ(c.op, Op::kWrite);
  EXPECT_EQ(c.addr, 0x200000000fffu);
  EXPECT_EQ(c.len, 2u);
  EXPECT_EQ(c.seed, 0xdeadu);
  c = parse_one("read 0x200000000000 1M");
  EXPECT_EQ(c.op, Op::kRead);
  EXPECT_EQ(c.len, 1u << 20);
  c = parse_one("mincore 0x200000000000 0");
  EXPECT_EQ(c.op, Op::kMincore);
  EXPECT_EQ(c.len, 0u);

  EXPECT_EQ(parse_error("write 0 1"), "t.mms:1: write: expected 3 arguments (ADDR LEN SEED), got 2");
  EXPECT_EQ(parse_error("write 0 1 s"), "t.mms:1: write: bad SEED 's': not a number");
  EXPECT_EQ(parse_error("read 0"), "t.mms:1: read: expected 2 arguments (ADDR LEN), got 1");
  EXPECT_EQ(parse_error("mincore 0 1 2"), "t.mms:1: mincore: expected 2 arguments (ADDR LEN), got 3");
}

TEST(ScriptParse, ProcessAndFileCommands) {
  EXPECT_EQ(parse_one("maps").op, Op::kMaps);
  EXPECT_EQ(parse_one("smaps").op, Op::kSmaps);
  EXPECT_EQ(script::format(parse_one("@2 smaps")), "@2 smaps");
  EXPECT_EQ(parse_one("fork").op, Op::kFork);
  EXPECT_EQ(parse_one("exit").op, Op::kExit);
  Command c = parse_one("memfd buf.0 64K");
  EXPECT_EQ(c.op, Op::kMemfd);
  EXPECT_EQ(c.name, "buf.0");
  EXPECT_EQ(c.size, 65536u);
  c = parse_one("truncate buf.0 0");
  EXPECT_EQ(c.op, Op::kTruncate);
  EXPECT_EQ(c.size, 0u);

  EXPECT_EQ(parse_error("maps 1"), "t.mms:1: maps: expected 0 arguments (no arguments), got 1");
  EXPECT_EQ(parse_error("smaps 0x200000000000"), "t.mms:1: smaps: expected 0 arguments (no arguments), got 1");
  EXPECT_EQ(parse_error("fork now"), "t.mms:1: fork: expected 0 arguments (no arguments), got 1");
  EXPECT_EQ(parse_error("exit 0"), "t.mms:1: exit: expected 0 arguments (no arguments), got 1");
  EXPECT_EQ(parse_error("memfd f"), "t.mms:1: memfd: expected 2 arguments (NAME SIZE), got 1");
  EXPECT_EQ(parse_error("memfd f:g 1"), "t.mms:1: memfd: bad NAME 'f:g' (expected characters [A-Za-z0-9_.-])");
  EXPECT_EQ(parse_error("truncate f big"), "t.mms:1: truncate: bad SIZE 'big': not a number");
  EXPECT_EQ(parse_error("truncate f 1 2"), "t.mms:1: truncate: expected 2 arguments (NAME SIZE), got 3");
}

TEST(ScriptParse, AdviceSealsProcessMadviseAndMapTypes) {
  const std::pair<const char*, uint64_t> words[] = {
      {"free", 8},          {"remove", 9},      {"guard_install", 102}, {"guard_remove", 103},
      {"dontneed_locked", 24}, {"hugepage", 14}, {"nohugepage", 15}};
  for (auto [word, value] : words) {
    Command c = parse_one(std::string("madvise 0x1000 4K ") + word);
    EXPECT_EQ(linux_madvise(c.advice), value) << word;
    EXPECT_EQ(format(c), std::string("madvise 0x1000 0x1000 ") + word);
  }
  Command c = parse_one("@2 pmadvise 3 0x1000 8K guard_install");
  EXPECT_EQ(c.op, Op::kPmadvise);
  EXPECT_EQ(c.pid, 2u);
  EXPECT_EQ(c.target, 3u);
  EXPECT_EQ(c.len, 8192u);
  EXPECT_EQ(format(c), "@2 pmadvise 3 0x1000 0x2000 guard_install");
  c = parse_one("mseal 0x1000 1");
  EXPECT_EQ(c.op, Op::kMseal);
  EXPECT_EQ(format(c), "mseal 0x1000 0x1");
  c = parse_one("mmap 0x1000 4K rw- droppable+anon+fixed+stack");
  EXPECT_EQ(linux_map_flags(c.map_flags), 0x08u | 0x20u | 0x10u | 0x20000u);
  EXPECT_EQ(format(c), "mmap 0x1000 0x1000 rw- anon+fixed+stack+droppable");
  EXPECT_EQ(linux_map_flags(parse_one("mmap 0 1 r-- shared_validate f 0").map_flags), 0x03u);
  EXPECT_EQ(parse_error("mmap 0 1 rw- shared+droppable+anon"),
            "t.mms:1: mmap: bad FLAGS 'shared+droppable+anon': exactly one of private/shared/shared_validate/droppable "
            "is required");
  EXPECT_EQ(parse_error("pmadvise 0x1000 4K cold"), "t.mms:1: pmadvise: expected 4 arguments (PID ADDR LEN ADVICE), got 3");
  EXPECT_EQ(parse_error("pmadvise 2 0x1000 4K collapse"), "t.mms:1: pmadvise: bad ADVICE 'collapse'");
  EXPECT_EQ(parse_error("mseal 0x1000"), "t.mms:1: mseal: expected 2 arguments (ADDR LEN), got 1");
}

TEST(ScriptParse, RegularFileCommands) {
  Command c = parse_one("file data 64K");
  EXPECT_EQ(c.op, Op::kFile);
  EXPECT_EQ(c.name, "data");
  EXPECT_EQ(c.size, 65536u);
  c = parse_one("msync 0x200000000000 8K sync+invalidate");
  EXPECT_EQ(c.op, Op::kMsync);
  EXPECT_EQ(c.len, 8192u);
  EXPECT_EQ(c.msync_flags, kMsyncSync | kMsyncInvalidate);
  EXPECT_EQ(linux_msync_flags(c.msync_flags), 6u);  // MS_SYNC | MS_INVALIDATE
  EXPECT_EQ(parse_one("msync 0x200000000000 8K 0").msync_flags, 0u);
  c = parse_one("fsync data");
  EXPECT_EQ(c.op, Op::kFsync);
  EXPECT_EQ(c.name, "data");
  c = parse_one("pread data 0x1000 100");
  EXPECT_EQ(c.op, Op::kPread);
  EXPECT_EQ(c.offset, 0x1000u);
  EXPECT_EQ(c.len, 100u);
  EXPECT_EQ(format(parse_one("msync 0x1000 1 async")), "msync 0x1000 0x1 async");
  EXPECT_EQ(format(parse_one("pread f 1 2")), "pread f 0x1 0x2");
  EXPECT_EQ(format(parse_one("@2 fsync f")), "@2 fsync f");
  EXPECT_EQ(format(parse_one("file f 4K")), "file f 0x1000");

  EXPECT_EQ(parse_error("msync 0 1 fast"), "t.mms:1: msync: bad FLAGS 'fast': unknown word 'fast'");
  EXPECT_EQ(parse_error("fsync"), "t.mms:1: fsync: expected 1 argument (NAME), got 0");
  EXPECT_EQ(parse_error("pread f 0 17M"), "t.mms:1: pread: LEN '17M' above the limit of 16M");
}

TEST(ScriptParse, UnknownCommandAndFirstErrorWins) {
  EXPECT_EQ(parse_error("maps\nmaps\nmmapp 0 1 rw- private+anon\n"), "t.mms:3: unknown command 'mmapp'");
  EXPECT_EQ(parse_error("MAPS"), "t.mms:1: unknown command 'MAPS'");
  EXPECT_EQ(parse_error("maps\nbogus\nalso bogus\n"), "t.mms:2: unknown command 'bogus'");
  // The file name given to parse() is the diagnostic prefix.
  std::string error;
  EXPECT_FALSE(parse("x", "dir/s.mms", &error).has_value());
  EXPECT_EQ(error, "dir/s.mms:1: unknown command 'x'");
  // Non-ASCII and control bytes are just unknown commands, not crashes.
  EXPECT_FALSE(parse(std::string("\xff\xfe\x01 maps"), "t.mms", &error).has_value());
  EXPECT_FALSE(parse(std::string("maps\0x", 6), "t.mms", &error).has_value());
}

TEST(ScriptParse, ParseFile) {
  std::string path = ::testing::TempDir() + "script_parse_test.mms";
  {
    std::ofstream f(path);
    f << "# a file\nmaps\n@2 fork\n";
  }
  std::string error;
  std::optional<Script> s = parse_file(path, &error);
  ASSERT_TRUE(s.has_value()) << error;
  EXPECT_EQ(s->file, path);
  ASSERT_EQ(s->commands.size(), 2u);
  EXPECT_EQ(s->commands[1].pid, 2u);
  EXPECT_EQ(s->commands[1].line, 3u);
  std::remove(path.c_str());

  EXPECT_FALSE(parse_file(path, &error).has_value());
  EXPECT_EQ(error.rfind(path + ": cannot open: ", 0), 0u) << error;
}

TEST(ScriptParse, FormatIsCanonical) {
  EXPECT_EQ(format(parse_one("mmap 0x200000000000 16K rw- anon+fixed+private")),
            "mmap 0x200000000000 0x4000 rw- private+anon+fixed");
  EXPECT_EQ(format(parse_one("@2 mmap 8192 1 r-x shared+rofd f 4K")), "@2 mmap 0x2000 0x1 r-x shared+rofd f 0x1000");
  EXPECT_EQ(format(parse_one("@1 mprotect 0 0 ---+growsup+growsdown")), "mprotect 0x0 0x0 ---+growsdown+growsup");
  EXPECT_EQ(format(parse_one("mremap 0x1000 4K 8K 0")), "mremap 0x1000 0x1000 0x2000 0");
  EXPECT_EQ(format(parse_one("mremap 0x1000 4K 8K fixed+maymove 0x2000")),
            "mremap 0x1000 0x1000 0x2000 maymove+fixed 0x2000");
  EXPECT_EQ(format(parse_one("write 0x10 0x20 0x30")), "write 0x10 0x20 48");
  EXPECT_EQ(format(parse_one("madvise 0x10 0x20 populate_write")), "madvise 0x10 0x20 populate_write");
  EXPECT_EQ(format(parse_one("memfd f 1M")), "memfd f 0x100000");
  EXPECT_EQ(format(parse_one("@0 truncate f 0")), "@0 truncate f 0x0");
  EXPECT_EQ(format(parse_one("@7 maps")), "@7 maps");
}

void expect_round_trip(const Script& s) {
  for (const Command& c : s.commands) {
    std::string line = format(c);
    std::string error;
    std::optional<Script> again = parse(line, "round-trip", &error);
    ASSERT_TRUE(again.has_value()) << line << ": " << error;
    ASSERT_EQ(again->commands.size(), 1u) << line;
    expect_same(c, again->commands[0], line);
  }
}

TEST(ScriptParse, FormatRoundTripsGeneratedScripts) {
  for (gen::Profile profile : {gen::Profile::kAnon, gen::Profile::kFiles, gen::Profile::kAll}) {
    for (uint64_t seed = 1; seed <= 30; ++seed) {
      gen::Options o;
      o.seed = seed;
      o.profile = profile;
      std::string text = gen::generate(o);
      std::string error;
      std::optional<Script> s = parse(text, "gen.mms", &error);
      ASSERT_TRUE(s.has_value()) << error;
      expect_round_trip(*s);
    }
  }
}

TEST(ScriptParse, FormatRoundTripsEdgeValues) {
  std::string text =
      "mmap 0xffffffffffffffff 0xffffffffffffffff rwx shared+anon+fixed+noreplace+populate+noreserve+growsdown+rofd x "
      "0xffffffffffffffff\n"
      "@18446744073709551615 mremap 0 0 0 0 0\n"
      "write 0 0 18446744073709551615\n"
      "mprotect 0xfff 0 -w-+growsup\n";
  std::string error;
  std::optional<Script> s = parse(text, "edge.mms", &error);
  ASSERT_TRUE(s.has_value()) << error;
  expect_round_trip(*s);
}

// Random damage to valid lines: parse() either accepts the result (and then format()
// round-trips it) or names the problem at line 1; it never crashes or throws.
TEST(ScriptParse, DamagedLinesNeverCrash) {
  gen::Options o;
  o.profile = gen::Profile::kAll;
  o.commands = 400;
  std::string text = gen::generate(o);
  std::vector<std::string> lines;
  for (size_t pos = 0, eol; (eol = text.find('\n', pos)) != std::string::npos; pos = eol + 1)
    lines.push_back(text.substr(pos, eol - pos));
  std::string alphabet = "0123456789abcdefxKMG@#+-_. \trwxp\r\xff";
  alphabet += '\0';
  uint64_t state = 42;
  auto next = [&state] {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return state >> 33;
  };
  size_t accepted = 0, rejected = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string line = lines[next() % lines.size()];
    int edits = 1 + static_cast<int>(next() % 3);
    for (int e = 0; e < edits; ++e) {
      size_t at = line.empty() ? 0 : next() % line.size();
      char ch = alphabet[next() % alphabet.size()];
      switch (next() % 3) {
        case 0: if (!line.empty()) line[at] = ch; break;
        case 1: line.insert(line.begin() + static_cast<long>(at), ch); break;
        default: if (!line.empty()) line.erase(at, 1); break;
      }
    }
    std::string error;
    std::optional<Script> s;
    ASSERT_NO_THROW(s = parse(line, "t.mms", &error)) << line;
    if (!s) {
      ++rejected;
      ASSERT_EQ(error.rfind("t.mms:1: ", 0), 0u) << error;
      continue;
    }
    ++accepted;
    ASSERT_LE(s->commands.size(), 1u);
    if (s->commands.size() == 1) {
      std::optional<Script> again = parse(format(s->commands[0]), "t.mms", &error);
      ASSERT_TRUE(again.has_value()) << line << " -> " << format(s->commands[0]) << ": " << error;
      expect_same(s->commands[0], again->commands[0], line);
    }
  }
  EXPECT_GT(accepted, 1000u);
  EXPECT_GT(rejected, 1000u);
}

}  // namespace
}  // namespace mirrormm::script
