// Running a `.mms` script against the model.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/script.h"

namespace mirrormm::replay {

struct Options {
  SystemConfig config;  // the modeled machine (frames, overcommit, RAM size, PKU, limits)
};

// Runs every command of the script against a fresh modeled system and returns one result
// line per command, as `mirrormm replay` prints them.
std::vector<std::string> run(const script::Script& script, const Options& options);

// "FILE:LINE: message" for the first command the model cannot run yet, if any. Callers check
// this before run() so that a script is either run whole or refused whole.
std::optional<std::string> unsupported(const script::Script& script);

}  // namespace mirrormm::replay
