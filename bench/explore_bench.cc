// What the interleaving explorer's scheduling hooks (mirrormm/base/explore_hook.h) cost when
// no exploration runs: each lock type of base/locking.h, hooks compiled in and the explorer
// idle, against the same primitive without hooks, in the same run; then the model's fault
// path and notifier dispatch, whose hooked figures scripts/bench-compare.sh sets against a
// build without the hooks (-DMIRRORMM_EXPLORE_HOOKS=OFF, or a revision before them).
//
//   SpinLock     lock + unlock of an uncontended SpinLock   vs  the same test-and-set lock, bare
//   Mutex        lock + unlock of a Mutex                   vs  std::mutex
//   RwSem        down_read + up_read of an RwSem            vs  std::shared_mutex
// (each bare lock with the lock checker's test, as the annotated ones have).
//   FaultCycle   mmap 64 pages, write a byte to each through System::access, munmap
//   Dispatch     madvise(MADV_DONTNEED) of one page with an interval notifier subscribed
#include <benchmark/benchmark.h>

#include <cstdio>
#include <mutex>
#include <shared_mutex>

#include "bench_report.h"
#include "mirrormm/base/locking.h"
#include "mirrormm/mman.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kBase = 0x200000000000ull;
constexpr int kBatch = 256;  // lock round trips per timed iteration

// SpinLock's fast path without the hook (with the lock checker's test, as SpinLock has).
class BareSpinLock {
 public:
  void lock() {
    lockdep::check_acquire(kUncheckedLock, this, false);
    while (locked_.exchange(true, std::memory_order_acquire))
      while (locked_.load(std::memory_order_relaxed)) MM_CPU_RELAX();
  }
  void unlock() {
    lockdep::check_release(kUncheckedLock, this);
    locked_.store(false, std::memory_order_release);
  }

 private:
  std::atomic<bool> locked_{false};
};

// Mutex and RwSem's read side without the hooks, as BareSpinLock.
class BareMutex {
 public:
  void lock() {
    lockdep::check_acquire(kUncheckedLock, this, false);
    m_.lock();
  }
  void unlock() {
    lockdep::check_release(kUncheckedLock, this);
    m_.unlock();
  }

 private:
  std::mutex m_;
};
class BareRwSem {
 public:
  void down_read() {
    lockdep::check_acquire(kUncheckedLock, this, false, LockMode::kShared);
    m_.lock_shared();
  }
  void up_read() {
    lockdep::check_release(kUncheckedLock, this);
    m_.unlock_shared();
  }

 private:
  std::shared_mutex m_;
};

template <class L>
void lock_unlock(benchmark::State& state) {
  L l;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; i++) {
      l.lock();
      benchmark::ClobberMemory();
      l.unlock();
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_SpinLock_Hooked(benchmark::State& s) { lock_unlock<SpinLock>(s); }
void BM_SpinLock_Bare(benchmark::State& s) { lock_unlock<BareSpinLock>(s); }
void BM_Mutex_Hooked(benchmark::State& s) { lock_unlock<Mutex>(s); }
void BM_Mutex_Bare(benchmark::State& s) { lock_unlock<BareMutex>(s); }

template <class L>
void read_lock_unlock(benchmark::State& state) {
  L l;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; i++) {
      l.down_read();
      benchmark::ClobberMemory();
      l.up_read();
    }
  }
  state.SetItemsProcessed(state.iterations() * kBatch);
}
void BM_RwSem_Hooked(benchmark::State& s) { read_lock_unlock<RwSem>(s); }
void BM_RwSem_Bare(benchmark::State& s) { read_lock_unlock<BareRwSem>(s); }

BENCHMARK(BM_SpinLock_Hooked);
BENCHMARK(BM_SpinLock_Bare);
BENCHMARK(BM_Mutex_Hooked);
BENCHMARK(BM_Mutex_Bare);
BENCHMARK(BM_RwSem_Hooked);
BENCHMARK(BM_RwSem_Bare);

void BM_FaultCycle(benchmark::State& state) {
  System sys;
  Process* p = sys.process(1);
  const uint64_t n = 64;
  for (auto _ : state) {
    (void)sys.mmap(p, kBase, n * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed);
    for (uint64_t i = 0; i < n; i++)
      (void)sys.access(p, 0, kBase + i * kPage, 1, true, [](uint8_t* d, uint64_t, uint64_t) { d[0] = 1; });
    (void)sys.munmap(p, kBase, n * kPage);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_FaultCycle);

void BM_Dispatch(benchmark::State& state) {
  System sys;
  Process* p = sys.process(1);
  (void)sys.mmap(p, kBase, kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed);
  auto dev = attach_secondary_mmu("interval", p, kBase, kPage);
  for (auto _ : state) (void)sys.madvise(p, kBase, kPage, kMadvDontneed);
  state.SetItemsProcessed(state.iterations());
  if (dev.ok()) dev.value()->detach();
}
BENCHMARK(BM_Dispatch);

}  // namespace
}  // namespace mirrormm

int main(int argc, char** argv) {
  mirrormm::bench::Collector rep;
  mirrormm::bench::run_benchmarks(&argc, argv, &rep);
  std::printf("\nScheduling hooks, explorer idle (hooked / bare time per operation; 1.00 = free):\n");
  const bool repeated = rep.rate_.count("BM_SpinLock_Hooked_median") > 0;
  for (const char* lock : {"SpinLock", "Mutex", "RwSem"}) {
    double hooked = 0, bare = 0;
    const std::string suffix = repeated ? "_median" : "";
    if (!rep.rates(std::string("BM_") + lock + "_Hooked" + suffix, std::string("BM_") + lock + "_Bare" + suffix, &hooked,
                   &bare))
      continue;
    std::printf("  %-9s %.3fx  (%.1f vs %.1f M ops/s)\n", lock, bare / hooked, hooked / 1e6, bare / 1e6);
  }
  return 0;
}
