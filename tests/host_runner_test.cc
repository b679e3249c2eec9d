// The host runner: small scripts with exactly known outputs on Linux 6.x x86-64.
#include <dirent.h>
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "mirrormm/host.h"
#include "mirrormm/script.h"
#include "support/watchdog.h"

namespace mirrormm::host {
namespace {

// A hang fails the test within this limit with a message (tests/support/watchdog.h).
const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(120)));

using ::testing::ElementsAre;

std::vector<std::string> run_text(const std::string& text) {
  std::string error;
  std::optional<script::Script> s = script::parse(text, "t.mms", &error);
  EXPECT_TRUE(s.has_value()) << error;
  if (!s) return {};
  std::vector<std::string> out;
  EXPECT_TRUE(run(*s, &out, &error)) << error;
  EXPECT_EQ(out.size(), s->commands.size());
  return out;
}

// The spec's pattern and FNV-1a, written out again rather than taken from script.h.
uint64_t expected_fnv(uint64_t addr, uint64_t len, uint64_t seed) {
  uint64_t h = 14695981039346656037ull;
  for (uint64_t a = addr; a < addr + len; ++a) {
    uint64_t x = (a ^ (seed << 32)) * 11400714819323198485ull;
    h ^= x >> 56;
    h *= 1099511628211ull;
  }
  return h;
}

// FNV-1a of n zero bytes.
uint64_t zeros_fnv(uint64_t n) {
  uint64_t h = 14695981039346656037ull;
  for (uint64_t i = 0; i < n; ++i) h *= 1099511628211ull;
  return h;
}

std::string fnv_token(uint64_t h) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "fnv:%016" PRIx64, h);
  return buf;
}

TEST(HostRunner, MmapFixedAndMapsOfPrivateAndSharedAnon) {
  auto out = run_text(
      "maps\n"
      "mmap 0x200000000000 16K rw- private+anon+fixed\n"
      "mmap 0x200000004000 8K r-- shared+anon+noreplace\n"
      "mmap 0x200000006000 4K rw- private+anon+fixed\n"
      "maps\n"
      "munmap 0x200000005000 4K\n"
      "maps\n");
  EXPECT_THAT(out, ElementsAre("none", "0x200000000000", "0x200000004000", "0x200000006000",
                               "200000000000-200000004000 rw-p; 200000004000-200000006000 r--s 0 shmem; "
                               "200000006000-200000007000 rw-p",
                               "0", "200000000000-200000004000 rw-p; 200000004000-200000005000 r--s 0 shmem; "
                                    "200000006000-200000007000 rw-p"));
}

TEST(HostRunner, SharedAnonSplitShowsItsOffset) {
  auto out = run_text(
      "mmap 0x200000000000 16K rw- shared+anon+fixed\n"
      "mprotect 0x200000001000 4K r--\n"
      "maps\n");
  EXPECT_THAT(out, ElementsAre("0x200000000000", "0",
                               "200000000000-200000001000 rw-s 0 shmem; 200000001000-200000002000 r--s 1000 shmem; "
                               "200000002000-200000004000 rw-s 2000 shmem"));
}

TEST(HostRunner, FaultsAreSegv) {
  auto out = run_text(
      "mmap 0x200000000000 8K --- private+anon+fixed\n"
      "read 0x200000000000 1\n"
      "write 0x200000001000 1 0\n"
      "mprotect 0x200000000000 8K r--\n"
      "read 0x200000000000 1\n"
      "write 0x200000000000 1 0\n"
      "read 0x200000002000 1\n"                 // unmapped
      "read 0x7ffffffff000 1\n"                 // TASK_SIZE
      "write 0xfffffffffffff000 1 0\n");        // kernel address
  EXPECT_THAT(out, ElementsAre("0x200000000000", "SEGV", "SEGV", "0", fnv_token(zeros_fnv(1)),
                               "SEGV", "SEGV", "SEGV", "SEGV"));
}

TEST(HostRunner, WriteReadRoundTrip) {
  const uint64_t base = 0x200000000000ull;
  auto out = run_text(
      "mmap 0x200000000000 12K rw- private+anon+fixed\n"
      "read 0x200000000000 0\n"
      "read 0x200000000000 12K\n"
      "write 0x200000000ff0 0x2010 77\n"
      "read 0x200000000ff0 0x2010\n"
      "read 0x200000000000 12K\n"
      "write 0x200000002ff8 16 5\n"  // runs off the end: 8 bytes written, then SEGV
      "read 0x200000002ff8 8\n");
  ASSERT_EQ(out.size(), 8u);
  EXPECT_EQ(out[1], "fnv:cbf29ce484222325");
  EXPECT_EQ(out[2], fnv_token(zeros_fnv(12288)));  // fresh anonymous memory reads as zeros
  EXPECT_EQ(out[3], "ok");
  EXPECT_EQ(out[4], fnv_token(expected_fnv(base + 0xff0, 0x2010, 77)));
  EXPECT_NE(out[5], out[2]);
  EXPECT_EQ(out[6], "SEGV");
  EXPECT_EQ(out[7], fnv_token(expected_fnv(base + 0x2ff8, 8, 5)));
}

TEST(HostRunner, ForkNumberingExitAndEsrch) {
  auto out = run_text(
      "mmap 0x200000000000 4K rw- private+anon+fixed\n"
      "write 0x200000000000 4K 1\n"
      "fork\n"
      "@2 fork\n"
      "fork\n"
      "@3 read 0x200000000000 4K\n"
      "@2 write 0x200000000000 4K 2\n"  // copy on write: the others keep their bytes
      "read 0x200000000000 4K\n"
      "@2 read 0x200000000000 4K\n"
      "@3 exit\n"
      "@3 maps\n"
      "@5 maps\n"
      "@0 maps\n"
      "exit\n"
      "maps\n"
      "@2 maps\n"
      "@4 fork\n");
  uint64_t base = 0x200000000000ull;
  std::string one = fnv_token(expected_fnv(base, 4096, 1));
  EXPECT_THAT(out, ElementsAre("0x200000000000", "ok", "2", "3", "4", one, "ok", one,
                               fnv_token(expected_fnv(base, 4096, 2)), "0", "-ESRCH", "-ESRCH", "-ESRCH", "0",
                               "-ESRCH", "200000000000-200000001000 rw-p", "5"));
}

TEST(HostRunner, Mincore) {
  auto out = run_text(
      "mmap 0x200000000000 16K rw- private+anon+fixed\n"
      "write 0x200000000000 1 0\n"
      "write 0x200000002000 1 0\n"
      "mincore 0x200000000000 16K\n"
      "mincore 0x200000000000 0\n"
      "mincore 0x200000000000 0x2001\n"
      "mincore 0x200000000001 4K\n"
      "mincore 0x200000004000 4K\n"
      "mincore 0x200000000000 0x800000000000\n");
  EXPECT_THAT(out, ElementsAre("0x200000000000", "ok", "ok", "1010", "", "101", "-EINVAL", "-ENOMEM", "-ENOMEM"));
}

TEST(HostRunner, LargeMincoreAndLongMaps) {
  // 70000 pages need a vector beyond the worker's static one; 600 alternating pieces make
  // maps and smaps lines far longer than the worker's output buffer.
  std::string text = "mmap 0x200000000000 70000K --- private+anon+fixed+noreserve\nmincore 0x200000000000 70000K\n";
  for (int i = 0; i < 600; i += 2) {
    char line[96];
    std::snprintf(line, sizeof line, "mprotect 0x%" PRIx64 " 4K r--\n",
                  uint64_t{0x200000000000} + uint64_t{4096} * static_cast<uint64_t>(i));
    text += line;
  }
  text += "maps\n";
  text += "smaps\n";
  auto out = run_text(text);
  ASSERT_EQ(out.size(), 304u);
  // smaps: one entry per VMA too, far longer still; nothing of the reservation is resident.
  const std::string& smaps = out.back();
  size_t smaps_entries = 1;
  for (size_t i = smaps.find("; "); i != std::string::npos; i = smaps.find("; ", i + 1)) ++smaps_entries;
  EXPECT_EQ(smaps_entries, 600u);
  EXPECT_EQ(smaps.substr(smaps.size() - 120),
            "; 200000257000-20000445c000 Rss=0 Pss=0 Shared_Clean=0 Shared_Dirty=0 Private_Clean=0 Private_Dirty=0 "
            "Anonymous=0 Swap=0");
  out.pop_back();
  EXPECT_EQ(out[1], std::string(17500, '0'));
  const std::string& maps = out.back();
  size_t entries = 1;
  for (size_t i = maps.find("; "); i != std::string::npos; i = maps.find("; ", i + 1)) ++entries;
  EXPECT_EQ(entries, 600u);  // 300 r-- pieces, 299 --- between them, the --- tail
  EXPECT_EQ(maps.rfind("200000000000-200000001000 r--p; 200000001000-200000002000 ---p; ", 0), 0u);
  EXPECT_EQ(maps.substr(maps.size() - 32), "; 200000257000-20000445c000 ---p");
}

TEST(HostRunner, SmapsOfForkedProcesses) {
  // The zero page counts nowhere; after fork and a copy-on-write in the child, one page is
  // still shared (Pss halved) and each side has one private dirty page.
  auto out = run_text(
      "mmap 0x200000000000 16K rw- private+anon+fixed\n"
      "write 0x200000000000 8K 1\n"
      "read 0x200000002000 4K\n"
      "fork\n"
      "@2 write 0x200000000000 4K 2\n"
      "smaps\n"
      "@2 smaps\n"
      "@3 smaps\n"
      "@2 exit\n"
      "@2 smaps\n");
  ASSERT_EQ(out.size(), 10u);
  const std::string line =
      "200000000000-200000004000 Rss=8 Pss=6 Shared_Clean=0 Shared_Dirty=4 Private_Clean=0 Private_Dirty=4 "
      "Anonymous=8 Swap=0";
  EXPECT_EQ(out[5], line);
  EXPECT_EQ(out[6], line);
  EXPECT_EQ(out[7], "-ESRCH");
  EXPECT_EQ(out[9], "-ESRCH");
}

TEST(HostRunner, MemfdMappingsAcrossProcesses) {
  auto out = run_text(
      "fork\n"                                                   // 2 exists before the file
      "memfd buf 8K\n"
      "mmap 0x200000000000 8K rw- shared+fixed buf 0\n"
      "mmap 0x200000004000 4K r-- private+fixed buf 0x1000\n"
      "maps\n"
      "write 0x200000000000 8K 9\n"
      "@2 mmap 0x200000010000 8K r-- shared+fixed+rofd buf 0\n"
      "@2 read 0x200000010000 8K\n"
      "@2 maps\n"
      "truncate buf 4K\n"
      "read 0x200000001000 1\n"
      "@2 read 0x200000010fff 2\n"
      "@2 mmap 0x200000020000 4K rw- shared+fixed+rofd buf 0\n"
      "mmap 0x200000030000 4K rw- shared+fixed nosuch 0\n"
      "mmap 0x200000030000 4K rw- shared+fixed nosuch 1\n"  // the offset is checked before the fd
      "truncate nosuch 0\n"
      "mmap 0x200000030000 4K rw- shared+fixed buf 0xfffffffffffff000\n"
      "mmap 0x200000030000 4K rw- shared+fixed buf 1\n"
      "mmap 0x200000030000 4K rw- private+anon+fixed buf 0\n"  // anon: NAME ignored
      "memfd buf 0\n"                                            // resize an existing file
      "read 0x200000000000 1\n");
  uint64_t base = 0x200000000000ull;
  EXPECT_THAT(out, ElementsAre("2", "0", "0x200000000000", "0x200000004000",
                               "200000000000-200000002000 rw-s 0 buf; 200000004000-200000005000 r--p 1000 buf", "ok",
                               "0x200000010000", fnv_token(expected_fnv(base, 8192, 9)),
                               "200000010000-200000012000 r--s 0 buf", "0", "SIGBUS", "SIGBUS", "-EACCES", "-EBADF",
                               "-EINVAL", "-ENOENT", "-EOVERFLOW", "-EINVAL", "0x200000030000", "0", "SIGBUS"));
}

TEST(HostRunner, ErrnoNames) {
  auto out = run_text(
      "munmap 0x200000000001 4K\n"
      "munmap 0x200000000000 0\n"
      "mmap 0x200000000000 4K rw- private+anon+fixed\n"
      "mmap 0x200000000000 4K rw- private+anon+noreplace\n"
      "mprotect 0x200000001000 4K r--\n"
      "mprotect 0x200000000000 0xfffffffffffff000 r--\n"
      "mremap 0x200000008000 4K 8K 0\n"
      "mremap 0x200000000000 4K 8K fixed 0x200000010000\n"
      "mmap 0x200000010000 4K rw- shared+anon+fixed+growsdown\n"
      "mmap 0x200000010000 0 rw- private+anon+fixed\n"
      "mmap 0x7ffffffff000 4K rw- private+anon+fixed\n"
      "mmap 0x200000010000 1024G rw- private+anon+fixed\n"
      "madvise 0x200000000000 4K wipeonfork\n"
      "madvise 0x200000001000 4K dontneed\n"
      "mprotect 0x200000000000 4K rw-+growsdown+growsup\n");
  EXPECT_THAT(out, ElementsAre("-EINVAL", "-EINVAL", "0x200000000000", "-EEXIST", "-ENOMEM", "-ENOMEM", "-EFAULT",
                               "-EINVAL", "-EINVAL", "-EINVAL", "-ENOMEM", "-ENOMEM", "0", "-ENOMEM", "-EINVAL"));
}

TEST(HostRunner, MremapAndMadvise) {
  auto out = run_text(
      "mmap 0x200000000000 8K rw- private+anon+fixed\n"
      "write 0x200000000000 8K 3\n"
      "mremap 0x200000000000 8K 16K 0\n"  // grows in place
      "mremap 0x200000000000 16K 16K maymove+fixed 0x200000100000\n"
      "read 0x200000100000 8K\n"
      "mremap 0x200000100000 16K 4K 0\n"  // shrinks
      "mremap 0x200000100000 4K 4K maymove+fixed+dontunmap 0x200000200000\n"
      "read 0x200000100000 4K\n"  // the source stays mapped, empty
      "madvise 0x200000200000 4K dontneed\n"
      "read 0x200000200000 4K\n"
      "madvise 0x200000100000 4K populate_write\n"
      "mincore 0x200000100000 4K\n"
      "maps\n");
  // The bytes moved with the mapping: their pattern is that of the addresses written.
  EXPECT_THAT(out, ElementsAre("0x200000000000", "ok", "0x200000000000", "0x200000100000",
                               fnv_token(expected_fnv(0x200000000000ull, 8192, 3)), "0x200000100000",
                               "0x200000200000", fnv_token(zeros_fnv(4096)), "0", fnv_token(zeros_fnv(4096)), "0", "1",
                               "200000100000-200000101000 rw-p; 200000200000-200000201000 rw-p"));
}

TEST(HostRunner, GrowsdownExpansion) {
  // A 4-page stack ending at S: it expands down on any access below it, as long as the
  // stack stays within RLIMIT_STACK (8 MiB, pinned by the runner) and keeps the 1 MiB
  // stack_guard_gap above an accessible mapping below it.
  auto out = run_text(
      "mmap 0x200010ffc000 16K rw- private+anon+fixed+growsdown\n"
      "write 0x200010ffbfff 1 1\n"
      "maps\n"
      "read 0x200010800000 1\n"  // the stack becomes exactly 8 MiB
      "read 0x2000107fffff 1\n"  // one byte more: refused
      "maps\n"
      "munmap 0x200010000000 16M\n"
      "mmap 0x200010ffc000 16K rw- private+anon+fixed+growsdown\n"
      "mmap 0x200010ecf000 4K rw- private+anon+fixed\n"
      "read 0x200010fcf000 1\n"  // 255 pages above the mapping below: inside the guard gap
      "read 0x200010fd0000 1\n"  // 256 pages: allowed
      "maps\n");
  EXPECT_THAT(out,
              ElementsAre("0x200010ffc000", "ok", "200010ffb000-200011000000 rw-p", fnv_token(zeros_fnv(1)), "SEGV",
                          "200010800000-200011000000 rw-p", "0", "0x200010ffc000", "0x200010ecf000", "SEGV",
                          fnv_token(zeros_fnv(1)), "200010ecf000-200010ed0000 rw-p; 200010fd0000-200011000000 rw-p"));
}

TEST(HostRunner, HintsAndUnsafeCommands) {
  auto out = run_text(
      "mmap 0x200000100000 4K rw- private+anon\n"   // free hint: used
      "mmap 0x200000100000 4K rw- private+anon\n"   // taken: the host picks, outside the window
      "mmap 0x100000000000 4K rw- private+anon+fixed\n"
      "munmap 0x100000000000 4K\n"
      "write 0x1fffffffffff 2 0\n"
      "mprotect 0x2ffffffff000 8K r--\n"
      "mremap 0x200000100000 4K 4K maymove+fixed 0x300000000000\n"
      "mincore 0x7ffffffff000 4K\n"
      "maps\n");
  ASSERT_EQ(out.size(), 9u);
  EXPECT_EQ(out[0], "0x200000100000");
  ASSERT_EQ(out[1].rfind("0x", 0), 0u);
  uint64_t other = std::stoull(out[1].substr(2), nullptr, 16);
  EXPECT_TRUE(other < script::kWindowStart || other >= script::kWindowEnd) << out[1];
  EXPECT_EQ(out[2], "UNSAFE");
  EXPECT_EQ(out[3], "UNSAFE");
  EXPECT_EQ(out[4], "UNSAFE");
  EXPECT_EQ(out[5], "UNSAFE");
  EXPECT_EQ(out[6], "UNSAFE");
  EXPECT_EQ(out[7], "-ENOMEM");  // mincore only looks: never refused
  EXPECT_EQ(out[8], "200000100000-200000101000 rw-p");
}

// The worker is a program of its own with an ordinary process layout: a controller built
// with a sanitizer (shadow and guard regions above the window) must not change where the
// kernel places mappings without MAP_FIXED. Four terabytes whose hint is taken all land
// above the window, as in any ordinary process (tens of TiB free below mmap_base).
TEST(HostRunner, TerabyteHintsLandAboveTheWindowWhateverTheController) {
  auto out = run_text(
      "mmap 0x200000000000 4K rw- private+anon+fixed\n"
      "mmap 0x200000000000 0x10000000000 --- private+anon+noreserve\n"
      "mmap 0x200000000000 0x10000000000 rw- private+anon+noreserve\n"
      "mmap 0x200000000000 0x10000000000 r-- private+anon+noreserve\n"
      "mmap 0 0x10000000000 --- private+anon+noreserve\n"
      "maps\n");
  ASSERT_EQ(out.size(), 6u);
  for (int i = 1; i <= 4; ++i) {
    ASSERT_EQ(out[i].rfind("0x", 0), 0u) << out[i];
    uint64_t a = std::stoull(out[i].substr(2), nullptr, 16);
    EXPECT_GE(a, script::kWindowEnd) << "mapping " << i << " at " << out[i];
  }
  EXPECT_EQ(out[5], "200000000000-200000001000 rw-p");
}

TEST(HostRunner, MissingWorkerProgramIsAnError) {
  const char* saved = std::getenv("MIRRORMM_HOST_WORKER");
  std::string keep = saved ? saved : "";
  setenv("MIRRORMM_HOST_WORKER", "/nonexistent/mirrormm-host-worker", 1);
  std::string error;
  std::optional<script::Script> s = script::parse("maps\n", "t.mms", &error);
  ASSERT_TRUE(s.has_value()) << error;
  std::vector<std::string> out;
  EXPECT_FALSE(run(*s, &out, &error));
  EXPECT_THAT(error, ::testing::HasSubstr("MIRRORMM_HOST_WORKER"));
  if (saved) {
    setenv("MIRRORMM_HOST_WORKER", keep.c_str(), 1);
  } else {
    unsetenv("MIRRORMM_HOST_WORKER");
  }
}

TEST(HostRunner, EmptyScript) {
  script::Script s;
  std::vector<std::string> out = {"stale"};
  std::string error;
  EXPECT_TRUE(run(s, &out, &error)) << error;
  EXPECT_TRUE(out.empty());
}

// A child of this process, found through /proc (the runner's first worker is one).
struct Child {
  pid_t pid;
  uint64_t cpu_ticks;  // utime + stime
};

std::vector<Child> children() {
  std::vector<Child> kids;
  DIR* d = opendir("/proc");
  if (!d) return kids;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    long pid = std::strtol(e->d_name, &end, 10);
    if (pid <= 0 || *end != '\0') continue;
    // Processes (other tests' runners among them) come and go while /proc is listed: a read
    // of a vanished one fails (ESRCH), which is not an error here. POSIX reads, because
    // libstdc++'s filebuf throws on such a read error.
    std::string text;
    if (int fd = open(("/proc/" + std::string(e->d_name) + "/stat").c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {
      char buf[1024];
      ssize_t n = read(fd, buf, sizeof buf);
      close(fd);
      if (n > 0) text.assign(buf, static_cast<size_t>(n));
    }
    size_t paren = text.rfind(')');
    if (paren == std::string::npos) continue;
    // After the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
    // cmajflt utime stime.
    char state = 0;
    long ppid = 0;
    unsigned long long f[10] = {}, utime = 0, stime = 0;
    int n = std::sscanf(text.c_str() + paren + 1, " %c %ld %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu",
                        &state, &ppid, &f[0], &f[1], &f[2], &f[3], &f[4], &f[5], &f[6], &f[7], &f[8], &utime, &stime);
    if (n == 13 && ppid == getpid() && state != 'Z') kids.push_back({static_cast<pid_t>(pid), utime + stime});
  }
  closedir(d);
  return kids;
}

TEST(HostRunner, KilledWorkerIsAnErrorNotAHang) {
  ASSERT_TRUE(children().empty()) << "this test needs a process without other children";
  // Process 1 reads 4 GiB of zero pages byte by byte (seconds of CPU); once it has spent
  // a tenth of a second in that read it is killed. Its line reports the failure, its later
  // commands print -ESRCH, process 2 carries on, and run() returns false.
  std::string error;
  auto s = script::parse(
      "fork\n"
      "mmap 0x200000000000 4G r-- private+anon+fixed+noreserve\n"
      "read 0x200000000000 4G\n"
      "maps\n"
      "@2 maps\n",
      "t.mms", &error);
  ASSERT_TRUE(s.has_value()) << error;
  std::vector<std::string> out;
  std::atomic<bool> done{false};
  bool ok = true;
  std::thread runner([&] {
    ok = run(*s, &out, &error);
    done = true;
  });
  const uint64_t tenth = static_cast<uint64_t>(sysconf(_SC_CLK_TCK)) / 10;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  bool killed = false;
  while (!done && !killed && std::chrono::steady_clock::now() < deadline) {
    for (const Child& c : children()) {
      if (c.cpu_ticks >= tenth) {
        kill(c.pid, SIGKILL);
        killed = true;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  runner.join();
  ASSERT_TRUE(killed);
  EXPECT_FALSE(ok);
  EXPECT_NE(error.find("process 1"), std::string::npos) << error;
  ASSERT_EQ(out.size(), 5u);
  EXPECT_EQ(out[0], "2");
  EXPECT_EQ(out[1], "0x200000000000");
  EXPECT_EQ(out[2].rfind("ERROR ", 0), 0u) << out[2];
  EXPECT_EQ(out[3], "-ESRCH");
  EXPECT_EQ(out[4], "none");
  EXPECT_TRUE(children().empty());
}

}  // namespace
}  // namespace mirrormm::host
