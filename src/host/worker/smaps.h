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

}  // namespace mirrormm::host
