// Running a `.mms` script against the host kernel: the reference the model is compared with.
//
// host::run() executes every command with real system calls. Each script process is a real
// single-threaded worker process; the calling process is the controller that sends each
// command to the worker of its process over a socket and collects one result line per
// command, printed exactly as docs/mms-format.md specifies (so that the lines can
// be compared byte for byte with replay::run()).
//
// The workers inherit the caller's address space, so a command that could unmap or
// overwrite memory outside the window [kWindowStart, kWindowEnd) would damage the worker
// itself. host_safe() is the rule the runner enforces: a command it rejects is not executed
// and prints `UNSAFE`.
//
// Host assumptions: x86-64 with 4-level paging (TASK_SIZE 0x7ffffffff000), 4 KiB pages. The
// workers run with RLIMIT_STACK = 8 MiB, RLIMIT_AS and RLIMIT_DATA lifted, and transparent
// huge pages disabled for their mm (PR_SET_THP_DISABLE), so that stack expansion and
// page-fault behaviour do not depend on the caller's limits or the host's THP policy.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mirrormm/script.h"

namespace mirrormm::host {

// The first address the kernel rejects for user mappings on x86-64 with 4-level paging.
inline constexpr uint64_t kTaskSize = 0x7ffffffff000ull;

// Runs the script against the host kernel with real system calls, one child process per
// script process; returns one output line per command, exactly as the spec prints them.
//
// Commands for a process that does not exist (never created, or gone after `exit`) print
// `-ESRCH`. Beyond the spec: `mmap` of a file NAME that no `memfd` created passes a bad
// descriptor (-1) to the kernel, which answers `-EBADF` (or an error it checks earlier, such
// as `-EINVAL` for an unaligned OFFSET); `truncate` of such a NAME prints `-ENOENT`; `memfd`
// of a new NAME creates the file even when setting its size then fails (the failure is
// printed), and fails with memfd_create's error (`-EINVAL` for a NAME longer than 249
// characters) or `-EMFILE` beyond 256 files; a command host_safe() rejects prints `UNSAFE`.
//
// On an internal failure (cannot fork, a worker died or stopped answering) the line of the
// command that hit it reads `ERROR ...`, the process it ran in is treated as gone, the
// remaining commands still run, and run() returns false with *error describing the first
// failure. Not reentrant with itself on other threads of the same process.
bool run(const script::Script& s, std::vector<std::string>* out, std::string* error);

// True when executing c on the host can change nothing outside the window: every range it
// may map, unmap, change or write lies inside [kWindowStart, kWindowEnd), or the kernel
// rejects the call before touching any mapping (zero or overflowing lengths, unaligned
// starts, addresses at or above kTaskSize). mmap without fixed/noreplace is always safe (the
// kernel only hands out free space); mincore and read only observe, but read, like write,
// may expand a MAP_GROWSDOWN mapping and so must stay in the window as well.
bool host_safe(const script::Command& c);

}  // namespace mirrormm::host
