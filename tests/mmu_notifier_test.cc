// MMU notifiers (include/mirrormm/mmu_notifier.h, src/mm/mmu_notifier.cc): classic
// subscriptions and the events every primary path brackets, registration failures, the
// get/put interface, the young callbacks, non-blocking invalidation, interval notifiers and
// their odd/even collision-retry protocol (including inserts, removes and find() during an
// invalidation), unregister racing exit, rmap notifiers, and the coherence checker with a
// DeviceMirror attached.
//
// Waits are bounded: a thread that should finish but does not within the bound aborts the
// binary with a message instead of hanging the run. Short sleeps only widen race windows;
// no assertion depends on them.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include "mirrormm/device_mirror.h"
#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/mm_types.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/physmem.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

using namespace std::chrono_literals;

constexpr uint64_t P = 4096;
constexpr uint64_t W = 0x200000000000ull;
constexpr uint64_t RW = kProtRead | kProtWrite;
constexpr uint64_t PRIV = kMapPrivate | kMapAnonymous | kMapFixed;
constexpr uint64_t SHARED_FILE = kMapShared | kMapFixed;
constexpr uint64_t kMremapMayMove = 1, kMremapFixed = 2;
constexpr int kEagain = -static_cast<int>(Errno::kAgain);

// ---- small helpers ----

template <class F>
class ScopeExit {
 public:
  explicit ScopeExit(F f) : f_(std::move(f)) {}
  ~ScopeExit() { f_(); }
  ScopeExit(const ScopeExit&) = delete;
  ScopeExit& operator=(const ScopeExit&) = delete;

 private:
  F f_;
};

using testing::BoundedThread;  // tests/support/watchdog.h

// Blocks a callback (pass) until the test opens it.
class Gate {
 public:
  void arm() {
    std::lock_guard<std::mutex> g(mu_);
    armed_ = true;
    open_ = false;
    entered_ = 0;
  }
  void pass() {
    std::unique_lock<std::mutex> l(mu_);
    if (!armed_) return;
    entered_++;
    cv_.notify_all();
    cv_.wait(l, [&] { return open_; });
  }
  bool wait_entered(int n = 1) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, 10s, [&] { return entered_ >= n; });
  }
  void open() {
    std::lock_guard<std::mutex> g(mu_);
    open_ = true;
    armed_ = false;
    cv_.notify_all();
  }
  bool is_open() {
    std::lock_guard<std::mutex> g(mu_);
    return open_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, open_ = false;
  int entered_ = 0;
};

// One notification as a subscriber saw it; seq orders events across subscribers.
std::atomic<uint64_t> g_seq{0};
struct Ev {
  enum Kind { kStart, kEnd, kRelease, kTlb, kInvalidate } kind;
  MmuNotifyEvent event = MmuNotifyEvent::kUnmap;
  uint64_t start = 0, end = 0;
  bool blockable = false;
  uint64_t seq = 0;
};

std::string hex(uint64_t v) {
  char b[32];
  std::snprintf(b, sizeof b, "0x%llx", static_cast<unsigned long long>(v));
  return b;
}
std::string str(const Ev& e) {
  static const char* kinds[] = {"start", "end", "release", "tlb", "invalidate"};
  std::string s = kinds[e.kind];
  if (e.kind == Ev::kRelease) return s;
  if (e.kind != Ev::kTlb) s += std::string(" ") + mmu_notify_event_name(e.event);
  s += " [" + hex(e.start) + "," + hex(e.end) + ")";
  if (e.kind == Ev::kStart || e.kind == Ev::kInvalidate) s += e.blockable ? " b" : " nb";
  return s;
}
std::vector<std::string> strs(const std::vector<Ev>& v) {
  std::vector<std::string> out;
  for (const Ev& e : v) out.push_back(str(e));
  return out;
}
std::string ev(const char* kind, MmuNotifyEvent e, uint64_t start, uint64_t end, bool blockable = true) {
  Ev x{};
  std::string k = kind;
  x.kind = k == "start" ? Ev::kStart : k == "end" ? Ev::kEnd : Ev::kInvalidate;
  x.event = e;
  x.start = start;
  x.end = end;
  x.blockable = blockable;
  return str(x);
}

// ---- a recording classic subscriber ----

struct Rec : MmuNotifier {
  std::mutex mu;
  std::vector<Ev> log;
  std::atomic<int> releases{0}, starts{0}, ends{0}, tlbs{0};
  std::atomic<int> start_rc{0};
  std::atomic<int> young{0};
  std::atomic<int> young_calls{0};
  int id = 0;
  std::vector<int>* young_order = nullptr;  // test_young call order (single-threaded use)
  Mm* reg_mm = nullptr;

  void add(Ev e) {
    e.seq = g_seq.fetch_add(1);
    std::lock_guard<std::mutex> g(mu);
    log.push_back(e);
  }
  std::vector<Ev> take() {
    std::lock_guard<std::mutex> g(mu);
    std::vector<Ev> out;
    out.swap(log);
    return out;
  }
  Errno attach(Process* p, const MmuNotifierOps* o) {
    ops = o;
    Mm* mm = get_task_mm(p);
    if (!mm) return Errno::kSrch;
    Errno e = mmu_notifier_register(this, mm);
    mmput_ref(mm);
    if (e == Errno::kOk) reg_mm = mm;
    return e;
  }
  void detach() {
    if (!reg_mm) return;
    mmu_notifier_unregister(this, reg_mm);
    reg_mm = nullptr;
  }
  ~Rec() { detach(); }
};

Rec* rec_of(MmuNotifier* s) { return static_cast<Rec*>(s); }

void rec_release(MmuNotifier* s, Mm*) {
  rec_of(s)->releases++;
  rec_of(s)->add({Ev::kRelease});
}
int rec_start(MmuNotifier* s, const MmuNotifierRange* r) {
  Rec* n = rec_of(s);
  n->starts++;
  n->add({Ev::kStart, r->event, r->start, r->end, mmu_notifier_range_blockable(r)});
  return n->start_rc.load();
}
void rec_end(MmuNotifier* s, const MmuNotifierRange* r) {
  Rec* n = rec_of(s);
  n->ends++;
  n->add({Ev::kEnd, r->event, r->start, r->end, mmu_notifier_range_blockable(r)});
}
void rec_tlb(MmuNotifier* s, Mm*, uint64_t start, uint64_t end) {
  rec_of(s)->tlbs++;
  rec_of(s)->add({Ev::kTlb, MmuNotifyEvent::kUnmap, start, end});
}
int rec_young(MmuNotifier* s, Mm*, uint64_t, uint64_t) {
  rec_of(s)->young_calls++;
  return rec_of(s)->young.load();
}
int rec_test_young(MmuNotifier* s, Mm*, uint64_t) {
  Rec* n = rec_of(s);
  n->young_calls++;
  if (n->young_order) n->young_order->push_back(n->id);
  return n->young.load();
}

const MmuNotifierOps* start_end_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.release = rec_release;
    x.invalidate_range_start = rec_start;
    x.invalidate_range_end = rec_end;
    return x;
  }();
  return &o;
}
// A start that can fail must not have an end.
const MmuNotifierOps* start_only_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.release = rec_release;
    x.invalidate_range_start = rec_start;
    return x;
  }();
  return &o;
}
const MmuNotifierOps* end_only_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.invalidate_range_end = rec_end;
    return x;
  }();
  return &o;
}
const MmuNotifierOps* tlb_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.release = rec_release;
    x.arch_invalidate_secondary_tlbs = rec_tlb;
    return x;
  }();
  return &o;
}
const MmuNotifierOps* young_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.release = rec_release;
    x.clear_young = rec_young;
    x.clear_flush_young = rec_young;
    x.test_young = rec_test_young;
    return x;
  }();
  return &o;
}

// ---- a recording interval subscriber ----

struct IRec : MmuIntervalNotifier {
  std::mutex mu;  // the driver's update lock (read_retry is called under it)
  std::vector<Ev> log;
  std::atomic<int> calls{0};
  std::atomic<bool> fail_nonblock{false};
  std::atomic<uint64_t> last_cur_seq{0};
  Gate* gate = nullptr;  // set before the invalidation that should block
  bool inserted = false;
  std::atomic<uint64_t> magic{0};

  Errno insert(Process* p, uint64_t start, uint64_t len, const MmuIntervalNotifierOps* o);
  Errno insert_mm(Mm* mm, uint64_t start, uint64_t len, const MmuIntervalNotifierOps* o) {
    Errno e = mmu_interval_notifier_insert(this, mm, start, len, o);
    if (e == Errno::kOk) inserted = true;
    return e;
  }
  void remove() {
    if (!inserted) return;
    mmu_interval_notifier_remove(this);
    inserted = false;
  }
  bool retry(uint64_t seq) {
    std::lock_guard<std::mutex> g(mu);
    return mmu_interval_read_retry(this, seq);
  }
  std::vector<Ev> take() {
    std::lock_guard<std::mutex> g(mu);
    std::vector<Ev> out;
    out.swap(log);
    return out;
  }
  ~IRec() { remove(); }
};

bool irec_invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* r, uint64_t cur_seq) {
  IRec* n = static_cast<IRec*>(s);
  n->calls++;
  if (n->fail_nonblock.load() && !mmu_notifier_range_blockable(r)) return false;
  {
    std::lock_guard<std::mutex> g(n->mu);
    mmu_interval_set_seq(s, cur_seq);
    n->last_cur_seq = cur_seq;
    Ev e{Ev::kInvalidate, r->event, r->start, r->end, mmu_notifier_range_blockable(r)};
    e.seq = g_seq.fetch_add(1);
    n->log.push_back(e);
  }
  if (n->gate) n->gate->pass();
  return true;
}

const MmuIntervalNotifierOps kIOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = irec_invalidate;
  return o;
}();
const MmuIntervalNotifierOps kIOps2 = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = irec_invalidate;
  return o;
}();

Errno IRec::insert(Process* p, uint64_t start, uint64_t len, const MmuIntervalNotifierOps* o) {
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  Errno e = insert_mm(mm, start, len, o);
  mmput_ref(mm);
  return e;
}

// ---- the fixture ----

class MmuNotifierTest : public ::testing::Test {
 protected:
  MmuNotifierTest() : sys(SystemConfig{}, 2) {}
  void SetUp() override {
    sys.set_mmu_checker(true);
    mmu_debug_drop_bracket(-1);
    mmu_debug_fail_take_all_locks(false);
  }
  void TearDown() override {
    if (expected_violations_ >= 0) {
      EXPECT_EQ(sys.violations(), static_cast<uint64_t>(expected_violations_)) << msgs();
    }
  }
  std::string msgs() {
    std::string s;
    for (const std::string& m : sys.violation_messages()) s += m + "\n";
    return s;
  }
  Process* p1() { return sys.process(1); }
  void map(Process* p, uint64_t addr, uint64_t len, uint64_t prot = RW, uint64_t flags = PRIV) {
    Result<uint64_t> r = sys.mmap(p, addr, len, prot, flags);
    ASSERT_TRUE(r.ok()) << errno_name(r.error());
    ASSERT_EQ(r.value(), addr);
  }
  // Writes v to every byte (populates for writing).
  void fill(Process* p, uint64_t addr, uint64_t len, uint8_t v, int cpu = 0) {
    AccessResult r = sys.access(p, cpu, addr, len, true, [v](uint8_t* d, uint64_t, uint64_t n) {
      for (uint64_t i = 0; i < n; i++) d[i] = v;
    });
    ASSERT_TRUE(r.ok()) << "fill " << hex(addr) << " kind " << static_cast<int>(r.kind);
  }
  uint8_t byte_at(Process* p, uint64_t addr) {
    uint8_t v = 0;
    AccessResult r = sys.access(p, 0, addr, 1, false, [&](uint8_t* d, uint64_t, uint64_t) { v = *d; });
    EXPECT_TRUE(r.ok());
    return v;
  }
  Mm* mm_of(Process* p) {
    Mm* mm = get_task_mm(p);
    if (mm) mmput_ref(mm);  // the test only compares / passes it while p is alive
    return mm;
  }

  System sys;
  int expected_violations_ = 0;  // -1: not checked
};

// ==== classic notifiers ====

TEST_F(MmuNotifierTest, RegisterCallsNothingAndUnregisterReleasesOnce) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  EXPECT_TRUE(r.take().empty());
  EXPECT_EQ(r.releases, 0);
  EXPECT_EQ(r.ops, start_end_ops());
  r.detach();
  EXPECT_EQ(r.releases, 1);  // unregister runs release when exit has not
  EXPECT_EQ(strs(r.take()), std::vector<std::string>{"release"});
  // Nothing reaches it any more.
  ASSERT_TRUE(sys.munmap(p1(), W, 4 * P).ok());
  EXPECT_EQ(r.starts, 0);
  EXPECT_EQ(r.releases, 1);
}

TEST_F(MmuNotifierTest, MunmapGivesUnmapBracketWithExactRange) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_TRUE(sys.munmap(p1(), W + P, 2 * P).ok());
  EXPECT_EQ(strs(r.take()), (std::vector<std::string>{ev("start", MmuNotifyEvent::kUnmap, W + P, W + 3 * P),
                                                       ev("end", MmuNotifyEvent::kUnmap, W + P, W + 3 * P)}));
  EXPECT_EQ(byte_at(p1(), W), 1);
  EXPECT_EQ(byte_at(p1(), W + 3 * P), 1);
}

TEST_F(MmuNotifierTest, MprotectGivesProtectionVma) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 2);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_TRUE(sys.mprotect(p1(), W, 4 * P, kProtRead).ok());
  EXPECT_EQ(strs(r.take()), (std::vector<std::string>{ev("start", MmuNotifyEvent::kProtectionVma, W, W + 4 * P),
                                                       ev("end", MmuNotifyEvent::kProtectionVma, W, W + 4 * P)}));
  EXPECT_EQ(byte_at(p1(), W + P), 2);
}

TEST_F(MmuNotifierTest, MadviseDontneedGivesClear) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 3);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_TRUE(sys.madvise(p1(), W + P, P, kMadvDontneed).ok());
  EXPECT_EQ(strs(r.take()), (std::vector<std::string>{ev("start", MmuNotifyEvent::kClear, W + P, W + 2 * P),
                                                       ev("end", MmuNotifyEvent::kClear, W + P, W + 2 * P)}));
  EXPECT_EQ(byte_at(p1(), W + P), 0);  // zapped: refaults as zero
  EXPECT_EQ(byte_at(p1(), W), 3);
}

TEST_F(MmuNotifierTest, MremapMoveGivesUnmapOnOldRange) {
  map(p1(), W, 2 * P);
  fill(p1(), W, 2 * P, 4);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  const uint64_t to = W + 64 * P;
  Result<uint64_t> m = sys.mremap(p1(), W, 2 * P, 2 * P, kMremapMayMove | kMremapFixed, to);
  ASSERT_TRUE(m.ok()) << errno_name(m.error());
  ASSERT_EQ(m.value(), to);
  std::vector<std::string> got = strs(r.take());
  const std::string s = ev("start", MmuNotifyEvent::kUnmap, W, W + 2 * P);
  const std::string e = ev("end", MmuNotifyEvent::kUnmap, W, W + 2 * P);
  auto si = std::find(got.begin(), got.end(), s);
  ASSERT_NE(si, got.end()) << ::testing::PrintToString(got);
  EXPECT_NE(std::find(si, got.end(), e), got.end()) << ::testing::PrintToString(got);
  EXPECT_EQ(r.starts.load(), r.ends.load());
  EXPECT_EQ(byte_at(p1(), to + P), 4);
}

TEST_F(MmuNotifierTest, ForkBracketsParentPrivateWritableRange) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 5);
  ASSERT_TRUE(sys.memfd("shm", 2 * P).ok());
  ASSERT_TRUE(sys.mmap_file(p1(), W + 32 * P, 2 * P, RW, SHARED_FILE, "shm", 0, System::FileMode::kReadWrite).ok());
  fill(p1(), W + 32 * P, 2 * P, 6);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  Result<Process*> child = sys.fork(p1());
  ASSERT_TRUE(child.ok());
  // The private writable range is write-protected in the parent: one bracket over the VMA
  // with PROTECTION_PAGE, as Linux 6.18's copy_page_range (see the comment there; it was
  // CLEAR before commit 4b9ba84); the shared mapping is not touched.
  EXPECT_EQ(strs(r.take()),
            (std::vector<std::string>{ev("start", MmuNotifyEvent::kProtectionPage, W, W + 4 * P),
                                      ev("end", MmuNotifyEvent::kProtectionPage, W, W + 4 * P)}));
  EXPECT_EQ(byte_at(child.value(), W + 3 * P), 5);
  sys.exit(child.value());
  EXPECT_TRUE(r.take().empty());  // the child's teardown is not the parent's business
}

TEST_F(MmuNotifierTest, CowWriteFaultAfterForkGivesClearOnOnePage) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 7);
  Result<Process*> child = sys.fork(p1());
  ASSERT_TRUE(child.ok());
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  fill(p1(), W + 2 * P, 1, 8);
  EXPECT_EQ(strs(r.take()), (std::vector<std::string>{ev("start", MmuNotifyEvent::kClear, W + 2 * P, W + 3 * P),
                                                       ev("end", MmuNotifyEvent::kClear, W + 2 * P, W + 3 * P)}));
  EXPECT_EQ(byte_at(child.value(), W + 2 * P), 7);
  EXPECT_EQ(byte_at(p1(), W + 2 * P), 8);
  sys.exit(child.value());
}

TEST_F(MmuNotifierTest, TruncateOfSharedMemfdGivesClear) {
  ASSERT_TRUE(sys.memfd("f", 4 * P).ok());
  ASSERT_TRUE(sys.mmap_file(p1(), W, 4 * P, RW, SHARED_FILE, "f", 0, System::FileMode::kReadWrite).ok());
  fill(p1(), W, 4 * P, 9);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_TRUE(sys.truncate("f", P).ok());
  // shmem_setattr unmaps twice (before and after dropping the cache, for private copies
  // made meanwhile): one or more CLEAR brackets of exactly the truncated part.
  std::vector<std::string> got = strs(r.take());
  ASSERT_GE(got.size(), 2u);
  ASSERT_EQ(got.size() % 2, 0u);
  for (size_t i = 0; i < got.size(); i += 2) {
    EXPECT_EQ(got[i], ev("start", MmuNotifyEvent::kClear, W + P, W + 4 * P));
    EXPECT_EQ(got[i + 1], ev("end", MmuNotifyEvent::kClear, W + P, W + 4 * P));
  }
  AccessResult a = sys.access(p1(), 0, W + 2 * P, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
  EXPECT_EQ(a.kind, AccessResult::Kind::kBus);
  EXPECT_EQ(byte_at(p1(), W), 9);
}

TEST_F(MmuNotifierTest, ExitReleasesOnceThenIntervalsSeeReleaseThenUnmap) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  IRec in;
  ASSERT_EQ(in.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  Mm* mm = r.reg_mm;
  sys.exit(p1());
  EXPECT_EQ(r.releases, 1);
  std::vector<Ev> cl = r.take();
  ASSERT_EQ(strs(cl), std::vector<std::string>{"release"});  // no start/end after release
  std::vector<Ev> iv = in.take();
  ASSERT_GE(iv.size(), 2u) << ::testing::PrintToString(strs(iv));
  EXPECT_EQ(str(iv[0]), ev("invalidate", MmuNotifyEvent::kRelease, 0, ~0ull));
  bool unmap_seen = false;
  for (size_t i = 1; i < iv.size(); ++i) {
    if (iv[i].event != MmuNotifyEvent::kUnmap) continue;
    unmap_seen = true;
    EXPECT_LE(iv[i].start, W);
    EXPECT_GE(iv[i].end, W + 4 * P);
    EXPECT_GT(iv[i].seq, cl[0].seq);  // release() came before the teardown's unmap
  }
  EXPECT_TRUE(unmap_seen) << ::testing::PrintToString(strs(iv));
  // The mm is dead (no users): a new interval cannot be inserted; the old one still holds it.
  IRec late;
  EXPECT_EQ(late.insert_mm(mm, W, P, &kIOps), Errno::kInval);
  // unregister after exit: release already ran, it does not run again.
  r.detach();
  EXPECT_EQ(r.releases, 1);
  in.remove();
}

TEST_F(MmuNotifierTest, BothStartEndAndSecondaryTlbsIsInval) {
  static const MmuNotifierOps both = [] {
    MmuNotifierOps x;
    x.invalidate_range_start = rec_start;
    x.invalidate_range_end = rec_end;
    x.arch_invalidate_secondary_tlbs = rec_tlb;
    return x;
  }();
  static const MmuNotifierOps start_and_tlb = [] {
    MmuNotifierOps x;
    x.invalidate_range_start = rec_start;
    x.arch_invalidate_secondary_tlbs = rec_tlb;
    return x;
  }();
  map(p1(), W, 2 * P);
  fill(p1(), W, 2 * P, 1);
  Rec a, b;
  EXPECT_EQ(a.attach(p1(), &both), Errno::kInval);
  EXPECT_EQ(b.attach(p1(), &start_and_tlb), Errno::kInval);
  EXPECT_EQ(a.reg_mm, nullptr);
  expected_violations_ = 2;  // each is WARNed about
  EXPECT_EQ(sys.violations(), 2u);
  ASSERT_TRUE(sys.munmap(p1(), W, 2 * P).ok());
  EXPECT_EQ(a.starts + a.tlbs + b.starts + b.tlbs, 0);
  Rec c;
  EXPECT_EQ(c.attach(p1(), start_end_ops()), Errno::kOk);
}

TEST_F(MmuNotifierTest, TakeAllLocksFailureIsIntrAndLeavesMmUsable) {
  ScopeExit restore([] { mmu_debug_fail_take_all_locks(false); });
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  mmu_debug_fail_take_all_locks(true);
  Rec r;
  EXPECT_EQ(r.attach(p1(), start_end_ops()), Errno::kIntr);
  EXPECT_EQ(r.reg_mm, nullptr);
  IRec in;
  EXPECT_EQ(in.insert(p1(), W, P, &kIOps), Errno::kIntr);
  EXPECT_FALSE(in.inserted);
  // The mm still works: system calls and accesses.
  map(p1(), W + 16 * P, 2 * P);
  fill(p1(), W + 16 * P, 2 * P, 2);
  ASSERT_TRUE(sys.mprotect(p1(), W, P, kProtRead).ok());
  ASSERT_TRUE(sys.munmap(p1(), W + 16 * P, 2 * P).ok());
  EXPECT_EQ(r.starts, 0);
  mmu_debug_fail_take_all_locks(false);
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_EQ(in.insert(p1(), W, P, &kIOps), Errno::kOk);
  ASSERT_TRUE(sys.munmap(p1(), W, 2 * P).ok());
  EXPECT_EQ(strs(r.take()), (std::vector<std::string>{ev("start", MmuNotifyEvent::kUnmap, W, W + 2 * P),
                                                       ev("end", MmuNotifyEvent::kUnmap, W, W + 2 * P)}));
  EXPECT_EQ(in.calls, 1);
  EXPECT_EQ(byte_at(p1(), W + 3 * P), 1);
}

TEST_F(MmuNotifierTest, SecondaryTlbsCalledWithCoveringRange) {
  map(p1(), W, 8 * P);
  fill(p1(), W, 8 * P, 1);
  Rec r;
  ASSERT_EQ(r.attach(p1(), tlb_ops()), Errno::kOk);
  auto covered = [](const std::vector<Ev>& v, uint64_t start, uint64_t end) {
    for (uint64_t a = start; a < end; a += P) {
      bool hit = false;
      for (const Ev& e : v) hit |= e.kind == Ev::kTlb && e.start <= a && a + P <= e.end;
      if (!hit) return false;
    }
    return true;
  };
  ASSERT_TRUE(sys.munmap(p1(), W, 2 * P).ok());
  std::vector<Ev> v = r.take();
  EXPECT_FALSE(v.empty());
  EXPECT_TRUE(covered(v, W, W + 2 * P)) << ::testing::PrintToString(strs(v));
  ASSERT_TRUE(sys.mprotect(p1(), W + 4 * P, 2 * P, kProtRead).ok());
  v = r.take();
  EXPECT_TRUE(covered(v, W + 4 * P, W + 6 * P)) << ::testing::PrintToString(strs(v));
  ASSERT_TRUE(sys.madvise(p1(), W + 6 * P, 2 * P, kMadvDontneed).ok());
  v = r.take();
  EXPECT_TRUE(covered(v, W + 6 * P, W + 8 * P)) << ::testing::PrintToString(strs(v));
  EXPECT_EQ(r.starts + r.ends, 0);
}

// get/put: one subscription per (mm, ops).
std::atomic<int> g_allocs{0}, g_frees{0}, g_get_releases{0};
MmuNotifier* getput_alloc(Mm*) {
  g_allocs++;
  return new Rec;
}
void getput_free(MmuNotifier* s) {
  g_frees++;
  delete rec_of(s);
}
void getput_release(MmuNotifier*, Mm*) { g_get_releases++; }
const MmuNotifierOps* getput_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.release = getput_release;
    x.invalidate_range_start = rec_start;
    x.invalidate_range_end = rec_end;
    x.alloc_notifier = getput_alloc;
    x.free_notifier = getput_free;
    return x;
  }();
  return &o;
}
const MmuNotifierOps* getput_ops2() {
  static const MmuNotifierOps o = *getput_ops();
  return &o;
}

TEST_F(MmuNotifierTest, GetPutSharesOneSubscriptionAndFreesAfterLastPut) {
  g_allocs = g_frees = g_get_releases = 0;
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Mm* mm = get_task_mm(p1());
  ASSERT_NE(mm, nullptr);
  Result<MmuNotifier*> a = mmu_notifier_get(getput_ops(), mm);
  Result<MmuNotifier*> b = mmu_notifier_get(getput_ops(), mm);
  Result<MmuNotifier*> c = mmu_notifier_get(getput_ops2(), mm);
  mmput_ref(mm);
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(a.value(), b.value());
  EXPECT_NE(a.value(), c.value());
  EXPECT_EQ(g_allocs, 2);
  EXPECT_EQ(a.value()->ops, getput_ops());
  ASSERT_TRUE(sys.munmap(p1(), W, P).ok());
  EXPECT_EQ(rec_of(a.value())->starts, 1);  // one subscription, called once
  mmu_notifier_put(a.value());
  mmu_notifier_synchronize();
  EXPECT_EQ(g_frees, 0);  // one user left
  ASSERT_TRUE(sys.munmap(p1(), W + P, P).ok());
  EXPECT_EQ(rec_of(b.value())->starts, 2);
  mmu_notifier_put(b.value());
  mmu_notifier_put(c.value());
  mmu_notifier_synchronize();
  EXPECT_EQ(g_frees, 2);
  EXPECT_EQ(g_get_releases, 0);  // put never calls release
  // Nothing is called any more (a freed subscriber would be a use-after-free under ASan).
  ASSERT_TRUE(sys.munmap(p1(), W + 2 * P, P).ok());
  sys.exit(p1());
  EXPECT_EQ(g_get_releases, 0);
  EXPECT_EQ(g_frees, 2);
}

TEST_F(MmuNotifierTest, GetFailureFreesTheAllocatedNotifier) {
  g_allocs = g_frees = g_get_releases = 0;
  ScopeExit restore([] { mmu_debug_fail_take_all_locks(false); });
  Mm* mm = get_task_mm(p1());
  mmu_debug_fail_take_all_locks(true);
  Result<MmuNotifier*> a = mmu_notifier_get(getput_ops(), mm);
  mmu_debug_fail_take_all_locks(false);
  EXPECT_EQ(a.error(), Errno::kIntr);
  EXPECT_EQ(g_allocs, 1);
  EXPECT_EQ(g_frees, 1);
  Result<MmuNotifier*> b = mmu_notifier_get(getput_ops(), mm);
  mmput_ref(mm);
  ASSERT_TRUE(b.ok());
  mmu_notifier_put(b.value());
  mmu_notifier_synchronize();
  EXPECT_EQ(g_frees, 2);
}

TEST_F(MmuNotifierTest, YoungCallbacksOrResultsAndTestYoungStopsAtFirstYoung) {
  Mm* mm = mm_of(p1());
  EXPECT_EQ(mmu_notifier_clear_young(mm, W, W + P), 0);  // no subscriptions at all
  EXPECT_EQ(mmu_notifier_test_young(mm, W), 0);
  Rec r[3];
  std::vector<int> order;
  for (int i = 0; i < 3; ++i) {
    r[i].id = i;
    r[i].young_order = &order;
    ASSERT_EQ(r[i].attach(p1(), young_ops()), Errno::kOk);
  }
  auto reset_calls = [&] {
    for (Rec& x : r) x.young_calls = 0;
    order.clear();
  };
  EXPECT_EQ(mmu_notifier_clear_young(mm, W, W + P), 0);
  EXPECT_EQ(mmu_notifier_clear_flush_young(mm, W, W + P), 0);
  for (Rec& x : r) EXPECT_EQ(x.young_calls, 2);
  for (int y = 0; y < 3; ++y) {
    // Only subscriber y is young: clear_* still ask everyone and OR the answers.
    for (int i = 0; i < 3; ++i) r[i].young = i == y;
    reset_calls();
    EXPECT_NE(mmu_notifier_clear_young(mm, W, W + P), 0) << y;
    EXPECT_NE(mmu_notifier_clear_flush_young(mm, W, W + P), 0) << y;
    for (Rec& x : r) EXPECT_EQ(x.young_calls, 2) << y;
    // test_young stops at the young one: it is the last called, nobody after it.
    reset_calls();
    EXPECT_EQ(mmu_notifier_test_young(mm, W), 1) << y;
    ASSERT_FALSE(order.empty());
    EXPECT_EQ(order.back(), y);
    EXPECT_EQ(r[y].young_calls, 1);
  }
  // Several young ones: the walk stops at the first, so exactly one young subscriber is asked.
  for (Rec& x : r) x.young = 1;
  reset_calls();
  EXPECT_EQ(mmu_notifier_test_young(mm, W), 1);
  EXPECT_EQ(order.size(), 1u);
  for (Rec& x : r) x.young = 0;
  reset_calls();
  EXPECT_EQ(mmu_notifier_test_young(mm, W), 0);
  EXPECT_EQ(order.size(), 3u);
}

// ==== non-blocking invalidation ====

TEST_F(MmuNotifierTest, NonblockEagainEndsEverySubscriberWithAnEnd) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Rec failing, b, c, d;
  failing.start_rc = kEagain;
  ASSERT_EQ(b.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_EQ(failing.attach(p1(), start_only_ops()), Errno::kOk);
  ASSERT_EQ(c.attach(p1(), start_end_ops()), Errno::kOk);
  ASSERT_EQ(d.attach(p1(), end_only_ops()), Errno::kOk);
  Mm* mm = failing.reg_mm;
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MmuNotifyEvent::kClear, 0, mm, W, W + 4 * P);
  mm->mmap_lock_.down_read();
  Errno e = mmu_notifier_invalidate_range_start_nonblock(&range);
  mm->mmap_lock_.up_read();
  EXPECT_EQ(e, Errno::kAgain);
  EXPECT_EQ(failing.starts, 1);
  EXPECT_EQ(failing.ends, 0);
  for (Rec* x : {&b, &c}) {
    EXPECT_EQ(x->starts, 1);
    EXPECT_EQ(x->ends, 1);
    std::vector<Ev> v = x->take();
    ASSERT_EQ(v.size(), 2u);
    EXPECT_EQ(str(v[0]), ev("start", MmuNotifyEvent::kClear, W, W + 4 * P, false));
    EXPECT_EQ(v[1].kind, Ev::kEnd);
  }
  EXPECT_EQ(d.ends, 1);
  // Success: every start, then the caller's end reaches every end once more.
  failing.start_rc = 0;
  mm->mmap_lock_.down_read();
  e = mmu_notifier_invalidate_range_start_nonblock(&range);
  if (e == Errno::kOk) mmu_notifier_invalidate_range_end(&range);
  mm->mmap_lock_.up_read();
  EXPECT_EQ(e, Errno::kOk);
  EXPECT_EQ(failing.starts, 2);
  EXPECT_EQ(b.ends, 2);
  EXPECT_EQ(c.ends, 2);
  EXPECT_EQ(d.ends, 2);
  // The checker's record of active ranges was undone on -EAGAIN: exit finds none left over.
  sys.exit(p1());
  EXPECT_EQ(sys.violations(), 0u) << msgs();
}

TEST_F(MmuNotifierTest, NonblockIntervalFailureReturnsEagainAndLeavesStateIdle) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  IRec ok_one, failing;
  failing.fail_nonblock = true;
  ASSERT_EQ(ok_one.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  ASSERT_EQ(failing.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  Rec cl;
  ASSERT_EQ(cl.attach(p1(), start_end_ops()), Errno::kOk);
  const uint64_t s_ok = mmu_interval_read_begin(&ok_one);
  const uint64_t s_fail = mmu_interval_read_begin(&failing);
  Mm* mm = cl.reg_mm;
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MmuNotifyEvent::kClear, 0, mm, W, W + P);
  mm->mmap_lock_.down_read();
  Errno e = mmu_notifier_invalidate_range_start_nonblock(&range);
  mm->mmap_lock_.up_read();
  EXPECT_EQ(e, Errno::kAgain);
  EXPECT_EQ(failing.calls, 1);
  // The classic subscribers are not called at all after an interval failed.
  EXPECT_EQ(cl.starts, 0);
  EXPECT_EQ(cl.ends, 0);
  // Idle again: read_begin does not wait, and a fresh sequence is stable.
  uint64_t n_ok = 0, n_fail = 0;
  BoundedThread t([&] {
    n_ok = mmu_interval_read_begin(&ok_one);
    n_fail = mmu_interval_read_begin(&failing);
  });
  t.join("read_begin after a failed non-blocking start");
  EXPECT_FALSE(failing.retry(n_fail));
  EXPECT_FALSE(ok_one.retry(n_ok));
  EXPECT_FALSE(failing.retry(s_fail));  // it did nothing, so nothing to retry
  if (ok_one.calls > 0) {
    EXPECT_TRUE(ok_one.retry(s_ok));
  }
  // Blocking invalidations still work and reach everyone.
  ASSERT_TRUE(sys.munmap(p1(), W, P).ok());
  EXPECT_EQ(failing.calls, 2);
  EXPECT_TRUE(failing.retry(n_fail));
  EXPECT_EQ(cl.starts, 1);
  EXPECT_EQ(cl.ends, 1);
  sys.exit(p1());
  EXPECT_EQ(sys.violations(), 0u) << msgs();
}

TEST_F(MmuNotifierTest, NonblockClassicFailureUndoesTheIntervalShare) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  IRec in;
  ASSERT_EQ(in.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  Rec failing, b;
  failing.start_rc = kEagain;
  ASSERT_EQ(failing.attach(p1(), start_only_ops()), Errno::kOk);
  ASSERT_EQ(b.attach(p1(), start_end_ops()), Errno::kOk);
  const uint64_t s = mmu_interval_read_begin(&in);
  Mm* mm = b.reg_mm;
  MmuNotifierRange range;
  mmu_notifier_range_init(&range, MmuNotifyEvent::kClear, 0, mm, W + P, W + 2 * P);
  mm->mmap_lock_.down_read();
  Errno e = mmu_notifier_invalidate_range_start_nonblock(&range);
  mm->mmap_lock_.up_read();
  EXPECT_EQ(e, Errno::kAgain);
  EXPECT_EQ(in.calls, 1);
  EXPECT_TRUE(in.retry(s));  // it was invalidated
  EXPECT_EQ(b.starts, 1);
  EXPECT_EQ(b.ends, 1);
  uint64_t n = 0;
  BoundedThread t([&] { n = mmu_interval_read_begin(&in); });
  t.join("read_begin after a failed classic start");
  EXPECT_FALSE(in.retry(n));
  // An insert now is an idle insert: its read_begin does not wait either.
  IRec later;
  ASSERT_EQ(later.insert(p1(), W, P, &kIOps), Errno::kOk);
  BoundedThread t2([&] { n = mmu_interval_read_begin(&later); });
  t2.join("read_begin of an interval inserted after the failure");
  EXPECT_FALSE(later.retry(n));
  sys.exit(p1());
  EXPECT_EQ(sys.violations(), 0u) << msgs();
}

// ==== interval notifiers ====

TEST_F(MmuNotifierTest, IntervalInsertRejectsEmptyAndWrappingRanges) {
  IRec a, b, c, d;
  EXPECT_EQ(a.insert(p1(), W, 0, &kIOps), Errno::kOverflow);
  EXPECT_EQ(b.insert(p1(), ~0ull & ~(P - 1), 2 * P, &kIOps), Errno::kOverflow);
  EXPECT_EQ(c.insert(p1(), 2, ~0ull, &kIOps), Errno::kOverflow);
  // Up to the very last byte is fine.
  EXPECT_EQ(d.insert(p1(), ~0ull - P + 1, P, &kIOps), Errno::kOk);
  EXPECT_EQ(mmu_interval_notifier_start(&d), ~0ull - P + 1);
  EXPECT_EQ(mmu_interval_notifier_last(&d), ~0ull);
}

TEST_F(MmuNotifierTest, ReadRetryOnlyAfterAnOverlappingInvalidation) {
  map(p1(), W, 8 * P);
  fill(p1(), W, 8 * P, 1);
  IRec in;
  ASSERT_EQ(in.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  const uint64_t s = mmu_interval_read_begin(&in);
  EXPECT_EQ(s & 1, 1u);
  EXPECT_FALSE(in.retry(s));
  EXPECT_FALSE(mmu_interval_check_retry(&in, s));
  ASSERT_TRUE(sys.munmap(p1(), W + 6 * P, P).ok());  // outside [W, W+4P)
  ASSERT_TRUE(sys.mprotect(p1(), W + 4 * P, P, kProtRead).ok());  // adjacent, outside
  EXPECT_EQ(in.calls, 0);
  EXPECT_FALSE(in.retry(s));
  ASSERT_TRUE(sys.munmap(p1(), W + 3 * P, P).ok());  // the last page of the interval
  EXPECT_EQ(in.calls, 1);
  EXPECT_TRUE(in.retry(s));
  EXPECT_TRUE(mmu_interval_check_retry(&in, s));
  EXPECT_EQ(strs(in.take()), std::vector<std::string>{ev("invalidate", MmuNotifyEvent::kUnmap, W + 3 * P, W + 4 * P)});
  const uint64_t s2 = mmu_interval_read_begin(&in);
  EXPECT_NE(s2, s);
  EXPECT_FALSE(in.retry(s2));
}

// The worked example of the reference, section 1.8.
TEST_F(MmuNotifierTest, OddEvenSequenceWorkedExample) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  IRec x;
  Gate gate;
  x.gate = &gate;
  ASSERT_EQ(x.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  const uint64_t s = mmu_interval_read_begin(&x);  // idle: global 2k, s = 2k-1
  EXPECT_EQ(s % 2, 1u);
  gate.arm();
  BoundedThread unmapper([&] { EXPECT_TRUE(sys.munmap(p1(), W, P).ok()); });
  ASSERT_TRUE(gate.wait_entered());
  // Inside the invalidation: global 2k+1, set_seq gave the interval 2k+1.
  const uint64_t cur = x.last_cur_seq;
  EXPECT_EQ(cur % 2, 1u);
  EXPECT_EQ(cur, s + 2);
  EXPECT_TRUE(x.retry(s));
  std::atomic<bool> open_at_return{false};
  uint64_t s3 = 0;
  BoundedThread reader([&] {
    s3 = mmu_interval_read_begin(&x);  // 2k+1 == global: waits for 2k+2
    open_at_return = gate.is_open();
  });
  std::this_thread::sleep_for(50ms);  // lets the reader reach its wait (coverage only)
  EXPECT_FALSE(reader.done());
  gate.open();
  unmapper.join("munmap");
  reader.join("read_begin during an invalidation");
  EXPECT_TRUE(open_at_return) << "read_begin returned while the invalidation was still running";
  EXPECT_EQ(s3, cur);
  EXPECT_FALSE(x.retry(s3));
  // The global sequence is now 2k+2: an idle insert gets global-1 == 2k+1.
  IRec y;
  ASSERT_EQ(y.insert(p1(), W + 64 * P, P, &kIOps), Errno::kOk);
  EXPECT_EQ(mmu_interval_read_begin(&y), cur);
  // A second invalidation moves to 2k+3.
  x.gate = nullptr;
  ASSERT_TRUE(sys.munmap(p1(), W + P, P).ok());
  EXPECT_EQ(x.last_cur_seq, cur + 2);
  EXPECT_TRUE(x.retry(s3));
}

TEST_F(MmuNotifierTest, InsertAndRemoveDuringAnInvalidation) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Mm* mm = mm_of(p1());
  IRec blocker, z, y, y2;
  Gate gate;
  blocker.gate = &gate;
  ASSERT_EQ(blocker.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  ASSERT_EQ(z.insert(p1(), W + 64 * P, P, &kIOps2), Errno::kOk);
  gate.arm();
  BoundedThread unmapper([&] { EXPECT_TRUE(sys.munmap(p1(), W, P).ok()); });
  ASSERT_TRUE(gate.wait_entered());
  // Frozen. An insert is deferred; find() sees it anyway (program order).
  ASSERT_EQ(y.insert_mm(mm, W + 128 * P, P, &kIOps2), Errno::kOk);
  MmuIntervalNotifier* f = mmu_interval_notifier_find(mm, &kIOps2, W + 128 * P, W + 128 * P);
  EXPECT_EQ(f, &y);
  if (f) mmu_interval_notifier_put_ref(f);
  // A pending insert removed while frozen: returns at once, and is never found again.
  ASSERT_EQ(y2.insert_mm(mm, W + 256 * P, P, &kIOps2), Errno::kOk);
  {
    BoundedThread t([&] { y2.remove(); });
    t.join("remove of a pending insert", 10s);
  }
  EXPECT_FALSE(gate.is_open());
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps2, W + 256 * P, W + 256 * P), nullptr);
  // The new interval's first read_begin waits for the invalidation to end.
  std::atomic<bool> reader_saw_open{false};
  uint64_t sy = 0;
  BoundedThread reader([&] {
    sy = mmu_interval_read_begin(&y);
    reader_saw_open = gate.is_open();
  });
  // A remove of an interval in the tree returns only after the invalidation ended.
  std::atomic<bool> remover_saw_open{false};
  BoundedThread remover([&] {
    z.remove();
    remover_saw_open = gate.is_open();
  });
  // Once the remove has begun, find() does not return z (poll: the remover may not have
  // started yet; bounded).
  bool gone = false;
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    MmuIntervalNotifier* g = mmu_interval_notifier_find(mm, &kIOps2, W + 64 * P, W + 64 * P);
    if (!g) {
      gone = true;
      break;
    }
    EXPECT_EQ(g, &z);
    mmu_interval_notifier_put_ref(g);
    std::this_thread::yield();
  }
  EXPECT_TRUE(gone);
  std::this_thread::sleep_for(30ms);  // coverage only: lets both reach their waits
  EXPECT_FALSE(reader.done());
  EXPECT_FALSE(remover.done());
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps2, W + 64 * P, W + 64 * P), nullptr);
  gate.open();
  unmapper.join("munmap");
  reader.join("read_begin of a deferred insert");
  remover.join("remove during an invalidation");
  EXPECT_TRUE(reader_saw_open) << "read_begin of a deferred insert did not wait";
  EXPECT_TRUE(remover_saw_open) << "remove returned before the invalidation ended";
  EXPECT_FALSE(y.retry(sy));
  // y is in the tree now and receives invalidations; z and y2 do not.
  map(p1(), W + 64 * P, P);
  map(p1(), W + 128 * P, P);
  map(p1(), W + 256 * P, P);
  const int z_calls = z.calls, y2_calls = y2.calls;
  ASSERT_TRUE(sys.munmap(p1(), W + 64 * P, 256 * P).ok());
  EXPECT_EQ(y.calls, 1);
  EXPECT_TRUE(y.retry(sy));
  EXPECT_EQ(z.calls, z_calls);
  EXPECT_EQ(y2.calls, y2_calls);
}

// "Partially excluded": an invalidation is running that hit no interval (seq even). An
// insert then forces full exclusion (seq odd): its first read_begin waits for that
// invalidation to end, while an interval inserted earlier and not hit does not wait.
Gate* g_classic_gate = nullptr;
int gated_start(MmuNotifier* s, const MmuNotifierRange* r) {
  rec_start(s, r);
  if (g_classic_gate) g_classic_gate->pass();
  return 0;
}
const MmuNotifierOps* gated_ops() {
  static const MmuNotifierOps o = [] {
    MmuNotifierOps x;
    x.release = rec_release;
    x.invalidate_range_start = gated_start;
    x.invalidate_range_end = rec_end;
    return x;
  }();
  return &o;
}

TEST_F(MmuNotifierTest, InsertWhilePartiallyExcludedWaitsForTheRunningInvalidation) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Mm* mm = mm_of(p1());
  IRec far;
  ASSERT_EQ(far.insert(p1(), W + 64 * P, P, &kIOps), Errno::kOk);
  const uint64_t s_far = mmu_interval_read_begin(&far);
  Gate gate;
  g_classic_gate = &gate;
  ScopeExit clear([] { g_classic_gate = nullptr; });
  Rec blocker;
  ASSERT_EQ(blocker.attach(p1(), gated_ops()), Errno::kOk);
  gate.arm();
  BoundedThread unmapper([&] { EXPECT_TRUE(sys.munmap(p1(), W, P).ok()); });
  ASSERT_TRUE(gate.wait_entered());
  EXPECT_EQ(far.calls, 0);
  // The interval that was not hit: read_begin does not wait.
  {
    uint64_t n = 0;
    BoundedThread t([&] { n = mmu_interval_read_begin(&far); });
    t.join("read_begin of an interval the running invalidation does not hit", 10s);
    EXPECT_EQ(n, s_far);
    EXPECT_FALSE(gate.is_open());
  }
  IRec y;
  ASSERT_EQ(y.insert_mm(mm, W, P, &kIOps), Errno::kOk);  // overlaps the running munmap
  std::atomic<bool> saw_open{false};
  uint64_t sy = 0;
  BoundedThread reader([&] {
    sy = mmu_interval_read_begin(&y);
    saw_open = gate.is_open();
  });
  std::this_thread::sleep_for(30ms);  // coverage only
  EXPECT_FALSE(reader.done());
  gate.open();
  unmapper.join("munmap");
  reader.join("read_begin of an interval inserted during an invalidation");
  EXPECT_TRUE(saw_open) << "read_begin returned while the invalidation was still running";
  EXPECT_FALSE(y.retry(sy));
  EXPECT_EQ(y.calls, 0);  // inserted after that invalidation's start: not called by it
  // Idle again: a later insert does not wait.
  IRec z;
  ASSERT_EQ(z.insert_mm(mm, W, P, &kIOps), Errno::kOk);
  BoundedThread t2([&] { (void)mmu_interval_read_begin(&z); });
  t2.join("read_begin after the invalidation ended", 10s);
}

// put() may be called from release(): exit releases, the subscriber puts itself, and it is
// freed after a grace period.
std::atomic<int> g_self_put_frees{0};
void self_put_release(MmuNotifier* s, Mm*) {
  rec_of(s)->releases++;
  mmu_notifier_put(s);
}
void self_put_free(MmuNotifier* s) {
  g_self_put_frees++;
  delete rec_of(s);
}
MmuNotifier* self_put_alloc(Mm*) { return new Rec; }

TEST_F(MmuNotifierTest, PutFromReleaseAtExit) {
  static const MmuNotifierOps ops = [] {
    MmuNotifierOps x;
    x.release = self_put_release;
    x.invalidate_range_start = rec_start;
    x.invalidate_range_end = rec_end;
    x.alloc_notifier = self_put_alloc;
    x.free_notifier = self_put_free;
    return x;
  }();
  g_self_put_frees = 0;
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Result<Process*> c = sys.fork(p1());
  ASSERT_TRUE(c.ok());
  Mm* mm = get_task_mm(c.value());
  Result<MmuNotifier*> n = mmu_notifier_get(&ops, mm);
  mmput_ref(mm);
  ASSERT_TRUE(n.ok());
  ASSERT_TRUE(sys.munmap(c.value(), W, P).ok());
  EXPECT_EQ(rec_of(n.value())->starts, 1);
  sys.exit(c.value());
  mmu_notifier_synchronize();
  EXPECT_EQ(g_self_put_frees, 1);
}

// The last find() reference dropped while remove() drops the last reference on the mm
// (its process has exited): put_ref must not touch the freed per-mm state (ASan).
TEST_F(MmuNotifierTest, PutRefRacingRemoveOfTheLastMmReference) {
  map(p1(), W, P);
  constexpr int kIters = 400;
  for (int i = 0; i < kIters; ++i) {
    Result<Process*> c = sys.fork(p1());
    ASSERT_TRUE(c.ok());
    Mm* mm = get_task_mm(c.value());
    auto q = std::make_unique<IRec>();
    ASSERT_EQ(q->insert_mm(mm, W, P, &kIOps), Errno::kOk);
    mmput_ref(mm);
    sys.exit(c.value());  // q now holds the last reference on mm
    q->take();
    MmuIntervalNotifier* f = mmu_interval_notifier_find(mm, &kIOps, W, W);
    ASSERT_EQ(f, q.get());
    std::atomic<int> ready{0};
    BoundedThread putter([&] {
      ready++;
      while (ready.load() < 2) {
      }
      mmu_interval_notifier_put_ref(f);
    });
    BoundedThread remover([&] {
      ready++;
      while (ready.load() < 2) {
      }
      q->remove();
    });
    putter.join("put_ref");
    remover.join("remove racing put_ref");
  }
}

TEST_F(MmuNotifierTest, FindBasics) {
  Mm* mm = mm_of(p1());
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps, 0, ~0ull), nullptr);  // no subscriptions
  IRec a, b, c;
  ASSERT_EQ(a.insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  ASSERT_EQ(b.insert(p1(), W + 2 * P, 4 * P, &kIOps), Errno::kOk);
  ASSERT_EQ(c.insert(p1(), W, 16 * P, &kIOps2), Errno::kOk);
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps, W + 6 * P, W + 100 * P), nullptr);
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps, 0, W - 1), nullptr);
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps, W + P, W), nullptr);  // last < start
  MmuIntervalNotifier* f = mmu_interval_notifier_find(mm, &kIOps, W + 3 * P, W + 3 * P);
  EXPECT_EQ(f, &a);  // the first in start order
  if (f) mmu_interval_notifier_put_ref(f);
  f = mmu_interval_notifier_find(mm, &kIOps, W + 5 * P, W + 5 * P);
  EXPECT_EQ(f, &b);
  if (f) mmu_interval_notifier_put_ref(f);
  f = mmu_interval_notifier_find(mm, &kIOps2, W + 8 * P, W + 8 * P);
  EXPECT_EQ(f, &c);  // ops filter
  if (f) mmu_interval_notifier_put_ref(f);
  a.remove();
  f = mmu_interval_notifier_find(mm, &kIOps, W, W + 3 * P);
  EXPECT_EQ(f, &b);
  if (f) mmu_interval_notifier_put_ref(f);
}

TEST_F(MmuNotifierTest, RemoveWaitsForFindReference) {
  Mm* mm = mm_of(p1());
  IRec a;
  ASSERT_EQ(a.insert(p1(), W, P, &kIOps), Errno::kOk);
  MmuIntervalNotifier* f = mmu_interval_notifier_find(mm, &kIOps, W, W);
  ASSERT_EQ(f, &a);
  std::atomic<bool> put_done{false}, put_before_return{false};
  BoundedThread remover([&] {
    a.remove();
    put_before_return = put_done.load();
  });
  // Once remove has begun, find() no longer returns it, even though the reference is held.
  for (auto until = std::chrono::steady_clock::now() + 10s; std::chrono::steady_clock::now() < until;) {
    MmuIntervalNotifier* g = mmu_interval_notifier_find(mm, &kIOps, W, W);
    if (!g) break;
    mmu_interval_notifier_put_ref(g);
    std::this_thread::yield();
  }
  EXPECT_EQ(mmu_interval_notifier_find(mm, &kIOps, W, W), nullptr);
  std::this_thread::sleep_for(30ms);  // coverage only
  EXPECT_FALSE(remover.done());
  put_done = true;
  mmu_interval_notifier_put_ref(f);
  remover.join("remove waiting for a find reference");
  EXPECT_TRUE(put_before_return) << "remove returned while a find reference was held";
}

struct Victim : MmuIntervalNotifier {
  static constexpr uint64_t kAlive = 0xa11fe, kDead = 0xdead;
  std::atomic<uint64_t> magic{kAlive};
};
bool victim_invalidate(MmuIntervalNotifier* s, const MmuNotifierRange*, uint64_t cur_seq) {
  mmu_interval_set_seq(s, cur_seq);
  return true;
}
const MmuIntervalNotifierOps kVictimOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = victim_invalidate;
  return o;
}();

TEST_F(MmuNotifierTest, FindRacingRemoveNeverReturnsAFreedNotifier) {
  Mm* mm = mm_of(p1());
  IRec anchor;  // makes the subscriptions exist before the race
  ASSERT_EQ(anchor.insert(p1(), W + 1024 * P, P, &kIOps), Errno::kOk);
  constexpr int kIters = 3000;
  std::atomic<bool> stop{false};
  std::atomic<int> hits{0}, bad{0};
  BoundedThread finder([&] {
    while (!stop.load()) {
      MmuIntervalNotifier* f = mmu_interval_notifier_find(mm, &kVictimOps, W, W + P - 1);
      if (f) {
        if (static_cast<Victim*>(f)->magic.load() != Victim::kAlive) bad++;
        hits++;
        mmu_interval_notifier_put_ref(f);
      }
      std::this_thread::yield();  // two cores: leave the other thread some room
    }
  });
  for (int i = 0; i < kIters; ++i) {
    auto* v = new Victim;
    ASSERT_EQ(mmu_interval_notifier_insert(v, mm, W, P, &kVictimOps), Errno::kOk);
    if (i % 2) std::this_thread::yield();
    mmu_interval_notifier_remove(v);
    v->magic = Victim::kDead;
    delete v;
  }
  stop = true;
  finder.join("finder");
  EXPECT_EQ(bad, 0);
  std::printf("successful finds during %d insert/remove rounds: %d\n", kIters, hits.load());
}

TEST_F(MmuNotifierTest, ConcurrentReaderNeverInstallsStaleTranslations) {
  for (DeviceMirror::Mode mode : {DeviceMirror::Mode::kInterval, DeviceMirror::Mode::kClassic}) {
    SCOPED_TRACE(mode == DeviceMirror::Mode::kInterval ? "interval" : "classic");
    constexpr uint64_t kPages = 16;
    map(p1(), W, kPages * P);
    fill(p1(), W, kPages * P, 1);
    auto m = DeviceMirror::attach(p1(), mode, W, kPages * P);
    ASSERT_TRUE(m.ok()) << errno_name(m.error());
    DeviceMirror* dev = m.value().get();
    std::atomic<bool> stop{false};
    std::atomic<uint64_t> ok_faults{0};
    BoundedThread reader([&] {
      uint64_t k = 0;
      while (!stop.load()) {
        const uint64_t page = (k * 7) % kPages, n = 1 + k % 4;
        const bool write = k % 3 == 0;
        Result<uint64_t> r = dev->fault(W + page * P, std::min(n, kPages - page) * P, write);
        if (r.ok()) ok_faults++;
        k++;
      }
    });
    System::bind_thread_to_cpu(0);
    // At least 150 rounds, and on until the reader has installed some translations in
    // between (bounded): the classic protocol retries on every invalidation of the mm.
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    for (int i = 0; i < 150 || (ok_faults.load() < 20 && std::chrono::steady_clock::now() < deadline); ++i) {
      const uint64_t a = W + (i % 8) * P;
      switch (i % 5) {
        case 0:
          ASSERT_TRUE(sys.munmap(p1(), a, 2 * P).ok());
          map(p1(), a, 2 * P);
          fill(p1(), a, 2 * P, static_cast<uint8_t>(i));
          break;
        case 1:
          ASSERT_TRUE(sys.mprotect(p1(), W, kPages * P, kProtRead).ok());
          ASSERT_TRUE(sys.mprotect(p1(), W, kPages * P, RW).ok());
          fill(p1(), a, P, static_cast<uint8_t>(i));
          break;
        case 2:
          ASSERT_TRUE(sys.madvise(p1(), a, 4 * P, kMadvDontneed).ok());
          fill(p1(), a, 4 * P, static_cast<uint8_t>(i));
          break;
        case 3: {
          Result<Process*> c = sys.fork(p1());
          ASSERT_TRUE(c.ok());
          fill(p1(), a, 3 * P, static_cast<uint8_t>(i));  // COW breaks
          sys.exit(c.value());
          break;
        }
        default:
          ASSERT_TRUE(sys.munmap(p1(), W + 12 * P, 4 * P).ok());
          map(p1(), W + 12 * P, 4 * P);
          break;
      }
      if (i % 4 == 0) std::this_thread::sleep_for(50us);  // widens the windows (coverage only)
    }
    stop = true;
    reader.join("mirror faults");
    System::bind_thread_to_cpu(-1);
    EXPECT_GT(ok_faults.load(), 0u);
    EXPECT_GT(dev->stats().invalidations, 0u);
    m.value()->detach();
    ASSERT_TRUE(sys.munmap(p1(), W, kPages * P).ok());
    EXPECT_EQ(sys.violations(), 0u) << msgs();
  }
}

// ==== unregister racing exit ====

TEST_F(MmuNotifierTest, UnregisterRacingExitReleasesExactlyOnce) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  constexpr int kIters = 150;
  for (int i = 0; i < kIters; ++i) {
    Result<Process*> c = sys.fork(p1());
    ASSERT_TRUE(c.ok());
    Process* child = c.value();
    auto r = std::make_unique<Rec>();
    ASSERT_EQ(r->attach(child, start_end_ops()), Errno::kOk);
    Mm* mm = r->reg_mm;
    r->reg_mm = nullptr;  // unregistered by hand below
    std::atomic<int> ready{0};
    BoundedThread exiter([&] {
      ready++;
      while (ready.load() < 2) {
      }
      sys.exit(child);
    });
    BoundedThread unreg([&] {
      ready++;
      while (ready.load() < 2) {
      }
      mmu_notifier_unregister(r.get(), mm);
    });
    exiter.join("exit racing unregister");
    unreg.join("unregister racing exit");
    ASSERT_EQ(r->releases, 1) << "iteration " << i;
  }
}

// unregister waits for a callback of the subscriber that is running, and nothing is called
// after it returns (the subscriber may be freed then).
TEST_F(MmuNotifierTest, UnregisterWaitsForARunningCallback) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Gate gate;
  g_classic_gate = &gate;
  ScopeExit clear([] { g_classic_gate = nullptr; });
  auto r = std::make_unique<Rec>();
  ASSERT_EQ(r->attach(p1(), gated_ops()), Errno::kOk);
  Mm* mm = r->reg_mm;
  r->reg_mm = nullptr;
  gate.arm();
  BoundedThread unmapper([&] { EXPECT_TRUE(sys.munmap(p1(), W, P).ok()); });
  ASSERT_TRUE(gate.wait_entered());
  std::atomic<bool> saw_open{false};
  BoundedThread unreg([&] {
    mmu_notifier_unregister(r.get(), mm);
    saw_open = gate.is_open();
  });
  std::this_thread::sleep_for(30ms);  // coverage only
  EXPECT_FALSE(unreg.done());
  gate.open();
  unmapper.join("munmap");
  unreg.join("unregister");
  EXPECT_TRUE(saw_open) << "unregister returned while a callback was running";
  EXPECT_EQ(r->releases, 1);
  const int starts = r->starts, ends = r->ends;
  EXPECT_LE(ends, starts);
  r.reset();  // freed: a later callback would be a use-after-free
  ASSERT_TRUE(sys.munmap(p1(), W + P, P).ok());
  ASSERT_TRUE(sys.mprotect(p1(), W + 2 * P, P, kProtRead).ok());
}

TEST_F(MmuNotifierTest, GetOverflowsAtUintMax) {
  g_allocs = g_frees = g_get_releases = 0;
  Mm* mm = get_task_mm(p1());
  Result<MmuNotifier*> a = mmu_notifier_get(getput_ops(), mm);
  ASSERT_TRUE(a.ok());
  a.value()->users = UINT_MAX - 1;  // test-only: no other thread uses it
  Result<MmuNotifier*> b = mmu_notifier_get(getput_ops(), mm);
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b.value(), a.value());
  Result<MmuNotifier*> c = mmu_notifier_get(getput_ops(), mm);
  EXPECT_EQ(c.error(), Errno::kOverflow);
  mmput_ref(mm);
  EXPECT_EQ(g_allocs, 1);
  a.value()->users = 1;
  mmu_notifier_put(a.value());
  mmu_notifier_synchronize();
  EXPECT_EQ(g_frees, 1);
}

// remove() of the interval whose own invalidate() is running returns after it finished.
TEST_F(MmuNotifierTest, RemoveWaitsForItsOwnRunningInvalidate) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  auto x = std::make_unique<IRec>();
  Gate gate;
  x->gate = &gate;
  ASSERT_EQ(x->insert(p1(), W, 4 * P, &kIOps), Errno::kOk);
  gate.arm();
  BoundedThread unmapper([&] { EXPECT_TRUE(sys.munmap(p1(), W, P).ok()); });
  ASSERT_TRUE(gate.wait_entered());
  std::atomic<bool> saw_open{false};
  BoundedThread remover([&] {
    x->remove();
    saw_open = gate.is_open();
  });
  std::this_thread::sleep_for(30ms);  // coverage only
  EXPECT_FALSE(remover.done());
  gate.open();
  unmapper.join("munmap");
  remover.join("remove");
  EXPECT_TRUE(saw_open) << "remove returned while its invalidate() was running";
  x.reset();
  ASSERT_TRUE(sys.munmap(p1(), W + P, 3 * P).ok());  // no call into the freed interval
}

// DeviceMirror: detach racing faults, with the mirrored process gone (the subscription holds
// the last reference on the address space).
TEST_F(MmuNotifierTest, MirrorDetachRacingFaultsAfterExit) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  for (int i = 0; i < 200; ++i) {
    const DeviceMirror::Mode mode = i % 2 ? DeviceMirror::Mode::kClassic : DeviceMirror::Mode::kInterval;
    Result<Process*> c = sys.fork(p1());
    ASSERT_TRUE(c.ok());
    auto m = DeviceMirror::attach(c.value(), mode);
    ASSERT_TRUE(m.ok());
    DeviceMirror* dev = m.value().get();
    EXPECT_TRUE(dev->fault(W, P, false).ok());
    sys.exit(c.value());
    std::atomic<int> ready{0};
    BoundedThread faulter([&] {
      ready++;
      while (ready.load() < 2) {
      }
      for (int k = 0; k < 20; ++k) {
        Result<uint64_t> r = dev->fault(W, P, false);
        EXPECT_FALSE(r.ok());
      }
    });
    BoundedThread detacher([&] {
      ready++;
      while (ready.load() < 2) {
      }
      dev->detach();
    });
    faulter.join("faults");
    detacher.join("detach");
    EXPECT_EQ(dev->pages_mirrored(), 0u);
  }
}

// ==== rmap notifiers ====

struct RmapRec : MmuRmapNotifier {
  std::mutex mu;
  std::vector<uint64_t> pfns;
  std::vector<bool> locked;
  std::vector<Page*> pages;
  System* sys = nullptr;
};
void rmap_invalidate_page(MmuRmapNotifier* n, Page* page, uint64_t pfn) {
  RmapRec* r = static_cast<RmapRec*>(n);
  std::lock_guard<std::mutex> g(r->mu);
  r->pfns.push_back(pfn);
  r->locked.push_back(r->sys->mem().pfn_to_page(pfn)->test(PG_locked));
  r->pages.push_back(page);
}

TEST_F(MmuNotifierTest, RmapNotifierCalledForFlaggedPagesWithPageLocked) {
  static const MmuRmapNotifierOps ops = [] {
    MmuRmapNotifierOps o;
    o.invalidate_page = rmap_invalidate_page;
    return o;
  }();
  RmapRec r;
  r.ops = &ops;
  r.sys = &sys;
  mmu_rmap_notifier_register(&sys, &r);
  ScopeExit unreg([&] { mmu_rmap_notifier_unregister(&sys, &r); });
  ASSERT_TRUE(sys.memfd("rmap", 4 * P).ok());
  ASSERT_TRUE(sys.mmap_file(p1(), W, 4 * P, RW, SHARED_FILE, "rmap", 0, System::FileMode::kReadWrite).ok());
  fill(p1(), W, 4 * P, 0x5a);
  Mm* mm = get_task_mm(p1());
  ASSERT_NE(mm, nullptr);
  uint64_t pfn[4];
  for (int i = 0; i < 4; ++i) {
    bool writable = false;
    Result<uint64_t> f = mm_get_pfn(mm, W + i * P, /*fault=*/false, /*write=*/false, &writable);
    ASSERT_TRUE(f.ok()) << errno_name(f.error());
    pfn[i] = f.value();
  }
  mmput_ref(mm);
  set_page_external_rmap(&sys, pfn[1]);
  // Shrinking past the other pages first: they are unflagged, no call.
  ASSERT_TRUE(sys.truncate("rmap", 2 * P).ok());
  {
    std::lock_guard<std::mutex> g(r.mu);
    EXPECT_TRUE(r.pfns.empty());
  }
  ASSERT_TRUE(sys.truncate("rmap", 0).ok());
  std::lock_guard<std::mutex> g(r.mu);
  ASSERT_EQ(r.pfns.size(), 1u);
  EXPECT_EQ(r.pfns[0], pfn[1]);
  EXPECT_TRUE(r.locked[0]) << "invalidate_page called without the page lock";
  EXPECT_EQ(r.pages[0], sys.mem().pfn_to_page(pfn[1]));
}

// ==== the coherence checker ====

void checker_run(System& sys, Process* p, DeviceMirror::Mode mode, bool* ok) {
  *ok = false;
  auto fill = [&](Process* q, uint64_t addr, uint64_t len, uint8_t v) {
    AccessResult r = sys.access(q, 0, addr, len, true, [v](uint8_t* d, uint64_t, uint64_t n) {
      for (uint64_t i = 0; i < n; i++) d[i] = v;
    });
    ASSERT_TRUE(r.ok());
  };
  ASSERT_TRUE(sys.mmap(p, W, 16 * P, RW, PRIV).ok());
  fill(p, W, 16 * P, 1);
  auto m = DeviceMirror::attach(p, mode);
  ASSERT_TRUE(m.ok());
  DeviceMirror& dev = *m.value();
  auto fault = [&](uint64_t addr, uint64_t len, bool write) {
    Result<uint64_t> r = dev.fault(addr, len, write);
    ASSERT_TRUE(r.ok()) << hex(addr) << " " << errno_name(r.error());
  };
  fault(W, 16 * P, true);
  EXPECT_EQ(dev.show(W, 4 * P), "wwww");
  Result<Process*> c = sys.fork(p);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(dev.show(W, 2 * P), "--");  // fork write-protected the parent: mirror dropped it
  fault(W, 16 * P, false);
  EXPECT_EQ(dev.show(W, P), "r");
  fill(p, W + P, P, 2);  // COW
  fault(W, 4 * P, true);
  std::vector<uint8_t> data;
  ASSERT_TRUE(dev.read(W + P, 1, &data));
  EXPECT_EQ(data[0], 2);
  ASSERT_TRUE(sys.mprotect(p, W, 8 * P, kProtRead).ok());
  fault(W, 8 * P, false);
  EXPECT_EQ(dev.show(W, P), "r");
  ASSERT_TRUE(sys.mprotect(p, W, 8 * P, RW).ok());
  fault(W, 8 * P, true);
  ASSERT_TRUE(sys.munmap(p, W + 12 * P, 2 * P).ok());
  EXPECT_EQ(dev.show(W + 12 * P, 2 * P), "--");
  ASSERT_TRUE(sys.madvise(p, W + 4 * P, 2 * P, kMadvDontneed).ok());
  fault(W, 6 * P, true);
  Result<uint64_t> mv = sys.mremap(p, W + 8 * P, 2 * P, 2 * P, kMremapMayMove | kMremapFixed, W + 32 * P);
  ASSERT_TRUE(mv.ok());
  fault(W + 32 * P, 2 * P, true);
  ASSERT_TRUE(sys.memfd("chk", 4 * P).ok());
  ASSERT_TRUE(sys.mmap_file(p, W + 64 * P, 4 * P, RW, SHARED_FILE, "chk", 0, System::FileMode::kReadWrite).ok());
  fill(p, W + 64 * P, 4 * P, 3);
  fault(W + 64 * P, 4 * P, true);
  ASSERT_TRUE(sys.truncate("chk", P).ok());
  EXPECT_EQ(dev.show(W + 64 * P, 4 * P), "w---");
  fault(W + 64 * P, P, false);
  sys.exit(c.value());
  fault(W, 4 * P, true);
  sys.exit(p);
  EXPECT_EQ(dev.pages_mirrored(), 0u);
  dev.detach();
  *ok = true;
}

TEST_F(MmuNotifierTest, CheckerCleanRunWithIntervalMirror) {
  bool ok = false;
  checker_run(sys, p1(), DeviceMirror::Mode::kInterval, &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(sys.violations(), 0u) << msgs();
}

TEST_F(MmuNotifierTest, CheckerCleanRunWithClassicMirror) {
  bool ok = false;
  checker_run(sys, p1(), DeviceMirror::Mode::kClassic, &ok);
  EXPECT_TRUE(ok);
  EXPECT_EQ(sys.violations(), 0u) << msgs();
}

class MmuCheckerCatches : public MmuNotifierTest,
                          public ::testing::WithParamInterface<std::tuple<DeviceMirror::Mode, MmuNotifyEvent>> {};

TEST_P(MmuCheckerCatches, DroppedBracket) {
  const DeviceMirror::Mode mode = std::get<0>(GetParam());
  const MmuNotifyEvent dropped = std::get<1>(GetParam());
  expected_violations_ = -1;
  ScopeExit restore([] { mmu_debug_drop_bracket(-1); });
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  auto m = DeviceMirror::attach(p1(), mode);
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m.value()->fault(W, 4 * P, true).ok());
  ASSERT_EQ(m.value()->show(W, 4 * P), "wwww");
  ASSERT_EQ(sys.violations(), 0u) << msgs();
  mmu_debug_drop_bracket(static_cast<int>(dropped));
  if (dropped == MmuNotifyEvent::kProtectionVma) {
    ASSERT_TRUE(sys.mprotect(p1(), W, 4 * P, kProtRead).ok());
  } else {
    ASSERT_TRUE(sys.munmap(p1(), W, 2 * P).ok());
  }
  mmu_debug_drop_bracket(-1);
  EXPECT_GT(sys.violations(), 0u) << "the checker missed a change outside any bracket";
  // The mirror was never told: its entries are still there.
  EXPECT_EQ(m.value()->show(W, P), "w");
  m.value()->detach();
}

INSTANTIATE_TEST_SUITE_P(
    Modes, MmuCheckerCatches,
    ::testing::Combine(::testing::Values(DeviceMirror::Mode::kInterval, DeviceMirror::Mode::kClassic),
                       ::testing::Values(MmuNotifyEvent::kProtectionVma, MmuNotifyEvent::kUnmap)),
    [](const ::testing::TestParamInfo<MmuCheckerCatches::ParamType>& info) {
      std::string s = std::get<0>(info.param) == DeviceMirror::Mode::kInterval ? "Interval" : "Classic";
      return s + (std::get<1>(info.param) == MmuNotifyEvent::kUnmap ? "Unmap" : "ProtectionVma");
    });

// A dropped bracket for one event leaves the others alone.
TEST_F(MmuNotifierTest, DroppedBracketIsPerEvent) {
  ScopeExit restore([] { mmu_debug_drop_bracket(-1); });
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  Rec r;
  ASSERT_EQ(r.attach(p1(), start_end_ops()), Errno::kOk);
  mmu_debug_drop_bracket(static_cast<int>(MmuNotifyEvent::kProtectionVma));
  ASSERT_TRUE(sys.munmap(p1(), W, P).ok());
  EXPECT_EQ(r.starts, 1);
  mmu_debug_drop_bracket(-1);
  ASSERT_TRUE(sys.mprotect(p1(), W + P, P, kProtRead).ok());
  EXPECT_EQ(r.starts, 2);
}

}  // namespace
}  // namespace mirrormm

namespace mirrormm {
namespace {

// More hits than the dispatcher collects in its first walk (16): every overlapping interval
// is invalidated exactly once, in start order, and the others not at all.
struct OrderRec : MmuIntervalNotifier {
  std::vector<uint64_t>* order = nullptr;
  int calls = 0;
};

TEST(MmuIntervalDispatch, ManyHitsAreEachInvalidatedOnceInStartOrder) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, 64 * P, RW, PRIV).ok());
  static const MmuIntervalNotifierOps ops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = [](MmuIntervalNotifier* sub, const MmuNotifierRange*, uint64_t cur_seq) {
      auto* r = static_cast<OrderRec*>(sub);
      mmu_interval_set_seq(sub, cur_seq);
      r->calls++;
      r->order->push_back(r->start);
      return true;
    };
    return o;
  }();
  std::vector<uint64_t> order;
  std::vector<std::unique_ptr<OrderRec>> subs;
  Mm* mm = get_task_mm(p);
  ASSERT_NE(mm, nullptr);
  for (int i = 63; i >= 0; --i) {  // inserted in reverse: order must come from the tree
    subs.push_back(std::make_unique<OrderRec>());
    subs.back()->order = &order;
    ASSERT_EQ(mmu_interval_notifier_insert(subs.back().get(), mm, W + static_cast<uint64_t>(i) * P, P, &ops),
              Errno::kOk);
  }
  mmput_ref(mm);
  ASSERT_TRUE(sys.munmap(p, W + 8 * P, 40 * P).ok());  // hits intervals 8..47: 40 of them
  ASSERT_EQ(order.size(), 40u);
  for (size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], W + (8 + i) * P) << i;
  for (auto& s : subs) {
    const uint64_t idx = (s->start - W) / P;
    EXPECT_EQ(s->calls, (idx >= 8 && idx < 48) ? 1 : 0) << idx;
    mmu_interval_notifier_remove(s.get());
  }
}

}  // namespace
}  // namespace mirrormm

namespace mirrormm {
namespace {

// Misuse gets a clear answer (an errno or a warning), never a corrupted list or a crash.
TEST(MmuNotifierMisuse, DoubleRegisterInsertRemoveAndUnregisterAreRefusedOrHarmless) {
  System sys;
  Process* p = sys.process(1);
  Mm* mm = get_task_mm(p);
  ASSERT_NE(mm, nullptr);
  static const MmuNotifierOps ops = [] {
    MmuNotifierOps o;
    o.invalidate_range_start = [](MmuNotifier*, const MmuNotifierRange*) { return 0; };
    return o;
  }();
  MmuNotifier sub;
  sub.ops = &ops;
  ASSERT_EQ(mmu_notifier_register(&sub, mm), Errno::kOk);
  EXPECT_EQ(mmu_notifier_register(&sub, mm), Errno::kInval);  // already registered
  MmuNotifier no_ops;
  EXPECT_EQ(mmu_notifier_register(&no_ops, mm), Errno::kInval);
  mmu_notifier_unregister(&sub, mm);
  const uint64_t before = sys.violations();
  mmu_notifier_unregister(&sub, mm);  // a second unregister: warned about, nothing dropped
  EXPECT_EQ(sys.violations(), before + 1);
  ASSERT_EQ(mmu_notifier_register(&sub, mm), Errno::kOk);  // registering again is fine
  mmu_notifier_unregister(&sub, mm);

  static const MmuIntervalNotifierOps iops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = [](MmuIntervalNotifier* s, const MmuNotifierRange*, uint64_t seq) {
      mmu_interval_set_seq(s, seq);
      return true;
    };
    return o;
  }();
  MmuIntervalNotifier in;
  ASSERT_EQ(mmu_interval_notifier_insert(&in, mm, W, P, &iops), Errno::kOk);
  EXPECT_EQ(mmu_interval_notifier_insert(&in, mm, W, P, &iops), Errno::kInval);  // already inserted
  MmuIntervalNotifier no_cb;
  EXPECT_EQ(mmu_interval_notifier_insert(&no_cb, mm, W, P, nullptr), Errno::kInval);
  mmu_interval_notifier_remove(&in);
  mmu_interval_notifier_remove(&in);  // harmless
  (void)mmu_interval_read_begin(&in);  // not inserted: returns at once
  ASSERT_EQ(mmu_interval_notifier_insert(&in, mm, W, P, &iops), Errno::kOk);  // reusable
  mmu_interval_notifier_remove(&in);
  mmput_ref(mm);
}

}  // namespace
}  // namespace mirrormm

namespace mirrormm {
namespace {

// change_pud_range notifies only once it meets a populated PUD: an mprotect of memory that
// no page table maps sends nothing; once a page is touched, the whole piece is covered.
TEST(MmuNotifierPaths, MprotectOfUnpopulatedMemoryNotifiesNothing) {
  System sys;
  Process* p = sys.process(1);
  const uint64_t far = W + (64ull << 30);  // its own PUD and PMD tables
  ASSERT_TRUE(sys.mmap(p, far, 16 * P, RW, PRIV).ok());
  static std::vector<std::pair<uint64_t, uint64_t>>* seen = new std::vector<std::pair<uint64_t, uint64_t>>;
  static const MmuNotifierOps ops = [] {
    MmuNotifierOps o;
    o.invalidate_range_start = [](MmuNotifier*, const MmuNotifierRange* r) {
      if (r->event == MmuNotifyEvent::kProtectionVma) seen->emplace_back(r->start, r->end);
      return 0;
    };
    return o;
  }();
  MmuNotifier sub;
  sub.ops = &ops;
  Mm* mm = get_task_mm(p);
  ASSERT_EQ(mmu_notifier_register(&sub, mm), Errno::kOk);
  ASSERT_TRUE(sys.mprotect(p, far, 16 * P, kProtRead).ok());
  EXPECT_TRUE(seen->empty());
  ASSERT_TRUE(sys.mprotect(p, far, 16 * P, RW).ok());
  ASSERT_TRUE(sys.access(p, 0, far + 3 * P, 1, true, [](uint8_t* d, uint64_t, uint64_t) { *d = 1; }).ok());
  ASSERT_TRUE(sys.mprotect(p, far + 2 * P, 8 * P, kProtRead).ok());
  ASSERT_EQ(seen->size(), 1u);
  EXPECT_EQ((*seen)[0], std::make_pair(far + 2 * P, far + 10 * P));
  mmu_notifier_unregister(&sub, mm);
  mmput_ref(mm);
}

}  // namespace
}  // namespace mirrormm

namespace mirrormm {
namespace {

// The API pieces no primary path exercises: insert_locked under the caller's mmap_lock,
// mmu_checker_unmap_all, and clearing PG_external_rmap.
TEST(MmuNotifierApi, InsertLockedUnmapAllAndClearExternalRmap) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, 4 * P, RW, PRIV).ok());
  ASSERT_TRUE(sys.access(p, 0, W, 4 * P, true, [](uint8_t* d, uint64_t, uint64_t n) { std::memset(d, 7, n); }).ok());
  Mm* mm = get_task_mm(p);
  ASSERT_NE(mm, nullptr);

  static int calls = 0;
  static const MmuIntervalNotifierOps ops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = [](MmuIntervalNotifier* s, const MmuNotifierRange*, uint64_t seq) {
      mmu_interval_set_seq(s, seq);
      calls++;
      return true;
    };
    return o;
  }();
  MmuIntervalNotifier in;
  mm->mmap_lock_.down_write();
  EXPECT_EQ(mmu_interval_notifier_insert_locked(&in, mm, W, 4 * P, &ops), Errno::kOk);
  mm->mmap_lock_.up_write();
  ASSERT_TRUE(sys.mprotect(p, W, P, kProtRead).ok());
  EXPECT_EQ(calls, 1);

  // A driver that drops every mapping at once (e.g. on a device reset) tells the checker so.
  int dev = 0;
  bool writable = false;
  for (uint64_t a = W + P; a < W + 4 * P; a += P) {
    Result<uint64_t> pfn = mm_get_pfn(mm, a, false, false, &writable);
    ASSERT_TRUE(pfn.ok());
    mmu_checker_map(&dev, mm, a, pfn.value(), writable);
  }
  mmu_checker_unmap_all(&dev);
  const uint64_t before = mmu_checker_reports();
  ASSERT_TRUE(sys.munmap(p, W + P, 3 * P).ok());  // no secondary mapping left to outlive it
  EXPECT_EQ(mmu_checker_reports(), before);

  Result<uint64_t> pfn = mm_get_pfn(mm, W, false, false, &writable);
  ASSERT_TRUE(pfn.ok());
  set_page_external_rmap(&sys, pfn.value());
  EXPECT_TRUE(sys.mem().pfn_to_page(pfn.value())->test(PG_external_rmap));
  clear_page_external_rmap(&sys, pfn.value());
  EXPECT_FALSE(sys.mem().pfn_to_page(pfn.value())->test(PG_external_rmap));

  mmu_interval_notifier_remove(&in);
  mmput_ref(mm);
}

}  // namespace
}  // namespace mirrormm
