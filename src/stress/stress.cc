// The stress workload (a policy that drives the mechanisms; not part of them).
//
// Each thread is one software CPU. Thread t owns a private region in process 1, which only it
// maps, changes and writes: it keeps a shadow of the byte it last wrote on each page and
// checks every read against it (copy-on-write, zap and TLB errors show up as wrong data), and
// a file-backed page whose dirty bit it checks after unmapping. Everything else is a shared
// "chaos" region that every thread maps, unmaps, protects, remaps and accesses in every
// process, to make the races happen. A coordinator stops the world every 200 ms to run the
// consistency checker.
#include "mirrormm/stress.h"

#include "mm/lock_order.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <random>
#include <algorithm>
#include <memory>
#include <thread>

#include "mirrormm/device_mirror.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"

namespace mirrormm::stress {

namespace {

constexpr uint64_t kW = 0x200000000000ull;
constexpr uint64_t kP = 4096;
constexpr uint64_t kPrivatePages = 64;
constexpr uint64_t kChaosBase = kW + (1ull << 32);
constexpr uint64_t kChaosPages = 512;
constexpr int kSlots = 4;

uint64_t private_base(int t) { return kW + static_cast<uint64_t>(t) * (64ull << 20); }
uint64_t dirty_base(int t) { return private_base(t) + (32ull << 20); }

struct Shared {
  System* sys;
  bool devices = false;
  bool stop_on_violation = false;
  // The secondary MMU of each slot's process (guarded by mirror_lock; a worker copies the
  // pointer out and uses the mirror unlocked: the mirror is thread-safe and outlives uses).
  Mutex mirror_lock{lock_class::kStressMirrors};
  std::shared_ptr<DeviceMirror> mirror[kSlots] GUARDED_BY(mirror_lock);
  std::atomic<uint64_t> device_ops{0};
  std::atomic<bool> stop{false};
  std::atomic<bool> pause{false};
  std::atomic<int> parked{0};
  std::atomic<uint64_t> slot_pid[kSlots];
  Mutex slot_lock{lock_class::kStressSlots};  // serializes the fork/exit of slots
  std::atomic<uint64_t> ops{0}, accesses{0}, syscalls{0}, forks{0};
};

class Worker {
 public:
  Worker(Shared& sh, int id, uint64_t seed) : sh_(sh), id_(id), rng_(seed * 1000003 + id), shadow_(kPrivatePages, 0) {}

  void run() {
    System& sys = *sh_.sys;
    System::bind_thread_to_cpu(id_);
    Process* p1 = sys.process(1);
    (void)sys.mmap(p1, private_base(id_), kPrivatePages * kP, kProtRead | kProtWrite,
                   kMapPrivate | kMapAnonymous | kMapFixed);
    while (!sh_.stop.load(std::memory_order_relaxed)) {
      if (sh_.pause.load(std::memory_order_acquire)) {
        sh_.parked.fetch_add(1, std::memory_order_acq_rel);
        while (sh_.pause.load(std::memory_order_acquire)) std::this_thread::yield();
        sh_.parked.fetch_sub(1, std::memory_order_acq_rel);
        continue;
      }
      if (sh_.stop_on_violation && sys.violations() > 0) {
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
      // The process may exit at any time; a dead one answers ESRCH, which is fine to race.
      if (Process* p = sh_.sys->process(pid)) return p;
    }
    return sh_.sys->process(1);
  }

  void fail(const std::string& what) {
    sh_.sys->report_violation("workload check", fmt::format("cpu {}: {}", id_, what));
  }

  // Private region of process 1: writes, verified reads, zaps and protection changes.
  void private_op() {
    System& sys = *sh_.sys;
    Process* p1 = sys.process(1);
    const uint64_t page = rnd(kPrivatePages);
    const uint64_t addr = private_base(id_) + page * kP;
    switch (rnd(6)) {
      case 0:
      case 1: {
        const uint8_t v = static_cast<uint8_t>(1 + rnd(255));
        AccessResult r = sys.access(p1, id_, addr, kP, true, [v](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) d[i] = v;
        });
        sh_.accesses.fetch_add(1, std::memory_order_relaxed);
        if (!r.ok()) fail(fmt::format("write to its own region faulted at {:#x}", r.fault_addr));
        else shadow_[page] = v;
        break;
      }
      case 2:
      case 3: {
        const uint8_t want = shadow_[page];
        bool wrong = false;
        AccessResult r = sys.access(p1, id_, addr, kP, false, [&](uint8_t* d, uint64_t, uint64_t n) {
          for (uint64_t i = 0; i < n; i++) wrong |= d[i] != want;
        });
        sh_.accesses.fetch_add(1, std::memory_order_relaxed);
        if (!r.ok()) fail(fmt::format("read of its own region faulted at {:#x}", r.fault_addr));
        else if (wrong) fail(fmt::format("private page {:#x} lost its data (want {:#x})", addr, want));
        break;
      }
      case 4:
        if (sys.madvise(p1, addr, kP, kMadvDontneed).ok()) shadow_[page] = 0;
        sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
        break;
      case 5: {
        // A read-only interval and back: the data must survive, writes must fault meanwhile.
        (void)sys.mprotect(p1, addr, kP, kProtRead);
        AccessResult r = sys.access(p1, id_, addr, 1, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] ^= 0xff; });
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
    Process* p1 = sys.process(1);
    const std::string name = fmt::format("cpu{}", id_);
    const uint64_t pg = rnd(8);
    if (!sys.memfd(name, 8 * kP).ok()) return;
    if (!sys.mmap_file(p1, dirty_base(id_), 8 * kP, kProtRead | kProtWrite, kMapShared | kMapFixed, name, 0,
                       System::FileMode::kReadWrite).ok())
      return;
    // A read first maps the page clean; the write must then dirty it through the PTE.
    (void)sys.access(p1, id_, dirty_base(id_) + pg * kP, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
    (void)sys.truncate(name, 0);  // drop the old page: the next fault creates a clean one
    (void)sys.truncate(name, 8 * kP);
    (void)sys.access(p1, id_, dirty_base(id_) + pg * kP, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
    AccessResult r = sys.access(p1, id_, dirty_base(id_) + pg * kP + 7, 1, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] = 1; });
    (void)sys.munmap(p1, dirty_base(id_), 8 * kP);
    sh_.syscalls.fetch_add(7, std::memory_order_relaxed);
    if (r.ok() && !sys.debug_file_page_dirty(name, pg)) fail(fmt::format("dirty bit of {} page {} lost", name, pg));
  }

  void chaos_op() {
    System& sys = *sh_.sys;
    Process* p = random_process();
    const uint64_t start = kChaosBase + rnd(kChaosPages) * kP;
    const uint64_t len = (1 + rnd(16)) * kP;
    static constexpr uint64_t kProts[] = {kProtNone, kProtRead, kProtRead | kProtWrite, kProtWrite,
                                          kProtRead | kProtExec, kProtRead | kProtWrite | kProtExec};
    const uint64_t prot = kProts[rnd(6)];
    switch (rnd(10)) {
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
      case 3: (void)sys.madvise(p, start, len, rnd(2) ? kMadvDontneed : kMadvPageout); break;
      case 4: (void)sys.mremap(p, start, len, len, 3, kChaosBase + rnd(kChaosPages) * kP); break;
      default: {
        const bool write = rnd(2);
        (void)sys.access(p, id_, start + rnd(kP), 1 + rnd(2 * kP), write, [write](uint8_t* d, uint64_t a, uint64_t n) {
          if (write) for (uint64_t i = 0; i < n; i++) d[i] = static_cast<uint8_t>(a + i);
        });
        sh_.accesses.fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
  }

  void process_op() {
    System& sys = *sh_.sys;
    MutexGuard g(sh_.slot_lock);
    const int slot = 1 + static_cast<int>(rnd(kSlots - 1));
    uint64_t pid = sh_.slot_pid[slot].load(std::memory_order_relaxed);
    if (pid) {
      sh_.slot_pid[slot].store(0, std::memory_order_release);
      // Exit with the device still attached (interval mirrors get RELEASE, classic ones
      // release()), then detach it, sometimes before the exit instead.
      std::shared_ptr<DeviceMirror> m = take_mirror(slot);
      if (m && rnd(4) == 0) m->detach();
      sys.exit(sys.process(pid));
      if (m) m->detach();
    } else {
      Result<Process*> r = sys.fork(sys.process(1));
      if (r.ok()) {
        attach_mirror(slot, r.value());
        sh_.slot_pid[slot].store(r.value()->pid(), std::memory_order_release);
        sh_.forks.fetch_add(1, std::memory_order_relaxed);
      }
    }
    sh_.syscalls.fetch_add(1, std::memory_order_relaxed);
  }

  std::shared_ptr<DeviceMirror> take_mirror(int slot) {
    MutexGuard g(sh_.mirror_lock);
    return std::move(sh_.mirror[slot]);
  }

  void attach_mirror(int slot, Process* p) {
    if (!sh_.devices) return;
    auto mode = rnd(2) ? DeviceMirror::Mode::kInterval : DeviceMirror::Mode::kClassic;
    Result<std::unique_ptr<DeviceMirror>> m = DeviceMirror::attach(p, mode, kChaosBase, kChaosPages * kP);
    if (!m.ok()) return;
    MutexGuard g(sh_.mirror_lock);
    sh_.mirror[slot] = std::shared_ptr<DeviceMirror>(std::move(m.value()));
  }

  // The secondary MMU's traffic: fault a few chaos pages in, read or write through the
  // device page table. The coherence checker judges every mapping it creates.
  void device_op() {
    std::shared_ptr<DeviceMirror> m;
    {
      MutexGuard g(sh_.mirror_lock);
      m = sh_.mirror[rnd(kSlots)];
    }
    if (!m) return;
    const uint64_t start = kChaosBase + rnd(kChaosPages) * kP;
    const uint64_t len = std::min<uint64_t>((1 + rnd(8)) * kP, kChaosBase + kChaosPages * kP - start);
    switch (rnd(3)) {
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

  void step() {
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
};

}  // namespace

std::string replay_command(const Options& o) {
  std::string s = fmt::format("mirrormm stress --threads {} --seconds {} --seed {}", o.threads, o.seconds, o.seed);
  if (o.break_shootdown) s += " --break-shootdown";
  if (!o.devices) s += " --no-devices";
  if (o.drop_bracket >= 0)
    s += fmt::format(" --drop-bracket {}", mmu_notify_event_name(static_cast<MmuNotifyEvent>(o.drop_bracket)));
  if (o.stop_on_violation) s += " --stop-on-violation";
  return s;
}

Report run(const Options& o) {
  SystemConfig cfg;
  cfg.memory_bytes = o.memory_mib << 20;
  cfg.mmu_checker = true;  // the secondary MMUs' traffic is judged from the first mapping on
  System sys(cfg, o.threads);
  sys.debug_break_shootdown(o.break_shootdown);
  if (o.drop_bracket >= 0) mmu_debug_drop_bracket(o.drop_bracket);
  Shared sh;
  sh.sys = &sys;
  sh.devices = o.devices;
  sh.stop_on_violation = o.stop_on_violation;
  if (o.devices) {
    Result<std::unique_ptr<DeviceMirror>> m =
        DeviceMirror::attach(sys.process(1), DeviceMirror::Mode::kInterval, kChaosBase, kChaosPages * kP);
    if (m.ok()) {
      MutexGuard g(sh.mirror_lock);
      sh.mirror[0] = std::shared_ptr<DeviceMirror>(std::move(m.value()));
    }
  }
  for (auto& s : sh.slot_pid) s.store(0);
  sh.slot_pid[0].store(1);
  (void)sys.memfd("chaos0", 64 * kP);
  (void)sys.memfd("chaos1", 64 * kP);

  Report res;
  std::vector<std::thread> threads;
  for (int t = 0; t < o.threads; t++)
    threads.emplace_back([&sh, t, &o] { Worker(sh, t, o.seed).run(); });

  using Clock = std::chrono::steady_clock;
  const auto t0 = Clock::now();
  auto next_check = t0 + std::chrono::milliseconds(200);
  auto next_report = t0 + std::chrono::seconds(1);
  for (;;) {
    const auto now = Clock::now();
    if (now - t0 >= std::chrono::duration<double>(o.seconds)) break;
    if (o.stop_on_violation && sys.violations() > 0) {
      res.stopped_on_violation = true;
      break;
    }
    if (now >= next_check) {
      // Stop the world, check, resume.
      sh.pause.store(true, std::memory_order_release);
      while (sh.parked.load(std::memory_order_acquire) != o.threads) std::this_thread::yield();
      sys.debug_check_consistency();
      res.checks++;
      sh.pause.store(false, std::memory_order_release);
      next_check = Clock::now() + std::chrono::milliseconds(200);
    }
    if (o.progress && now >= next_report) {
      *o.progress << fmt::format("[stress] {:4.0f}s  ops {:>10}  accesses {:>10}  syscalls {:>9}  forks {:>6}  checks {:>4}  violations {}\n",
                                 std::chrono::duration<double>(now - t0).count(), sh.ops.load(), sh.accesses.load(),
                                 sh.syscalls.load(), sh.forks.load(), res.checks, sys.violations());
      o.progress->flush();
      next_report += std::chrono::seconds(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  sh.stop.store(true);
  for (auto& t : threads) t.join();
  res.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  std::vector<std::shared_ptr<DeviceMirror>> mirrors;
  {
    MutexGuard g(sh.mirror_lock);
    for (auto& m : sh.mirror) mirrors.push_back(std::move(m));
  }
  for (auto& m : mirrors)
    if (m) m->detach();  // outside the table's lock: detach takes mm locks
  mirrors.clear();
  if (o.drop_bracket >= 0) mmu_debug_drop_bracket(-1);
  sys.debug_check_consistency();
  res.checks++;
  res.ops = sh.ops.load();
  res.accesses = sh.accesses.load();
  res.syscalls = sh.syscalls.load();
  res.forks = sh.forks.load();
  res.violations = sys.violations();
  res.messages = sys.violation_messages();
  res.kinds = sys.violation_kinds();
  res.device_ops = sh.device_ops.load();
  return res;
}

}  // namespace mirrormm::stress
