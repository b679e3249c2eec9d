// LineWriter: buffered, allocation-free sending of result lines (see line_writer.h).
#include "host/worker/line_writer.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "host/format.h"

namespace mirrormm::host {

void LineWriter::put(const char* s, size_t n) {
  while (n > 0) {
    if (used_ == sizeof(buf_)) flush();
    size_t chunk = sizeof(buf_) - used_;
    if (chunk > n) chunk = n;
    std::memcpy(buf_ + used_, s, chunk);
    used_ += chunk;
    s += chunk;
    n -= chunk;
  }
}

void LineWriter::put(const char* s) { put(s, std::strlen(s)); }

void LineWriter::put_char(char c) { put(&c, 1); }

void LineWriter::put_hex(uint64_t v) {
  char tmp[16];
  put(tmp, static_cast<size_t>(host::put_hex(tmp, v) - tmp));
}

void LineWriter::put_dec(uint64_t v) {
  char tmp[20];
  put(tmp, static_cast<size_t>(host::put_dec(tmp, v) - tmp));
}

void LineWriter::put_errno(int err) {
  char tmp[32];
  put(tmp, static_cast<size_t>(host::put_errno(tmp, err) - tmp));
}

void LineWriter::end_line() {
  put_char('\n');
  flush();
}

void LineWriter::flush() {
  size_t off = 0;
  while (off < used_) {
    ssize_t n = ::send(fd_, buf_ + off, used_ - off, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) _exit(0);  // the controller is gone
    off += static_cast<size_t>(n);
  }
  used_ = 0;
}

}  // namespace mirrormm::host
