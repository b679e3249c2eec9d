// The host worker's command loop (see worker.h and protocol.h).
//
// Every system call that shapes the address space goes through syscall(2) with the script's
// values unchanged: glibc's wrappers would reject or adjust some of them (mmap's offset
// checks, mremap's variadic fifth argument, mprotect's PROT_GROWSDOWN bits), and the point
// is to see what the kernel itself answers.
//
// Memory discipline: the loop uses static buffers only, so that the worker's own mappings
// (all outside the window) stay fixed while a script runs; the one exception is the vector
// of a large mincore, mapped for that call and unmapped after it.
#include "host/worker/worker.h"

#include "host/fdpass.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>

#include "host/worker/access.h"
#include "host/format.h"
#include "host/worker/line_writer.h"
#include "host/worker/maps.h"
#include "host/worker/smaps.h"
#include "host/protocol.h"
#include "mirrormm/script.h"

namespace mirrormm::host {
namespace {

constexpr uint64_t kStackLimit = 8ull << 20;
constexpr uint64_t kPageSize = 4096;

// The worker's file table: index (assigned by the controller) -> descriptor, -1 if none.
int g_files[kMaxFiles];

// What this process's last successful mlockall left in its mm->def_flags (MCL_FUTURE, with
// MCL_ONFAULT or not); cleared by munlockall and in a fork child.
bool g_mcl_future = false;
bool g_mcl_onfault = false;

// The mincore vector for up to this many pages; larger calls map a temporary one.
alignas(4096) unsigned char g_mincore_vec[1 << 16];

// Reads exactly one Request from fd. A descriptor passed with it (SCM_RIGHTS) lands in
// *passed_fd (else -1). Returns false on EOF or error: the controller is gone.
bool read_request(int fd, Request* req, int* passed_fd) {
  *passed_fd = -1;
  auto* bytes = reinterpret_cast<char*>(req);
  size_t got = 0;
  while (got < sizeof(Request)) {
    ssize_t n = recv_with_fd(fd, bytes + got, sizeof(Request) - got, passed_fd);
    if (n <= 0) return false;
    got += static_cast<size_t>(n);
  }
  return true;
}

// Sends line (with its '\n') and, if fd >= 0, the descriptor fd along with it.
bool send_with_fd(int sock, const char* line, size_t len, int fd) {
  return send_all_with_fd(sock, line, len, fd);
}

// Writes the address a successful mmap/mremap returned, or -ERRNO.
void put_address_result(LineWriter* out, long ret, int err) {
  if (ret == -1) {
    out->put_errno(err);
    return;
  }
  out->put("0x");
  out->put_hex(static_cast<uint64_t>(ret));
}

void put_status_result(LineWriter* out, long ret, int err) {
  if (ret == -1) {
    out->put_errno(err);
    return;
  }
  out->put_char('0');
}

void do_mmap(const Request& r, LineWriter* out) {
  int opened = -1;
  if (r.file >= 0) {
    if (r.file >= kMaxFiles || g_files[r.file] < 0) {
      out->put_errno(EBADF);
      return;
    }
    // A fresh open file description for this mmap alone, as the spec requires.
    char path[48] = "/proc/self/fd/";
    *put_dec(path + std::strlen(path), static_cast<uint64_t>(g_files[r.file])) = '\0';
    int mode = r.read_only ? O_RDONLY : O_RDWR;
    opened = static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, mode | O_CLOEXEC));
    if (opened < 0) {
      out->put_errno(errno);
      return;
    }
  }
  // A regular file is mapped without readahead (VM_RAND_READ): a fault reads exactly its
  // page. MAP_POPULATE would fault before the advice could be given, so it becomes
  // MADV_POPULATE_READ (or _WRITE where populate writes: a private writable mapping) after
  // it, its result ignored as MAP_POPULATE's is. MAP_POPULATE faults any accessible mapping
  // (FOLL_FORCE) while MADV_POPULATE_READ needs VM_READ: a mapping without PROT_READ (but
  // not PROT_NONE) gets it for the populate only (one mprotect there and back, which
  // neither splits nor merges the VMA).
  //
  // A locked mapping (MAP_LOCKED, or mlockall's MCL_FUTURE) is populated by mmap itself unless
  // it locks on fault (MCL_ONFAULT, and then not even MAP_POPULATE populates it); for a
  // regular file that would read ahead before the advice, so the mapping is made unlocked
  // (MCL_FUTURE switched to MCL_FUTURE|MCL_ONFAULT around the call) and then locked with
  // mlock, which populates it as mmap would have, its result ignored as mmap's population's
  // is.
  unsigned long flags = r.flags;
  const bool onfault = g_mcl_future && g_mcl_onfault;
  const bool lock_after = r.regular && !onfault && ((flags & MAP_LOCKED) || g_mcl_future);
  const bool populate = r.regular && (flags & MAP_POPULATE) && !onfault && !lock_after;
  if (r.regular) flags &= ~static_cast<unsigned long>(MAP_POPULATE);
  if (lock_after) flags &= ~static_cast<unsigned long>(MAP_LOCKED);
  if (lock_after && g_mcl_future) syscall(SYS_mlockall, static_cast<unsigned long>(MCL_FUTURE | MCL_ONFAULT));
  long ret = syscall(SYS_mmap, r.addr, r.len, static_cast<unsigned long>(r.prot), flags, static_cast<long>(opened),
                     r.offset);
  int err = errno;
  if (lock_after && g_mcl_future) syscall(SYS_mlockall, static_cast<unsigned long>(MCL_FUTURE));
  if (opened >= 0) close(opened);
  if (ret != -1 && r.regular) {
    const uint64_t len = (r.len + kPageSize - 1) & ~(kPageSize - 1);
    syscall(SYS_madvise, ret, len, static_cast<unsigned long>(MADV_RANDOM));
    if (lock_after) syscall(SYS_mlock, ret, len);
    if (populate) {
      const bool write = (r.prot & PROT_WRITE) && (flags & MAP_TYPE) == MAP_PRIVATE;
      const bool add_read = !write && !(r.prot & PROT_READ) && (r.prot & (PROT_WRITE | PROT_EXEC));
      if (add_read) syscall(SYS_mprotect, ret, len, static_cast<unsigned long>(r.prot | PROT_READ));
      syscall(SYS_madvise, ret, len, static_cast<unsigned long>(write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ));
      if (add_read) syscall(SYS_mprotect, ret, len, static_cast<unsigned long>(r.prot));
    }
  }
  put_address_result(out, ret, err);
}

__attribute__((no_sanitize("address", "thread", "undefined"))) void mincore_to_chars(unsigned char* vec,
                                                                                      uint64_t pages) {
  for (uint64_t i = 0; i < pages; ++i) vec[i] = (vec[i] & 1) ? '1' : '0';
}

void do_mincore(const Request& r, LineWriter* out) {
  uint64_t pages = (r.len >> 12) + ((r.len & (kPageSize - 1)) != 0);
  unsigned char* vec = g_mincore_vec;
  uint64_t mapped = 0;
  if (pages > sizeof g_mincore_vec) {
    // Vectors beyond 1 TiB would describe more than the whole address space: the kernel
    // rejects such a length before it looks at the vector, and mapping one could land in
    // the window. Pass an unmapped vector instead; at worst the kernel answers EFAULT.
    vec = nullptr;
    if (pages <= (1ull << 40)) {
      uint64_t size = (pages + kPageSize - 1) & ~(kPageSize - 1);
      long m = syscall(SYS_mmap, 0ul, size, static_cast<unsigned long>(PROT_READ | PROT_WRITE),
                       static_cast<unsigned long>(MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE), -1l, 0ul);
      if (m != -1) {
        vec = reinterpret_cast<unsigned char*>(m);
        mapped = size;
      }
    }
  }
  long ret = syscall(SYS_mincore, r.addr, r.len, vec);
  int err = errno;
  if (ret == -1) {
    out->put_errno(err);
  } else if (vec == nullptr && pages > 0) {
    out->put("ERROR mincore succeeded without a vector");
  } else {
    mincore_to_chars(vec, pages);
    out->put(reinterpret_cast<const char*>(vec), pages);
  }
  if (mapped != 0) syscall(SYS_munmap, vec, mapped);
}

constexpr long kSysMseal = 462;            // mseal(2), Linux 6.10
constexpr long kSysProcessMadvise = 440;   // process_madvise(2), Linux 5.10
constexpr long kSysPidfdOpen = 434;        // pidfd_open(2), Linux 5.3

// `pmadvise`: process_madvise on the target's pidfd with one iovec; the bytes advised that
// it returns on success print as 0.
void do_pmadvise(const Request& r, LineWriter* out) {
  long pidfd = syscall(kSysPidfdOpen, static_cast<long>(r.target_pid), 0ul);
  if (pidfd < 0) {
    out->put_errno(errno);
    return;
  }
  iovec iov;
  iov.iov_base = reinterpret_cast<void*>(r.addr);
  iov.iov_len = r.len;
  long ret = syscall(kSysProcessMadvise, pidfd, &iov, 1ul, static_cast<unsigned long>(r.flags), 0ul);
  int err = errno;
  close(static_cast<int>(pidfd));
  put_status_result(out, ret, err);
}

void do_access(const Request& r, LineWriter* out) {
  uint64_t hash = 0;
  AccessResult res = r.op == ReqOp::kWrite ? guarded_write(r.addr, r.len, r.seed) : guarded_read(r.addr, r.len, &hash);
  if (res == AccessResult::kSegv) {
    out->put("SEGV");
  } else if (res == AccessResult::kBus) {
    out->put("SIGBUS");
  } else if (r.op == ReqOp::kWrite) {
    out->put("ok");
  } else {
    static const char kDigits[] = "0123456789abcdef";
    char text[20] = "fnv:";
    for (int i = 0; i < 16; ++i) text[4 + i] = kDigits[(hash >> (60 - 4 * i)) & 0xf];
    out->put(text, 20);
  }
}

// `fork`: the child becomes the next script process, talking to the controller over a new
// socketpair; the parent passes the controller's end up with its answer. Returns true in
// the child (which must not answer this request) with *sock switched to its new socket.
bool do_fork(int* sock, LineWriter* out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    out->put_errno(errno);
    out->end_line();
    return false;
  }
  pid_t pid = fork();
  if (pid < 0) {
    int err = errno;
    close(sv[0]);
    close(sv[1]);
    out->put_errno(err);
    out->end_line();
    return false;
  }
  if (pid == 0) {
    g_mcl_future = false;  // mm->def_flags is not inherited
    close(*sock);
    close(sv[0]);
    *sock = sv[1];
    out->set_fd(sv[1]);
    return true;
  }
  close(sv[1]);
  char line[32] = "+";
  char* end = put_dec(line + 1, static_cast<uint64_t>(pid));
  *end++ = '\n';
  bool sent = send_with_fd(*sock, line, static_cast<size_t>(end - line), sv[0]);
  close(sv[0]);
  if (!sent) _exit(0);
  return false;
}

// `setrlimit`: a `+N` limit is the process's current size (VmSize for RLIMIT_AS, VmData for
// RLIMIT_DATA) plus N, read just before the call.
void do_setrlimit(const Request& r, LineWriter* out) {
  uint64_t current = 0;
  if (r.seed & (kRlimSoftRelative | kRlimHardRelative))
    current = status_bytes(r.flags == RLIMIT_DATA ? "VmData:" : "VmSize:");
  script::RlimitValue soft{r.new_len, (r.seed & kRlimSoftInf) != 0, (r.seed & kRlimSoftRelative) != 0};
  script::RlimitValue hard{r.new_addr, (r.seed & kRlimHardInf) != 0, (r.seed & kRlimHardRelative) != 0};
  rlimit rl{script::rlimit_bytes(soft, current), script::rlimit_bytes(hard, current)};
  long ret = syscall(SYS_setrlimit, static_cast<unsigned long>(r.flags), &rl);
  put_status_result(out, ret, errno);
}

void serve(int sock) {
  LineWriter out(sock);
  Request r;
  while (true) {
    int passed_fd = -1;
    if (!read_request(sock, &r, &passed_fd)) _exit(0);
    if (r.op == ReqOp::kInstallFile) {
      if (r.file >= 0 && r.file < kMaxFiles && passed_fd >= 0) {
        if (g_files[r.file] >= 0) close(g_files[r.file]);
        g_files[r.file] = passed_fd;
      } else if (passed_fd >= 0) {
        close(passed_fd);
      }
      continue;
    }
    if (passed_fd >= 0) close(passed_fd);
    long ret = 0;
    switch (r.op) {
      case ReqOp::kMmap:
        do_mmap(r, &out);
        break;
      case ReqOp::kMunmap:
        ret = syscall(SYS_munmap, r.addr, r.len);
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMprotect:
        ret = syscall(SYS_mprotect, r.addr, r.len, static_cast<unsigned long>(r.prot));
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMadvise:
        ret = syscall(SYS_madvise, r.addr, r.len, static_cast<unsigned long>(r.flags));
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMsync:
        ret = syscall(SYS_msync, r.addr, r.len, static_cast<unsigned long>(r.flags));
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMseal:
        ret = syscall(kSysMseal, r.addr, r.len, 0ul);
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kPmadvise:
        do_pmadvise(r, &out);
        break;
      case ReqOp::kMremap:
        ret = syscall(SYS_mremap, r.addr, r.len, r.new_len, static_cast<unsigned long>(r.flags), r.new_addr);
        put_address_result(&out, ret, errno);
        break;
      case ReqOp::kMlock:
        ret = r.flags ? syscall(SYS_mlock2, r.addr, r.len, static_cast<unsigned long>(r.flags))
                      : syscall(SYS_mlock, r.addr, r.len);
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMunlock:
        ret = syscall(SYS_munlock, r.addr, r.len);
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMlockall:
        ret = syscall(SYS_mlockall, static_cast<unsigned long>(r.flags));
        if (ret == 0) {
          g_mcl_future = r.flags & MCL_FUTURE;
          g_mcl_onfault = r.flags & MCL_ONFAULT;
        }
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMunlockall:
        ret = syscall(SYS_munlockall);
        if (ret == 0) g_mcl_future = false;
        put_status_result(&out, ret, errno);
        break;
      case ReqOp::kMlocked:
        write_window_mlocked(&out);
        break;
      case ReqOp::kSetrlimit:
        do_setrlimit(r, &out);
        break;
      case ReqOp::kWrite:
      case ReqOp::kRead:
        do_access(r, &out);
        break;
      case ReqOp::kMincore:
        do_mincore(r, &out);
        break;
      case ReqOp::kMaps:
        write_window_maps(&out);
        break;
      case ReqOp::kSmaps:
        write_window_smaps(&out);
        break;
      case ReqOp::kFork:
        do_fork(&sock, &out);
        continue;  // both sides have answered (or, in the child, must not)
      case ReqOp::kExit:
        syscall(SYS_munlockall);  // nothing stays locked whatever the script did
        out.put_char('0');
        out.end_line();
        _exit(0);
      case ReqOp::kInstallFile:
        break;
      default:
        out.put("ERROR unknown request");
        break;
    }
    out.end_line();
  }
}

// Window preparation. The window must be empty, and preferably so is one page on either
// side of it, so that nothing of the runner merges with script mappings. A PROT_NONE
// anonymous reservation that a sanitizer runtime placed there (ThreadSanitizer reserves
// [0x100000000000, 0x300000000000)) is cut out of the window and its margins. Any other
// mapping inside the window belongs to the runner and makes the host run impossible; one in
// a margin is tolerated (ThreadSanitizer's metadata starts at 0x300000000000): scripts that
// keep clear of the window's last page cannot tell.
constexpr uint64_t kClearStart = script::kWindowStart - kPageSize;
constexpr uint64_t kClearEnd = script::kWindowEnd + kPageSize;

struct WindowCheck {
  bool foreign = false;  // a runner mapping inside the window
  MapsEntry first_foreign;
  int reservations = 0;  // PROT_NONE anonymous pieces to cut, clipped to the cleared range
  uint64_t cut_start[4] = {};
  uint64_t cut_end[4] = {};
};

void check_window_entry(const MapsEntry& e, void* ctx_ptr) {
  auto* ctx = static_cast<WindowCheck*>(ctx_ptr);
  if (e.start >= kClearEnd || e.end <= kClearStart) return;
  bool in_window = e.start < script::kWindowEnd && e.end > script::kWindowStart;
  if (e.name_len == 0 && std::memcmp(e.perms, "---p", 4) == 0) {
    if (ctx->reservations < 4) {
      ctx->cut_start[ctx->reservations] = e.start > kClearStart ? e.start : kClearStart;
      ctx->cut_end[ctx->reservations] = e.end < kClearEnd ? e.end : kClearEnd;
    }
    ++ctx->reservations;
  } else if (in_window && !ctx->foreign) {
    ctx->foreign = true;
    ctx->first_foreign = e;
    ctx->first_foreign.name = nullptr;
    ctx->first_foreign.name_len = 0;
  }
}

// Returns true when the window is empty; else writes "ERROR ..." to out.
bool prepare_window(LineWriter* out) {
  WindowCheck check;
  if (int err = for_each_maps_entry(check_window_entry, &check); err != 0) {
    out->put("ERROR cannot read /proc/self/maps: ");
    out->put_errno(err);
    return false;
  }
  if (!check.foreign && check.reservations > 0 && check.reservations <= 4) {
    for (int i = 0; i < check.reservations; ++i)
      syscall(SYS_munmap, check.cut_start[i], check.cut_end[i] - check.cut_start[i]);
    check = WindowCheck{};
    for_each_maps_entry(check_window_entry, &check);
  }
  if (!check.foreign && check.reservations > 0) {
    out->put("ERROR cannot remove the PROT_NONE reservations in and around the window");
    return false;
  }
  if (check.foreign) {
    out->put("ERROR the runner has its own mapping in the window: ");
    out->put_hex(check.first_foreign.start);
    out->put_char('-');
    out->put_hex(check.first_foreign.end);
    out->put(" (a legacy bottom-up mmap layout, e.g. from an unlimited RLIMIT_STACK, puts libraries there)");
    return false;
  }
  return true;
}

// RLIMIT_AS and RLIMIT_DATA would turn mmap/mremap/mprotect/brk into ENOMEM on their own
// schedule; the model assumes neither limits anything. Raise them (root can) or at least
// raise the soft limits to the hard ones.
void unlimit(int resource) {
  rlimit rl;
  if (getrlimit(resource, &rl) != 0) return;
  rlimit want{RLIM_INFINITY, RLIM_INFINITY};
  if (setrlimit(resource, &want) != 0) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(resource, &rl);
  }
}

void pin_stack_limit() {
  rlimit rl;
  if (getrlimit(RLIMIT_STACK, &rl) != 0) return;
  rlimit want = rl;
  want.rlim_cur = kStackLimit;
  if (want.rlim_max != RLIM_INFINITY && want.rlim_max < kStackLimit) want.rlim_max = kStackLimit;
  if (setrlimit(RLIMIT_STACK, &want) != 0) {
    want.rlim_max = rl.rlim_max;
    if (want.rlim_cur > want.rlim_max) want.rlim_cur = want.rlim_max;
    setrlimit(RLIMIT_STACK, &want);
  }
}

// Grows the worker's stack VMA now by more than the command loop will ever use, so that it
// never grows while a script runs: a `setrlimit as +N` compares the process's total size
// with the model's, and only the window's part may change.
__attribute__((noinline)) void pregrow_stack() {
  volatile char frame[256 << 10];
  for (size_t i = 0; i < sizeof frame; i += kPageSize) frame[i] = 0;
  frame[sizeof frame - 1] = 0;
}

// RLIMIT_MEMLOCK at Linux's default MLOCK_LIMIT, soft and hard, as the model's processes
// start (SystemConfig::memlock_rlimit): `setrlimit memlock` then answers alike.
void pin_memlock_limit() {
  constexpr uint64_t kMemlockLimit = 8ull << 20;
  rlimit want{kMemlockLimit, kMemlockLimit};
  setrlimit(RLIMIT_MEMLOCK, &want);
}

}  // namespace

void worker_main(int fd) {
  // Descriptors inherited from the caller (including other runners' sockets) must not keep
  // those sockets open.
  if (fd != 3) {
    if (dup2(fd, 3) < 0) _exit(1);
    close(fd);
    fd = 3;
  }
  syscall(SYS_close_range, 4u, ~0u, 0u);
  prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);

  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction ign;
  std::memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  sigaction(SIGCHLD, &ign, nullptr);  // children of workers are reaped by the kernel
  install_fault_handlers();

  pin_stack_limit();
  pin_memlock_limit();
  pregrow_stack();
  unlimit(RLIMIT_AS);
  unlimit(RLIMIT_DATA);
  prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
  for (int& f : g_files) f = -1;

  LineWriter out(fd);
  if (!prepare_window(&out)) {
    out.end_line();
    _exit(1);
  }
  out.put("ready");
  out.end_line();
  serve(fd);
  _exit(0);
}

}  // namespace mirrormm::host
