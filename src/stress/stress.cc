// The stress workload (a policy that drives the mechanisms; not part of them).
//
// Each thread is one software CPU. Thread t owns a private region in process 1, which only it
// maps, changes and writes: it keeps a shadow of the byte it last wrote on each page and
// checks every read against it (copy-on-write, zap and TLB errors show up as wrong data), and
// a file-backed page whose dirty bit it checks after unmapping. Everything else is a shared
// "chaos" region that every thread maps, unmaps, protects, remaps and accesses in every
// process, to make the races happen. A coordinator stops the world every 200 ms to run the
// consistency checker, with kswapd and the OOM reaper paused too.
//
// With swap on (Options::swap_mib), each thread also owns a swap region in process 1: private
// anonymous pages followed by the pages of its own shared-memory file, MADV_DONTFORK so that
// forks do not copy them, about 1.75 times the physical memory over all threads. Half of its
// steps write or read a random page of it (each page holds a word naming the thread, the page
// and the value of its last write, which the shadow keeps), push runs of it out with
// MADV_PAGEOUT, zap some of it, or ask for proactive reclaim; kswapd and direct reclaim swap
// the rest out, and every read checks that the data came back. Forks still copy the small
// private region, so children share pages whose PTEs turn into swap entries under them.
// Process 1 must survive: its OOM kill ends the run as a violation, and no check of process 1
// reports anything once it is killed (its accesses fail, its pages are reaped).
//
// With writeback on (Options::writeback), each thread also owns a regular file of the model
// disk, mapped shared (a write-notify mapping): it writes pages through the mapping, verifies
// them through the mapping and with pread, syncs them (msync, fsync, sync) while the flusher
// writes them back on its own, pushes clean ones out (MADV_PAGEOUT) so that later reads come
// from the disk, and remaps the file; every read checks the value of the page's last write.
//
// With several NUMA nodes (Options::nodes), migration threads move random runs of pages
// between the nodes: a CPU's private region or swap region in process 1 (whose reads verify
// the data) or the chaos region of any process (shared pages, device mirrors, mprotect,
// mremap and forks racing). They are not CPUs: like kswapd they run as no CPU, park with the
// workers at each stop of the world, and the consistency check then finds any migration
// entry a migration left behind.
#include "mirrormm/stress.h"
#include "mirrormm/bugs.h"

#include "mm/lock_order.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string_view>
#include <random>
#include <algorithm>
#include <memory>
#include <thread>

#include "mirrormm/base/tsan.h"
#include "mirrormm/gup.h"
#include "mirrormm/hmm.h"
#include "mirrormm/memremap.h"
#include "mirrormm/migrate_device.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mirrormm/trace.h"

namespace mirrormm::stress {

namespace {

constexpr uint64_t kW = 0x200000000000ull;
constexpr uint64_t kP = 4096;
constexpr uint64_t kPrivatePages = 64;
constexpr uint64_t kChaosBase = kW + (1ull << 32);
constexpr uint64_t kChaosPages = 512;
constexpr int kSlots = 4;
// The swap regions start here, one per thread, Shared::swap_stride bytes apart.
constexpr uint64_t kSwapBase = kW + (8ull << 30);

uint64_t private_base(int t) { return kW + static_cast<uint64_t>(t) * (64ull << 20); }
uint64_t dirty_base(int t) { return private_base(t) + (32ull << 20); }
// The writeback region (Options::writeback): kDiskPages of the thread's regular file.
constexpr uint64_t kDiskPages = 16;
uint64_t disk_base(int t) { return private_base(t) + (48ull << 20); }
constexpr uint64_t kMsSync = 4;

struct Shared {
  System* sys;
  Process* p1;  // process 1 (never freed; it answers -ESRCH once dead)
  // The swap region of each thread (0 pages without swap): swap_anon_pages private anonymous
  // pages, then swap_shmem_pages of the thread's file "swapN" mapped shared. Set before the
  // threads start.
  uint64_t swap_anon_pages = 0;
  uint64_t swap_shmem_pages = 0;
  uint64_t swap_stride = 0;
  std::atomic<uint64_t> oom_fault_addr{0};  // the first access of process 1 that ended in OOM
  bool devices = false;
  bool stop_on_violation = false;
  bool writeback = false;
  // The secondary MMU of each slot's process (guarded by mirror_lock; a worker copies the
  // pointer out and uses the mirror unlocked: the mirror is thread-safe and outlives uses).
  Mutex mirror_lock{lock_class::kStressMirrors};
  std::shared_ptr<SecondaryMmu> mirror[kSlots] GUARDED_BY(mirror_lock);
  std::vector<std::string> drivers;  // Options::drivers (set before the threads start)
  std::atomic<uint64_t> device_ops{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> pause{false};
  std::atomic<int> parked{0};
  std::atomic<uint64_t> slot_pid[kSlots];
  Mutex slot_lock{lock_class::kStressSlots};  // serializes the fork/exit of slots
  std::atomic<uint64_t> ops{0}, accesses{0}, syscalls{0}, forks{0};

  // The statistics of every driver, by kind in the order of first attach: a driver adds its
  // own when it is detached for good.
  std::vector<std::pair<std::string, MirrorTotals>> totals GUARDED_BY(mirror_lock);
  MirrorTotals& totals_locked(const std::string& kind) REQUIRES(mirror_lock) {
    for (auto& [k, t] : totals)
      if (k == kind) return t;
    return totals.emplace_back(kind, MirrorTotals{}).second;
  }
  // Attaches a driver of kind to p over the chaos region and counts it; nullptr on failure.
  std::shared_ptr<SecondaryMmu> attach(const std::string& kind, Process* p) {
    Result<std::unique_ptr<SecondaryMmu>> m = attach_secondary_mmu(kind, p, kChaosBase, kChaosPages * kP);
    if (!m.ok()) return nullptr;
    MutexGuard g(mirror_lock);
    totals_locked(m.value()->kind()).attached++;
    return std::shared_ptr<SecondaryMmu>(std::move(m.value()));
  }
  // Detaches m and adds its statistics (final once detached).
  void detach_and_count(SecondaryMmu& m) {
    m.detach();
    const SecondaryMmu::Stats st = m.stats();
    MutexGuard g(mirror_lock);
    MirrorTotals& t = totals_locked(m.kind());
    t.faults += st.faults;
    t.retries += st.retries;
    t.invalidations += st.invalidations;
    t.pages_dropped += st.pages_dropped;
    for (int e = 0; e < MirrorTotals::kEvents; e++) t.by_event[e] += st.by_event[e];
    t.young_queries += st.young_queries;
    t.young_answers += st.young_answers;
    t.waits += st.waits;
    t.nonblock_refusals += st.nonblock_refusals;
  }
  int threads = 0;  // CPUs (workers)
  int nodes = 1;
  std::atomic<uint64_t> migrate_calls{0};
  std::atomic<uint64_t> mlock_calls{0};  // lock_op calls (mlock, munlock, mlockall, munlockall)
};
static_assert(MirrorTotals::kEvents == SecondaryMmu::kEvents);

// Parks the calling thread while the coordinator stops the world; true if it parked (the
// caller then looks at the stop flag again before doing anything).
bool park_if_paused(Shared& sh) {
  if (!sh.pause.load(std::memory_order_acquire)) return false;
  sh.parked.fetch_add(1, std::memory_order_acq_rel);
  while (sh.pause.load(std::memory_order_acquire)) std::this_thread::yield();
  sh.parked.fetch_sub(1, std::memory_order_acq_rel);
  return true;
}

class Worker {
 public:
  Worker(Shared& sh, int id, uint64_t seed)
      : sh_(sh), id_(id), rng_(seed * 1000003 + id), shadow_(kPrivatePages, 0), lazy_(kPrivatePages, false),
        p1_(sh.p1) {}

  void run() {
    System& sys = *sh_.sys;
    System::bind_thread_to_cpu(id_);
    Process* p1 = p1_;
    (void)sys.mmap(p1, private_base(id_), kPrivatePages * kP, kProtRead | kProtWrite,
                   kMapPrivate | kMapAnonymous | kMapFixed);
    if (sh_.swap_anon_pages) setup_swap_region();
    if (sh_.writeback) setup_disk_region();
    while (!sh_.stop.load(std::memory_order_relaxed)) {
      if (park_if_paused(sh_)) continue;
      if ((sh_.stop_on_violation && sys.violations() > 0) || !p1_->alive() || p1_->oom_killed()) {
        // Idle (still parking when asked) until the coordinator ends the run.
        std::this_thread::yield();
        continue;
      }
      step();
      sh_.ops.fetch_add(1, std::memory_order_relaxed);
    }
  }

 private:
  uint64_t rnd(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  Process* random_process() {
    for (int tries = 0; tries < 4; tries++) {
      uint64_t pid = sh_.slot_pid[rnd(kSlots)].load(std::memory_order_acquire);
      if (!pid) continue;
      // The process may exit (or be OOM-killed) at any time; a dead one answers ESRCH and
      // kNoProcess, which is fine to race.
      if (Process* p = sh_.sys->process(pid)) return p;
    }
    return p1_;  // not sys->process(1), which is null once process 1 has exited
  }

  // Reports a failed check of process 1's memory, unless process 1 has been OOM-killed or
  // has died of an out-of-memory fault (System::access exits the process of a fault that
  // found no frame and no victim): the kill fails its accesses and system calls, and the
  // reaper zaps its pages under accesses that raced the kill. The coordinator reports the
  // death itself.
  void fail(const std::string& what) {
    if (p1_->oom_killed() || !p1_->alive()) return;
    sh_.sys->report_violation("workload check", fmt::format("cpu {}: {}", id_, what));
  }

  // An access on this CPU. The first fault of process 1 that ends in OOM (the fault found no
  // frame: the process exits) is noted for the coordinator's report.
  AccessResult access(Process* p, uint64_t addr, uint64_t len, bool write, const AccessChunkFn& fn) {
    AccessResult r = sh_.sys->access(p, id_, addr, len, write, fn);
    if (r.kind == AccessResult::Kind::kOom && p == p1_) {
      uint64_t none = 0;
      sh_.oom_fault_addr.compare_exchange_strong(none, addr, std::memory_order_relaxed);
    }
    return r;
  }

  // ---- the writeback region ----

  std::string disk_file() const { return fmt::format("disk{}", id_); }

  void setup_disk_region() {
    System& sys = *sh_.sys;
    const Status f = sys.file_create(disk_file(), kDiskPages * kP);
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    if (!f.ok() || !map_disk_region()) {
      fail(fmt::format("setting up its writeback region of {} pages failed", kDiskPages));
      return;
    }
    disk_shadow_.assign(kDiskPages, 0);
  }

  bool map_disk_region() {
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    return sh_.sys
        ->mmap_file(p1_, disk_base(id_), kDiskPages * kP, kProtRead | kProtWrite, kMapShared | kMapFixed, disk_file(), 0,
                    System::FileMode::kReadWrite)
        .ok();
  }

  // Checks a page of the file, read through the mapping or with pread, against its last write.
  void disk_verify(uint64_t page, const uint8_t* d, const char* how) {
    const uint8_t want = disk_shadow_[page];
    for (uint64_t i = 0; i < kP; i++) {
      if (d[i] == want) continue;
      fail(fmt::format("page {} of {} lost its data ({}): byte {} reads {:#x}, want {:#x}", page, disk_file(), how, i,
                       d[i], want));
      return;
    }
  }

  void disk_op() {
    System& sys = *sh_.sys;
    const uint64_t page = rnd(kDiskPages);
    const uint64_t addr = disk_base(id_) + page * kP;
    const uint64_t r = rnd(100);
    if (r < 40) {
      const uint8_t v = static_cast<uint8_t>(1 + rnd(255));
      AccessResult res = access(p1_, addr, kP, true, [v](uint8_t* d, uint64_t, uint64_t n) { std::memset(d, v, n); });
      sh_.accesses.fetch_add(1, std::memory_order_relaxed);
      if (!res.ok()) fail(fmt::format("write to its writeback region faulted at {:#x}", res.fault_addr));
      else disk_shadow_[page] = v;
    } else if (r < 70) {
      std::vector<uint8_t> got(kP);
      AccessResult res = access(p1_, addr, kP, false, [&](uint8_t* d, uint64_t a, uint64_t n) {
        std::memcpy(got.data() + (a - addr), d, n);
      });
      sh_.accesses.fetch_add(1, std::memory_order_relaxed);
      if (!res.ok()) fail(fmt::format("read of its writeback region faulted at {:#x}", res.fault_addr));
      else disk_verify(page, got.data(), "read through the mapping");
    } else if (r < 80) {
      Result<std::vector<uint8_t>> got = sys.pread(disk_file(), page * kP, kP);
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
      if (!got.ok() || got.value().size() != kP) fail(fmt::format("pread of page {} of {} failed", page, disk_file()));
      else disk_verify(page, got.value().data(), "pread");
    } else if (r < 88) {
      const uint64_t n = std::min<uint64_t>(1 + rnd(4), kDiskPages - page);
      if (!sys.msync(p1_, addr, n * kP, kMsSync).ok()) fail(fmt::format("msync of {:#x} failed", addr));
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    } else if (r < 92) {
      if (!sys.fsync(disk_file()).ok()) fail(fmt::format("fsync of {} failed", disk_file()));
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    } else if (r < 96) {
      // Clean pages go (their next read comes from the disk); dirty ones stay cached.
      const uint64_t n = std::min<uint64_t>(1 + rnd(8), kDiskPages - page);
      (void)sys.madvise(p1_, addr, n * kP, kMadvPageout);
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    } else if (r < 98) {
      (void)sys.munmap(p1_, disk_base(id_), kDiskPages * kP);
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
      if (!map_disk_region()) fail(fmt::format("remapping {} failed", disk_file()));
    } else if (r < 99) {
      sys.wakeup_flusher();
    } else {
      (void)sys.sync();
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // ---- the swap region ----

  uint64_t swap_pages() const { return sh_.swap_anon_pages + sh_.swap_shmem_pages; }
  uint64_t swap_addr(uint64_t page) const { return kSwapBase + id_ * sh_.swap_stride + page * kP; }
  std::string swap_file() const { return fmt::format("swap{}", id_); }
  // The word repeated over a page of the swap region: the thread, the page and the value of
  // the last write (0 for a page never written, which must read as zeroes instead).
  uint64_t swap_word(uint64_t page, uint8_t v) const {
    return v ? (static_cast<uint64_t>(id_ + 1) << 48) | (page << 8) | v : 0;
  }

  void setup_swap_region() {
    System& sys = *sh_.sys;
    const uint64_t anon = sh_.swap_anon_pages * kP, shmem = sh_.swap_shmem_pages * kP;
    Result<uint64_t> a = sys.mmap(p1_, swap_addr(0), anon, kProtRead | kProtWrite,
                                  kMapPrivate | kMapAnonymous | kMapFixed);
    Result<uint64_t> m = uint64_t{0};
    if (shmem) {
      const Status f = sys.memfd(swap_file(), shmem);
      m = f.ok() ? sys.mmap_file(p1_, swap_addr(sh_.swap_anon_pages), shmem, kProtRead | kProtWrite,
                                 kMapShared | kMapFixed, swap_file(), 0, System::FileMode::kReadWrite)
                 : Result<uint64_t>(f.error());
    }
    Status d = a.ok() && m.ok() ? sys.madvise(p1_, swap_addr(0), anon + shmem, kMadvDontfork) : Status(Errno::kInval);
    sh_.syscalls.fetch_add(4, std::memory_order_relaxed);
    if (!a.ok() || !m.ok() || !d.ok()) {
      fail(fmt::format("setting up its swap region of {} + {} pages failed", sh_.swap_anon_pages,
                       sh_.swap_shmem_pages));
      return;
    }
    swap_shadow_.assign(swap_pages(), 0);
  }

  void swap_write(uint64_t page) {
    const uint8_t v = static_cast<uint8_t>(1 + rnd(255));
    const uint64_t w = swap_word(page, v);
    AccessResult r = access(p1_, swap_addr(page), kP, true, [w](uint8_t* d, uint64_t, uint64_t n) {
      for (uint64_t i = 0; i + 8 <= n; i += 8) std::memcpy(d + i, &w, 8);
    });
    sh_.accesses.fetch_add(1, std::memory_order_relaxed);
    if (!r.ok()) fail(fmt::format("write to its swap region faulted at {:#x} (kind {})", r.fault_addr,
                                  static_cast<int>(r.kind)));
    else swap_shadow_[page] = v;
  }

  void swap_read(uint64_t page) {
    const uint64_t want = swap_word(page, swap_shadow_[page]);
    uint64_t bad = 0, got = want;
    AccessResult r = access(p1_, swap_addr(page), kP, false, [&](uint8_t* d, uint64_t, uint64_t n) {
      for (uint64_t i = 0; i + 8 <= n; i += 8) {
        uint64_t x;
        std::memcpy(&x, d + i, 8);
        if (x != want && !bad++) got = x;
      }
    });
    sh_.accesses.fetch_add(1, std::memory_order_relaxed);
    if (!r.ok())
      fail(fmt::format("read of its swap region faulted at {:#x} (kind {})", r.fault_addr, static_cast<int>(r.kind)));
    else if (bad)
      fail(fmt::format("{} page {:#x} of its swap region lost its data: {} words differ, first {:#018x}, want {:#018x}",
                       page < sh_.swap_anon_pages ? "anonymous" : "shared", swap_addr(page), bad, got, want));
  }

  // A step on the swap region: mostly writes and verified reads of random pages (the region
  // is larger than memory, so a good part of them fault the page back in from swap), now and
  // then a run pushed out with MADV_PAGEOUT, a run zapped with MADV_DONTNEED (anonymous pages
  // are gone then, shared ones stay in their file), or a proactive reclaim pass.
  void swap_op() {
    System& sys = *sh_.sys;
    const uint64_t page = rnd(swap_pages());
    // MADV_PAGEOUT and proactive reclaim stay rare: kswapd and direct reclaim should do most
    // of the swapping.
    const uint64_t r = rnd(10000);
    if (r < 4970) {
      swap_write(page);
    } else if (r < 9940) {
      swap_read(page);
    } else if (r < 9990) {
      const uint64_t n = std::min<uint64_t>(1 + rnd(64), swap_pages() - page);
      const uint64_t advice = r < 9970 ? kMadvPageout : kMadvDontneed;
      if (sys.madvise(p1_, swap_addr(page), n * kP, advice).ok() && advice == kMadvDontneed)
        for (uint64_t i = page; i < page + n && i < sh_.swap_anon_pages; i++) swap_shadow_[i] = 0;
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    } else {
      (void)sys.reclaim(1 + rnd(64));
      sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    }
  }

  // Private region of process 1: writes, verified reads, zaps and protection changes.
  void private_op() {
    System& sys = *sh_.sys;
    Process* p1 = p1_;
    const uint64_t page = rnd(kPrivatePages);
    const uint64_t addr = private_base(id_) + page * kP;
    switch (rnd(8)) {
      case 0:
      case 1: {
        const uint8_t v = static_cast<uint8_t>(1 + rnd(255));
        AccessResult r = access(p1, addr, kP, true, [v](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) d[i] = v;
        });
        sh_.accesses.fetch_add(1, std::memory_order_relaxed);
        if (!r.ok()) fail(fmt::format("write to its own region faulted at {:#x}", r.fault_addr));
        else shadow_[page] = v;
        lazy_[page] = false;  // a write cancels MADV_FREE: from now on the page must keep v
        break;
      }
      case 2:
      case 3: {
        // A lazily freed page (MADV_FREE, not written since) reads as it was or, once
        // reclaim dropped it, as zeros; never anything else, and never a mix.
        const uint8_t want = shadow_[page];
        bool wrong = false, zero = true;
        AccessResult r = access(p1, addr, kP, false, [&](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) {
            wrong |= d[i] != want;
            zero &= d[i] == 0;
          }
        });
        sh_.accesses.fetch_add(1, std::memory_order_relaxed);
        if (!r.ok()) {
          fail(fmt::format("read of its own region faulted at {:#x}", r.fault_addr));
        } else if (wrong && lazy_[page] && zero) {
          shadow_[page] = 0;  // dropped: it reads zeros until written
          lazy_[page] = false;
        } else if (wrong) {
          fail(fmt::format("private page {:#x} lost its data (want {:#x}{})", addr, want,
                           lazy_[page] ? " or zeros after MADV_FREE" : ", written after MADV_FREE"));
        }
        break;
      }
      case 4:
        if (sys.madvise(p1, addr, kP, kMadvDontneed).ok()) shadow_[page] = 0;
        sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
        break;
      case 6:
        if (sys.madvise(p1, addr, kP, kMadvFree).ok() && shadow_[page] != 0) lazy_[page] = true;
        sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
        break;
      case 7: {
        // A guard region round trip: the page faults while guarded and reads zeros after.
        if (!sys.madvise(p1, addr, kP, kMadvGuardInstall).ok()) break;
        AccessResult r = access(p1, addr, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
        if (r.ok()) fail(fmt::format("read of a guard page at {:#x} succeeded", addr));
        if (!sys.madvise(p1, addr, kP, kMadvGuardRemove).ok()) fail(fmt::format("guard_remove at {:#x} failed", addr));
        shadow_[page] = 0;
        lazy_[page] = false;
        sh_.syscalls.fetch_add(2, std::memory_order_relaxed);
        break;
      }
      case 5: {
        // A read-only interval and back: the data must survive, writes must fault meanwhile.
        (void)sys.mprotect(p1, addr, kP, kProtRead);
        AccessResult r = access(p1, addr, 1, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] ^= 0xff; });
        if (r.ok()) fail(fmt::format("write through a read-only mapping at {:#x} succeeded", addr));
        (void)sys.mprotect(p1, addr, kP, kProtRead | kProtWrite);
        sh_.syscalls.fetch_add(2, std::memory_order_relaxed);
        break;
      }
    }
  }

  // The dirty-bit check: write a page of this thread's file through a shared mapping, unmap,
  // and the page cache page must be dirty.
  void dirty_op() {
    System& sys = *sh_.sys;
    Process* p1 = p1_;
    const std::string name = fmt::format("cpu{}", id_);
    const uint64_t pg = rnd(8);
    if (!sys.memfd(name, 8 * kP).ok()) return;
    if (!sys.mmap_file(p1, dirty_base(id_), 8 * kP, kProtRead | kProtWrite, kMapShared | kMapFixed, name, 0,
                       System::FileMode::kReadWrite).ok())
      return;
    // A read first maps the page clean; the write must then dirty it through the PTE.
    (void)access(p1, dirty_base(id_) + pg * kP, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
    (void)sys.truncate(name, 0);  // drop the old page: the next fault creates a clean one
    (void)sys.truncate(name, 8 * kP);
    (void)access(p1, dirty_base(id_) + pg * kP, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
    AccessResult r = access(p1, dirty_base(id_) + pg * kP + 7, 1, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] = 1; });
    (void)sys.munmap(p1, dirty_base(id_), 8 * kP);
    sh_.syscalls.fetch_add(7, std::memory_order_relaxed);
    if (r.ok() && !sys.debug_file_page_dirty(name, pg)) {
      if (!sh_.swap_anon_pages) {
        fail(fmt::format("dirty bit of {} page {} lost", name, pg));
        return;
      }
      // With swap on, reclaim may have written the page out since the write (the page left
      // the page cache for swap) and a later swap-in brings it back clean: the data must be
      // there still.
      uint8_t got = 0;
      if (sys.mmap_file(p1, dirty_base(id_), 8 * kP, kProtRead, kMapShared | kMapFixed, name, 0,
                        System::FileMode::kReadWrite).ok()) {
        AccessResult back = access(p1, dirty_base(id_) + pg * kP + 7, 1, false,
                                       [&got](uint8_t* d, uint64_t, uint64_t) { got = d[0]; });
        (void)sys.munmap(p1, dirty_base(id_), 8 * kP);
        sh_.syscalls.fetch_add(2, std::memory_order_relaxed);
        if (back.ok() && got != 1)
          fail(fmt::format("{} page {} lost its dirty data (reads {:#x}, neither dirty nor swapped)", name, pg, got));
      }
    }
  }

  void chaos_op() {
    System& sys = *sh_.sys;
    Process* p = random_process();
    const uint64_t start = kChaosBase + rnd(kChaosPages) * kP;
    const uint64_t len = (1 + rnd(16)) * kP;
    static constexpr uint64_t kProts[] = {kProtNone, kProtRead, kProtRead | kProtWrite, kProtWrite,
                                          kProtRead | kProtExec, kProtRead | kProtWrite | kProtExec};
    const uint64_t prot = kProts[rnd(6)];
    switch (rnd(11)) {
      case 0: {
        uint64_t flags = (rnd(3) == 0 ? kMapShared : kMapPrivate) | kMapFixed;
        if (rnd(3) == 0) {
          (void)sys.mmap_file(p, start, len, prot, flags, fmt::format("chaos{}", rnd(2)), rnd(4) * kP,
                              System::FileMode::kReadWrite);
        } else {
          (void)sys.mmap(p, start, len, prot, flags | kMapAnonymous | (rnd(4) == 0 ? kMapPopulate : 0));
        }
        break;
      }
      case 1: (void)sys.munmap(p, start, len); break;
      case 2: (void)sys.mprotect(p, start, len, prot); break;
      case 3: {
        static constexpr uint64_t kAdvice[] = {kMadvDontneed,     kMadvPageout,     kMadvFree, kMadvGuardInstall,
                                               kMadvGuardRemove, kMadvRemove,      kMadvCold, kMadvNohugepage};
        // Now and then a seal instead: the range stays as it is from then on.
        if (rnd(500) == 0) (void)sys.mseal(p, start, len, 0);
        else (void)sys.madvise(p, start, len, kAdvice[rnd(8)]);
        break;
      }
      case 4: (void)sys.mremap(p, start, len, len, 3, kChaosBase + rnd(kChaosPages) * kP); break;
      case 5: lock_op(p, start, len); return;
      default: {
        const bool write = rnd(2);
        (void)access(p, start + rnd(kP), 1 + rnd(2 * kP), write, [write](uint8_t* d, uint64_t a, uint64_t n) {
          if (write) for (uint64_t i = 0; i < n; i++) d[i] = static_cast<uint8_t>(a + i);
        });
        sh_.accesses.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
  }

  // Locked memory in the chaos region: mlock (populating, or on fault) and munlock of any
  // process's range; mlockall and munlockall only in the children, and always on fault, so
  // that process 1's checked regions keep their madvise behaviour and no child copies all
  // it inherited at once. Reclaim must never free a page these lock (vmscan reports it).
  void lock_op(Process* p, uint64_t start, uint64_t len) {
    System& sys = *sh_.sys;
    const bool child = p != p1_;
    switch (rnd(child ? 5 : 3)) {
      case 0: (void)sys.mlock(p, start, len); break;
      case 1: (void)sys.mlock2(p, start, len, kMlockOnfault); break;
      case 2: (void)sys.munlock(p, start, len); break;
      case 3: {
        static constexpr uint64_t kFlags[] = {kMclCurrent | kMclOnfault, kMclFuture | kMclOnfault,
                                              kMclCurrent | kMclFuture | kMclOnfault};
        (void)sys.mlockall(p, kFlags[rnd(3)]);
        break;
      }
      default: (void)sys.munlockall(p); break;
    }
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
    sh_.mlock_calls.fetch_add(1, std::memory_order_relaxed);
  }

  void process_op() {
    System& sys = *sh_.sys;
    MutexGuard g(sh_.slot_lock);
    const int slot = 1 + static_cast<int>(rnd(kSlots - 1));
    uint64_t pid = sh_.slot_pid[slot].load(std::memory_order_relaxed);
    if (pid) {
      sh_.slot_pid[slot].store(0, std::memory_order_release);
      // Exit with the device still attached (interval mirrors get RELEASE, classic ones
      // release()), then detach it; sometimes detach before the exit instead, and sometimes
      // from another thread while the exit runs (unregister racing __mmu_notifier_release).
      std::shared_ptr<SecondaryMmu> m = take_mirror(slot);
      const uint64_t how = m ? rnd(8) : 7;  // 0, 1: before; 2: racing; else after
      if (how < 2) m->detach();
      if (how == 2) {
        std::thread racer([m] { m->detach(); });
        sys.exit(sys.process(pid));
        racer.join();
      } else {
        sys.exit(sys.process(pid));
      }
      if (m) sh_.detach_and_count(*m);
    } else {
      Result<Process*> r = sys.fork(p1_);
      if (r.ok()) {
        attach_mirror(slot, r.value());
        sh_.slot_pid[slot].store(r.value()->pid(), std::memory_order_release);
        sh_.forks.fetch_add(1, std::memory_order_relaxed);
      }
    }
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
  }

  std::shared_ptr<SecondaryMmu> take_mirror(int slot) {
    MutexGuard g(sh_.mirror_lock);
    return std::move(sh_.mirror[slot]);
  }

  void attach_mirror(int slot, Process* p) {
    if (!sh_.devices) return;
    const std::string kind = sh_.drivers.empty() ? (rnd(2) ? "interval" : "classic")
                                                 : sh_.drivers[rnd(sh_.drivers.size())];
    std::shared_ptr<SecondaryMmu> m = sh_.attach(kind, p);
    if (!m) return;
    MutexGuard g(sh_.mirror_lock);
    sh_.mirror[slot] = std::move(m);
  }

  // The secondary MMU's traffic: fault a few chaos pages in, read or write through the
  // device page table. The coherence checker judges every mapping it creates.
  void device_op() {
    std::shared_ptr<SecondaryMmu> m;
    {
      MutexGuard g(sh_.mirror_lock);
      m = sh_.mirror[rnd(kSlots)];
    }
    if (!m) return;
    const uint64_t start = kChaosBase + rnd(kChaosPages) * kP;
    const uint64_t len = std::min<uint64_t>((1 + rnd(8)) * kP, kChaosBase + kChaosPages * kP - start);
    switch (rnd(5)) {
      case 3: exclusive_or_pin_op(start, len, Pin::kNo); break;
      case 4: exclusive_or_pin_op(start, len, Pin::kYes); break;
      case 0: (void)m->fault(start, len, rnd(2)); break;
      case 1: {
        std::vector<uint8_t> buf;
        (void)m->read(start, len, &buf);
        break;
      }
      default: {
        std::vector<uint8_t> buf(len, static_cast<uint8_t>(id_));
        (void)m->write(start, len, buf.data());
        break;
      }
    }
    sh_.device_ops.fetch_add(1, std::memory_order_relaxed);
  }

  // A device's other ways into a process's chaos region: make_device_exclusive of one page
  // (the way dmirror's EXCLUSIVE command takes it; the next CPU access, fork, zap or migration
  // takes it back), or a pin of a few pages (long-term or not, for writing or not) that is
  // held while the device reads them, then released. Errors (no VMA, a read-only one, a
  // process gone) are part of the race.
  enum class Pin { kNo, kYes };
  void exclusive_or_pin_op(uint64_t start, uint64_t len, Pin pin) {
    System& sys = *sh_.sys;
    Mm* mm = get_task_mm(random_process());
    if (!mm) return;
    mmap_read_lock(mm);
    if (pin == Pin::kNo) {
      Result<uint64_t> r = make_device_exclusive(mm, start, nullptr);
      if (r.ok()) {
        unlock_page_pfn(&sys, r.value());
        put_page_pfn(&sys, r.value());
      }
      mmap_read_unlock(mm);
    } else {
      std::vector<uint64_t> pfns(len / kP);
      const unsigned flags = (rnd(2) ? FOLL_WRITE : 0u) | (rnd(2) ? FOLL_LONGTERM : 0u);
      const long n = pin_user_pages_remote(mm, start, pfns.size(), flags, pfns.data());
      mmap_read_unlock(mm);
      // The device's DMA reads race the CPUs' writes of the chaos region, as real DMA does.
      uint8_t sum = 0;
      MM_TSAN_IGNORE_BEGIN();
      for (long i = 0; i < n; i++) sum ^= page_address(&sys, pfns[static_cast<size_t>(i)])[rnd(kP)];
      MM_TSAN_IGNORE_END();
      (void)sum;
      if (n > 0) unpin_user_pages(&sys, pfns.data(), static_cast<unsigned long>(n));
    }
    mmput_ref(mm);
  }

  void step() {
    // Without swap, no extra random draw: the workload is exactly the one of before.
    if (!swap_shadow_.empty() && rnd(2) == 0) {
      swap_op();
      return;
    }
    // The same for writeback.
    if (!disk_shadow_.empty() && rnd(8) == 0) {
      disk_op();
      return;
    }
    const uint64_t r = rnd(1000);
    if (r < 450) private_op();
    else if (r < 460) dirty_op();
    else if (r < 900 || (r < 995 && !sh_.devices)) chaos_op();
    else if (r < 995) device_op();
    else process_op();
  }

  Shared& sh_;
  const int id_;
  std::mt19937_64 rng_;
  std::vector<uint8_t> shadow_;
  std::vector<bool> lazy_;  // private pages freed by MADV_FREE and not written since
  Process* const p1_;
  std::vector<uint8_t> swap_shadow_;  // the value of each swap-region page's last write; empty: none
  std::vector<uint8_t> disk_shadow_;  // the same for the writeback region's pages
};

// A migration thread (Options::nodes > 1): moves a random run of 1 to 64 pages of a random
// region to a random node, over and over. Errors are part of the race (a range unmapped or a
// process gone meanwhile: -EFAULT, -ESRCH); lost data and leftover entries are what the
// workers' verified reads and the consistency checks look for.
class Migrator {
 public:
  Migrator(Shared& sh, int id, uint64_t seed) : sh_(sh), rng_(seed * 7919 + 104729 + id) {}

  void run() {
    while (!sh_.stop.load(std::memory_order_relaxed)) {
      if (park_if_paused(sh_)) continue;
      if ((sh_.stop_on_violation && sh_.sys->violations() > 0) || !sh_.p1->alive() || sh_.p1->oom_killed()) {
        std::this_thread::yield();
        continue;
      }
      step();
    }
  }

 private:
  uint64_t rnd(uint64_t n) { return std::uniform_int_distribution<uint64_t>(0, n - 1)(rng_); }

  void step() {
    System& sys = *sh_.sys;
    const uint64_t n = 1 + rnd(64);
    const int node = static_cast<int>(rnd(static_cast<uint64_t>(sh_.nodes)));
    const uint64_t cpu = rnd(static_cast<uint64_t>(sh_.threads));
    const uint64_t swap_pages = sh_.swap_anon_pages + sh_.swap_shmem_pages;
    Process* p = sh_.p1;
    uint64_t start;
    switch (rnd(swap_pages ? 3 : 2)) {
      case 0:  // a CPU's private region of process 1 (verified by its reads)
        start = private_base(static_cast<int>(cpu)) + rnd(kPrivatePages) * kP;
        break;
      case 1: {  // the chaos region of any process
        const uint64_t pid = sh_.slot_pid[rnd(kSlots)].load(std::memory_order_acquire);
        if (Process* q = pid ? sys.process(pid) : nullptr) p = q;
        start = kChaosBase + rnd(kChaosPages) * kP;
        break;
      }
      default:  // a CPU's swap region (anonymous and shared memory, verified by its reads)
        start = kSwapBase + cpu * sh_.swap_stride + rnd(swap_pages) * kP;
        break;
    }
    (void)sys.migrate_pages(p, start, n * kP, node);
    sh_.migrate_calls.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::yield();  // a migration thread should not starve the CPUs of the 2-core hosts
  }

  Shared& sh_;
  std::mt19937_64 rng_;
};

// The value of /proc/vmstat item `name` in a System::vmstat() snapshot (0 if absent).
uint64_t vmstat_value(const std::vector<std::pair<std::string, uint64_t>>& vm, std::string_view name) {
  for (const auto& [n, v] : vm)
    if (n == name) return v;
  return 0;
}

// " at ADDR (what it is)": the region of process 1 an address belongs to, for reports.
std::string fault_place(const Shared& sh, uint64_t a) {
  std::string what = "chaos region";
  if (a >= kSwapBase && sh.swap_stride) {
    const uint64_t t = (a - kSwapBase) / sh.swap_stride, page = (a - kSwapBase) % sh.swap_stride / kP;
    what = fmt::format("swap region of cpu {}, {} page {}", t, page < sh.swap_anon_pages ? "anonymous" : "shared-memory",
                       page);
  } else if (a < kChaosBase && (a - kW) % (64ull << 20) >= (32ull << 20)) {
    what = fmt::format("dirty-bit file of cpu {} (shared memory)", (a - kW) / (64ull << 20));
  } else if (a < kChaosBase) {
    what = fmt::format("private region of cpu {}", (a - kW) / (64ull << 20));
  }
  return fmt::format(" at {:#x} ({})", a, what);
}

// Stops the world: the workers park between steps, then kswapd and the OOM reaper finish their
// current step and wait. Parking first lets a worker waiting for the reaper's progress (an
// allocation in its slow path) reach its next step.
// The address space of each slot's process with its device mirror (mirrors: by slot), for
// the trace's report. The workers have stopped; the mirrors are still attached.
void trace_address_spaces(Shared& sh, trace::Recorder& rec, const std::vector<std::shared_ptr<SecondaryMmu>>& mirrors) {
  for (int slot = 0; slot < kSlots; slot++) {
    const uint64_t pid = sh.slot_pid[slot].load(std::memory_order_acquire);
    Process* p = pid ? sh.sys->process(pid) : nullptr;
    if (!p) continue;
    std::vector<std::pair<std::string, SecondaryMmu*>> devices;
    if (const auto& m = mirrors[static_cast<size_t>(slot)])
      devices.emplace_back(fmt::format("{} pid {}", m->kind(), pid), m.get());
    rec.add_address_space(trace::address_space(*sh.sys, p, devices));
  }
}

void stop_the_world(Shared& sh, System& sys, int threads) {
  sh.pause.store(true, std::memory_order_release);
  while (sh.parked.load(std::memory_order_acquire) != threads) std::this_thread::yield();
  sys.debug_pause_reclaim();
}

void resume_the_world(Shared& sh, System& sys) {
  sys.debug_resume_reclaim();
  sh.pause.store(false, std::memory_order_release);
}

}  // namespace

std::string replay_command(const Options& o) {
  std::string s = fmt::format("mirrormm stress --threads {} --seconds {} --seed {}", o.threads, o.seconds, o.seed);
  if (o.break_shootdown) s += " --break-shootdown";
  if (!o.devices) s += " --no-devices";
  if (!o.drivers.empty()) {
    std::string list;
    for (const std::string& d : o.drivers) list += (list.empty() ? "" : ",") + d;
    s += " --driver " + list;
  }
  if (o.drop_bracket >= 0)
    s += fmt::format(" --drop-bracket {}", mmu_notify_event_name(static_cast<MmuNotifyEvent>(o.drop_bracket)));
  if (!o.inject.empty()) s += " --inject " + o.inject;
  if (o.race_delay_us) s += fmt::format(" --race-delay {}", o.race_delay_us);
  if (o.stop_on_violation) s += " --stop-on-violation";
  // Only when they differ from the defaults, so that replay lines of runs without them stay
  // as they were.
  if (o.memory_mib != Options{}.memory_mib) s += fmt::format(" --memory {}", o.memory_mib);
  if (o.swap_mib) s += fmt::format(" --swap {}", o.swap_mib);
  if (o.nodes > 1) s += fmt::format(" --nodes {}", o.nodes);
  if (o.writeback) s += " --writeback";
  return s;
}

namespace {

Report run_workload(const Options& o, trace::Recorder* rec) {
  SystemConfig cfg;
  cfg.memory_bytes = o.memory_mib << 20;
  cfg.mmu_checker = true;  // the secondary MMUs' traffic is judged from the first mapping on
  cfg.nodes = std::max(1, o.nodes);
  System sys(cfg, o.threads);
  sys.debug_break_shootdown(o.break_shootdown);
  if (o.drop_bracket >= 0) mmu_debug_drop_bracket(o.drop_bracket);
  const bugs::Bug* bug = o.inject.empty() ? nullptr : bugs::find_bug(o.inject);
  if (!o.inject.empty() && !bug)
    sys.report_violation("stress setup", fmt::format("--inject {}: no such bug in the catalog", o.inject));
  if (bug) bugs::inject(sys, *bug);
  sys.debug_set_race_delay_us(o.race_delay_us);
  Shared sh;
  sh.sys = &sys;
  sh.p1 = sys.process(1);
  sh.threads = o.threads;
  sh.nodes = cfg.nodes;
  // Migration threads park at each stop of the world as the workers do.
  const int migrators = cfg.nodes > 1 ? std::max(1, o.threads / 2) : 0;
  const int parkers = o.threads + migrators;
  Report res;
  if (o.swap_mib) {
    if (Status st = sys.swapon(o.swap_mib << 20); !st.ok()) {
      sys.report_violation("stress setup", fmt::format("swapon of {} MiB failed: {}", o.swap_mib,
                                                       errno_name(st.error())));
    } else {
      // About 1.75 times the memory over all threads, a fifth of it in shared memory; but no
      // more than memory and half the swap hold, so that a small swap device does not make the
      // workload itself an OOM.
      const uint64_t mem_pages = (o.memory_mib << 20) / kP, swap_pages = (o.swap_mib << 20) / kP;
      const uint64_t total = std::min(mem_pages * 7 / 4, mem_pages + swap_pages / 2);
      const uint64_t per_thread = std::max<uint64_t>(64, total / static_cast<uint64_t>(o.threads));
      sh.swap_shmem_pages = per_thread / 5;
      sh.swap_anon_pages = per_thread - sh.swap_shmem_pages;
      sh.swap_stride = ((per_thread * kP + (2ull << 20)) + (2ull << 20) - 1) & ~((2ull << 20) - 1);
    }
  }
  sh.devices = o.devices;
  sh.writeback = o.writeback;
  sh.stop_on_violation = o.stop_on_violation;
  sh.drivers = o.drivers;
  if (bug)
    for (std::string& d : sh.drivers) d = bugs::driver_kind(*bug, d);
  if (o.devices) {
    for (const std::string& d : o.drivers) {
      if (!secondary_mmu_kind_known(d))
        sys.report_violation("stress setup", fmt::format("--driver {}: no such secondary MMU kind", d));
    }
    std::shared_ptr<SecondaryMmu> m = sh.attach(sh.drivers.empty() ? "interval" : sh.drivers[0], sys.process(1));
    if (m) {
      MutexGuard g(sh.mirror_lock);
      sh.mirror[0] = std::move(m);
    }
  }
  for (auto& s : sh.slot_pid) s.store(0);
  sh.slot_pid[0].store(1);
  (void)sys.memfd("chaos0", 64 * kP);
  (void)sys.memfd("chaos1", 64 * kP);

  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; t++)
    threads.emplace_back([&sh, t, &o] { Worker(sh, t, o.seed).run(); });
  for (int m = 0; m < migrators; m++) threads.emplace_back([&sh, m, &o] { Migrator(sh, m, o.seed).run(); });

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto next_check = t0 + std::chrono::milliseconds(200);
  auto next_report = t0 + std::chrono::seconds(1);
  auto next_progress = t0 + std::chrono::milliseconds(250);
  auto next_sample = t0;
  for (;;) {
    const auto now = Clock::now();
    if (now - t0 >= std::chrono::duration<double>(o.seconds)) break;
    if (o.stop_on_violation && sys.violations() > 0) {
      res.stopped_on_violation = true;
      break;
    }
    if (sh.p1->oom_killed() || !sh.p1->alive()) {
      // The workload lives in process 1: nothing is left to check. The workers idle already.
      // No worker exits process 1, so its death is an OOM: chosen by the OOM killer, or a
      // fault of its own that found no frame and no victim. Once the workers are parked, the
      // one whose access failed has noted where.
      stop_the_world(sh, sys, parkers);
      std::string counters;
      for (const auto& [name, v] : sys.vmstat())
        if (v) counters += fmt::format(" {}={}", name, v);
      const SwapStats ss = sys.swap_stats();
      std::string where;
      if (const uint64_t a = sh.oom_fault_addr.load(std::memory_order_relaxed)) where = fault_place(sh, a);
      sys.report_violation(
          "oom", fmt::format("process 1 {}{} after {:.1f} s (memory {} MiB, swap {} of {} slots used):{}",
                             sh.p1->oom_killed() ? "was OOM-killed" : "died of a fault that found no memory (VM_FAULT_OOM)",
                             where, std::chrono::duration<double>(now - t0).count(), o.memory_mib, ss.used, ss.total,
                             counters));
      resume_the_world(sh, sys);
      res.workload_oom_killed = true;
      break;
    }
    if (now >= next_check) {
      stop_the_world(sh, sys, parkers);
      sys.debug_check_consistency();
      res.checks++;
      resume_the_world(sh, sys);
      next_check = Clock::now() + std::chrono::milliseconds(200);
    }
    if (o.on_progress && now >= next_progress) {
      Progress p;
      p.seconds = std::chrono::duration<double>(now - t0).count();
      p.ops = sh.ops.load();
      p.accesses = sh.accesses.load();
      p.syscalls = sh.syscalls.load();
      p.forks = sh.forks.load();
      p.device_ops = sh.device_ops.load();
      p.checks = res.checks;
      p.violations = sys.violations();
      const auto vm = sys.vmstat();
      p.pswpout = vmstat_value(vm, "pswpout");
      p.pswpin = vmstat_value(vm, "pswpin");
      o.on_progress(p);
      next_progress += std::chrono::milliseconds(250);
    }
    if (o.progress && now >= next_report) {
      std::string swap;
      if (o.swap_mib) {
        const auto vm = sys.vmstat();
        swap = fmt::format("  swapped out {:>8} in {:>8}", vmstat_value(vm, "pswpout"), vmstat_value(vm, "pswpin"));
      }
      if (migrators) {
        const auto vm = sys.vmstat();
        swap += fmt::format("  migrated {:>8}", vmstat_value(vm, "pgmigrate_success"));
      }
      *o.progress << fmt::format("[stress] {:4.0f}s  ops {:>10}  accesses {:>10}  syscalls {:>9}  forks {:>6}  checks {:>4}{}  violations {}\n",
                                 std::chrono::duration<double>(now - t0).count(), sh.ops.load(), sh.accesses.load(),
                                 sh.syscalls.load(), sh.forks.load(), res.checks, swap, sys.violations());
      o.progress->flush();
      next_report += std::chrono::seconds(1);
    }
    if (rec && now >= next_sample) {
      rec->sample_memory(sys);
      next_sample += std::chrono::milliseconds(10);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  sh.stop.store(true);
  for (auto& t : threads) t.join();
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<std::shared_ptr<SecondaryMmu>> mirrors;
  {
    MutexGuard g(sh.mirror_lock);
    for (auto& m : sh.mirror) mirrors.push_back(std::move(m));
  }
  if (rec) trace_address_spaces(sh, *rec, mirrors);
  for (auto& m : mirrors)
    if (m) sh.detach_and_count(*m);  // outside the table's lock: detach takes mm locks
  mirrors.clear();
  if (o.drop_bracket >= 0) mmu_debug_drop_bracket(-1);
  sys.debug_pause_reclaim();
  sys.debug_check_consistency();
  res.checks++;
  const SwapStats ss = sys.swap_stats();
  res.swap_slots_used = ss.used;
  res.swap_slots_total = ss.total;
  sys.debug_resume_reclaim();
  const auto vm = sys.vmstat();
  res.pswpout = vmstat_value(vm, "pswpout");
  res.pswpin = vmstat_value(vm, "pswpin");
  res.pgscan_kswapd = vmstat_value(vm, "pgscan_kswapd");
  res.pgscan_direct = vmstat_value(vm, "pgscan_direct");
  res.pgsteal_kswapd = vmstat_value(vm, "pgsteal_kswapd");
  res.pgsteal_direct = vmstat_value(vm, "pgsteal_direct");
  res.workingset_refault = vmstat_value(vm, "workingset_refault_anon") + vmstat_value(vm, "workingset_refault_file");
  res.oom_kill = vmstat_value(vm, "oom_kill");
  res.pgmigrate_success = vmstat_value(vm, "pgmigrate_success");
  res.pgmigrate_fail = vmstat_value(vm, "pgmigrate_fail");
  res.migrate_calls = sh.migrate_calls.load();
  res.pages_written_back = sys.debug_disk_writes();
  res.mlock_calls = sh.mlock_calls.load();
  res.pgs_mlocked = vmstat_value(vm, "unevictable_pgs_mlocked");
  res.pgs_culled = vmstat_value(vm, "unevictable_pgs_culled");
  res.allocstall = vmstat_value(vm, "allocstall_normal");
  res.kswapd_runs = sys.debug_kswapd_runs();
  res.oom_reap_retries = sys.debug_oom_reap_retries();
  res.ops = sh.ops.load();
  res.accesses = sh.accesses.load();
  res.syscalls = sh.syscalls.load();
  res.forks = sh.forks.load();
  res.violations = sys.violations();
  res.messages = sys.violation_messages();
  res.kinds = sys.violation_kinds();
  res.device_ops = sh.device_ops.load();
  res.pgfault = vmstat_value(vm, "pgfault");
  res.pgmajfault = vmstat_value(vm, "pgmajfault");
  {
    MutexGuard g(sh.mirror_lock);
    res.mirrors_by_kind = sh.totals;
  }
  for (const auto& [kind, t] : res.mirrors_by_kind) {
    if (kind == "interval") res.interval_mirrors = t;
    if (kind == "classic") res.classic_mirrors = t;
  }
  return res;
}

}  // namespace

Report run(const Options& o) {
  if (!o.trace_json && !o.report_html) return run_workload(o, nullptr);
  trace::Recorder rec;
  rec.start();
  const Report res = run_workload(o, &rec);
  rec.stop();  // the System and every thread that used it are gone
  if (o.trace_json) rec.write_json(*o.trace_json);
  if (o.report_html) {
    trace::ReportInfo info;
    info.title = o.report_title;
    info.command = o.report_command.empty() ? replay_command(o) : o.report_command;
    const uint64_t invalidations = res.interval_mirrors.invalidations + res.classic_mirrors.invalidations;
    info.summary = {
        {"duration", fmt::format("{:.2f} s, {} CPUs", res.seconds, o.threads)},
        {"operations", fmt::format("{} ({} accesses, {} system calls, {} forks)", res.ops, res.accesses,
                                   res.syscalls, res.forks)},
        {"CPU page faults", fmt::format("{} ({} major)", res.pgfault, res.pgmajfault)},
        {"secondary MMUs", fmt::format("{} attached, {} device operations, {} invalidations received",
                                       res.interval_mirrors.attached + res.classic_mirrors.attached, res.device_ops,
                                       invalidations)},
        {"swap", fmt::format("{} pages out, {} in", res.pswpout, res.pswpin)},
        {"violations", std::to_string(res.violations)},
    };
    rec.write_report(*o.report_html, info);
  }
  return res;
}

}  // namespace mirrormm::stress
