// Random `.mms` scripts for differential testing of the model against the host kernel.
//
// generate() is a policy, not a mechanism: it produces scripts that keep the VMA tree busy
// (a small hot sub-window where merges and splits happen constantly, a stack area below
// MAP_GROWSDOWN mappings, a second region near the window's end), sprinkled with edge
// arguments at a low rate. Every generated command is host-safe (host::host_safe()): it
// cannot touch the host runner's own memory.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace mirrormm::gen {

enum class Profile {
  kAnon,   // anonymous memory: mmap, munmap, mprotect, write/read, mincore, maps, smaps, fork, exit
  kFiles,  // memfd files first: file mappings, truncate, plus mremap and madvise
  kAll,    // everything, balanced
  kLock,   // anonymous memory with mlock, munlock, mlockall, munlockall, MAP_LOCKED and setrlimit
  kAdvise,  // anonymous and file mappings under every advice (free, remove, guard regions,
            // huge-page flags), mseal, process_madvise and the map types
};

struct Options {
  uint64_t seed = 1;
  int commands = 300;
  Profile profile = Profile::kAnon;
};

// A valid script of exactly o.commands command lines (canonical format(), no comments),
// the same text for the same Options on every platform.
std::string generate(const Options& o);

// "anon", "files", "all", "lock" or "advise"; throws std::invalid_argument for anything else.
Profile parse_profile(std::string_view name);

}  // namespace mirrormm::gen
