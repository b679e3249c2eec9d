// /proc/self/maps for the host worker (see maps.h).
//
// seq_file hands out whole lines per read() and the worker is single-threaded, so reading
// the file in chunks yields one consistent snapshot of its VMAs. Line format (fs/proc/
// task_mmu.c): "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu" padded, then the name.
#include "host/worker/maps.h"

#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "mirrormm/script.h"

namespace mirrormm::host {
namespace {

char g_chunk[65536];
char g_line[8192];

// Parses hex digits at *p, advancing it; false if there are none.
bool parse_hex(const char** p, const char* end, uint64_t* out) {
  const char* s = *p;
  uint64_t v = 0;
  while (s < end) {
    char c = *s;
    int d = (c >= '0' && c <= '9') ? c - '0' : (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
    if (d < 0) break;
    v = (v << 4) | static_cast<uint64_t>(d);
    ++s;
  }
  if (s == *p) return false;
  *p = s;
  *out = v;
  return true;
}

bool skip_char(const char** p, const char* end, char c) {
  if (*p >= end || **p != c) return false;
  ++*p;
  return true;
}

void skip_field(const char** p, const char* end) {
  while (*p < end && **p != ' ') ++*p;
  while (*p < end && **p == ' ') ++*p;
}

}  // namespace

bool parse_maps_line(const char* s, const char* end, MapsEntry* e) {
  if (!parse_hex(&s, end, &e->start) || !skip_char(&s, end, '-') || !parse_hex(&s, end, &e->end) ||
      !skip_char(&s, end, ' ') || end - s < 5)
    return false;
  std::memcpy(e->perms, s, 4);
  s += 4;
  if (!skip_char(&s, end, ' ') || !parse_hex(&s, end, &e->offset) || !skip_char(&s, end, ' ')) return false;
  skip_field(&s, end);  // dev
  skip_field(&s, end);  // inode, then the padding before the name
  e->name = s;
  e->name_len = static_cast<uint32_t>(end - s);
  return true;
}

namespace {

bool has_prefix(const char* s, size_t n, const char* prefix) {
  size_t k = std::strlen(prefix);
  return n >= k && std::memcmp(s, prefix, k) == 0;
}

bool has_suffix(const char* s, size_t n, const char* suffix) {
  size_t k = std::strlen(suffix);
  return n >= k && std::memcmp(s + n - k, suffix, k) == 0;
}

// The NAME of a regular file the host runner created ("…/mirrormm-host-XXXXXX/=NAME
// (deleted)"), pointing into name; nullptr for any other path.
const char* regular_file_name(const char* name, size_t n) {
  static const char kDir[] = "/mirrormm-host-";
  static const char kDeleted[] = " (deleted)";
  if (!has_suffix(name, n, kDeleted)) return nullptr;
  const size_t end = n - (sizeof(kDeleted) - 1);
  size_t slash = end;
  while (slash > 0 && name[slash - 1] != '/') --slash;
  if (slash == 0 || slash >= end || name[slash] != '=' || slash + 1 >= end) return nullptr;
  const size_t dir_len = sizeof(kDir) - 1 + 6;  // "/mirrormm-host-" and mkdtemp's six characters
  if (slash - 1 < dir_len || std::memcmp(name + slash - 1 - dir_len, kDir, sizeof(kDir) - 1) != 0) return nullptr;
  return name + slash + 1;
}

struct WindowMapsCtx {
  LineWriter* out;
  bool any;
};

void write_entry(const MapsEntry& e, void* ctx_ptr) {
  auto* ctx = static_cast<WindowMapsCtx*>(ctx_ptr);
  if (e.start >= script::kWindowEnd || e.end <= script::kWindowStart) return;
  LineWriter* out = ctx->out;
  if (ctx->any) out->put("; ");
  ctx->any = true;
  out->put_hex(e.start);
  out->put_char('-');
  out->put_hex(e.end);
  out->put_char(' ');
  out->put(e.perms, 4);
  if (e.name_len == 0) return;
  out->put_char(' ');
  out->put_hex(e.offset);
  out->put_char(' ');
  const char* name = e.name;
  size_t n = e.name_len;
  static const char kShmem[] = "/dev/zero (deleted)";
  static const char kMemfd[] = "/memfd:";
  static const char kDeleted[] = " (deleted)";
  if (n == sizeof(kShmem) - 1 && std::memcmp(name, kShmem, n) == 0) {
    out->put("shmem");
  } else if (has_prefix(name, n, kMemfd) && has_suffix(name, n, kDeleted) &&
             n > sizeof(kMemfd) - 1 + sizeof(kDeleted) - 1) {
    out->put(name + sizeof(kMemfd) - 1, n - (sizeof(kMemfd) - 1) - (sizeof(kDeleted) - 1));
  } else if (const char* base = regular_file_name(name, n)) {
    // A regular file of the run: DIR/mirrormm-host-XXXXXX/=NAME (deleted) shows as NAME.
    out->put(base, static_cast<size_t>(name + n - (sizeof(kDeleted) - 1) - base));
  } else {
    out->put(name, n);
  }
}

}  // namespace

int for_each_proc_line(const char* path, void (*fn)(const char* line, const char* end, void*), void* ctx) {
  int fd = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC));
  if (fd < 0) return errno;
  size_t line_len = 0;
  int err = 0;
  auto finish_line = [&] {
    fn(g_line, g_line + line_len, ctx);
    line_len = 0;
  };
  while (true) {
    ssize_t n = read(fd, g_chunk, sizeof g_chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) err = errno;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      char c = g_chunk[i];
      if (c == '\n') {
        finish_line();
      } else if (line_len < sizeof g_line) {
        g_line[line_len++] = c;
      }
    }
  }
  if (line_len > 0) finish_line();
  close(fd);
  return err;
}

namespace {

struct MapsLineCtx {
  void (*fn)(const MapsEntry&, void*);
  void* ctx;
};

void maps_line(const char* line, const char* end, void* ctx_ptr) {
  auto* ctx = static_cast<MapsLineCtx*>(ctx_ptr);
  MapsEntry e;
  if (parse_maps_line(line, end, &e)) ctx->fn(e, ctx->ctx);
}

}  // namespace

int for_each_maps_entry(void (*fn)(const MapsEntry&, void*), void* ctx) {
  MapsLineCtx lines{fn, ctx};
  return for_each_proc_line("/proc/self/maps", maps_line, &lines);
}

void write_window_maps(LineWriter* out) {
  WindowMapsCtx ctx{out, false};
  int err = for_each_maps_entry(write_entry, &ctx);
  if (err != 0 && !ctx.any) {
    out->put("ERROR reading /proc/self/maps: ");
    out->put_errno(err);
    return;
  }
  if (!ctx.any) out->put("none");
}

}  // namespace mirrormm::host
