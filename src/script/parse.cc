// The `.mms` parser and its inverse, format().
//
// The lexical rules are those of docs/mms-format.md: `#` comments, blank lines,
// tokens separated by spaces or tabs, numbers decimal or 0x-hex with an optional K/M/G binary
// suffix (hex digits without 0x are an error, not a decimal), an optional `@N` process prefix. Every check a command's arguments need happens
// here, so that both executors (the model's replay and the host runner) see only commands
// that are well formed; whether a well-formed command succeeds is the executors' business.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <sstream>

#include "mirrormm/script.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/system.h"  // vmstat_item_names

namespace mirrormm::script {
namespace {

// A usage error: the message without the "FILE:LINE: " prefix.
struct ParseError {
  std::string message;
};

bool is_space(char c) { return c == ' ' || c == '\t'; }

// Splits a line (comment already removed) into tokens separated by spaces or tabs.
std::vector<std::string_view> tokenize(std::string_view line) {
  std::vector<std::string_view> tokens;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && is_space(line[i])) ++i;
    size_t start = i;
    while (i < line.size() && !is_space(line[i])) ++i;
    if (i > start) tokens.push_back(line.substr(start, i - start));
  }
  return tokens;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// True when tok is made of hexadecimal digits and has at least one of a-f or A-F: a hex
// number written without its `0x` prefix, such as a copied /proc/PID/maps address.
bool bare_hex(std::string_view tok) {
  bool letter = false;
  for (char c : tok) {
    if (hex_digit(c) < 0) return false;
    if (c > '9') letter = true;
  }
  return letter;
}

// Parses a number token: decimal or `0x` hex, with an optional K, M or G binary suffix.
// Returns false when the token is not a number or its value does not fit in 64 bits. Hex
// digits without the `0x` prefix (`7f0000000000`, `1000a`) are refused with a message of
// their own rather than read as decimal up to the first letter.
bool parse_number(std::string_view tok, uint64_t* out, std::string* why) {
  const std::string_view whole = tok;
  uint64_t multiplier = 1;
  if (!tok.empty()) {
    switch (tok.back()) {
      case 'K': multiplier = 1ull << 10; break;
      case 'M': multiplier = 1ull << 20; break;
      case 'G': multiplier = 1ull << 30; break;
      default: break;
    }
    if (multiplier != 1) tok.remove_suffix(1);
  }
  unsigned base = 10;
  if (tok.size() >= 2 && tok[0] == '0' && tok[1] == 'x') {
    base = 16;
    tok.remove_prefix(2);
  }
  if (tok.empty()) {
    *why = "not a number";
    return false;
  }
  if (base == 10 && bare_hex(tok)) {
    *why = "hex digits need the 0x prefix (0x" + std::string(whole) + ")";
    return false;
  }
  uint64_t value = 0;
  for (char c : tok) {
    int d = hex_digit(c);
    if (d < 0 || static_cast<unsigned>(d) >= base) {
      *why = "not a number";
      return false;
    }
    if (__builtin_mul_overflow(value, base, &value) ||
        __builtin_add_overflow(value, static_cast<uint64_t>(d), &value)) {
      *why = "does not fit in 64 bits";
      return false;
    }
  }
  if (__builtin_mul_overflow(value, multiplier, &value)) {
    *why = "does not fit in 64 bits";
    return false;
  }
  *out = value;
  return true;
}

std::string quoted(std::string_view s) {
  std::string q;
  q.reserve(s.size() + 2);
  q += '\'';
  q += s;
  q += '\'';
  return q;
}

// Everything a command parser needs: the command name for messages and the arguments.
class ArgReader {
 public:
  ArgReader(std::string_view cmd, const std::vector<std::string_view>& args)
      : cmd_(cmd), args_(args) {}

  [[noreturn]] void fail(const std::string& message) const {
    throw ParseError{std::string(cmd_) + ": " + message};
  }

  uint64_t number(size_t i, const char* what) const {
    uint64_t v = 0;
    std::string why;
    if (!parse_number(args_[i], &v, &why)) fail("bad " + std::string(what) + " " + quoted(args_[i]) + ": " + why);
    return v;
  }

  // PROT: exactly three characters [r-][w-][x-]; `whole` is the token shown in a message.
  uint32_t prot(std::string_view tok, std::string_view whole) const {
    if (tok.size() != 3 || (tok[0] != 'r' && tok[0] != '-') || (tok[1] != 'w' && tok[1] != '-') ||
        (tok[2] != 'x' && tok[2] != '-'))
      fail("bad PROT " + quoted(whole) + " (expected three characters [r-][w-][x-])");
    uint32_t p = 0;
    if (tok[0] == 'r') p |= kProtRead;
    if (tok[1] == 'w') p |= kProtWrite;
    if (tok[2] == 'x') p |= kProtExec;
    return p;
  }

  // A file name: [A-Za-z0-9_.-]+.
  std::string name(size_t i) const {
    std::string_view tok = args_[i];
    for (char c : tok) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '_' || c == '.' || c == '-';
      if (!ok) fail("bad NAME " + quoted(tok) + " (expected characters [A-Za-z0-9_.-])");
    }
    return std::string(tok);
  }

  // A device name: [A-Za-z_][A-Za-z0-9_]*.
  std::string dev_name(size_t i) const {
    std::string_view tok = args_[i];
    bool ok = !tok.empty() && !(tok[0] >= '0' && tok[0] <= '9');
    for (char c : tok) {
      ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_');
    }
    if (!ok) fail("bad NAME " + quoted(tok) + " (expected [A-Za-z_][A-Za-z0-9_]*)");
    return std::string(tok);
  }

  const std::vector<std::string_view>& args() const { return args_; }
  std::string_view arg(size_t i) const { return args_[i]; }

 private:
  std::string_view cmd_;
  const std::vector<std::string_view>& args_;
};

struct Word {
  const char* text;
  uint32_t bit;
};

constexpr Word kMapWords[] = {
    {"private", kMapPrivate},     {"shared", kMapShared},   {"anon", kMapAnon},
    {"fixed", kMapFixed},         {"noreplace", kMapNoreplace}, {"populate", kMapPopulate},
    {"noreserve", kMapNoreserve}, {"growsdown", kMapGrowsdown}, {"rofd", kMapRofd},
    {"stack", kMapStack},         {"shared_validate", kMapSharedValidate}, {"droppable", kMapDroppable},
    {"locked", kMapLocked},
};

constexpr Word kMlockallWords[] = {
    {"current", kMclCurrent},
    {"future", kMclFuture},
    {"onfault", kMclOnfault},
};

struct RlimitWord {
  const char* text;
  Rlimit resource;
};

constexpr RlimitWord kRlimitWords[] = {
    {"as", Rlimit::kAs},
    {"data", Rlimit::kData},
    {"stack", Rlimit::kStack},
    {"memlock", Rlimit::kMemlock},
};

constexpr Word kRemapWords[] = {
    {"maymove", kRemapMaymove},
    {"fixed", kRemapFixed},
    {"dontunmap", kRemapDontunmap},
};

constexpr Word kMsyncWords[] = {
    {"sync", kMsyncSync},
    {"async", kMsyncAsync},
    {"invalidate", kMsyncInvalidate},
};

struct AdviceWord {
  const char* text;
  Advice advice;
};

constexpr AdviceWord kAdviceWords[] = {
    {"dontneed", Advice::kDontneed},         {"dontfork", Advice::kDontfork},
    {"dofork", Advice::kDofork},             {"wipeonfork", Advice::kWipeonfork},
    {"keeponfork", Advice::kKeeponfork},     {"populate_read", Advice::kPopulateRead},
    {"populate_write", Advice::kPopulateWrite}, {"willneed", Advice::kWillneed},
    {"cold", Advice::kCold},                 {"pageout", Advice::kPageout},
    {"free", Advice::kFree},                 {"remove", Advice::kRemove},
    {"guard_install", Advice::kGuardInstall}, {"guard_remove", Advice::kGuardRemove},
    {"dontneed_locked", Advice::kDontneedLocked}, {"hugepage", Advice::kHugepage},
    {"nohugepage", Advice::kNohugepage},
};

// Splits a `+`-joined list of words; every word must be known and appear at most once.
template <size_t N>
uint32_t parse_words(const ArgReader& r, std::string_view tok, const Word (&words)[N], const char* what) {
  uint32_t bits = 0;
  size_t i = 0;
  while (true) {
    size_t plus = tok.find('+', i);
    std::string_view word = tok.substr(i, plus == std::string_view::npos ? std::string_view::npos : plus - i);
    uint32_t bit = 0;
    for (const Word& w : words) {
      if (word == w.text) bit = w.bit;
    }
    if (bit == 0) {
      if (word.empty()) r.fail(std::string("bad ") + what + " " + quoted(tok) + ": empty word");
      r.fail(std::string("bad ") + what + " " + quoted(tok) + ": unknown word " + quoted(word));
    }
    if (bits & bit) r.fail(std::string("bad ") + what + " " + quoted(tok) + ": duplicate word " + quoted(word));
    bits |= bit;
    if (plus == std::string_view::npos) break;
    i = plus + 1;
  }
  return bits;
}

void expect_arity(const ArgReader& r, size_t n, const char* usage) {
  if (r.args().size() != n)
    r.fail("expected " + std::to_string(n) + " argument" + (n == 1 ? "" : "s") + " (" + usage + "), got " +
           std::to_string(r.args().size()));
}

void parse_mmap(const ArgReader& r, Command* c) {
  size_t n = r.args().size();
  if (n != 4 && n != 6)
    r.fail("expected 4 or 6 arguments (ADDR LEN PROT FLAGS [NAME OFFSET]), got " + std::to_string(n));
  c->addr = r.number(0, "ADDR");
  c->len = r.number(1, "LEN");
  c->prot = r.prot(r.arg(2), r.arg(2));
  c->map_flags = parse_words(r, r.arg(3), kMapWords, "FLAGS");
  const uint32_t type = c->map_flags & kMapTypes;
  if (type == 0 || (type & (type - 1)) != 0)
    r.fail("bad FLAGS " + quoted(r.arg(3)) + ": exactly one of private/shared/shared_validate/droppable is required");
  if (n == 6) {
    c->has_file = true;
    c->name = r.name(4);
    c->offset = r.number(5, "OFFSET");
  } else if (!(c->map_flags & kMapAnon)) {
    r.fail("bad FLAGS " + quoted(r.arg(3)) + ": anon is required without NAME OFFSET");
  }
}

void parse_mprotect(const ArgReader& r, Command* c) {
  expect_arity(r, 3, "ADDR LEN PROT[+growsdown|+growsup]");
  c->addr = r.number(0, "ADDR");
  c->len = r.number(1, "LEN");
  std::string_view tok = r.arg(2);
  c->prot = r.prot(tok.substr(0, tok.find('+')), tok);
  size_t plus = tok.find('+');
  while (plus != std::string_view::npos) {
    size_t next = tok.find('+', plus + 1);
    std::string_view word =
        tok.substr(plus + 1, next == std::string_view::npos ? std::string_view::npos : next - plus - 1);
    uint32_t bit = 0;
    if (word == "growsdown") bit = kProtGrowsDown;
    if (word == "growsup") bit = kProtGrowsUp;
    if (bit == 0)
      r.fail("bad PROT " + quoted(tok) + ": unknown suffix " + quoted(word) + " (expected growsdown or growsup)");
    if (c->prot & bit) r.fail("bad PROT " + quoted(tok) + ": duplicate suffix " + quoted(word));
    c->prot |= bit;
    plus = next;
  }
}

// ADDR LEN ADVICE from argument `first` on (madvise: 0; pmadvise: 1, after PID).
void parse_advice_args(const ArgReader& r, size_t first, Command* c) {
  c->addr = r.number(first, "ADDR");
  c->len = r.number(first + 1, "LEN");
  for (const AdviceWord& w : kAdviceWords) {
    if (r.arg(first + 2) == w.text) {
      c->advice = w.advice;
      return;
    }
  }
  r.fail("bad ADVICE " + quoted(r.arg(first + 2)));
}

void parse_madvise(const ArgReader& r, Command* c) {
  expect_arity(r, 3, "ADDR LEN ADVICE");
  parse_advice_args(r, 0, c);
}

void parse_pmadvise(const ArgReader& r, Command* c) {
  expect_arity(r, 4, "PID ADDR LEN ADVICE");
  c->target = r.number(0, "PID");
  parse_advice_args(r, 1, c);
}

void parse_mremap(const ArgReader& r, Command* c) {
  size_t n = r.args().size();
  if (n != 4 && n != 5)
    r.fail("expected 4 or 5 arguments (OLD OLDLEN NEWLEN FLAGS [NEWADDR]), got " + std::to_string(n));
  c->addr = r.number(0, "OLD");
  c->len = r.number(1, "OLDLEN");
  c->new_len = r.number(2, "NEWLEN");
  c->remap_flags = r.arg(3) == "0" ? 0 : parse_words(r, r.arg(3), kRemapWords, "FLAGS");
  if (n == 5) {
    c->has_new_addr = true;
    c->new_addr = r.number(4, "NEWADDR");
  }
}

void parse_sized_name(const ArgReader& r, Command* c) {
  expect_arity(r, 2, "NAME SIZE");
  c->name = r.name(0);
  c->size = r.number(1, "SIZE");
}

void parse_addr_len(const ArgReader& r, Command* c) {
  expect_arity(r, 2, "ADDR LEN");
  c->addr = r.number(0, "ADDR");
  c->len = r.number(1, "LEN");
}

// `mlock ADDR LEN [onfault]`.
void parse_mlock(const ArgReader& r, Command* c) {
  const size_t n = r.args().size();
  if (n != 2 && n != 3) r.fail("expected 2 or 3 arguments (ADDR LEN [onfault]), got " + std::to_string(n));
  c->addr = r.number(0, "ADDR");
  c->len = r.number(1, "LEN");
  if (n == 3) {
    if (r.arg(2) != "onfault") r.fail("bad FLAG " + quoted(r.arg(2)) + " (expected onfault)");
    c->mlock_onfault = true;
  }
}

// A limit of `setrlimit`: a number, `inf`, or `+N` where the resource allows it.
RlimitValue parse_rlimit_value(const ArgReader& r, size_t i, const char* what, bool relative_ok) {
  RlimitValue v;
  std::string_view tok = r.arg(i);
  if (tok == "inf") {
    v.infinite = true;
    return v;
  }
  if (!tok.empty() && tok[0] == '+') {
    if (!relative_ok) r.fail("bad " + std::string(what) + " " + quoted(tok) + ": +N is for as and data only");
    std::string why;
    if (!parse_number(tok.substr(1), &v.value, &why)) r.fail("bad " + std::string(what) + " " + quoted(tok) + ": " + why);
    v.relative = true;
    return v;
  }
  v.value = r.number(i, what);
  return v;
}

// `setrlimit RESOURCE SOFT HARD`.
void parse_setrlimit(const ArgReader& r, Command* c) {
  expect_arity(r, 3, "RESOURCE SOFT HARD");
  bool known = false;
  for (const RlimitWord& w : kRlimitWords) {
    if (r.arg(0) == w.text) {
      c->rlimit = w.resource;
      known = true;
    }
  }
  if (!known) r.fail("bad RESOURCE " + quoted(r.arg(0)) + " (expected as, data, stack or memlock)");
  const bool relative_ok = c->rlimit == Rlimit::kAs || c->rlimit == Rlimit::kData;
  c->rlim_soft = parse_rlimit_value(r, 1, "SOFT", relative_ok);
  c->rlim_hard = parse_rlimit_value(r, 2, "HARD", relative_ok);
}

constexpr const char* kDevSubcommands = "attach, fault, show, read, write, log, detach, begin, walk, retry or map";

// `dev SUBCOMMAND NAME ...` (format version 2). Messages name the command as "dev SUB".
void parse_dev(const std::vector<std::string_view>& args, Command* c) {
  if (args.empty())
    throw ParseError{"dev: missing subcommand (" + std::string(kDevSubcommands) + ")"};
  const std::string_view sub = args[0];
  const std::string cmd = "dev " + std::string(sub);
  const std::vector<std::string_view> rest(args.begin() + 1, args.end());
  ArgReader r(cmd, rest);
  if (sub == "attach") {
    c->model = ModelOp::kDevAttach;
    if (rest.size() < 2)
      r.fail("expected 2 or 4 arguments (NAME classic | NAME interval ADDR LEN | NAME KIND [ADDR LEN]), got " +
             std::to_string(rest.size()));
    c->name = r.dev_name(0);
    if (rest[1] == "classic") {
      c->dev_mode = DevMode::kClassic;
      expect_arity(r, 2, "NAME classic");
    } else if (rest[1] == "interval") {
      c->dev_mode = DevMode::kInterval;
      expect_arity(r, 4, "NAME interval ADDR LEN");
      c->addr = r.number(2, "ADDR");
      c->len = r.number(3, "LEN");
    } else if (secondary_mmu_kind_known(std::string(rest[1]))) {
      c->dev_mode = DevMode::kKind;
      c->dev_kind = std::string(rest[1]);
      if (rest.size() != 2) {
        expect_arity(r, 4, "NAME KIND [ADDR LEN]");
        c->dev_span = true;
        c->addr = r.number(2, "ADDR");
        c->len = r.number(3, "LEN");
      }
    } else {
      std::string kinds;
      for (const SecondaryMmuKind& k : secondary_mmu_kinds()) kinds += (kinds.empty() ? "" : ", ") + k.name;
      r.fail("bad KIND " + quoted(rest[1]) + " (expected one of " + kinds + ", or KIND:VARIANT)");
    }
  } else if (sub == "fault" || sub == "begin") {
    c->model = sub == "fault" ? ModelOp::kDevFault : ModelOp::kDevBegin;
    expect_arity(r, 4, "NAME ADDR LEN read|write");
    c->name = r.dev_name(0);
    c->addr = r.number(1, "ADDR");
    c->len = r.number(2, "LEN");
    if (rest[3] == "write") {
      c->dev_write = true;
    } else if (rest[3] != "read") {
      r.fail("bad ACCESS " + quoted(rest[3]) + " (expected read or write)");
    }
  } else if (sub == "show" || sub == "read") {
    c->model = sub == "show" ? ModelOp::kDevShow : ModelOp::kDevRead;
    expect_arity(r, 3, "NAME ADDR LEN");
    c->name = r.dev_name(0);
    c->addr = r.number(1, "ADDR");
    c->len = r.number(2, "LEN");
  } else if (sub == "write") {
    c->model = ModelOp::kDevWrite;
    expect_arity(r, 4, "NAME ADDR LEN SEED");
    c->name = r.dev_name(0);
    c->addr = r.number(1, "ADDR");
    c->len = r.number(2, "LEN");
    c->seed = r.number(3, "SEED");
  } else if (sub == "log" || sub == "detach" || sub == "walk" || sub == "retry") {
    c->model = sub == "log"      ? ModelOp::kDevLog
               : sub == "detach" ? ModelOp::kDevDetach
               : sub == "walk"   ? ModelOp::kDevWalk
                                 : ModelOp::kDevRetry;
    expect_arity(r, 1, "NAME");
    c->name = r.dev_name(0);
  } else if (sub == "map") {
    c->model = ModelOp::kDevMap;
    if (rest.size() != 1 && rest.size() != 2) r.fail("expected 1 or 2 arguments (NAME [unchecked]), got " + std::to_string(rest.size()));
    c->name = r.dev_name(0);
    if (rest.size() == 2) {
      if (rest[1] != "unchecked") r.fail("bad argument " + quoted(rest[1]) + " (expected unchecked)");
      c->dev_unchecked = true;
    }
  } else {
    throw ParseError{"dev: unknown subcommand " + quoted(sub) + " (expected " + kDevSubcommands + ")"};
  }
}

// `hmm SUBCOMMAND ...` (format version 2): the dmirror test driver's ioctls. Messages name
// the command as "hmm SUB".
struct HmmWord {
  const char* text;
  ModelOp op;
  int arity;  // arguments after the subcommand
  const char* usage;
};
constexpr HmmWord kHmmWords[] = {
    {"open", ModelOp::kHmmOpen, 1, "DEV"},
    {"close", ModelOp::kHmmClose, 1, "M"},
    {"read", ModelOp::kHmmRead, 3, "M ADDR NPAGES"},
    {"write", ModelOp::kHmmWrite, 4, "M ADDR NPAGES SEED"},
    {"migrate", ModelOp::kHmmMigrate, 3, "M ADDR NPAGES"},
    {"migrate_sys", ModelOp::kHmmMigrateSys, 3, "M ADDR NPAGES"},
    {"snapshot", ModelOp::kHmmSnapshot, 3, "M ADDR NPAGES"},
    {"exclusive", ModelOp::kHmmExclusive, 3, "M ADDR NPAGES"},
    {"check_exclusive", ModelOp::kHmmCheckExclusive, 3, "M ADDR NPAGES"},
    {"release", ModelOp::kHmmRelease, 1, "M"},
    {"fail_alloc", ModelOp::kHmmFailAlloc, 1, "M"},
    {"mmap", ModelOp::kHmmMmap, 5, "M ADDR LEN PROT FLAGS"},
};
constexpr const char* kHmmSubcommands =
    "open, close, read, write, migrate, migrate_sys, snapshot, exclusive, check_exclusive, release, fail_alloc or "
    "mmap";

void parse_hmm(const std::vector<std::string_view>& args, Command* c) {
  if (args.empty()) throw ParseError{std::string("hmm: missing subcommand (") + kHmmSubcommands + ")"};
  const std::string_view sub = args[0];
  const HmmWord* word = nullptr;
  for (const HmmWord& w : kHmmWords) {
    if (sub == w.text) word = &w;
  }
  if (!word) throw ParseError{"hmm: unknown subcommand " + quoted(sub) + " (expected " + kHmmSubcommands + ")"};
  const std::string cmd = "hmm " + std::string(sub);
  const std::vector<std::string_view> rest(args.begin() + 1, args.end());
  ArgReader r(cmd, rest);
  c->model = word->op;
  expect_arity(r, static_cast<size_t>(word->arity), word->usage);
  if (word->op == ModelOp::kHmmOpen) {
    c->size = r.number(0, "DEV");
    return;
  }
  c->mirror = r.number(0, "M");
  if (word->arity == 1) return;
  if (word->op == ModelOp::kHmmMmap) {
    // mmap of the mirror's device file: mmap's PROT and FLAGS, a mapping type and no anon.
    c->addr = r.number(1, "ADDR");
    c->len = r.number(2, "LEN");
    c->prot = r.prot(r.arg(3), r.arg(3));
    c->map_flags = parse_words(r, r.arg(4), kMapWords, "FLAGS");
    const uint32_t type = c->map_flags & kMapTypes;
    if (type == 0 || (type & (type - 1)) != 0)
      r.fail("bad FLAGS " + quoted(r.arg(4)) + ": exactly one of private/shared/shared_validate/droppable is required");
    if (c->map_flags & kMapAnon) r.fail("bad FLAGS " + quoted(r.arg(4)) + ": anon maps no file");
    return;
  }
  c->addr = r.number(1, "ADDR");
  c->len = r.number(2, "NPAGES");
  if (word->op == ModelOp::kHmmWrite) c->seed = r.number(3, "SEED");
}

// The subcommand word of an hmm command.
const char* hmm_word(ModelOp op) {
  for (const HmmWord& w : kHmmWords) {
    if (w.op == op) return w.text;
  }
  return "?";
}

// Parses one line's tokens (at least one) into *c; throws ParseError.
void parse_command(const std::vector<std::string_view>& tokens, Command* c) {
  size_t i = 0;
  if (tokens[0][0] == '@') {
    std::string why;
    if (!parse_number(tokens[0].substr(1), &c->pid, &why))
      throw ParseError{"bad process prefix " + quoted(tokens[0]) + ": " + why};
    if (tokens.size() == 1) throw ParseError{"missing command after " + quoted(tokens[0])};
    i = 1;
  }
  std::string_view cmd = tokens[i];
  std::vector<std::string_view> args(tokens.begin() + static_cast<long>(i) + 1, tokens.end());
  ArgReader r(cmd, args);
  if (cmd == "mmap") {
    c->op = Op::kMmap;
    parse_mmap(r, c);
  } else if (cmd == "munmap") {
    c->op = Op::kMunmap;
    parse_addr_len(r, c);
  } else if (cmd == "mprotect") {
    c->op = Op::kMprotect;
    parse_mprotect(r, c);
  } else if (cmd == "madvise") {
    c->op = Op::kMadvise;
    parse_madvise(r, c);
  } else if (cmd == "mremap") {
    c->op = Op::kMremap;
    parse_mremap(r, c);
  } else if (cmd == "mseal") {
    c->op = Op::kMseal;
    parse_addr_len(r, c);
  } else if (cmd == "pmadvise") {
    c->op = Op::kPmadvise;
    parse_pmadvise(r, c);
  } else if (cmd == "write") {
    c->op = Op::kWrite;
    expect_arity(r, 3, "ADDR LEN SEED");
    c->addr = r.number(0, "ADDR");
    c->len = r.number(1, "LEN");
    c->seed = r.number(2, "SEED");
  } else if (cmd == "read") {
    c->op = Op::kRead;
    parse_addr_len(r, c);
  } else if (cmd == "mincore") {
    c->op = Op::kMincore;
    parse_addr_len(r, c);
  } else if (cmd == "maps") {
    c->op = Op::kMaps;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "smaps") {
    c->op = Op::kSmaps;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "fork") {
    c->op = Op::kFork;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "exit") {
    c->op = Op::kExit;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "memfd") {
    c->op = Op::kMemfd;
    parse_sized_name(r, c);
  } else if (cmd == "truncate") {
    c->op = Op::kTruncate;
    parse_sized_name(r, c);
  } else if (cmd == "file") {
    c->op = Op::kFile;
    parse_sized_name(r, c);
  } else if (cmd == "msync") {
    c->op = Op::kMsync;
    expect_arity(r, 3, "ADDR LEN FLAGS");
    c->addr = r.number(0, "ADDR");
    c->len = r.number(1, "LEN");
    c->msync_flags = r.arg(2) == "0" ? 0 : parse_words(r, r.arg(2), kMsyncWords, "FLAGS");
  } else if (cmd == "fsync") {
    c->op = Op::kFsync;
    expect_arity(r, 1, "NAME");
    c->name = r.name(0);
  } else if (cmd == "pread") {
    c->op = Op::kPread;
    expect_arity(r, 3, "NAME OFF LEN");
    c->name = r.name(0);
    c->offset = r.number(1, "OFF");
    c->len = r.number(2, "LEN");
    if (c->len > kMaxPreadLen) r.fail("LEN " + quoted(r.arg(2)) + " above the limit of 16M");
  } else if (cmd == "mlock") {
    c->op = Op::kMlock;
    parse_mlock(r, c);
  } else if (cmd == "munlock") {
    c->op = Op::kMunlock;
    parse_addr_len(r, c);
  } else if (cmd == "mlockall") {
    c->op = Op::kMlockall;
    expect_arity(r, 1, "FLAGS");
    c->mlockall_flags = r.arg(0) == "0" ? 0 : parse_words(r, r.arg(0), kMlockallWords, "FLAGS");
  } else if (cmd == "munlockall") {
    c->op = Op::kMunlockall;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "mlocked") {
    c->op = Op::kMlocked;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "setrlimit") {
    c->op = Op::kSetrlimit;
    parse_setrlimit(r, c);
  } else if (cmd == "dev") {
    parse_dev(args, c);
  } else if (cmd == "hmm") {
    parse_hmm(args, c);
  } else if (cmd == "stats") {
    c->model = ModelOp::kStats;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "check") {
    c->model = ModelOp::kCheck;
    expect_arity(r, 0, "no arguments");
  } else if (cmd == "vmstat") {
    c->model = ModelOp::kVmstat;
    const std::vector<std::string>& known = vmstat_item_names();
    for (std::string_view tok : args) {
      if (std::find(known.begin(), known.end(), tok) == known.end())
        r.fail("unknown counter " + quoted(tok) + " (expected a /proc/vmstat name such as nr_free_pages or pgfault)");
      c->names.emplace_back(tok);
    }
  } else if (cmd == "pageinfo") {
    c->model = ModelOp::kPageinfo;
    expect_arity(r, 1, "ADDR");
    c->addr = r.number(0, "ADDR");
  } else if (cmd == "swapon") {
    c->model = ModelOp::kSwapon;
    expect_arity(r, 1, "SIZE");
    c->size = r.number(0, "SIZE");
  } else if (cmd == "reclaim") {
    c->model = ModelOp::kReclaim;
    expect_arity(r, 1, "PAGES");
    c->len = r.number(0, "PAGES");
  } else if (cmd == "nodes") {
    c->model = ModelOp::kNodes;
    expect_arity(r, 1, "N");
    c->size = r.number(0, "N");
  } else if (cmd == "migrate") {
    c->model = ModelOp::kMigrate;
    expect_arity(r, 3, "ADDR LEN NODE");
    c->addr = r.number(0, "ADDR");
    c->len = r.number(1, "LEN");
    c->size = r.number(2, "NODE");
  } else {
    throw ParseError{"unknown command " + quoted(cmd)};
  }
}

void append_hex(std::string* out, uint64_t v) {
  static const char kDigits[] = "0123456789abcdef";
  char buf[16];
  int n = 0;
  do {
    buf[n++] = kDigits[v & 0xf];
    v >>= 4;
  } while (v != 0);
  *out += "0x";
  while (n > 0) *out += buf[--n];
}

void append_prot(std::string* out, uint32_t prot) {
  *out += (prot & kProtRead) ? 'r' : '-';
  *out += (prot & kProtWrite) ? 'w' : '-';
  *out += (prot & kProtExec) ? 'x' : '-';
}

template <size_t N>
void append_words(std::string* out, uint32_t bits, const Word (&words)[N]) {
  bool first = true;
  for (const Word& w : words) {
    if (!(bits & w.bit)) continue;
    if (!first) *out += '+';
    *out += w.text;
    first = false;
  }
  if (first) *out += '0';
}

void append_rlimit_value(std::string* out, const RlimitValue& v) {
  if (v.infinite) {
    *out += "inf";
    return;
  }
  if (v.relative) *out += '+';
  append_hex(out, v.value);
}

const char* advice_word(Advice a) {
  for (const AdviceWord& w : kAdviceWords) {
    if (w.advice == a) return w.text;
  }
  return "?";
}

}  // namespace

std::optional<Script> parse(std::string_view text, std::string_view file, std::string* error) {
  Script script;
  script.file = std::string(file);
  uint32_t line_no = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string_view line = text.substr(pos, eol == std::string_view::npos ? std::string_view::npos : eol - pos);
    pos = eol == std::string_view::npos ? text.size() : eol + 1;
    ++line_no;
    // A CRLF line ending is a line ending, not part of the last token.
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    size_t hash = line.find('#');
    if (hash != std::string_view::npos) line = line.substr(0, hash);
    std::vector<std::string_view> tokens = tokenize(line);
    if (tokens.empty()) continue;
    Command c;
    c.line = line_no;
    try {
      parse_command(tokens, &c);
    } catch (const ParseError& e) {
      if (error) *error = std::string(file) + ":" + std::to_string(line_no) + ": " + e.message;
      return std::nullopt;
    }
    script.commands.push_back(std::move(c));
  }
  return script;
}

std::optional<Script> parse_file(const std::string& path, std::string* error) {
  if (path == "-") {
    std::ostringstream text;
    text << std::cin.rdbuf();
    if (std::cin.bad()) {
      if (error) *error = std::string(kStdinName) + ": read error";
      return std::nullopt;
    }
    return parse(text.str(), kStdinName, error);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    if (error) *error = path + ": cannot open: " + std::strerror(errno);
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    if (error) *error = path + ": read error";
    return std::nullopt;
  }
  return parse(text.str(), path, error);
}

bool uses_model_only(const Script& s) {
  for (const Command& c : s.commands) {
    if (model_only(c)) return true;
  }
  return false;
}

std::string format(const Command& c) {
  std::string s;
  if (c.pid != 1) {
    s += '@';
    s += std::to_string(c.pid);
    s += ' ';
  }
  auto addr_len = [&](const char* name) {
    s += name;
    s += ' ';
    append_hex(&s, c.addr);
    s += ' ';
    append_hex(&s, c.len);
  };
  auto dev = [&](const char* sub) {
    s += "dev ";
    s += sub;
    s += ' ';
    s += c.name;
  };
  auto dev_range = [&](const char* sub) {
    dev(sub);
    s += ' ';
    append_hex(&s, c.addr);
    s += ' ';
    append_hex(&s, c.len);
  };
  switch (c.model) {
    case ModelOp::kNone: break;
    case ModelOp::kDevAttach:
      dev("attach");
      if (c.dev_mode == DevMode::kClassic) return s + " classic";
      if (c.dev_mode == DevMode::kKind) {
        s += ' ';
        s += c.dev_kind;
        if (!c.dev_span) return s;
        s += ' ';
        append_hex(&s, c.addr);
        s += ' ';
        append_hex(&s, c.len);
        return s;
      }
      s += " interval ";
      append_hex(&s, c.addr);
      s += ' ';
      append_hex(&s, c.len);
      return s;
    case ModelOp::kDevFault:
      dev_range("fault");
      return s + (c.dev_write ? " write" : " read");
    case ModelOp::kDevShow: dev_range("show"); return s;
    case ModelOp::kDevRead: dev_range("read"); return s;
    case ModelOp::kDevWrite:
      dev_range("write");
      return s + ' ' + std::to_string(c.seed);
    case ModelOp::kDevLog: dev("log"); return s;
    case ModelOp::kDevDetach: dev("detach"); return s;
    case ModelOp::kDevBegin:
      dev_range("begin");
      return s + (c.dev_write ? " write" : " read");
    case ModelOp::kDevWalk: dev("walk"); return s;
    case ModelOp::kDevRetry: dev("retry"); return s;
    case ModelOp::kDevMap:
      dev("map");
      return c.dev_unchecked ? s + " unchecked" : s;
    case ModelOp::kStats: return s + "stats";
    case ModelOp::kCheck: return s + "check";
    case ModelOp::kVmstat:
      s += "vmstat";
      for (const std::string& n : c.names) s += ' ' + n;
      return s;
    case ModelOp::kPageinfo:
      s += "pageinfo ";
      append_hex(&s, c.addr);
      return s;
    case ModelOp::kSwapon: return s + "swapon " + std::to_string(c.size);
    case ModelOp::kReclaim: return s + "reclaim " + std::to_string(c.len);
    case ModelOp::kNodes: return s + "nodes " + std::to_string(c.size);
    case ModelOp::kMigrate:
      s += "migrate ";
      append_hex(&s, c.addr);
      s += ' ';
      append_hex(&s, c.len);
      return s + ' ' + std::to_string(c.size);
    case ModelOp::kHmmOpen: return s + "hmm open " + std::to_string(c.size);
    case ModelOp::kHmmClose:
    case ModelOp::kHmmRelease:
    case ModelOp::kHmmFailAlloc: return s + "hmm " + hmm_word(c.model) + ' ' + std::to_string(c.mirror);
    case ModelOp::kHmmRead:
    case ModelOp::kHmmWrite:
    case ModelOp::kHmmMigrate:
    case ModelOp::kHmmMigrateSys:
    case ModelOp::kHmmSnapshot:
    case ModelOp::kHmmExclusive:
    case ModelOp::kHmmCheckExclusive:
      s += "hmm ";
      s += hmm_word(c.model);
      s += ' ' + std::to_string(c.mirror) + ' ';
      append_hex(&s, c.addr);
      s += ' ' + std::to_string(c.len);
      if (c.model == ModelOp::kHmmWrite) s += ' ' + std::to_string(c.seed);
      return s;
    case ModelOp::kHmmMmap:
      s += "hmm mmap " + std::to_string(c.mirror) + ' ';
      append_hex(&s, c.addr);
      s += ' ';
      append_hex(&s, c.len);
      s += ' ';
      append_prot(&s, c.prot);
      s += ' ';
      append_words(&s, c.map_flags, kMapWords);
      return s;
  }
  switch (c.op) {
    case Op::kMmap:
      addr_len("mmap");
      s += ' ';
      append_prot(&s, c.prot);
      s += ' ';
      append_words(&s, c.map_flags, kMapWords);
      if (c.has_file) {
        s += ' ' + c.name + ' ';
        append_hex(&s, c.offset);
      }
      break;
    case Op::kMunmap:
      addr_len("munmap");
      break;
    case Op::kMprotect:
      addr_len("mprotect");
      s += ' ';
      append_prot(&s, c.prot);
      if (c.prot & kProtGrowsDown) s += "+growsdown";
      if (c.prot & kProtGrowsUp) s += "+growsup";
      break;
    case Op::kMadvise:
      addr_len("madvise");
      s += ' ';
      s += advice_word(c.advice);
      break;
    case Op::kMseal:
      addr_len("mseal");
      break;
    case Op::kPmadvise:
      s += "pmadvise " + std::to_string(c.target) + ' ';
      append_hex(&s, c.addr);
      s += ' ';
      append_hex(&s, c.len);
      s += ' ';
      s += advice_word(c.advice);
      break;
    case Op::kMremap:
      addr_len("mremap");
      s += ' ';
      append_hex(&s, c.new_len);
      s += ' ';
      append_words(&s, c.remap_flags, kRemapWords);
      if (c.has_new_addr) {
        s += ' ';
        append_hex(&s, c.new_addr);
      }
      break;
    case Op::kWrite:
      addr_len("write");
      s += ' ' + std::to_string(c.seed);
      break;
    case Op::kRead:
      addr_len("read");
      break;
    case Op::kMincore:
      addr_len("mincore");
      break;
    case Op::kMaps:
      s += "maps";
      break;
    case Op::kSmaps:
      s += "smaps";
      break;
    case Op::kFork:
      s += "fork";
      break;
    case Op::kExit:
      s += "exit";
      break;
    case Op::kMemfd:
    case Op::kTruncate:
    case Op::kFile:
      s += c.op == Op::kMemfd ? "memfd " : c.op == Op::kFile ? "file " : "truncate ";
      s += c.name + ' ';
      append_hex(&s, c.size);
      break;
    case Op::kMsync:
      addr_len("msync");
      s += ' ';
      append_words(&s, c.msync_flags, kMsyncWords);
      break;
    case Op::kFsync:
      s += "fsync " + c.name;
      break;
    case Op::kMlock:
      addr_len("mlock");
      if (c.mlock_onfault) s += " onfault";
      break;
    case Op::kMunlock:
      addr_len("munlock");
      break;
    case Op::kMlockall:
      s += "mlockall ";
      append_words(&s, c.mlockall_flags, kMlockallWords);
      break;
    case Op::kMunlockall:
      s += "munlockall";
      break;
    case Op::kMlocked:
      s += "mlocked";
      break;
    case Op::kSetrlimit:
      s += "setrlimit ";
      for (const RlimitWord& w : kRlimitWords)
        if (w.resource == c.rlimit) s += w.text;
      s += ' ';
      append_rlimit_value(&s, c.rlim_soft);
      s += ' ';
      append_rlimit_value(&s, c.rlim_hard);
      break;
    case Op::kPread:
      s += "pread " + c.name + ' ';
      append_hex(&s, c.offset);
      s += ' ';
      append_hex(&s, c.len);
      break;
  }
  return s;
}

}  // namespace mirrormm::script
