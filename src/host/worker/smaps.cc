// /proc/self/smaps for the host worker (see smaps.h).
//
// The file is a sequence of records, one per VMA: the VMA's /proc/PID/maps line, then one
// "Name:   N kB" line per counter (fs/proc/task_mmu.c, show_smap), ending with "VmFlags:".
// A record starts at a line whose first character is a hex digit (an address); counter
// names start with an upper-case letter.
#include "host/worker/smaps.h"

#include <cstring>

#include "host/worker/maps.h"
#include "mirrormm/script.h"

namespace mirrormm::host {
namespace {

// The decimal after spaces or tabs at p (0 when there is none); *ok says whether digits were
// found, when given.
uint64_t parse_decimal(const char* p, const char* end, bool* ok = nullptr) {
  while (p < end && (*p == ' ' || *p == '\t')) ++p;
  const char* digits = p;
  uint64_t v = 0;
  while (p < end && *p >= '0' && *p <= '9') v = v * 10 + static_cast<uint64_t>(*p++ - '0');
  if (ok) *ok = p != digits;
  return v;
}

// Whether a line starts a record (its first character is a hex digit of an address).
bool is_header(const char* s) {
  const char c = *s;
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

// A record's header line: true when its VMA intersects the window, with its range.
bool window_header(const char* s, const char* end, uint64_t* start, uint64_t* stop) {
  MapsEntry e;
  if (!parse_maps_line(s, end, &e)) return false;
  if (e.start >= script::kWindowEnd || e.end <= script::kWindowStart) return false;
  *start = e.start;
  *stop = e.end;
  return true;
}

// The counters the spec prints, in its order, under the names /proc/PID/smaps gives them.
constexpr const char* kFields[] = {"Rss",           "Pss",           "Shared_Clean", "Shared_Dirty",
                                   "Private_Clean", "Private_Dirty", "Anonymous",    "Swap"};
constexpr int kNumFields = sizeof kFields / sizeof kFields[0];

struct WindowSmapsCtx {
  LineWriter* out;
  bool any;                  // an entry was written
  bool in_window;            // the current record's VMA intersects the window
  uint64_t start, end;       // its range
  uint64_t value[kNumFields];
  bool seen[kNumFields];
  bool ok;                   // every record written so far had all its counters
};

void flush_record(WindowSmapsCtx* ctx) {
  if (!ctx->in_window) return;
  ctx->in_window = false;
  LineWriter* out = ctx->out;
  if (ctx->any) out->put("; ");
  ctx->any = true;
  out->put_hex(ctx->start);
  out->put_char('-');
  out->put_hex(ctx->end);
  for (int i = 0; i < kNumFields; ++i) {
    if (!ctx->seen[i]) ctx->ok = false;
    out->put_char(' ');
    out->put(kFields[i]);
    out->put_char('=');
    out->put_dec(ctx->value[i]);
  }
}

// Reads "Name:" followed by spaces and a decimal into one of the counters, when it is one.
void parse_counter(WindowSmapsCtx* ctx, const char* s, const char* end) {
  const char* colon = static_cast<const char*>(std::memchr(s, ':', static_cast<size_t>(end - s)));
  if (!colon) return;
  const size_t name_len = static_cast<size_t>(colon - s);
  for (int i = 0; i < kNumFields; ++i) {
    if (std::strlen(kFields[i]) != name_len || std::memcmp(kFields[i], s, name_len) != 0) continue;
    bool ok = false;
    const uint64_t v = parse_decimal(colon + 1, end, &ok);
    if (!ok) return;
    ctx->value[i] = v;
    ctx->seen[i] = true;
    return;
  }
}

void smaps_line(const char* s, const char* end, void* ctx_ptr) {
  auto* ctx = static_cast<WindowSmapsCtx*>(ctx_ptr);
  if (s == end) return;
  if (!is_header(s)) {
    if (ctx->in_window) parse_counter(ctx, s, end);
    return;
  }
  flush_record(ctx);
  if (!window_header(s, end, &ctx->start, &ctx->end)) return;
  ctx->in_window = true;
  std::memset(ctx->value, 0, sizeof ctx->value);
  std::memset(ctx->seen, 0, sizeof ctx->seen);
}

// Reads /proc/self/smaps line by line into a new Ctx (a context with out, any and ok), flushes
// the last record and ends the result: an error line when the file could not be read or a record
// missed a field (named by missing), "none" when no VMA intersects the window.
template <class Ctx>
void write_window_records(LineWriter* out, void (*line)(const char*, const char*, void*), void (*flush)(Ctx*),
                          const char* missing) {
  Ctx record{};
  Ctx* ctx = &record;
  ctx->out = out;
  ctx->ok = true;
  int err = for_each_proc_line("/proc/self/smaps", line, ctx);
  flush(ctx);
  if (err != 0 && !ctx->any) {
    out->put("ERROR reading /proc/self/smaps: ");
    out->put_errno(err);
    return;
  }
  if (!ctx->ok) {
    out->put(" ERROR a /proc/self/smaps record lacks ");
    out->put(missing);
    return;
  }
  if (!ctx->any) out->put("none");
}

}  // namespace

void write_window_smaps(LineWriter* out) {
  write_window_records<WindowSmapsCtx>(out, smaps_line, flush_record, "a counter");
}

namespace {

struct WindowMlockedCtx {
  LineWriter* out;
  bool any;
  bool in_window;
  uint64_t start, end;
  uint64_t locked;
  bool seen_locked, seen_flags;
  bool lo, lf;
  bool ok;
};

void flush_mlocked(WindowMlockedCtx* ctx) {
  if (!ctx->in_window) return;
  ctx->in_window = false;
  if (!ctx->seen_locked || !ctx->seen_flags) ctx->ok = false;
  LineWriter* out = ctx->out;
  if (ctx->any) out->put("; ");
  ctx->any = true;
  out->put_hex(ctx->start);
  out->put_char('-');
  out->put_hex(ctx->end);
  out->put(ctx->lo ? (ctx->lf ? " lo+lf" : " lo") : (ctx->lf ? " lf" : " -"));
  out->put(" Locked=");
  out->put_dec(ctx->locked);
}

bool starts_with(const char* s, const char* end, const char* prefix) {
  const size_t n = std::strlen(prefix);
  return static_cast<size_t>(end - s) >= n && std::memcmp(s, prefix, n) == 0;
}

// "VmFlags: rd wr mr mw me lo ac": two-letter names separated by spaces.
void parse_vmflags(WindowMlockedCtx* ctx, const char* s, const char* end) {
  for (const char* p = s + 8; p + 1 < end; ++p) {
    if (p[-1] != ' ' || (p + 2 < end && p[2] != ' ')) continue;
    if (p[0] == 'l' && p[1] == 'o') ctx->lo = true;
    if (p[0] == 'l' && p[1] == 'f') ctx->lf = true;
  }
  ctx->seen_flags = true;
}

void mlocked_line(const char* s, const char* end, void* ctx_ptr) {
  auto* ctx = static_cast<WindowMlockedCtx*>(ctx_ptr);
  if (s == end) return;
  if (!is_header(s)) {
    if (!ctx->in_window) return;
    if (starts_with(s, end, "Locked:")) {
      ctx->locked = parse_decimal(s + 7, end);
      ctx->seen_locked = true;
    } else if (starts_with(s, end, "VmFlags:")) {
      parse_vmflags(ctx, s, end);
    }
    return;
  }
  flush_mlocked(ctx);
  if (!window_header(s, end, &ctx->start, &ctx->end)) return;
  ctx->in_window = true;
  ctx->locked = 0;
  ctx->seen_locked = ctx->seen_flags = ctx->lo = ctx->lf = false;
}

struct StatusCtx {
  const char* field;
  uint64_t kb;
};

void status_line(const char* s, const char* end, void* ctx_ptr) {
  auto* ctx = static_cast<StatusCtx*>(ctx_ptr);
  if (!starts_with(s, end, ctx->field)) return;
  ctx->kb = parse_decimal(s + std::strlen(ctx->field), end);
}

}  // namespace

void write_window_mlocked(LineWriter* out) {
  write_window_records<WindowMlockedCtx>(out, mlocked_line, flush_mlocked, "Locked: or VmFlags:");
}

uint64_t status_bytes(const char* field) {
  StatusCtx ctx{field, 0};
  if (for_each_proc_line("/proc/self/status", status_line, &ctx) != 0) return 0;
  return ctx.kb << 10;
}

}  // namespace mirrormm::host
