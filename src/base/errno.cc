#include "mirrormm/errno.h"

namespace mirrormm {

const char* errno_name(Errno e) {
  switch (e) {
    case Errno::kOk: return "0";
    case Errno::kPerm: return "EPERM";
    case Errno::kNoEnt: return "ENOENT";
    case Errno::kSrch: return "ESRCH";
    case Errno::kIntr: return "EINTR";
    case Errno::kBadf: return "EBADF";
    case Errno::kAgain: return "EAGAIN";
    case Errno::kNoMem: return "ENOMEM";
    case Errno::kAcces: return "EACCES";
    case Errno::kFault: return "EFAULT";
    case Errno::kBusy: return "EBUSY";
    case Errno::kExist: return "EEXIST";
    case Errno::kNoDev: return "ENODEV";
    case Errno::kInval: return "EINVAL";
    case Errno::kTxtBsy: return "ETXTBSY";
    case Errno::kFbig: return "EFBIG";
    case Errno::kOverflow: return "EOVERFLOW";
    case Errno::kOpNotSupp: return "EOPNOTSUPP";
  }
  return "E?";
}

}  // namespace mirrormm
