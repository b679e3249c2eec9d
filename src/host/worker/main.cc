// mirrormm-host-worker: the program behind process 1 of a host run (see worker.h).
//
// The controller forks and executes this program, so that the real process a script runs in
// has an ordinary address-space layout of its own: not the controller's, which in sanitizer
// builds is full of shadow and guard regions that change where the kernel places a mapping
// without MAP_FIXED. This program is therefore always built without sanitizers.
//
// Usage: mirrormm-host-worker FD   (FD: the worker's end of the controller's socketpair)
//
// The worker and every process it forks run on one CPU. Some results depend on which CPU a
// page was faulted on: a page faulted in waits in that CPU's LRU batch (lru_add), and
// MADV_PAGEOUT drains only the calling CPU's batches (lru_add_drain) before it isolates
// pages, so a process migrated between the fault and the madvise would keep a page that an
// unmigrated one drops. Pinning makes such answers the same on a busy machine as on an idle
// one (the commands of a host run execute one at a time anyway).
#include <sched.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>

#include "host/worker/worker.h"

int main(int argc, char** argv) {
  if (argc != 2) {
    static const char kUsage[] = "usage: mirrormm-host-worker FD (started by the mirrormm host runner)\n";
    ssize_t n = write(2, kUsage, sizeof kUsage - 1);
    (void)n;
    return 2;
  }
  char* end = nullptr;
  long fd = std::strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || fd < 0 || fd > 1 << 20) return 2;
  const int cpu = sched_getcpu();
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    (void)sched_setaffinity(0, sizeof set, &set);  // best effort: results stay correct without it
  }
  mirrormm::host::worker_main(static_cast<int>(fd));
}
