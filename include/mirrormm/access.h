// How a memory access on a software CPU ends, and the callback that receives its data: the
// vocabulary shared by System::access and the CPUs that perform it.
#pragma once

#include <cstdint>
#include <functional>

namespace mirrormm {

struct AccessResult {
  enum class Kind { kOk, kSegv, kBus, kOom, kNoProcess };
  Kind kind = Kind::kOk;
  uint64_t fault_addr = 0;  // the first address that could not be accessed
  bool ok() const { return kind == Kind::kOk; }
};

// Called for each contiguous piece (at most a page) of an access in ascending order, with the
// frame's bytes for that piece.
using AccessChunkFn = std::function<void(uint8_t* data, uint64_t addr, uint64_t n)>;

}  // namespace mirrormm
