// Scenario scripts (explore::parse_scenario): a .mms script whose `thread` … `end` blocks the
// explorer runs as scenario threads (docs/mms-v2.md, "Thread blocks").
#include <fmt/format.h>

#include <fstream>
#include <sstream>

#include "mirrormm/explore.h"
#include "mirrormm/replay.h"
#include "mirrormm/script.h"

namespace mirrormm::explore {

namespace {

constexpr size_t kMaxThreads = 4;
// The machine a scenario script runs on: small, since every run builds a fresh one.
constexpr uint64_t kScriptMemory = 64ull << 20;

struct Expect {
  script::Command command;
  std::string text;      // the command as written
  std::string expected;  // the result line it must give
};

struct Parsed {
  script::Script setup;
  std::vector<script::Script> threads;
  std::vector<Expect> expects;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// The commands of the lines marked for one section, parsed with their own line numbers (the
// other lines left blank).
std::optional<script::Script> parse_section(const std::vector<std::string>& lines, const std::vector<int>& section,
                                            int which, std::string_view file, std::string* error) {
  std::string text;
  for (size_t i = 0; i < lines.size(); i++) {
    if (section[i] == which) text += lines[i];
    text += '\n';
  }
  return script::parse(text, file, error);
}

std::optional<Parsed> split(std::string_view text, std::string_view file, std::string* error) {
  std::vector<std::string> lines;
  for (size_t pos = 0; pos < text.size();) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    lines.emplace_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  auto fail = [&](size_t i, const std::string& msg) {
    *error = fmt::format("{}:{}: {}", file, i + 1, msg);
    return std::nullopt;
  };
  // Section of each line: -1 setup, 0.. a thread, -2 an expect line, -3 a block keyword.
  std::vector<int> section(lines.size(), -1);
  std::vector<std::pair<size_t, std::string>> expect_lines;
  int threads = 0;
  int open = -1;  // the thread block being read
  for (size_t i = 0; i < lines.size(); i++) {
    std::string_view l = lines[i];
    if (size_t hash = l.find('#'); hash != std::string_view::npos) l = l.substr(0, hash);
    l = trim(l);
    if (l == "thread") {
      if (open >= 0) return fail(i, "thread inside a thread block (a missing end?)");
      if (!expect_lines.empty()) return fail(i, "thread after an expect line: expect lines come last");
      if (static_cast<size_t>(threads) == kMaxThreads) return fail(i, fmt::format("more than {} thread blocks", kMaxThreads));
      open = threads++;
      section[i] = -3;
    } else if (l == "end") {
      if (open < 0) return fail(i, "end without thread");
      open = -1;
      section[i] = -3;
    } else if (l.substr(0, 7) == "expect " || l == "expect") {
      if (open >= 0) return fail(i, "expect inside a thread block");
      if (threads == 0) return fail(i, "expect before any thread block");
      expect_lines.emplace_back(i, std::string(l.substr(6)));
      section[i] = -2;
    } else if (open >= 0) {
      section[i] = open;
    } else if (!l.empty() && threads > 0) {
      return fail(i, "only expect lines may follow the thread blocks");
    }
  }
  if (open >= 0) return fail(lines.size() - 1, "thread block without end");
  if (threads == 0) return fail(0, "no thread block: a scenario needs at least one `thread` … `end`");
  Parsed p;
  auto setup = parse_section(lines, section, -1, file, error);
  if (!setup) return std::nullopt;
  p.setup = std::move(*setup);
  for (int t = 0; t < threads; t++) {
    auto th = parse_section(lines, section, t, file, error);
    if (!th) return std::nullopt;
    for (const script::Command& c : th->commands)
      if (c.model == script::ModelOp::kHmmOpen)
        return fail(c.line - 1, "hmm open belongs to the setup, not to a thread block");
    if (th->commands.empty()) return fail(0, fmt::format("thread block {} has no command", t));
    p.threads.push_back(std::move(*th));
  }
  for (const auto& [i, rest] : expect_lines) {
    const size_t eq = rest.find(" == ");
    if (eq == std::string::npos) return fail(i, "expect: expected `expect COMMAND == RESULT`");
    Expect e;
    e.text = std::string(trim(rest.substr(0, eq)));
    e.expected = std::string(trim(rest.substr(eq + 4)));
    std::string text(i, '\n');
    text += e.text;
    auto c = script::parse(text, file, error);
    if (!c) return std::nullopt;
    if (c->commands.size() != 1) return fail(i, "expect: expected `expect COMMAND == RESULT`");
    e.command = c->commands[0];
    p.expects.push_back(std::move(e));
  }
  return p;
}

}  // namespace

std::optional<Scenario> parse_scenario(std::string_view text, std::string_view file, const std::string& inject,
                                       std::string* error) {
  auto parsed = split(text, file, error);
  if (!parsed) return std::nullopt;
  auto p = std::make_shared<const Parsed>(std::move(*parsed));
  Scenario s;
  s.name = std::string(file);
  s.inject = inject;
  const std::string where(file);
  s.setup_own_system = [p, inject, where] {
    replay::Options o;
    o.config.mmu_checker = true;
    o.config.memory_bytes = kScriptMemory;
    o.inject = inject;
    auto r = std::make_shared<replay::Replayer>(o);
    for (const script::Command& c : p->setup.commands) (void)r->run(c);
    Instance in;
    for (size_t t = 0; t < p->threads.size(); t++)
      in.threads.push_back([r, p, t] {
        for (const script::Command& c : p->threads[t].commands) (void)r->run(c);
      });
    in.check = [r, p, where] {
      for (const Expect& e : p->expects) {
        const std::string got = r->run(e.command);
        if (got != e.expected)
          return fmt::format("{}:{}: expect {}: got \"{}\", expected \"{}\"", where, e.command.line, e.text, got,
                             e.expected);
      }
      return std::string();
    };
    in.system = &r->system();
    return in;
  };
  return s;
}

std::optional<Scenario> parse_scenario_file(const std::string& path, const std::string& inject, std::string* error) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *error = path + ": cannot open";
    return std::nullopt;
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_scenario(text.str(), path, inject, error);
}

}  // namespace mirrormm::explore
