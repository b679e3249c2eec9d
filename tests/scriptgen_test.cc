// The random script generator: determinism, validity, host safety and coverage.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <stdexcept>
#include <string>

#include "mirrormm/host.h"
#include "mirrormm/script.h"
#include "mirrormm/scriptgen.h"

namespace mirrormm::gen {
namespace {

using script::Command;
using script::Op;

constexpr Profile kProfiles[] = {Profile::kAnon, Profile::kFiles, Profile::kAll, Profile::kLock, Profile::kAdvise};
constexpr uint64_t kSeeds = 150;

script::Script generate_parsed(uint64_t seed, Profile profile, int commands = 300) {
  Options o;
  o.seed = seed;
  o.profile = profile;
  o.commands = commands;
  std::string error;
  std::optional<script::Script> s = script::parse(generate(o), "gen.mms", &error);
  EXPECT_TRUE(s.has_value()) << "seed " << seed << ": " << error;
  return s.value_or(script::Script{});
}

bool in_window(uint64_t a) { return a >= script::kWindowStart && a < script::kWindowEnd; }

// The generator's contract, stated without host_safe()'s reasoning about kernel checks:
// every address a command acts on is in the window or at/above TASK_SIZE, except the hint
// of an mmap without fixed/noreplace (which is in the window or 0).
bool addresses_ok(const Command& c) {
  auto ok = [](uint64_t a) { return in_window(a) || a >= host::kTaskSize; };
  switch (c.op) {
    case Op::kMmap:
      if (!(c.map_flags & (script::kMapFixed | script::kMapNoreplace))) return c.addr == 0 || in_window(c.addr);
      return ok(c.addr);
    case Op::kMremap:
      return ok(c.addr) && (!c.has_new_addr || ok(c.new_addr));
    case Op::kMunmap:
    case Op::kMprotect:
    case Op::kMadvise:
    case Op::kMseal:
    case Op::kPmadvise:
    case Op::kWrite:
    case Op::kRead:
    case Op::kMincore:
    case Op::kMlock:
    case Op::kMunlock:
      return ok(c.addr);
    default:
      return true;
  }
}

// The lock profile uses every locking command, MAP_LOCKED and every resource, and never an
// absolute address-space or data limit (only `+N` or `inf`; a soft data limit of 0 at most).
TEST(ScriptGen, LockProfileLocksAndLimits) {
  bool mlock = false, onfault = false, munlock = false, mlockall = false, munlockall = false, mlocked = false;
  bool map_locked = false, rlimits[4] = {};
  for (uint64_t seed = 1; seed <= 40; ++seed) {
    for (const Command& c : generate_parsed(seed, Profile::kLock).commands) {
      mlock |= c.op == Op::kMlock;
      onfault |= c.op == Op::kMlock && c.mlock_onfault;
      munlock |= c.op == Op::kMunlock;
      mlockall |= c.op == Op::kMlockall;
      munlockall |= c.op == Op::kMunlockall;
      mlocked |= c.op == Op::kMlocked;
      map_locked |= c.op == Op::kMmap && (c.map_flags & script::kMapLocked);
      if (c.op != Op::kSetrlimit) continue;
      rlimits[static_cast<int>(c.rlimit)] = true;
      if (c.rlimit == script::Rlimit::kAs || c.rlimit == script::Rlimit::kData) {
        const bool soft_zero = !c.rlim_soft.relative && !c.rlim_soft.infinite && c.rlim_soft.value == 0;
        EXPECT_TRUE(c.rlim_soft.relative || c.rlim_soft.infinite || soft_zero) << script::format(c);
        EXPECT_TRUE(c.rlim_hard.relative || c.rlim_hard.infinite) << script::format(c);
      }
      EXPECT_TRUE(host::host_safe(c)) << script::format(c);
    }
  }
  EXPECT_TRUE(mlock && onfault && munlock && mlockall && munlockall && mlocked && map_locked);
  for (bool r : rlimits) EXPECT_TRUE(r);
}

TEST(ScriptGen, Deterministic) {
  for (Profile p : kProfiles) {
    for (uint64_t seed : {1ull, 2ull, 12345ull, ~0ull}) {
      Options o;
      o.seed = seed;
      o.profile = p;
      EXPECT_EQ(generate(o), generate(o));
    }
  }
  Options a, b;
  b.seed = 2;
  EXPECT_NE(generate(a), generate(b));
  Options files;
  files.profile = Profile::kFiles;
  EXPECT_NE(generate(a), generate(files));
}

TEST(ScriptGen, ExactCommandCountAndCanonicalText) {
  for (int n : {0, 1, 17, 300, 1000}) {
    Options o;
    o.commands = n;
    o.profile = Profile::kAll;
    std::string text = generate(o);
    EXPECT_EQ(static_cast<int>(std::count(text.begin(), text.end(), '\n')), n);
    script::Script s = generate_parsed(o.seed, o.profile, n);
    ASSERT_EQ(static_cast<int>(s.commands.size()), n);
    // Canonical: the text is exactly format() of each command, one per line.
    std::string again;
    for (const Command& c : s.commands) again += script::format(c) + "\n";
    EXPECT_EQ(text, again);
  }
}

TEST(ScriptGen, EveryScriptParsesAndIsHostSafe) {
  for (Profile p : kProfiles) {
    for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
      script::Script s = generate_parsed(seed, p);
      ASSERT_EQ(s.commands.size(), 300u);
      for (const Command& c : s.commands) {
        ASSERT_TRUE(host::host_safe(c)) << "seed " << seed << " line " << c.line << ": " << script::format(c);
        ASSERT_TRUE(addresses_ok(c)) << "seed " << seed << " line " << c.line << ": " << script::format(c);
      }
    }
  }
}

// Bounded work per command, so that scripts run quickly on the host: data-touching spans
// (write, read, populate) of at most 64 pages, mincore that can succeed of at most 4096.
TEST(ScriptGen, DataTouchingSpansAreSmall) {
  constexpr uint64_t kPage = 4096;
  for (Profile p : kProfiles) {
    for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
      for (const Command& c : generate_parsed(seed, p).commands) {
        std::string what = "seed " + std::to_string(seed) + ": " + script::format(c);
        if ((c.op == Op::kWrite || c.op == Op::kRead) && c.addr < host::kTaskSize) {
          EXPECT_LE(c.len, 64 * kPage) << what;
        }
        if (c.op == Op::kMmap && (c.map_flags & script::kMapPopulate)) {
          EXPECT_LE(c.len, 64 * kPage) << what;
        }
        bool populates = c.advice == script::Advice::kPopulateRead || c.advice == script::Advice::kPopulateWrite ||
                         c.advice == script::Advice::kWillneed || c.advice == script::Advice::kGuardInstall;
        if ((c.op == Op::kMadvise || c.op == Op::kPmadvise) && populates && c.len <= ~0ull - c.addr) {
          EXPECT_LE(c.len, 64 * kPage) << what;
        }
        const bool huge_advice = c.advice == script::Advice::kHugepage || c.advice == script::Advice::kNohugepage;
        if ((c.op == Op::kMadvise || c.op == Op::kPmadvise) && huge_advice) {
          EXPECT_LT(c.len, 512 * kPage) << what;
        }
        if (c.op == Op::kMincore && c.addr < host::kTaskSize && c.len <= host::kTaskSize - c.addr) {
          EXPECT_LE(c.len, 4096 * kPage) << what;
        }
        if (c.op == Op::kMremap) {
          EXPECT_TRUE(c.remap_flags != script::kRemapMaymove || c.new_len <= c.len)
              << what << " (maymove without fixed may move out of the window)";
          EXPECT_TRUE(!(c.remap_flags & script::kRemapDontunmap) || (c.remap_flags & script::kRemapFixed) ||
                      !(c.remap_flags & script::kRemapMaymove))
              << what << " (dontunmap without fixed moves out of the window)";
        }
      }
    }
  }
}

struct Coverage {
  std::set<Op> ops;
  std::set<uint32_t> prots;
  std::set<uint32_t> map_bits;
  std::set<script::Advice> advice;
  uint64_t dead_targets = 0, max_live = 1, unaligned = 0, zero_len = 0, high_addr = 0, huge_len = 0;
  uint64_t below_growsdown = 0;
};

Coverage measure(Profile p) {
  Coverage cov;
  for (uint64_t seed = 1; seed <= kSeeds; ++seed) {
    std::set<uint64_t> live = {1};
    uint64_t next = 2;
    std::vector<uint64_t> growsdown;
    for (const Command& c : generate_parsed(seed, p).commands) {
      cov.ops.insert(c.op);
      if (c.op == Op::kMmap) {
        cov.prots.insert(c.prot);
        for (uint32_t bit = 1; bit <= script::kMapDroppable; bit <<= 1) {
          if (c.map_flags & bit) cov.map_bits.insert(bit);
        }
        if ((c.map_flags & script::kMapGrowsdown) && in_window(c.addr)) growsdown.push_back(c.addr);
      }
      if (c.op == Op::kMadvise) cov.advice.insert(c.advice);
      bool is_live = live.count(c.pid) != 0;
      if (!is_live) ++cov.dead_targets;
      if (c.op == Op::kFork && is_live) live.insert(next++);
      if (c.op == Op::kExit && is_live) live.erase(c.pid);
      cov.max_live = std::max<uint64_t>(cov.max_live, live.size());
      bool addr_op = c.op != Op::kMaps && c.op != Op::kSmaps && c.op != Op::kFork && c.op != Op::kExit && c.op != Op::kMemfd &&
                     c.op != Op::kTruncate;
      if (addr_op) {
        if (c.addr % 4096 != 0) ++cov.unaligned;
        if (c.len == 0) ++cov.zero_len;
        if (c.addr >= host::kTaskSize) ++cov.high_addr;
        if (c.len >= (1ull << 40)) ++cov.huge_len;
      }
      if (c.op == Op::kWrite || c.op == Op::kRead) {
        for (uint64_t g : growsdown) {
          if (c.addr < g && g - c.addr <= (16ull << 20)) {
            ++cov.below_growsdown;
            break;
          }
        }
      }
    }
  }
  return cov;
}

TEST(ScriptGen, AnonProfileCoverage) {
  Coverage cov = measure(Profile::kAnon);
  std::set<Op> expect = {Op::kMmap, Op::kMunmap, Op::kMprotect, Op::kWrite, Op::kRead,
                         Op::kMincore, Op::kMaps, Op::kSmaps, Op::kFork, Op::kExit};
  EXPECT_EQ(cov.ops, expect);
  EXPECT_EQ(cov.prots.size(), 8u);
  for (uint32_t bit : {script::kMapPrivate, script::kMapShared, script::kMapAnon, script::kMapFixed,
                       script::kMapNoreplace, script::kMapPopulate, script::kMapNoreserve, script::kMapGrowsdown})
    EXPECT_TRUE(cov.map_bits.count(bit)) << "map flag bit " << bit;
  EXPECT_FALSE(cov.map_bits.count(script::kMapRofd));
  EXPECT_LE(cov.max_live, 6u);
  EXPECT_GE(cov.max_live, 4u);
  EXPECT_GT(cov.dead_targets, 0u);
  EXPECT_GT(cov.unaligned, 0u);
  EXPECT_GT(cov.zero_len, 0u);
  EXPECT_GT(cov.high_addr, 0u);
  EXPECT_GT(cov.huge_len, 0u);
  EXPECT_GT(cov.below_growsdown, 0u);
}

TEST(ScriptGen, FilesAndAllProfilesCoverage) {
  for (Profile p : {Profile::kFiles, Profile::kAll}) {
    Coverage cov = measure(p);
    for (Op op : {Op::kMmap, Op::kMunmap, Op::kMprotect, Op::kMadvise, Op::kMremap, Op::kWrite, Op::kRead,
                  Op::kMincore, Op::kMaps, Op::kSmaps, Op::kFork, Op::kExit, Op::kMemfd, Op::kTruncate})
      EXPECT_TRUE(cov.ops.count(op)) << "op " << static_cast<int>(op);
    // The files profile keeps the older ten advice words; all has every one, and the
    // locking commands.
    EXPECT_EQ(cov.advice.size(), p == Profile::kFiles ? 10u : 17u);
    if (p == Profile::kAll) {
      for (Op op : {Op::kMlock, Op::kMunlock, Op::kMlockall, Op::kMunlockall, Op::kSetrlimit, Op::kMlocked,
                    Op::kMseal, Op::kPmadvise}) {
        EXPECT_TRUE(cov.ops.count(op)) << "op " << static_cast<int>(op);
      }
    }
    EXPECT_TRUE(cov.map_bits.count(script::kMapRofd));
    EXPECT_LE(cov.max_live, 6u);
  }
}

TEST(ScriptGen, AdviseProfileCoverage) {
  Coverage cov = measure(Profile::kAdvise);
  for (Op op : {Op::kMmap, Op::kMadvise, Op::kMseal, Op::kPmadvise, Op::kFork, Op::kMaps, Op::kSmaps})
    EXPECT_TRUE(cov.ops.count(op)) << "op " << static_cast<int>(op);
  EXPECT_FALSE(cov.ops.count(Op::kFile));  // no regular files (huge-page readahead)
  EXPECT_EQ(cov.advice.size(), 17u);
  for (uint32_t bit : {script::kMapStack, script::kMapSharedValidate, script::kMapDroppable})
    EXPECT_TRUE(cov.map_bits.count(bit)) << "map flag bit " << bit;
}

TEST(ScriptGen, ParseProfile) {
  EXPECT_EQ(parse_profile("anon"), Profile::kAnon);
  EXPECT_EQ(parse_profile("files"), Profile::kFiles);
  EXPECT_EQ(parse_profile("all"), Profile::kAll);
  EXPECT_EQ(parse_profile("lock"), Profile::kLock);
  EXPECT_EQ(parse_profile("advise"), Profile::kAdvise);
  EXPECT_THROW(parse_profile("Anon"), std::invalid_argument);
  EXPECT_THROW(parse_profile(""), std::invalid_argument);
}

}  // namespace
}  // namespace mirrormm::gen
