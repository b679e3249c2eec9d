// LineWriter: how a worker streams one result line to the controller.
//
// A result can be longer than any buffer we want to keep (mincore of many pages, maps of a
// fragmented window), so the line is streamed: bytes gather in a fixed buffer that is sent
// whenever it fills, and end_line() appends '\n' and sends the rest. No allocation. If the
// controller has gone away (send fails), the worker exits: nobody is left to answer to.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mirrormm::host {

class LineWriter {
 public:
  // fd: the worker's end of its socket to the controller. Not owned.
  explicit LineWriter(int fd) : fd_(fd) {}

  void set_fd(int fd) { fd_ = fd; }

  void put(const char* s, size_t n);
  void put(const char* s);
  void put_char(char c);
  void put_hex(uint64_t v);
  void put_dec(uint64_t v);
  // "-ENAME" for errno err.
  void put_errno(int err);
  // Appends '\n' and sends everything buffered.
  void end_line();

 private:
  void flush();

  int fd_;
  size_t used_ = 0;
  char buf_[16384];
};

}  // namespace mirrormm::host
