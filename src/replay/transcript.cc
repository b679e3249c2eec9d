// Transcripts for people (see mirrormm/replay.h): commands beside their results.
#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "mirrormm/replay.h"

namespace mirrormm::replay {

namespace {

constexpr std::string_view kMissing = "<missing>";
constexpr std::string_view kRed = "\x1b[31m", kYellow = "\x1b[33m", kDim = "\x1b[2m", kReset = "\x1b[0m";

// The colour a result gets, or "" for none: red for the outcomes that end a process or mean
// the run went wrong, yellow for a system call's errno.
std::string_view result_color(std::string_view r) {
  for (std::string_view bad : {"SEGV", "SIGBUS", "SIGKILL", "ERROR", "DEVFAULT", "violations"})
    if (r.substr(0, bad.size()) == bad) return kRed;
  if (r.size() > 2 && r[0] == '-' && r[1] == 'E') return kYellow;
  return "";
}

std::string paint(std::string_view text, std::string_view color, bool on) {
  if (!on || color.empty()) return std::string(text);
  return fmt::format("{}{}{}", color, text, kReset);
}

// Splits text into pieces of at most `width` columns, breaking after "; " when it can, else
// after a space, else anywhere.
std::vector<std::string> wrap(std::string_view text, size_t width) {
  std::vector<std::string> out;
  width = std::max<size_t>(width, 8);
  while (text.size() > width) {
    size_t cut = text.rfind("; ", width - 1);
    if (cut != std::string_view::npos && cut > 0) {
      cut += 2;
    } else if ((cut = text.rfind(' ', width)) != std::string_view::npos && cut > 0) {
      cut += 1;
    } else {
      cut = width;
    }
    std::string piece(text.substr(0, cut));
    while (!piece.empty() && piece.back() == ' ') piece.pop_back();
    out.push_back(std::move(piece));
    text.remove_prefix(cut);
  }
  out.emplace_back(text);
  return out;
}

// At most `width` columns of text: cut with "..." when longer.
std::string fit(std::string_view text, size_t width) {
  if (text.size() <= width) return std::string(text);
  if (width <= 3) return std::string(text.substr(0, width));
  return std::string(text.substr(0, width - 3)) + "...";
}

std::string_view result_at(const std::vector<std::string>& results, size_t i) {
  return i < results.size() ? std::string_view(results[i]) : kMissing;
}

size_t digits(uint64_t n) { return std::to_string(n).size(); }

}  // namespace

std::string format_transcript(const script::Script& s, const std::vector<std::string>& results,
                              const TranscriptStyle& style) {
  std::vector<std::string> commands;
  size_t longest = 0;
  uint32_t last_line = 0;
  for (const script::Command& c : s.commands) {
    commands.push_back(script::format(c));
    longest = std::max(longest, commands.back().size());
    last_line = std::max(last_line, c.line);
  }
  const size_t width = static_cast<size_t>(std::max(style.width, 40));
  const size_t number_w = std::max<size_t>(3, digits(last_line));
  const size_t prefix = 2 + number_w + 2;  // "  NNN  "
  // The command column leaves the results at least 40 columns (a maps entry fits), and is at
  // most 56 wide.
  const size_t command_w = std::min({longest, size_t{56}, width > prefix + 42 ? width - prefix - 42 : size_t{16}});
  const size_t result_col = prefix + command_w + 2;
  const size_t result_w = width > result_col ? width - result_col : 24;

  std::string out;
  for (size_t i = 0; i < s.commands.size(); i++) {
    const std::string number = paint(fmt::format("{:>{}}", s.commands[i].line, number_w), kDim, style.color);
    const std::string_view result = result_at(results, i);
    std::string line = fmt::format("  {}  ", number);
    if (commands[i].size() > command_w) {
      // The command on a line of its own (wrapped if it must be), the result under the column.
      const std::vector<std::string> pieces = wrap(commands[i], width - prefix);
      for (size_t k = 0; k < pieces.size(); k++)
        out += (k ? std::string(prefix, ' ') : line) + pieces[k] + "\n";
      line = std::string(result_col, ' ');
    } else {
      line += fmt::format("{:<{}}  ", commands[i], command_w);
    }
    const std::vector<std::string> pieces = wrap(result, result_w);
    const std::string_view color = result_color(result);
    for (size_t k = 0; k < pieces.size(); k++) {
      std::string text = (k ? std::string(result_col, ' ') : line) + paint(pieces[k], color, style.color);
      while (!text.empty() && text.back() == ' ') text.pop_back();
      out += text + "\n";
    }
  }
  return out;
}

std::string format_side_by_side(const script::Script& s, const std::vector<std::string>& model,
                                const std::vector<std::string>& host, size_t diverging, size_t before, size_t after,
                                const TranscriptStyle& style) {
  if (s.commands.empty()) return "";
  diverging = std::min(diverging, s.commands.size() - 1);
  const size_t first = diverging > before ? diverging - before : 0;
  const size_t end = std::min(s.commands.size(), diverging + after + 1);
  uint32_t last_line = 0;
  size_t longest = 7;  // "command"
  for (size_t i = first; i < end; i++) {
    last_line = std::max(last_line, s.commands[i].line);
    longest = std::max(longest, script::format(s.commands[i]).size());
  }
  const size_t width = static_cast<size_t>(std::max(style.width, 60));
  const size_t number_w = std::max<size_t>(4, digits(last_line));
  const size_t prefix = 3 + number_w + 2;  // "=> NNNN  "
  // The command gets at most two fifths of what is left; the two results share the rest.
  const size_t rest = width > prefix + 6 ? width - prefix - 6 : 40;
  const size_t command_w = std::min(longest, rest * 2 / 5);
  const size_t result_w = std::max<size_t>(8, (rest - command_w) / 2);

  auto row = [&](std::string_view mark, std::string_view number, std::string_view command, std::string_view m,
                 std::string_view h, std::string_view color) {
    std::string line = fmt::format("{:<2} {:>{}}  {:<{}} | {} | {}", mark, number, number_w, fit(command, command_w),
                                   command_w, paint(fmt::format("{:<{}}", fit(m, result_w), result_w), color, style.color),
                                   paint(fit(h, result_w), color, style.color));
    while (!line.empty() && line.back() == ' ') line.pop_back();
    return line + "\n";
  };
  std::string out = row("", "line", "command", "model", "host", "");
  for (size_t i = first; i < end; i++) {
    const bool here = i == diverging;
    out += row(here ? "=>" : "", std::to_string(s.commands[i].line), script::format(s.commands[i]),
               result_at(model, i), result_at(host, i), here ? kRed : std::string_view());
  }
  return out;
}

}  // namespace mirrormm::replay
