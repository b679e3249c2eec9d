// Scenario-script test helpers shared by scenario_test (tests/scenarios) and script_v2_test
// (tests/scenarios-v2): the script files of a directory, their test names, expected outputs.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace mirrormm::scenario {

namespace fs = std::filesystem;

// MIRRORMM_SOURCE_DIR/tests/NAME.
inline fs::path dir(const char* name) { return fs::path(MIRRORMM_SOURCE_DIR) / "tests" / name; }

// Every *.mms of dir, sorted so that test names come in a stable order.
inline std::vector<std::string> files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".mms") out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The test name of a script: its file stem, with anything GoogleTest does not accept in a
// name turned into '_'.
inline std::string test_name(const ::testing::TestParamInfo<std::string>& info) {
  std::string name = fs::path(info.param).stem().string();
  for (char& ch : name) {
    if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
  }
  return name;
}

// The lines of a text file, without their terminators; nullopt if it cannot be read.
inline std::optional<std::vector<std::string>> read_lines(const fs::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::vector<std::string> lines;
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

}  // namespace mirrormm::scenario
