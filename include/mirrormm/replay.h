// Running a `.mms` script against the model.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/script.h"
#include "mirrormm/system.h"

namespace mirrormm::replay {

struct Options {
  SystemConfig config;  // the modeled machine (frames, overcommit, RAM size, PKU, limits)
};

// Runs commands one at a time against one modeled system (for tools and tests that want to
// look at the model between commands).
class Replayer {
 public:
  explicit Replayer(const Options& options);
  ~Replayer();
  // The result line of one command.
  std::string run(const script::Command& c);
  System& system() { return *sys_; }

 private:
  std::unique_ptr<System> sys_;
};

// Runs every command of the script against a fresh modeled system and returns one result
// line per command, as `mirrormm replay` prints them.
std::vector<std::string> run(const script::Script& script, const Options& options);

// "FILE:LINE: message" for the first command the model cannot run yet, if any. Callers check
// this before run() so that a script is either run whole or refused whole.
std::optional<std::string> unsupported(const script::Script& script);

}  // namespace mirrormm::replay
