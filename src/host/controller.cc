// host::run(): the controller side of the host runner (see host.h and protocol.h).
//
// The controller owns:
//   - one Worker per script process ever created (index = process number - 1), each with
//     its socket; a worker is live until its process exits or its worker fails;
//   - the files: memfds (memfd_create) and regular files, created here, resized here
//     (ftruncate), and passed to every live worker (kInstallFile) when created. Workers
//     forked later inherit their parent's table, so every process can map every file, as
//     the spec requires. Regular files live in a private directory on a disk file system
//     (never tmpfs: /tmp, else /var/tmp, else the current directory), each unlinked right
//     after it is created and the directory removed when the run ends; their descriptors
//     read with POSIX_FADV_RANDOM (no readahead), and fsync and pread run here.
// Commands run strictly one at a time: send a request, wait for its answer line.
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <linux/magic.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <vector>

#include "host/format.h"
#include "host/protocol.h"
#include "host/fdpass.h"
#include "mirrormm/host.h"

namespace mirrormm::host {
namespace {

// How long a worker may take to answer one request before it is killed. Commands of
// generated scripts take milliseconds; the limit exists so that the runner never hangs.
constexpr int kReplyTimeoutMs = 120 * 1000;

constexpr unsigned kMfdExec = 0x10;  // MFD_EXEC (6.3+): executable memfd, no warning

struct Worker {
  int fd = -1;
  pid_t pid = -1;
  bool direct_child = false;  // forked by the controller (process 1): reaped here
  bool live = false;
  std::string pending;        // bytes received after the last answer line (none expected)
};

struct File {
  int index = -1;
  int fd = -1;
  bool regular = false;  // a regular file on disk (else a memfd)
  // Pages where a resize zeroed a partial block (ext4 leaves such a page cached but not
  // uptodate when it was not cached): the reads settle_reads waits for never end there.
  std::set<uint64_t> zeroed;
};

std::string errno_token(int err) {
  char buf[32];
  return std::string(buf, put_errno(buf, err));
}

bool executable(const std::string& path) { return !path.empty() && access(path.c_str(), X_OK) == 0; }

// The worker program (mirrormm-host-worker), looked up in this order: $MIRRORMM_HOST_WORKER,
// the directory of the running program, the installed layout relative to that directory
// (PREFIX/bin/mirrormm runs PREFIX/libexec/mirrormm/mirrormm-host-worker), the build tree
// this library was built in. Empty with *error when none is executable.
std::string worker_program(std::string* error) {
  if (const char* env = std::getenv("MIRRORMM_HOST_WORKER"); env && *env) {
    if (executable(env)) return env;
    *error = std::string("host runner: MIRRORMM_HOST_WORKER=") + env + " is not an executable program";
    return {};
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir.resize(dir.rfind('/') + 1);
    if (std::string p = dir + "mirrormm-host-worker"; executable(p)) return p;
    if (std::string p = dir + MIRRORMM_HOST_WORKER_INSTALLED; executable(p)) return p;
  }
  if (executable(MIRRORMM_HOST_WORKER_PATH)) return MIRRORMM_HOST_WORKER_PATH;
  *error = "host runner: cannot find mirrormm-host-worker (next to this program, at " MIRRORMM_HOST_WORKER_INSTALLED
           " from it, at " MIRRORMM_HOST_WORKER_PATH
           ", or named by MIRRORMM_HOST_WORKER)";
  return {};
}

class Controller {
 public:
  ~Controller() { shutdown(); }

  // Starts process 1's worker (fork, then exec of the worker program with its socket as
  // descriptor 3) and waits for its "ready". False with *error on failure.
  bool start(std::string* error);

  std::string execute(const script::Command& c);

  // Ends every live worker (kExit, then waits for its socket to close) and closes files.
  void shutdown();

  const std::string& first_error() const { return first_error_; }

 private:
  std::string execute_in(Worker& w, uint64_t number, const script::Command& c);
  std::string memfd(const script::Command& c);
  std::string regular_file(const script::Command& c);
  std::string truncate(const script::Command& c);
  std::string fsync(const script::Command& c);
  std::string pread(const script::Command& c);
  // Passes a new file to every live worker.
  void install_file(const File& f);
  // Waits until no read of a regular file's page that a command started (readahead of an
  // executable mapping, MADV_WILLNEED) is still in flight, see settle_reads below.
  void settle_reads();
  // Records the page a resize of regular file f from old_size to new_size zeroed, if any.
  void note_resize(File& f, uint64_t old_size, uint64_t new_size);
  // The private directory for regular files, made on first use; empty with *err set when
  // none can be made.
  const std::string& file_dir(int* err);

  // Sends req (with fd passed if fd >= 0). False if the worker is gone.
  bool send_request(Worker& w, const Request& req, int fd);
  // Reads one answer line (without '\n'); a passed descriptor lands in *passed_fd.
  // On EOF, error or timeout returns false with *why set.
  bool read_line(Worker& w, std::string* line, int* passed_fd, std::string* why);
  // Waits (bounded) until the worker's socket reports EOF, i.e. the process has released
  // its descriptors, which it does after its address space.
  void wait_for_eof(Worker& w);
  // The worker stopped answering or died: kill it if needed and remember the failure.
  std::string fail(Worker& w, uint64_t number, const std::string& why);
  void close_worker(Worker& w);

  std::vector<Worker> workers_;
  std::map<std::string, File> files_;
  std::string dir_;  // the regular files' directory, once made
  std::string first_error_;
};

bool Controller::start(std::string* error) {
  const std::string program = worker_program(error);
  if (program.empty()) return false;
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
    *error = "host runner: socketpair: " + errno_token(errno);
    return false;
  }
  // Everything the child needs is prepared before fork(): the controller may have threads,
  // so the child only makes async-signal-safe calls until execve.
  char fd_arg[] = "3";
  char* argv[] = {const_cast<char*>(program.c_str()), fd_arg, nullptr};
  // execve lays the new address space out by RLIMIT_STACK (an unlimited one gives the legacy
  // bottom-up layout, with libraries in the window): the worker starts with Linux's default
  // 8 MiB, raising the hard limit if needed (root can), else as close as the hard limit lets.
  constexpr rlim_t kStackLimit = 8ull << 20;
  rlimit stack{kStackLimit, kStackLimit};
  rlimit stack_fallback = stack;
  if (getrlimit(RLIMIT_STACK, &stack_fallback) == 0) {
    if (stack_fallback.rlim_max == RLIM_INFINITY || stack_fallback.rlim_max > kStackLimit) {
      stack.rlim_max = stack_fallback.rlim_max;
    }
    stack_fallback.rlim_cur = std::min<rlim_t>(kStackLimit, stack_fallback.rlim_max);
  }
  pid_t pid = fork();
  if (pid < 0) {
    *error = "host runner: fork: " + errno_token(errno);
    close(sv[0]);
    close(sv[1]);
    return false;
  }
  if (pid == 0) {
    // The worker's socket becomes descriptor 3 without FD_CLOEXEC (dup2 clears it; when it
    // already is 3, clear the flag instead).
    if ((sv[1] == 3 ? fcntl(3, F_SETFD, 0) : dup2(sv[1], 3)) < 0) _exit(127);
    if (setrlimit(RLIMIT_STACK, &stack) != 0) setrlimit(RLIMIT_STACK, &stack_fallback);
    execve(program.c_str(), argv, environ);
    char line[64] = "ERROR execve of the worker program: ";
    char* end = put_errno(line + std::strlen(line), errno);
    *end++ = '\n';
    ssize_t n = write(3, line, static_cast<size_t>(end - line));
    (void)n;
    _exit(127);
  }
  close(sv[1]);
  Worker w;
  w.fd = sv[0];
  w.pid = pid;
  w.direct_child = true;
  w.live = true;
  workers_.push_back(std::move(w));
  std::string line, why;
  int passed = -1;
  if (!read_line(workers_[0], &line, &passed, &why) || line != "ready") {
    *error = "host runner: worker did not start: " + (line.empty() ? why : line);
    if (passed >= 0) close(passed);
    fail(workers_[0], 1, *error);
    return false;
  }
  return true;
}

std::string Controller::execute(const script::Command& c) {
  // Model-only (format version 2) commands have nothing to run on the host: no request.
  if (script::model_only(c)) return "SKIP";
  if (c.pid == 0 || c.pid > workers_.size() || !workers_[c.pid - 1].live) return "-ESRCH";
  if (!host_safe(c)) return "UNSAFE";
  switch (c.op) {
    case script::Op::kMemfd: return memfd(c);
    case script::Op::kFile: return regular_file(c);
    case script::Op::kTruncate: return truncate(c);
    case script::Op::kFsync: return fsync(c);
    case script::Op::kPread: return pread(c);
    default: return execute_in(workers_[c.pid - 1], c.pid, c);
  }
}

// Pages read from the disk by readahead come into the page cache before their I/O ends and
// count as resident (mincore: uptodate) only after it: right after a command that started
// such reads, the host's answer would depend on the disk's speed. The model reads
// synchronously, so the runner waits for those reads after every command: until every
// cached page of every regular file is uptodate, except the pages a resize zeroed that are
// cached but not uptodate (ext4's zeroing of a partial block leaves such a page for good).
// The wait polls once a millisecond; it gives up after 2 s, or after 100 polls in a row that
// saw nothing change (a page it cannot account for).
namespace {

constexpr long kSysCachestat = 451;  // cachestat(2), Linux 6.5
struct CachestatRange {
  uint64_t off, len;
};
struct Cachestat {
  uint64_t nr_cache, nr_dirty, nr_writeback, nr_evicted, nr_recently_evicted;
};

// Cached pages of fd's [off, off+len) (all, and uptodate ones), found by halving the range
// where cachestat sees cached pages, then mincore of a read-only mapping of the piece.
void count_cached(int fd, uint64_t off, uint64_t len, uint64_t* cached, uint64_t* uptodate) {
  CachestatRange r{off, len};
  Cachestat cs{};
  if (syscall(kSysCachestat, fd, &r, &cs, 0) != 0 || cs.nr_cache == 0) return;
  constexpr uint64_t kPiece = 64ull << 20;
  if (len > kPiece) {
    const uint64_t half = (len / 2 + 4095) & ~uint64_t{4095};
    count_cached(fd, off, half, cached, uptodate);
    count_cached(fd, off + half, len - half, cached, uptodate);
    return;
  }
  *cached += cs.nr_cache;
  void* m = mmap(nullptr, len, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(off));
  if (m == MAP_FAILED) return;
  static std::vector<unsigned char> vec;
  vec.resize((len + 4095) / 4096);
  if (mincore(m, len, vec.data()) == 0)
    for (unsigned char v : vec) *uptodate += v & 1;
  munmap(m, len);
}

// Whether page idx of fd is in the page cache but not uptodate.
bool cached_not_uptodate(int fd, uint64_t idx) {
  CachestatRange r{idx * 4096, 4096};
  Cachestat cs{};
  if (syscall(kSysCachestat, fd, &r, &cs, 0) != 0 || cs.nr_cache == 0) return false;
  void* m = mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(idx * 4096));
  if (m == MAP_FAILED) return false;
  unsigned char v = 0;
  const bool absent = mincore(m, 4096, &v) == 0 && !(v & 1);
  munmap(m, 4096);
  return absent;
}

}  // namespace

void Controller::note_resize(File& f, uint64_t old_size, uint64_t new_size) {
  if (new_size % 4096 && new_size <= old_size) f.zeroed.insert(new_size / 4096);
  if (new_size > old_size && old_size % 4096) f.zeroed.insert(old_size / 4096);
}

void Controller::settle_reads() {
  auto snapshot = [&](uint64_t* cached, uint64_t* uptodate) {
    *cached = *uptodate = 0;
    for (auto& [name, f] : files_) {
      if (!f.regular) continue;
      struct stat st;
      if (fstat(f.fd, &st) != 0 || st.st_size <= 0) continue;
      count_cached(f.fd, 0, (static_cast<uint64_t>(st.st_size) + 4095) & ~uint64_t{4095}, cached, uptodate);
    }
  };
  uint64_t cached = 0, uptodate = 0;
  snapshot(&cached, &uptodate);
  if (uptodate >= cached) return;
  uint64_t stuck = 0;  // zeroed pages cached but not uptodate: no read is under way there
  for (auto& [name, f] : files_)
    for (uint64_t idx : f.zeroed) stuck += f.regular && cached_not_uptodate(f.fd, idx);
  int unchanged = 0;  // polls in a row that saw no change
  for (int i = 0; i < 2000 && uptodate + stuck < cached && unchanged < 100; ++i) {
    usleep(1000);
    uint64_t c2 = 0, u2 = 0;
    snapshot(&c2, &u2);
    unchanged = (u2 == uptodate && c2 == cached) ? unchanged + 1 : 0;
    cached = c2;
    uptodate = u2;
  }
}

std::string Controller::execute_in(Worker& w, uint64_t number, const script::Command& c) {
  Request req;
  req.addr = c.addr;
  req.len = c.len;
  switch (c.op) {
    case script::Op::kMmap:
      req.op = ReqOp::kMmap;
      req.prot = c.prot;
      req.flags = static_cast<uint32_t>(script::linux_map_flags(c.map_flags));
      req.offset = c.offset;
      if (c.has_file && !(c.map_flags & script::kMapAnon)) {
        // A NAME no memfd created is a bad descriptor: the worker passes -1 and the kernel
        // answers in its own order of checks (EBADF, or EINVAL first for a bad offset).
        auto it = files_.find(c.name);
        if (it != files_.end()) {
          req.file = it->second.index;
          req.regular = it->second.regular ? 1 : 0;
        }
        req.read_only = (c.map_flags & script::kMapRofd) ? 1 : 0;
      }
      break;
    case script::Op::kMunmap: req.op = ReqOp::kMunmap; break;
    case script::Op::kMprotect:
      req.op = ReqOp::kMprotect;
      req.prot = c.prot;
      break;
    case script::Op::kMadvise:
      req.op = ReqOp::kMadvise;
      req.flags = static_cast<uint32_t>(script::linux_madvise(c.advice));
      break;
    case script::Op::kMremap:
      req.op = ReqOp::kMremap;
      req.new_len = c.new_len;
      req.flags = static_cast<uint32_t>(script::linux_mremap_flags(c.remap_flags));
      req.new_addr = c.has_new_addr ? c.new_addr : 0;
      break;
    case script::Op::kWrite:
      req.op = ReqOp::kWrite;
      req.seed = c.seed;
      break;
    case script::Op::kRead: req.op = ReqOp::kRead; break;
    case script::Op::kMincore: req.op = ReqOp::kMincore; break;
    case script::Op::kMaps: req.op = ReqOp::kMaps; break;
    case script::Op::kSmaps: req.op = ReqOp::kSmaps; break;
    case script::Op::kFork: req.op = ReqOp::kFork; break;
    case script::Op::kExit: req.op = ReqOp::kExit; break;
    case script::Op::kMsync:
      req.op = ReqOp::kMsync;
      req.flags = static_cast<uint32_t>(script::linux_msync_flags(c.msync_flags));
      break;
    case script::Op::kMlock:
      req.op = ReqOp::kMlock;
      req.flags = c.mlock_onfault ? 1 : 0;  // MLOCK_ONFAULT
      break;
    case script::Op::kMunlock: req.op = ReqOp::kMunlock; break;
    case script::Op::kMlockall:
      req.op = ReqOp::kMlockall;
      req.flags = static_cast<uint32_t>(script::linux_mlockall_flags(c.mlockall_flags));
      break;
    case script::Op::kMunlockall: req.op = ReqOp::kMunlockall; break;
    case script::Op::kMlocked: req.op = ReqOp::kMlocked; break;
    case script::Op::kSetrlimit:
      req.op = ReqOp::kSetrlimit;
      req.flags = script::linux_rlimit(c.rlimit);
      req.new_len = c.rlim_soft.value;
      req.new_addr = c.rlim_hard.value;
      req.seed = (c.rlim_soft.relative ? kRlimSoftRelative : 0) | (c.rlim_hard.relative ? kRlimHardRelative : 0) |
                 (c.rlim_soft.infinite ? kRlimSoftInf : 0) | (c.rlim_hard.infinite ? kRlimHardInf : 0);
      break;
    case script::Op::kMseal: req.op = ReqOp::kMseal; break;
    case script::Op::kPmadvise:
      // The advised process must exist (its pidfd is opened by the caller's worker).
      if (c.target == 0 || c.target > workers_.size() || !workers_[c.target - 1].live) return "-ESRCH";
      req.op = ReqOp::kPmadvise;
      req.flags = static_cast<uint32_t>(script::linux_madvise(c.advice));
      req.target_pid = workers_[c.target - 1].pid;
      break;
    case script::Op::kMemfd:
    case script::Op::kTruncate:
    case script::Op::kFile:
    case script::Op::kFsync:
    case script::Op::kPread: return "ERROR not a worker command";
  }
  if (!send_request(w, req, -1))
    return fail(w, number, "cannot send to the worker of process " + std::to_string(number));
  std::string line, why;
  int passed = -1;
  if (!read_line(w, &line, &passed, &why)) return fail(w, number, why);
  if (c.op == script::Op::kFork) {
    if (line.empty() || line[0] != '+') {
      if (passed >= 0) close(passed);
      return line;  // fork or socketpair failed in the worker: -E...
    }
    if (passed < 0) return fail(w, number, "fork answer without a socket");
    Worker child;
    child.fd = passed;
    child.pid = static_cast<pid_t>(std::strtol(line.c_str() + 1, nullptr, 10));
    child.live = true;
    workers_.push_back(std::move(child));
    return std::to_string(workers_.size());
  }
  if (passed >= 0) close(passed);
  if (c.op == script::Op::kExit) {
    wait_for_eof(workers_[number - 1]);
    close_worker(workers_[number - 1]);
  }
  settle_reads();
  return line;
}

void Controller::install_file(const File& f) {
  Request req;
  req.op = ReqOp::kInstallFile;
  req.file = f.index;
  for (size_t i = 0; i < workers_.size(); ++i) {
    // A worker that cannot take the file is found out by its next command.
    if (workers_[i].live) send_request(workers_[i], req, f.fd);
  }
}

std::string Controller::memfd(const script::Command& c) {
  auto it = files_.find(c.name);
  if (it == files_.end()) {
    if (files_.size() >= static_cast<size_t>(kMaxFiles)) return "-EMFILE";
    int fd = static_cast<int>(syscall(SYS_memfd_create, c.name.c_str(), MFD_CLOEXEC | kMfdExec));
    // Kernels before 6.3 do not know MFD_EXEC (EINVAL); vm.memfd_noexec=2 refuses it (EACCES).
    if (fd < 0 && (errno == EINVAL || errno == EACCES))
      fd = static_cast<int>(syscall(SYS_memfd_create, c.name.c_str(), MFD_CLOEXEC));
    if (fd < 0) return errno_token(errno);
    File f{static_cast<int>(files_.size()), fd, false, {}};
    it = files_.emplace(c.name, f).first;
    install_file(f);
  } else if (it->second.regular) {
    return "-EEXIST";  // one namespace: the name is a regular file's
  }
  if (syscall(SYS_ftruncate, it->second.fd, c.size) != 0) return errno_token(errno);
  return "0";
}

// Whether the file system holding path is a disk one (not tmpfs or ramfs, whose files are
// shared memory).
bool on_disk_fs(const char* path) {
  struct statfs fs;
  if (statfs(path, &fs) != 0) return false;
  return fs.f_type != TMPFS_MAGIC && fs.f_type != RAMFS_MAGIC;
}

const std::string& Controller::file_dir(int* err) {
  if (!dir_.empty()) return dir_;
  *err = ENOENT;
  for (const char* base : {"/tmp", "/var/tmp", "."}) {
    if (!on_disk_fs(base)) continue;
    std::string tmpl = std::string(base) + "/mirrormm-host-XXXXXX";
    if (mkdtemp(tmpl.data())) {
      dir_ = tmpl;
      break;
    }
    *err = errno;
  }
  return dir_;
}

std::string Controller::regular_file(const script::Command& c) {
  auto it = files_.find(c.name);
  if (it == files_.end()) {
    if (files_.size() >= static_cast<size_t>(kMaxFiles)) return "-EMFILE";
    int err = 0;
    const std::string& dir = file_dir(&err);
    if (dir.empty()) return errno_token(err);
    // The name on disk is `=NAME` (a script NAME may be `.` or `..`), which the worker's
    // `maps` turns back into NAME; the file is unlinked at once: its descriptor keeps it,
    // and nothing stays behind after the run.
    const int index = static_cast<int>(files_.size());
    const std::string path = dir + "/=" + c.name;
    int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0) return errno_token(errno);
    unlink(path.c_str());
    posix_fadvise(fd, 0, 0, POSIX_FADV_RANDOM);
    File f{index, fd, true, {}};
    it = files_.emplace(c.name, f).first;
    install_file(f);
  } else if (!it->second.regular) {
    return "-EEXIST";  // one namespace: the name is a memfd's
  }
  struct stat st;
  const uint64_t old_size = fstat(it->second.fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  if (syscall(SYS_ftruncate, it->second.fd, c.size) != 0) return errno_token(errno);
  note_resize(it->second, old_size, c.size);
  return "0";
}

std::string Controller::fsync(const script::Command& c) {
  auto it = files_.find(c.name);
  if (it == files_.end()) return "-EBADF";
  if (::fsync(it->second.fd) != 0) return errno_token(errno);
  return "0";
}

std::string Controller::pread(const script::Command& c) {
  auto it = files_.find(c.name);
  if (it == files_.end()) return "-EBADF";
  std::vector<unsigned char> buf(c.len);
  ssize_t n = syscall(SYS_pread64, it->second.fd, buf.data(), c.len, c.offset);
  if (n < 0) return errno_token(errno);
  uint64_t h = script::kFnvOffset;
  for (ssize_t i = 0; i < n; ++i) h = (h ^ buf[static_cast<size_t>(i)]) * script::kFnvPrime;
  char text[21] = "fnv:";
  static const char kDigits[] = "0123456789abcdef";
  for (int i = 0; i < 16; ++i) text[4 + i] = kDigits[(h >> (60 - 4 * i)) & 0xf];
  return std::string(text, 20);
}

std::string Controller::truncate(const script::Command& c) {
  auto it = files_.find(c.name);
  if (it == files_.end()) return "-ENOENT";
  struct stat st;
  const uint64_t old_size = fstat(it->second.fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  if (syscall(SYS_ftruncate, it->second.fd, c.size) != 0) return errno_token(errno);
  if (it->second.regular) note_resize(it->second, old_size, c.size);
  return "0";
}

bool Controller::send_request(Worker& w, const Request& req, int fd) {
  return send_all_with_fd(w.fd, &req, sizeof req, fd);
}

bool Controller::read_line(Worker& w, std::string* line, int* passed_fd, std::string* why) {
  line->clear();
  *passed_fd = -1;
  std::string& buf = w.pending;
  char chunk[65536];
  while (true) {
    size_t nl = buf.find('\n');
    if (nl != std::string::npos) {
      line->assign(buf, 0, nl);
      buf.erase(0, nl + 1);
      return true;
    }
    pollfd p{w.fd, POLLIN, 0};
    int r = poll(&p, 1, kReplyTimeoutMs);
    if (r < 0 && errno == EINTR) continue;
    if (r == 0) {
      *why = "no answer within " + std::to_string(kReplyTimeoutMs / 1000) + " s";
      return false;
    }
    if (r < 0) {
      *why = "poll: " + errno_token(errno);
      return false;
    }
    ssize_t n = recv_with_fd(w.fd, chunk, sizeof chunk, passed_fd);
    if (n == 0) {
      *why = "the worker exited unexpectedly";
      return false;
    }
    if (n < 0) {
      *why = "recvmsg: " + errno_token(errno);
      return false;
    }
    buf.append(chunk, static_cast<size_t>(n));
  }
}

void Controller::wait_for_eof(Worker& w) {
  char chunk[256];
  while (true) {
    pollfd p{w.fd, POLLIN, 0};
    int r = poll(&p, 1, kReplyTimeoutMs);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    ssize_t n = recv(w.fd, chunk, sizeof chunk, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
  }
  if (w.pid > 0) kill(w.pid, SIGKILL);
}

void Controller::close_worker(Worker& w) {
  if (w.fd >= 0) close(w.fd);
  w.fd = -1;
  w.live = false;
  if (w.direct_child && w.pid > 0) {
    while (waitpid(w.pid, nullptr, 0) < 0 && errno == EINTR) {
    }
    w.pid = -1;
  }
}

std::string Controller::fail(Worker& w, uint64_t number, const std::string& why) {
  std::string message = "process " + std::to_string(number) + ": " + why;
  if (first_error_.empty()) first_error_ = message;
  if (w.pid > 0) kill(w.pid, SIGKILL);
  close_worker(w);
  return "ERROR " + message;
}

void Controller::shutdown() {
  Request req;
  req.op = ReqOp::kExit;
  for (Worker& w : workers_) {
    if (!w.live) continue;
    std::string line, why;
    int passed = -1;
    if (send_request(w, req, -1) && read_line(w, &line, &passed, &why)) {
      wait_for_eof(w);
    } else if (w.pid > 0) {
      kill(w.pid, SIGKILL);
    }
    if (passed >= 0) close(passed);
    close_worker(w);
  }
  for (auto& [name, f] : files_) close(f.fd);
  files_.clear();
  if (!dir_.empty()) rmdir(dir_.c_str());
  dir_.clear();
}

}  // namespace

bool run(const script::Script& s, std::vector<std::string>* out, std::string* error) {
  out->clear();
  Controller controller;
  std::string start_error;
  if (!controller.start(&start_error)) {
    if (error) *error = start_error;
    return false;
  }
  out->reserve(s.commands.size());
  for (const script::Command& c : s.commands) out->push_back(controller.execute(c));
  controller.shutdown();
  if (!controller.first_error().empty()) {
    if (error) *error = controller.first_error();
    return false;
  }
  return true;
}

}  // namespace mirrormm::host
