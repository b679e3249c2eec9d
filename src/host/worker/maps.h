// The `maps` command in a host worker: /proc/self/maps restricted to the window, in the
// spec's format, read with raw read() into static buffers (no stdio, no allocation, so that
// reading maps cannot itself change the address space).
#pragma once

#include <cstdint>

#include "host/worker/line_writer.h"

namespace mirrormm::host {

// One /proc/self/maps line, parsed. name points into the caller's line buffer.
struct MapsEntry {
  uint64_t start = 0;
  uint64_t end = 0;
  char perms[4] = {};
  uint64_t offset = 0;
  const char* name = nullptr;  // empty string for anonymous memory
  uint32_t name_len = 0;
};

// Calls fn(line, end, ctx) for each line of the /proc file at path, without its '\n' (lines
// longer than 8 KiB are cut). Returns 0, or the errno of a failed open/read.
int for_each_proc_line(const char* path, void (*fn)(const char* line, const char* end, void*), void* ctx);

// Parses one /proc/PID/maps line (also the header line of each VMA in /proc/PID/smaps);
// false when [s, end) is not one. e->name points into the line.
bool parse_maps_line(const char* s, const char* end, MapsEntry* e);

// Calls fn(entry, ctx) for each line of /proc/self/maps. Returns 0, or the errno of a
// failed open/read.
int for_each_maps_entry(void (*fn)(const MapsEntry&, void*), void* ctx);

// Writes the window's entries as the spec prints them (`START-END PERMS[ OFFSET NAME]`
// joined by "; ", or "none") to out, without the final newline.
void write_window_maps(LineWriter* out);

}  // namespace mirrormm::host
