// The closed error type of system-call-like paths: Linux errno values, and a [[nodiscard]]
// result that carries either a value or one of them.
#pragma once

#include <cstdint>
#include <utility>

#include "mirrormm/base/assert.h"

namespace mirrormm {

// Linux x86-64 errno numbers. Retry-type errors (kAgain, kBusy, kIntr) are kept apart from
// real failures by is_retry().
enum class [[nodiscard]] Errno : int16_t {
  kOk = 0,
  kPerm = 1,
  kNoEnt = 2,
  kSrch = 3,
  kIntr = 4,
  kBadf = 9,
  kAgain = 11,
  kNoMem = 12,
  kAcces = 13,
  kFault = 14,
  kBusy = 16,
  kExist = 17,
  kNoDev = 19,
  kInval = 22,
  kTxtBsy = 26,
  kFbig = 27,
  kOverflow = 75,
  kOpNotSupp = 95,
};

// "ENOMEM" for Errno::kNoMem; "E?" for a value outside the list.
const char* errno_name(Errno e);

inline bool is_retry(Errno e) {
  return e == Errno::kAgain || e == Errno::kBusy || e == Errno::kIntr;
}

// A value or an errno. Construct from either; check ok() before value(): value() of an error
// is a bug and stops the program.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : value_(std::move(value)), error_(Errno::kOk) {}  // NOLINT: implicit by design
  Result(Errno e) : value_(), error_(e) {}                            // NOLINT
  bool ok() const { return error_ == Errno::kOk; }
  Errno error() const { return error_; }
  const T& value() const {
    MM_BUG_ON(error_ != Errno::kOk);
    return value_;
  }
  T& value() {
    MM_BUG_ON(error_ != Errno::kOk);
    return value_;
  }

 private:
  T value_;
  Errno error_;
};

// Result of an operation that has only a status.
using Status = Result<int>;
inline constexpr int kSuccess = 0;

}  // namespace mirrormm
