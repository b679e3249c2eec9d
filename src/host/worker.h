// A host worker: the real process behind one script process (see protocol.h).
#pragma once

namespace mirrormm::host {

// Runs in the child of the controller's fork(): prepares the process (closes inherited
// descriptors but fd, pins RLIMIT_STACK to 8 MiB, lifts RLIMIT_AS and RLIMIT_DATA, disables
// THP for its mm, installs the fault handlers, empties the window), sends "ready\n" or
// "ERROR ...\n" on fd, then serves requests until EOF or kExit. Uses only system calls and
// static storage: the controller may be multi-threaded, so nothing that could hold a lock
// copied at fork() time is used. Workers forked by `fork` commands return into the same
// loop and never come back here.
[[noreturn]] void worker_main(int fd);

}  // namespace mirrormm::host
