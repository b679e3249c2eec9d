// A host worker: the real process behind one script process (see protocol.h).
#pragma once

namespace mirrormm::host {

// The main of mirrormm-host-worker, the program the controller forks and executes for
// process 1 (its own program, never sanitized, so that its layout is an ordinary process's;
// see main.cc): prepares the process (closes inherited descriptors but fd, pins RLIMIT_STACK
// to 8 MiB, lifts RLIMIT_AS and RLIMIT_DATA, disables THP for its mm, installs the fault
// handlers, empties the window), sends "ready\n" or "ERROR ...\n" on fd, then serves
// requests until EOF or kExit. Uses only system calls and static storage, so that its own
// mappings stay put while a script runs. Workers forked by `fork` commands return into the
// same loop and never come back here.
[[noreturn]] void worker_main(int fd);

}  // namespace mirrormm::host
