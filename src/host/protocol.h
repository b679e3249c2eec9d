// The controller <-> worker protocol of the host runner.
//
// One SOCK_STREAM socketpair per worker. The controller sends a fixed-size Request; the
// worker answers with one result line ending in '\n' (the line the script prints), except:
//   kInstallFile  carries one file descriptor (SCM_RIGHTS) and has no answer;
//   kFork         is answered by the parent worker with "+PID\n" carrying (SCM_RIGHTS) the
//                 controller's end of a new socketpair whose other end the child keeps, or
//                 with "-E...\n" when fork or socketpair failed; the child never answers it;
//   kExit         is answered with "0\n", after which the worker exits and its end closes.
// The controller sends the next request only after the previous answer, so a worker is
// either blocked reading a request or executing exactly one. A worker that reads EOF exits.
//
// The controller translates script values into Linux ones (MAP_*, MADV_*, MREMAP_*), so the
// worker passes them to the kernel unchanged.
#pragma once

#include <cstdint>

namespace mirrormm::host {

enum class ReqOp : uint32_t {
  kMmap,
  kMunmap,
  kMprotect,
  kMadvise,
  kMremap,
  kWrite,
  kRead,
  kMincore,
  kMaps,
  kSmaps,
  kFork,
  kExit,
  kInstallFile,
  kMsync,
  kMlock,      // flags: mlock2's (0: plain mlock)
  kMunlock,
  kMlockall,   // flags: MCL_*
  kMunlockall,
  kMlocked,
  kSetrlimit,  // flags: RLIMIT_*; new_len soft, new_addr hard; seed: kRlim* bits
  kMseal,
  kPmadvise,
};

// kSetrlimit's seed: which limits are `+N` (relative to the process's size: VmSize for
// RLIMIT_AS, VmData for RLIMIT_DATA) and which `inf`.
inline constexpr uint64_t kRlimSoftRelative = 1, kRlimHardRelative = 2, kRlimSoftInf = 4, kRlimHardInf = 8;

// How many files (memfd and regular) a run may create: the worker's file table is a fixed
// array.
inline constexpr int kMaxFiles = 256;

struct Request {
  ReqOp op = ReqOp::kMaps;
  uint32_t prot = 0;       // mmap/mprotect: PROT_* (incl. PROT_GROWSDOWN/UP)
  uint32_t flags = 0;      // mmap: MAP_*; mremap: MREMAP_*; madvise, pmadvise: MADV_*; msync: MS_*
  int32_t file = -1;       // mmap of a file, kInstallFile: index in the worker's file table
  uint32_t read_only = 0;  // mmap of a file: open it O_RDONLY (`rofd`)
  // mmap of a regular file: map with readahead off (MADV_RANDOM before any fault, so a
  // MAP_POPULATE is done afterwards with MADV_POPULATE_READ/WRITE), see docs/mms-format.md.
  uint32_t regular = 0;
  int32_t target_pid = 0;  // pmadvise: the host pid of the process advised
  uint64_t addr = 0;
  uint64_t len = 0;
  uint64_t new_len = 0;
  uint64_t new_addr = 0;
  uint64_t seed = 0;
  uint64_t offset = 0;
};

}  // namespace mirrormm::host
