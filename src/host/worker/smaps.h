// The `smaps` command in a host worker: /proc/self/smaps restricted to the window, each VMA
// with the counters the spec prints, read like /proc/self/maps (maps.h: raw reads into
// static buffers, so that reading it cannot change the address space).
#pragma once

#include "host/worker/line_writer.h"

namespace mirrormm::host {

// Writes the window's VMAs as the spec prints them (`START-END Rss=N Pss=N Shared_Clean=N
// Shared_Dirty=N Private_Clean=N Private_Dirty=N Anonymous=N Swap=N` joined by "; ", or
// "none") to out, without the final newline.
void write_window_smaps(LineWriter* out);

// Writes the `mlocked` result (docs/mms-format.md) from /proc/self/smaps: each VMA
// intersecting the window as "START-END LOCK Locked=N", LOCK from its VmFlags (lo, lo+lf, -).
void write_window_mlocked(LineWriter* out);

// The current size of the address space (VmSize) or of its data (VmData) in bytes, from
// /proc/self/status; 0 when it cannot be read.
uint64_t status_bytes(const char* field);

}  // namespace mirrormm::host
