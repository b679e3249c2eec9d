// Linux's HMM self-tests (tools/testing/selftests/mm/hmm-tests.c) against the dmirror test
// driver (mirrormm/dmirror.h): every TEST_F of hmm-tests by its name, in both of its device
// variants, as hmm-tests runs them: `hmm` over device 0 (private) and device 2 (coherent),
// `hmm2` over devices 0 and 1 and over 2 and 3.
//
// The model maps no huge pages (no THP, no hugetlbfs): the cases that exist to exercise them
// report SKIP with that reason, and the cases that loop over THP off and on run the base-page
// half under hmm-tests' name and report the huge-page half as a case of its own, NAME_thp,
// which SKIPs with that reason. Every other case runs. A buffer holds ints; its value at
// index i is what hmm-tests stores there.
#include "mirrormm/dmirror.h"

#include <atomic>
#include <chrono>
#include <cstring>
#include <functional>
#include <random>
#include <thread>
#include <vector>

#include "mirrormm/gup.h"
#include "mirrormm/hmm.h"
#include "mirrormm/memremap.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr uint64_t kNpages = 1024;  // HMM_BUFFER_SIZE / page size
constexpr uint64_t kSize = kNpages * P;
constexpr int kNtimes = 10;
constexpr uint64_t kTwoMeg = 2ull << 20;
constexpr uint64_t kMremapMaymove = 1, kMremapFixed = 2, kMremapDontunmap = 4;

const char* const kNoHugePages = "the model maps no huge pages (no THP, no hugetlbfs)";

// The fixture of both `hmm` (one device) and `hmm2` (two devices): the driver, mirrors opened
// by process 1, and buffers in its address space.
class HmmBase : public ModelTest {
 public:
  using ModelTest::p1;
  using ModelTest::sys;

 protected:
  void SetUp() override { driver_ = std::make_unique<DmirrorDriver>(&sys()); }
  void TearDown() override {
    for (auto& m : opened_) m.reset();
    driver_.reset();
    EXPECT_EQ(sys().violations(), 0u);
  }

  Dmirror* open(int dev, Process* p) {
    Result<std::unique_ptr<Dmirror>> r = driver_->open(dev, p);
    EXPECT_TRUE(r.ok()) << errno_name(r.error());
    if (!r.ok()) return nullptr;
    opened_.push_back(std::move(r.value()));
    return opened_.back().get();
  }
  static bool coherent(int dev) { return DmirrorDriver::device_type(dev) == MEMORY_DEVICE_COHERENT; }

  // hmm_dmirror_cmd: the command's errno; cpages and faults as the driver left them (only
  // updated on success).
  Errno cmd(Dmirror* m, DmirrorIoctl op, uint64_t addr, void* ptr, uint64_t npages) {
    HmmDmirrorCmd c;
    c.addr = addr;
    c.ptr = static_cast<uint8_t*>(ptr);
    c.npages = npages;
    c.cpages = cpages_;
    c.faults = faults_;
    const Errno e = m->ioctl(op, &c);
    cpages_ = c.cpages;
    faults_ = c.faults;
    return e;
  }
  Errno migrate(Dmirror* m, uint64_t addr, void* ptr, uint64_t npages) {
    return cmd(m, DmirrorIoctl::kMigrateToDev, addr, ptr, npages);
  }

  // The process's ints at [addr, addr + n * 4) and writes of them.
  std::vector<int> ints(Process* p, uint64_t addr, uint64_t n) {
    std::vector<uint8_t> b = bytes(p, addr, n * sizeof(int));
    std::vector<int> out(b.size() / sizeof(int));
    if (!b.empty()) std::memcpy(out.data(), b.data(), b.size());
    return out;
  }
  void set_ints(Process* p, uint64_t addr, uint64_t n, const std::function<int(uint64_t)>& f) {
    AccessResult r = sys().access(p, 0, addr, n * sizeof(int), true, [&](uint8_t* d, uint64_t a, uint64_t len) {
      for (uint64_t off = 0; off < len; off += sizeof(int)) {
        const int v = f((a + off - addr) / sizeof(int));
        std::memcpy(d + off, &v, sizeof(int));
      }
    });
    ASSERT_TRUE(r.ok());
  }
  // Whether every int i of [addr, addr + n * 4) is f(i).
  ::testing::AssertionResult holds(Process* p, uint64_t addr, uint64_t n, const std::function<int(uint64_t)>& f) {
    std::vector<int> v = ints(p, addr, n);
    if (v.size() != n) return ::testing::AssertionFailure() << "the read faulted";
    return holds(v, f);
  }
  static ::testing::AssertionResult holds(const std::vector<int>& v, const std::function<int(uint64_t)>& f) {
    for (uint64_t i = 0; i < v.size(); i++)
      if (v[i] != f(i)) return ::testing::AssertionFailure() << "int " << i << " is " << v[i] << ", not " << f(i);
    return ::testing::AssertionSuccess();
  }
  // Runs a command that fills the mirror buffer from npages pages at addr (MIGRATE_TO_DEV,
  // EXCLUSIVE, READ): success, every page copied, and the data f(i).
  ::testing::AssertionResult copies_all(Dmirror* m, DmirrorIoctl op, uint64_t addr, uint64_t npages,
                                        const std::function<int(uint64_t)>& f = ident) {
    std::vector<int> mirror(npages * P / sizeof(int), -1);
    const Errno e = cmd(m, op, addr, mirror.data(), npages);
    if (e != Errno::kOk) return ::testing::AssertionFailure() << "the command failed: " << errno_name(e);
    if (cpages_ != npages) return ::testing::AssertionFailure() << "cpages " << cpages_ << ", not " << npages;
    return holds(mirror, f);
  }
  // The CPU increments n ints holding ident at addr, and sees i + 1.
  void increment(Process* p, uint64_t addr, uint64_t n) {
    std::vector<int> v = ints(p, addr, n);
    ASSERT_EQ(v.size(), n);
    for (int& x : v) x++;
    set_ints(p, addr, n, [&v](uint64_t i) { return v[i]; });
    EXPECT_TRUE(holds(p, addr, n, [](uint64_t i) { return static_cast<int>(i) + 1; }));
  }
  // A private anonymous buffer of len bytes at addr holding ident.
  uint64_t ident_buffer(uint64_t addr, uint64_t len) {
    const uint64_t buf = map_buffer(addr, len);
    set_ints(p1(), buf, len / 4, ident);
    return buf;
  }
  uint64_t map_buffer(uint64_t addr, uint64_t len, uint64_t prot = RW, uint64_t flags = PRIV) {
    return map(p1(), addr, len, prot, flags);
  }

  static int ident(uint64_t i) { return static_cast<int>(i); }
  static int neg(uint64_t i) { return -static_cast<int>(i); }
  static int zero(uint64_t) { return 0; }

  std::unique_ptr<DmirrorDriver> driver_;
  std::vector<std::unique_ptr<Dmirror>> opened_;
  uint64_t cpages_ = 0, faults_ = 0;
};

// `hmm`: one device (the parameter).
class hmm : public HmmBase, public ::testing::WithParamInterface<int> {
 public:
  friend void write_child(hmm* t, uint64_t flags);

 protected:
  void SetUp() override {
    HmmBase::SetUp();
    dev_ = GetParam();
    fd_ = open(dev_, p1());
    ASSERT_NE(fd_, nullptr);
  }
  int dev_ = 0;
  Dmirror* fd_ = nullptr;
};

// `hmm2`: two devices.
class hmm2 : public HmmBase, public ::testing::WithParamInterface<std::pair<int, int>> {
 protected:
  void SetUp() override {
    HmmBase::SetUp();
    dev0_ = GetParam().first;
    dev1_ = GetParam().second;
    fd0_ = open(dev0_, p1());
    fd1_ = open(dev1_, p1());
    ASSERT_NE(fd0_, nullptr);
    ASSERT_NE(fd1_, nullptr);
  }
  int dev0_ = 0, dev1_ = 0;
  Dmirror* fd0_ = nullptr;
  Dmirror* fd1_ = nullptr;
};

std::vector<int> mirror_of(uint64_t npages, int fill = -1) {
  return std::vector<int>(npages * P / sizeof(int), fill);
}

// ---- the cases, in hmm-tests.c's order ----

TEST_P(hmm, open_close) {
  Result<std::unique_ptr<Dmirror>> r = driver_->open(dev_, p1());
  ASSERT_TRUE(r.ok());
  r.value()->close();
  HmmDmirrorCmd c;
  c.npages = 1;
  EXPECT_EQ(r.value()->ioctl(DmirrorIoctl::kRead, &c), Errno::kBadf);
}

TEST_P(hmm, anon_read) {
  const uint64_t buf = map_buffer(W, kSize);
  // The first two pages stay zero: pte_none, then the zero page.
  set_ints(p1(), buf + 2 * P, (kSize - 2 * P) / 4, [](uint64_t i) { return static_cast<int>(i + 2 * P / 4); });
  ASSERT_TRUE(sys().mprotect(p1(), buf, kSize, kProtRead).ok());
  ASSERT_EQ(ints(p1(), buf + P, 1).at(0), 0);
  std::vector<int> mirror = mirror_of(kNpages);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kRead, buf, mirror.data(), kNpages), Errno::kOk);
  EXPECT_EQ(cpages_, kNpages);
  EXPECT_EQ(faults_, 1u);
  EXPECT_TRUE(holds(mirror, [](uint64_t i) { return i < 2 * P / 4 ? 0 : static_cast<int>(i); }));
}

TEST_P(hmm, anon_read_prot) {
  const uint64_t buf = ident_buffer(W, kSize);
  std::vector<int> mirror(kSize / 4);
  for (uint64_t i = 0; i < mirror.size(); i++) mirror[i] = neg(i);
  ASSERT_TRUE(sys().mprotect(p1(), buf, kSize, kProtNone).ok());
  EXPECT_EQ(cmd(fd_, DmirrorIoctl::kRead, buf, mirror.data(), kNpages), Errno::kFault);
  EXPECT_TRUE(holds(mirror, neg));  // untouched
  ASSERT_TRUE(sys().mprotect(p1(), buf, kSize, kProtRead).ok());
  EXPECT_TRUE(holds(p1(), buf, kSize / 4, ident));
}

TEST_P(hmm, anon_write) {
  const uint64_t buf = map_buffer(W, kSize);
  std::vector<int> mirror(kSize / 4);
  for (uint64_t i = 0; i < mirror.size(); i++) mirror[i] = ident(i);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kWrite, buf, mirror.data(), kNpages), Errno::kOk);
  EXPECT_EQ(cpages_, kNpages);
  EXPECT_EQ(faults_, 1u);
  EXPECT_TRUE(holds(p1(), buf, kSize / 4, ident));
}

TEST_P(hmm, anon_write_prot) {
  const uint64_t buf = map_buffer(W, kSize, kProtRead);
  std::vector<int> mirror = mirror_of(kNpages);
  // A device read of the zero page.
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kRead, buf, mirror.data(), 1), Errno::kOk);
  EXPECT_EQ(cpages_, 1u);
  EXPECT_EQ(faults_, 1u);
  for (uint64_t i = 0; i < mirror.size(); i++) mirror[i] = ident(i);
  EXPECT_EQ(cmd(fd_, DmirrorIoctl::kWrite, buf, mirror.data(), kNpages), Errno::kPerm);
  EXPECT_TRUE(holds(p1(), buf, kSize / 4, zero));
  ASSERT_TRUE(sys().mprotect(p1(), buf, kSize, RW).ok());
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kWrite, buf, mirror.data(), kNpages), Errno::kOk);
  EXPECT_EQ(cpages_, kNpages);
  EXPECT_EQ(faults_, 1u);
  EXPECT_TRUE(holds(p1(), buf, kSize / 4, ident));
}

// hmm-tests' anon_write_child and anon_write_child_shared: the parent fills a buffer (private
// or shared) and perhaps migrates it; a child sees the data, opens its own mirror and writes
// -i through it. Private memory: copy-on-write keeps the parent's data (and the child's
// writes go to its own copies). Shared memory: nothing migrates, and the parent sees the
// child's writes. THP on: anon_write_child_thp, skipped (kNoHugePages).
void write_child(hmm* t, uint64_t flags) {
  const bool shared = flags == SHARED;
  for (int migrate_first : {0, 1}) {
    SCOPED_TRACE(migrate_first ? "migrated" : "not migrated");
    const uint64_t buf = t->map_buffer(W, kSize, RW, flags);
    t->set_ints(t->p1(), buf, kSize / 4, hmm::ident);
    std::vector<int> mirror(kSize / 4);
    for (uint64_t i = 0; i < mirror.size(); i++) mirror[i] = hmm::neg(i);
    if (migrate_first) {
      std::vector<int> back = mirror_of(kNpages);
      const Errno e = t->migrate(t->fd_, buf, back.data(), kNpages);
      EXPECT_EQ(e, shared ? Errno::kNoEnt : Errno::kOk);  // shared memory cannot move
      if (!shared) {
        EXPECT_EQ(t->cpages_, kNpages);
      }
    }
    Result<Process*> child = t->sys().fork(t->p1());
    ASSERT_TRUE(child.ok());
    Process* c = child.value();
    EXPECT_TRUE(t->holds(c, buf, kSize / 4, hmm::ident));
    Dmirror* child_fd = t->open(t->dev_, c);
    ASSERT_NE(child_fd, nullptr);
    ASSERT_EQ(t->cmd(child_fd, DmirrorIoctl::kWrite, buf, mirror.data(), kNpages), Errno::kOk);
    EXPECT_EQ(t->cpages_, kNpages);
    EXPECT_EQ(t->faults_, 1u);
    if (!migrate_first || shared) {
      EXPECT_TRUE(t->holds(c, buf, kSize / 4, hmm::neg));
    }
    child_fd->close();
    t->sys().exit(c);
    EXPECT_TRUE(t->holds(t->p1(), buf, kSize / 4, shared ? hmm::neg : hmm::ident));
    ASSERT_TRUE(t->sys().munmap(t->p1(), buf, kSize).ok());
  }
}

TEST_P(hmm, anon_write_child) { write_child(this, PRIV); }
TEST_P(hmm, anon_write_child_thp) { GTEST_SKIP() << kNoHugePages; }

TEST_P(hmm, anon_write_child_shared) { write_child(this, SHARED); }

TEST_P(hmm, anon_write_huge) { GTEST_SKIP() << kNoHugePages; }

TEST_P(hmm, anon_write_hugetlbfs) { GTEST_SKIP() << kNoHugePages; }

TEST_P(hmm, file_read) {
  ASSERT_TRUE(sys().file_create("hmm-file", kSize).ok());
  // Filled through a writable mapping (pwrite's role), then mapped read-only.
  ASSERT_TRUE(sys().mmap_file(p1(), W, kSize, RW, kMapShared | kMapFixed, "hmm-file", 0, System::FileMode::kReadWrite).ok());
  set_ints(p1(), W, kSize / 4, ident);
  ASSERT_TRUE(sys().munmap(p1(), W, kSize).ok());
  const uint64_t buf = W + kSize;
  ASSERT_TRUE(sys()
                  .mmap_file(p1(), buf, kSize, kProtRead, kMapShared | kMapFixed, "hmm-file", 0,
                             System::FileMode::kReadOnly)
                  .ok());
  std::vector<int> mirror = mirror_of(kNpages);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kRead, buf, mirror.data(), kNpages), Errno::kOk);
  EXPECT_EQ(cpages_, kNpages);
  EXPECT_EQ(faults_, 1u);
  EXPECT_TRUE(holds(mirror, ident));
}

TEST_P(hmm, file_write) {
  ASSERT_TRUE(sys().file_create("hmm-file", kSize).ok());
  const uint64_t buf = W;
  ASSERT_TRUE(
      sys().mmap_file(p1(), buf, kSize, RW, kMapShared | kMapFixed, "hmm-file", 0, System::FileMode::kReadWrite).ok());
  std::vector<int> mirror(kSize / 4);
  for (uint64_t i = 0; i < mirror.size(); i++) mirror[i] = ident(i);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kWrite, buf, mirror.data(), kNpages), Errno::kOk);
  EXPECT_EQ(cpages_, kNpages);
  EXPECT_EQ(faults_, 1u);
  EXPECT_TRUE(holds(p1(), buf, kSize / 4, ident));
  Result<std::vector<uint8_t>> file = sys().pread("hmm-file", 0, kSize);
  ASSERT_TRUE(file.ok());
  std::vector<int> v(kSize / 4);
  std::memcpy(v.data(), file.value().data(), kSize);
  EXPECT_TRUE(holds(v, ident));
}

TEST_P(hmm, migrate) {
  const uint64_t buf = ident_buffer(W, kSize);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kMigrateToDev, buf, kNpages));
  EXPECT_EQ(driver_->debug_pages_in_use(dev_), kNpages);
}

TEST_P(hmm, migrate_file_private) {
  ASSERT_TRUE(sys().file_create("hmm-file", kSize).ok());
  const uint64_t buf = W;
  ASSERT_TRUE(
      sys().mmap_file(p1(), buf, kSize, RW, kMapPrivate | kMapFixed, "hmm-file", 0, System::FileMode::kReadWrite).ok());
  set_ints(p1(), buf, kSize / 4, ident);  // private copies: anonymous pages
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kMigrateToDev, buf, kNpages));
}

TEST_P(hmm, migrate_fault) {
  const uint64_t buf = ident_buffer(W, kSize);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kMigrateToDev, buf, kNpages));
  // The CPU reads the first half (bringing private pages back), then everything moves again.
  EXPECT_TRUE(holds(p1(), buf, kSize / 8, ident));
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kMigrateToDev, buf, kNpages));
}

TEST_P(hmm, migrate_release) {
  const uint64_t buf = ident_buffer(W, kSize);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kMigrateToDev, buf, kNpages));
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kRelease, buf, nullptr, kNpages), Errno::kOk);
  EXPECT_EQ(driver_->debug_pages_in_use(dev_), 0u);  // all evicted to system memory
  EXPECT_TRUE(holds(p1(), buf, kSize / 8, ident));
}

TEST_P(hmm, migrate_shared) {
  const uint64_t buf = map_buffer(W, kSize, RW, SHARED);
  std::vector<int> mirror = mirror_of(kNpages);
  EXPECT_EQ(migrate(fd_, buf, mirror.data(), kNpages), Errno::kNoEnt);
}

TEST_P(hmm2, migrate_mixed) {
  const uint64_t npages = 6, p = W;
  std::vector<int> mirror = mirror_of(npages);
  map_buffer(p, npages * P, kProtNone);
  EXPECT_EQ(migrate(fd1_, p, mirror.data(), npages), Errno::kInval);  // no VM_READ
  ASSERT_TRUE(sys().munmap(p1(), p + P, P).ok());
  EXPECT_EQ(migrate(fd1_, p, mirror.data(), 3), Errno::kInval);  // a hole
  // Page 2: the zero page, read-only. Page 3: data, read-only. Pages 4-5: data, writable.
  ASSERT_TRUE(sys().mprotect(p1(), p + 2 * P, P, kProtRead).ok());
  ASSERT_EQ(ints(p1(), p + 2 * P, 1).at(0) + 3, 3);
  ASSERT_TRUE(sys().mprotect(p1(), p + 3 * P, P, RW).ok());
  set_ints(p1(), p + 3 * P, 1, [](uint64_t) { return 3; });
  ASSERT_TRUE(sys().mprotect(p1(), p + 3 * P, P, kProtRead).ok());
  ASSERT_TRUE(sys().mprotect(p1(), p + 4 * P, 2 * P, RW).ok());
  set_ints(p1(), p + 4 * P, 1, [](uint64_t) { return 3; });
  set_ints(p1(), p + 5 * P, 1, [](uint64_t) { return 3; });
  ASSERT_EQ(migrate(fd1_, p + 2 * P, mirror.data(), 4), Errno::kOk);
  EXPECT_EQ(cpages_, 4u);
  // Page 5 is on device 1: device 0 cannot take it.
  EXPECT_EQ(migrate(fd0_, p + 5 * P, mirror.data(), 1), Errno::kNoEnt);
}

TEST_P(hmm, migrate_multiple) {
  for (int c = 0; c < kNtimes; c++) {
    const uint64_t buf = map_buffer(W, kSize);
    set_ints(p1(), buf, kSize / 4, ident);
    std::vector<int> mirror = mirror_of(kNpages);
    ASSERT_EQ(migrate(fd_, buf, mirror.data(), kNpages), Errno::kOk);
    EXPECT_EQ(cpages_, kNpages);
    EXPECT_TRUE(holds(mirror, ident));
    // Coherent memory does not come back on a CPU access: the driver moves it.
    if (coherent(dev_)) {
      ASSERT_EQ(cmd(fd_, DmirrorIoctl::kMigrateToSys, buf, mirror.data(), kNpages), Errno::kOk);
      EXPECT_EQ(cpages_, kNpages);
      EXPECT_EQ(driver_->debug_pages_in_use(dev_), 0u);
    }
    EXPECT_TRUE(holds(p1(), buf, kSize / 4, ident));
    ASSERT_TRUE(sys().munmap(p1(), buf, kSize).ok());
  }
  EXPECT_EQ(driver_->debug_pages_in_use(dev_), 0u);  // the last unmap freed the device's pages
}

TEST_P(hmm, anon_read_multiple) {
  for (int c = 0; c < kNtimes; c++) {
    const uint64_t buf = map_buffer(W, kSize);
    set_ints(p1(), buf, kSize / 4, [c](uint64_t i) { return static_cast<int>(i) + c; });
    std::vector<int> mirror = mirror_of(kNpages);
    ASSERT_EQ(cmd(fd_, DmirrorIoctl::kRead, buf, mirror.data(), kNpages), Errno::kOk);
    EXPECT_EQ(cpages_, kNpages);
    EXPECT_EQ(faults_, 1u);
    EXPECT_TRUE(holds(mirror, [c](uint64_t i) { return static_cast<int>(i) + c; }));
    ASSERT_TRUE(sys().munmap(p1(), buf, kSize).ok());
  }
}

// A thread unmaps the second half while the device reads: any outcome but a crash or a race.
TEST_P(hmm, anon_teardown) {
  std::mt19937 rng(1);
  for (int c = 0; c < kNtimes; c++) {
    const uint64_t buf = map_buffer(W, kSize);
    set_ints(p1(), buf, kSize / 4, [c](uint64_t i) { return static_cast<int>(i) + c; });
    const unsigned delay_us = rng() % 32;
    std::thread unmapper([&] {
      std::this_thread::sleep_for(std::chrono::microseconds(delay_us));
      EXPECT_TRUE(sys().munmap(p1(), buf + kSize / 2, kSize / 2).ok());
    });
    std::vector<int> mirror = mirror_of(kNpages);
    const Errno e = cmd(fd_, DmirrorIoctl::kRead, buf, mirror.data(), kNpages);
    if (e == Errno::kOk) {
      EXPECT_EQ(cpages_, kNpages);
      EXPECT_EQ(faults_, 1u);
      EXPECT_TRUE(holds(mirror, [c](uint64_t i) { return static_cast<int>(i) + c; }));
    } else {
      EXPECT_EQ(e, Errno::kFault);  // the second half was gone
    }
    unmapper.join();
    ASSERT_TRUE(sys().munmap(p1(), buf, kSize).ok());
  }
}

// An mmap of the device file itself: one zeroed driver page, inserted with vm_insert_page
// (the VMA becomes VM_MIXEDMAP). A private mapping maps it read-only, and the snapshot sees
// a normal page: PROT_READ.
TEST_P(hmm, mixedmap) {
  const uint64_t npages = 1;
  Result<uint64_t> r = fd_->mmap(p1(), 0, npages * P, kProtRead | kProtWrite, kMapPrivate, 0);
  ASSERT_TRUE(r.ok()) << errno_name(r.error());
  std::vector<uint8_t> m(npages, 0xaa);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kSnapshot, r.value(), m.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  EXPECT_EQ(m[0], HMM_DMIRROR_PROT_READ);
}

TEST_P(hmm2, snapshot) {
  const uint64_t npages = 7, p = W;
  map_buffer(p, npages * P, kProtNone);
  ASSERT_TRUE(sys().munmap(p1(), p + P, P).ok());
  ASSERT_TRUE(sys().mprotect(p1(), p + 2 * P, P, kProtRead).ok());
  ASSERT_EQ(ints(p1(), p + 2 * P, 1).at(0), 0);  // the zero page
  ASSERT_TRUE(sys().mprotect(p1(), p + 3 * P, P, RW).ok());
  set_ints(p1(), p + 3 * P, 1, [](uint64_t) { return 3; });
  ASSERT_TRUE(sys().mprotect(p1(), p + 3 * P, P, kProtRead).ok());
  ASSERT_TRUE(sys().mprotect(p1(), p + 4 * P, 3 * P, RW).ok());
  set_ints(p1(), p + 4 * P, 1, [](uint64_t) { return 3; });
  std::vector<int> back = mirror_of(1);
  ASSERT_EQ(migrate(fd0_, p + 5 * P, back.data(), 1), Errno::kOk);
  EXPECT_EQ(cpages_, 1u);
  ASSERT_EQ(migrate(fd1_, p + 6 * P, back.data(), 1), Errno::kOk);
  EXPECT_EQ(cpages_, 1u);
  std::vector<uint8_t> m(npages, 0xaa);
  ASSERT_EQ(cmd(fd0_, DmirrorIoctl::kSnapshot, p, m.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  EXPECT_EQ(m[0], HMM_DMIRROR_PROT_ERROR);
  EXPECT_EQ(m[1], HMM_DMIRROR_PROT_ERROR);
  EXPECT_EQ(m[2], HMM_DMIRROR_PROT_ZERO | HMM_DMIRROR_PROT_READ);
  EXPECT_EQ(m[3], HMM_DMIRROR_PROT_READ);
  EXPECT_EQ(m[4], HMM_DMIRROR_PROT_WRITE);
  if (!coherent(dev0_)) {
    EXPECT_EQ(m[5], HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL | HMM_DMIRROR_PROT_WRITE);
    EXPECT_EQ(m[6], HMM_DMIRROR_PROT_NONE);  // another device's private page is not reported
  } else {
    EXPECT_EQ(m[5], HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE);
    EXPECT_EQ(m[6], HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE | HMM_DMIRROR_PROT_WRITE);
  }
}

TEST_P(hmm, compound) { GTEST_SKIP() << kNoHugePages; }

TEST_P(hmm2, double_map) {
  const uint64_t npages = 6, buf = W, size = npages * P;
  map_buffer(buf, size);
  set_ints(p1(), buf, size / 4, ident);
  ASSERT_TRUE(sys().mprotect(p1(), buf, size, kProtRead).ok());
  for (Dmirror* fd : {fd0_, fd1_}) {
    std::vector<int> mirror = mirror_of(npages);
    ASSERT_EQ(cmd(fd, DmirrorIoctl::kRead, buf, mirror.data(), npages), Errno::kOk);
    EXPECT_EQ(cpages_, npages);
    EXPECT_EQ(faults_, 1u);
    EXPECT_TRUE(holds(mirror, ident));
  }
  std::vector<int> mirror = mirror_of(npages);
  ASSERT_EQ(migrate(fd1_, buf, mirror.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  mirror = mirror_of(npages);
  ASSERT_EQ(cmd(fd0_, DmirrorIoctl::kRead, buf, mirror.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  EXPECT_EQ(faults_, 1u);
  EXPECT_TRUE(holds(mirror, ident));
}

TEST_P(hmm, exclusive) {
  const uint64_t buf = ident_buffer(W, kSize);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kExclusive, buf, kNpages));
  // The CPU's accesses take the pages back (the device sees each invalidation).
  increment(p1(), buf, kSize / 4);
  EXPECT_EQ(cmd(fd_, DmirrorIoctl::kCheckExclusive, buf, nullptr, kNpages), Errno::kOk);
}

TEST_P(hmm, exclusive_mprotect) {
  const uint64_t buf = ident_buffer(W, kSize);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kExclusive, buf, kNpages));
  ASSERT_TRUE(sys().mprotect(p1(), buf, kSize, kProtRead).ok());
  std::vector<int> mirror = mirror_of(kNpages);
  EXPECT_EQ(cmd(fd_, DmirrorIoctl::kWrite, buf, mirror.data(), kNpages), Errno::kPerm);
}

// Exclusive pages, then fork: parent and child each increment their own copy.
TEST_P(hmm, exclusive_cow) {
  const uint64_t buf = ident_buffer(W, kSize);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kExclusive, buf, kNpages));
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  for (Process* p : {child.value(), p1()}) increment(p, buf, kSize / 4);
  sys().exit(child.value());
  EXPECT_TRUE(holds(p1(), buf, kSize / 4, [](uint64_t i) { return static_cast<int>(i) + 1; }));
}

// The gup_test module's four calls on four migrated pages (FOLL_WRITE each): references
// (GUP_BASIC_TEST, GUP_FAST_BENCHMARK) bring a private page back and leave a coherent one
// where it is; long-term pins (PIN_FAST_BENCHMARK with FOLL_LONGTERM, PIN_LONGTERM_BENCHMARK)
// move a coherent page out of device memory first.
TEST_P(hmm, hmm_gup_test) {
  const uint64_t npages = 4, buf = W, size = npages * P;
  map_buffer(buf, size);
  set_ints(p1(), buf, size / 4, ident);
  ASSERT_TRUE(copies_all(fd_, DmirrorIoctl::kMigrateToDev, buf, npages));
  Mm* mm = get_task_mm(p1());
  ASSERT_NE(mm, nullptr);
  long got[npages];
  mmap_read_lock(mm);
  for (uint64_t i = 0; i < npages; i++) {
    uint64_t pfn = 0;
    if (i < 2) {
      got[i] = get_user_pages_remote(mm, buf + i * P, 1, FOLL_WRITE, &pfn);
      if (got[i] == 1) put_page_pfn(&sys(), pfn);
    } else {
      got[i] = pin_user_pages_remote(mm, buf + i * P, 1, FOLL_WRITE | FOLL_LONGTERM, &pfn);
      if (got[i] == 1) unpin_user_pages(&sys(), &pfn, 1);
    }
  }
  mmap_read_unlock(mm);
  mmput_ref(mm);
  for (uint64_t i = 0; i < npages; i++) EXPECT_EQ(got[i], 1) << "page " << i;
  std::vector<uint8_t> m(npages, 0xaa);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kSnapshot, buf, m.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  const uint8_t referenced = coherent(dev_) ? HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL | HMM_DMIRROR_PROT_WRITE
                                            : HMM_DMIRROR_PROT_WRITE;
  EXPECT_EQ(m[0], referenced);
  EXPECT_EQ(m[1], referenced);
  EXPECT_EQ(m[2], HMM_DMIRROR_PROT_WRITE);
  EXPECT_EQ(m[3], HMM_DMIRROR_PROT_WRITE);
  EXPECT_TRUE(holds(p1(), buf, size / 4, ident));
}

TEST_P(hmm, hmm_cow_in_device) {
  const uint64_t npages = 4, buf = W, size = npages * P;
  map_buffer(buf, size);
  set_ints(p1(), buf, size / 4, ident);
  std::vector<int> mirror = mirror_of(npages);
  ASSERT_EQ(migrate(fd_, buf, mirror.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  // The parent writes its copy-on-write pages (private ones come back from the device
  // first); then the child goes.
  set_ints(p1(), buf, size / 4, ident);
  sys().exit(child.value());
  std::vector<uint8_t> m(npages, 0xaa);
  ASSERT_EQ(cmd(fd_, DmirrorIoctl::kSnapshot, buf, m.data(), npages), Errno::kOk);
  EXPECT_EQ(cpages_, npages);
  for (uint64_t i = 0; i < npages; i++) EXPECT_EQ(m[i], HMM_DMIRROR_PROT_WRITE) << "page " << i;
  EXPECT_TRUE(holds(p1(), buf, size / 4, ident));
}

TEST_P(hmm, migrate_anon_huge_empty) { GTEST_SKIP() << kNoHugePages; }
TEST_P(hmm, migrate_anon_huge_zero) { GTEST_SKIP() << kNoHugePages; }
TEST_P(hmm, migrate_anon_huge_free) { GTEST_SKIP() << kNoHugePages; }
TEST_P(hmm, migrate_anon_huge_fault) { GTEST_SKIP() << kNoHugePages; }

// THP off: a PMD-sized region migrated, half of it unmapped at an offset, the rest read back.
// THP on: migrate_partial_unmap_fault_thp, skipped (kNoHugePages).
TEST_P(hmm, migrate_partial_unmap_fault) {
  const uint64_t size = kTwoMeg, npages = size / P;
  for (uint64_t offset : {uint64_t{0}, size / 4, size / 2}) {
    SCOPED_TRACE(offset);
    const uint64_t map = W;
    map_buffer(map, size);
    set_ints(p1(), map, size / 4, ident);
    std::vector<int> mirror = mirror_of(npages);
    ASSERT_EQ(migrate(fd_, map, mirror.data(), npages), Errno::kOk);
    EXPECT_EQ(cpages_, npages);
    EXPECT_TRUE(holds(mirror, ident));
    ASSERT_TRUE(sys().munmap(p1(), map + offset, size / 2).ok());
    for (uint64_t i = 0; i < size / 4; i += P / 4) {
      const uint64_t at = i * 4;
      if (at >= offset && at < offset + size / 2) continue;
      EXPECT_TRUE(holds(p1(), map + at, P / 4, [i](uint64_t k) { return static_cast<int>(i + k); }));
    }
    ASSERT_TRUE(sys().munmap(p1(), map, size).ok());
  }
}

// THP off: the region moves (mremap MAYMOVE|FIXED, with or without DONTUNMAP) before or
// after its migration, and the CPU reads it at its new address. THP on:
// migrate_remap_fault_thp, skipped (kNoHugePages).
TEST_P(hmm, migrate_remap_fault) {
  const uint64_t size = kTwoMeg, npages = size / P;
  for (int before : {0, 1}) {
    for (uint64_t dontunmap : {uint64_t{0}, kMremapDontunmap}) {
      for (uint64_t offset : {uint64_t{0}, size / 4, size / 2}) {
        SCOPED_TRACE(::testing::Message() << "before " << before << " dontunmap " << dontunmap << " offset " << offset);
        const uint64_t map = W;
        map_buffer(map, 4 * size);
        set_ints(p1(), map, size / 4, ident);
        const uint64_t target = map + size + offset;
        const uint64_t flags = kMremapMaymove | kMremapFixed | dontunmap;
        uint64_t at = map;
        if (before) {
          Result<uint64_t> r = sys().mremap(p1(), map, size, size, flags, target);
          ASSERT_TRUE(r.ok()) << errno_name(r.error());
          at = r.value();
        }
        std::vector<int> mirror = mirror_of(npages);
        ASSERT_EQ(migrate(fd_, at, mirror.data(), npages), Errno::kOk);
        EXPECT_EQ(cpages_, npages);
        EXPECT_TRUE(holds(mirror, ident));
        if (!before) {
          Result<uint64_t> r = sys().mremap(p1(), map, size, size, flags, target);
          ASSERT_TRUE(r.ok()) << errno_name(r.error());
          at = r.value();
        }
        EXPECT_EQ(at, target);
        EXPECT_TRUE(holds(p1(), at, size / 4, ident));
        ASSERT_TRUE(sys().munmap(p1(), map, 4 * size).ok());
      }
    }
  }
}

TEST_P(hmm, migrate_partial_unmap_fault_thp) { GTEST_SKIP() << kNoHugePages; }
TEST_P(hmm, migrate_remap_fault_thp) { GTEST_SKIP() << kNoHugePages; }

TEST_P(hmm, migrate_anon_huge_err) { GTEST_SKIP() << kNoHugePages; }
TEST_P(hmm, migrate_anon_huge_zero_err) { GTEST_SKIP() << kNoHugePages; }
TEST_P(hmm, benchmark_thp_migration) { GTEST_SKIP() << kNoHugePages; }

// ---- the driver beyond hmm-tests ----

// The "dmirror" kind of the SecondaryMmu registry: faults through hmm_range_fault into its
// page table, DMA through it, and invalidations that drop it.
TEST_F(HmmBase, SecondaryMmuKind) {
  ASSERT_TRUE(secondary_mmu_kind_known("dmirror"));
  const uint64_t buf = map_buffer(W, 4 * P);
  write_pattern(p1(), buf, 4 * P, 5);
  Result<std::unique_ptr<SecondaryMmu>> r = attach_secondary_mmu("dmirror", p1());
  ASSERT_TRUE(r.ok()) << errno_name(r.error());
  SecondaryMmu& dev = *r.value();
  EXPECT_EQ(dev.kind(), "dmirror");
  Result<uint64_t> n = dev.fault(buf, 2 * P, false);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n.value(), 2u);
  EXPECT_EQ(dev.show(buf, 4 * P), "ww--");
  std::vector<uint8_t> got;
  ASSERT_TRUE(dev.read(buf + 100, P, &got));
  EXPECT_EQ(got, bytes(p1(), buf + 100, P));
  const std::vector<uint8_t> data(P, 0x5a);
  ASSERT_TRUE(dev.write(buf + P, P, data.data()));
  EXPECT_EQ(bytes(p1(), buf + P, P), data);
  EXPECT_FALSE(dev.read(buf + 2 * P, P, &got));  // not mapped
  ASSERT_TRUE(sys().mprotect(p1(), buf, P, kProtRead).ok());
  EXPECT_EQ(dev.show(buf, 4 * P), "----");  // one page more than the range, as test_hmm
  EXPECT_EQ(dev.fault(buf, P, true).error(), Errno::kPerm);
  std::vector<SecondaryMmu::Event> events = dev.take_events();
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, MmuNotifyEvent::kProtectionVma);
  EXPECT_EQ(dev.stats().faults, 1u);
  dev.detach();
  EXPECT_EQ(dev.fault(buf, P, false).error(), Errno::kFault);
}

std::string device_name(const ::testing::TestParamInfo<int>& info) {
  return info.param < 2 ? "hmm_device_private" : "hmm_device_coherent";
}
std::string device_pair_name(const ::testing::TestParamInfo<std::pair<int, int>>& info) {
  return info.param.first < 2 ? "hmm2_device_private" : "hmm2_device_coherent";
}

INSTANTIATE_TEST_SUITE_P(variant, hmm, ::testing::Values(0, 2), device_name);
INSTANTIATE_TEST_SUITE_P(variant, hmm2, ::testing::Values(std::pair{0, 1}, std::pair{2, 3}), device_pair_name);

}  // namespace
}  // namespace mirrormm::testing
