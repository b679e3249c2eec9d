// Transcripts for people (src/replay/transcript.cc): the layout of `mirrormm replay --pretty`
// and of the oracle's side-by-side view.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>
#include <string>
#include <vector>

#include "mirrormm/replay.h"
#include "mirrormm/script.h"

namespace mirrormm::replay {
namespace {

using ::testing::HasSubstr;

script::Script parse(const std::string& text) {
  std::string error;
  std::optional<script::Script> s = script::parse(text, "t.mms", &error);
  EXPECT_TRUE(s) << error;
  return s ? *s : script::Script{};
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

TEST(Transcript, CommandsBesideResultsWithLineNumbers) {
  const script::Script s = parse("# setup\nmmap 0x200000000000 4K rw- private+anon+fixed\n\n@2 write 0x200000001000 4096 7\n");
  const std::string out = format_transcript(s, {"0x200000000000", "SEGV"}, TranscriptStyle{100, false});
  EXPECT_EQ(out,
            "    2  mmap 0x200000000000 0x1000 rw- private+anon+fixed  0x200000000000\n"
            "    4  @2 write 0x200000001000 0x1000 7                   SEGV\n");
}

TEST(Transcript, ColorsTroubleOnlyWhenAsked) {
  const script::Script s = parse("munmap 0x200000000001 4K\nwrite 0x200000000000 1 1\nmunmap 0x200000000000 4K\n");
  const std::vector<std::string> results = {"-EINVAL", "SEGV", "0"};
  EXPECT_EQ(format_transcript(s, results, TranscriptStyle{100, false}).find('\x1b'), std::string::npos);
  const std::vector<std::string> lines = lines_of(format_transcript(s, results, TranscriptStyle{100, true}));
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("\x1b[33m-EINVAL\x1b[0m"));  // an errno: yellow
  EXPECT_THAT(lines[1], HasSubstr("\x1b[31mSEGV\x1b[0m"));     // a signal: red
  EXPECT_THAT(lines[2], ::testing::EndsWith(" 0"));             // success: plain
}

// A long result wraps after "; " within the width, its continuation under its column; a
// command too long for the command column stands alone with its result below.
TEST(Transcript, LongLinesWrapInTheirColumns) {
  const script::Script s = parse("maps\nmmap 0x200000000000 4K rw- private+anon+fixed\n");
  const std::string maps = "200000000000-200000002000 rw-p; 200000002000-200000004000 r--p; 200000004000-200000008000 rw-p";
  const std::vector<std::string> lines = lines_of(format_transcript(s, {maps, "0x200000000000"}, TranscriptStyle{72, false}));
  ASSERT_EQ(lines.size(), 5u) << format_transcript(s, {maps, "0x200000000000"}, TranscriptStyle{72, false});
  const size_t col = lines[0].find("200000000000-");
  ASSERT_NE(col, std::string::npos);
  EXPECT_EQ(lines[0].substr(col), "200000000000-200000002000 rw-p;");
  EXPECT_EQ(lines[1], std::string(col, ' ') + "200000002000-200000004000 r--p;");
  EXPECT_EQ(lines[2], std::string(col, ' ') + "200000004000-200000008000 rw-p");
  EXPECT_THAT(lines[3], ::testing::MatchesRegex("  +2  mmap 0x200000000000 0x1000 rw- private\\+anon\\+fixed"));
  EXPECT_EQ(lines[4], std::string(col, ' ') + "0x200000000000");
  for (const std::string& l : lines) EXPECT_LE(l.size(), 72u) << l;
}

TEST(Transcript, MissingResultsAreNamed) {
  const script::Script s = parse("maps\nmaps\n");
  EXPECT_THAT(format_transcript(s, {"none"}, TranscriptStyle{}), HasSubstr("<missing>"));
}

TEST(Transcript, SideBySideMarksTheDivergence) {
  std::string text;
  for (int i = 0; i < 12; i++) text += "maps\n";
  const script::Script s = parse(text);
  std::vector<std::string> model(12, "none"), host(12, "none");
  model[9] = "SEGV";
  host[9] = "fnv:0123456789abcdef";
  const std::vector<std::string> lines = lines_of(format_side_by_side(s, model, host, 9, 3, 1, TranscriptStyle{80, false}));
  ASSERT_EQ(lines.size(), 6u);  // the heading, three before, the divergence, one after
  EXPECT_THAT(lines[0], ::testing::MatchesRegex(" +line  command +\\| model +\\| host"));
  EXPECT_THAT(lines[1], ::testing::MatchesRegex(" +7  maps +\\| none +\\| none"));
  EXPECT_THAT(lines[4], ::testing::MatchesRegex("=> +10  maps +\\| SEGV +\\| fnv:0123456789abcdef"));
  EXPECT_THAT(lines[5], ::testing::MatchesRegex(" +11  maps +\\| none +\\| none"));
  // The columns line up.
  for (const std::string& l : lines) EXPECT_EQ(l.find(" | "), lines[0].find(" | ")) << l;
}

TEST(Transcript, SideBySideCutsLongResults) {
  const script::Script s = parse("maps\n");
  const std::string long_maps(200, 'x');
  const std::string out = format_side_by_side(s, {long_maps}, {"none"}, 0, 5, 5, TranscriptStyle{80, false});
  EXPECT_THAT(out, HasSubstr("x... | none"));
  for (const std::string& l : lines_of(out)) EXPECT_LE(l.size(), 80u) << l;
}

}  // namespace
}  // namespace mirrormm::replay
