// A user's own secondary MMU, registered as a SecondaryMmu kind and run under `mirrormm
// stress`'s workload with the coherence checker on (docs/driver-guide.md, "Your own
// driver"). Build: part of the project (target user_driver_example); run it as
//
//     user_driver_example [SECONDS [SEED]]     (defaults: 2 seconds, seed 1)
//
// It runs the workload under memory pressure (64 MiB of memory, 256 MiB of swap, two NUMA
// nodes with migration threads, regular files with writeback), with the new kind beside every
// built-in one, and exits non-zero if the stress run reports a violation or never used the
// driver.
//
// The driver: a "prefetching DMA engine" with a small page table of its own, kept coherent by
// an interval notifier with the read_begin/read_retry protocol. Everything it does goes
// through the public API (include/mirrormm).
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <utility>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/stress.h"
#include "mirrormm/system.h"

using namespace mirrormm;

namespace {

constexpr uint64_t kPage = 4096;

class DmaEngine : public SecondaryMmuDma {
 public:
  static Result<std::unique_ptr<SecondaryMmu>> attach(Process* p, uint64_t start, uint64_t length,
                                                      const std::string& variant) {
    static const MmuIntervalNotifierOps ops = [] {
      MmuIntervalNotifierOps o;
      o.invalidate = &DmaEngine::invalidate;
      return o;
    }();
    if (!variant.empty()) return Errno::kInval;  // no broken variants
    if (length == 0 || start + (length - 1) < start) return Errno::kOverflow;
    Mm* mm = get_task_mm(p);
    if (!mm) return Errno::kSrch;
    std::unique_ptr<DmaEngine> d(new DmaEngine(mm, start, start + length - 1));
    const Errno e = mmu_interval_notifier_insert(&d->sub_, mm, start, length, &ops);
    mmput_ref(mm);
    if (e != Errno::kOk) return e;
    d->attached_ = true;
    mmu_checker_name(d.get(), "DmaEngine pid " + std::to_string(p->pid()));
    return std::unique_ptr<SecondaryMmu>(std::move(d));
  }
  ~DmaEngine() override {
    detach();
    mmu_checker_name(this, "");
  }

  std::string kind() const override { return "dma"; }

  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) override {
    const uint64_t first = addr & ~(kPage - 1), end = addr + len;
    if (len == 0) return uint64_t{0};
    if (end < addr || first < start_ || end - 1 > last_) return Errno::kFault;
    std::shared_lock<std::shared_mutex> d(detach_);
    if (!attached_) return Errno::kFault;
    for (int attempt = 0; attempt < 1000; attempt++) {
      const uint64_t seq = mmu_interval_read_begin(&sub_);
      std::vector<ResolvedPage> pages;
      if (Errno e = secondary_mmu_resolve(mm_, first, end, write, &pages); e != Errno::kOk) return e;
      std::lock_guard<std::mutex> g(update_);
      if (mmu_interval_read_retry(&sub_, seq)) {
        log_.stats.retries++;
        continue;
      }
      uint64_t a = first;
      for (const ResolvedPage& p : pages) {
        mmu_checker_map(this, mm_, a, p.pfn, p.writable);
        table_[a] = p;
        a += kPage;
      }
      log_.stats.faults++;
      return static_cast<uint64_t>(pages.size());
    }
    return Errno::kBusy;
  }
  std::string show(uint64_t addr, uint64_t len) override {
    std::lock_guard<std::mutex> g(update_);
    return secondary_mmu_show(table_, addr, len);
  }
  uint64_t pages_mapped() override {
    std::lock_guard<std::mutex> g(update_);
    return table_.size();
  }
  std::vector<Event> take_events() override {
    std::lock_guard<std::mutex> g(update_);
    return log_.take();
  }
  Stats stats() override {
    std::lock_guard<std::mutex> g(update_);
    return log_.stats;
  }
  void set_name(const std::string& name) override { mmu_checker_name(this, name); }
  void detach() override {
    std::unique_lock<std::shared_mutex> d(detach_);
    if (!attached_) return;
    {
      std::lock_guard<std::mutex> g(update_);
      for (const auto& [a, p] : table_) mmu_checker_unmap(this, mm_, a);
      table_.clear();
    }
    mmu_interval_notifier_remove(&sub_);
    attached_ = false;
  }

 private:
  struct Sub : MmuIntervalNotifier {
    DmaEngine* owner;
  };
  DmaEngine(Mm* mm, uint64_t start, uint64_t last) : mm_(mm), start_(start), last_(last) { sub_.owner = this; }

  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
    DmaEngine* d = static_cast<Sub*>(sub)->owner;
    std::unique_lock<std::mutex> g(d->update_, std::defer_lock);
    if (mmu_notifier_range_blockable(range)) {
      g.lock();
    } else if (!g.try_lock()) {
      return false;
    }
    mmu_interval_set_seq(sub, cur_seq);
    Event e;
    e.event = range->event;
    e.start = range->start;
    e.end = range->end;
    e.blockable = mmu_notifier_range_blockable(range);
    d->log_.record(e);
    for (auto it = d->table_.lower_bound(range->start); it != d->table_.end() && it->first < range->end;) {
      mmu_checker_unmap(d, d->mm_, it->first);
      d->log_.stats.pages_dropped++;
      it = d->table_.erase(it);
    }
    return true;
  }

  bool access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) override {
    std::lock_guard<std::mutex> g(update_);
    for (const DmaPiece& p : secondary_mmu_dma_pieces(addr, len)) {
      auto it = table_.find(p.page);
      if (it == table_.end() || (write && !it->second.writable)) return false;
      if (!device_access_pfn(this, mm_, p.addr, it->second.pfn, buf + p.offset, p.len, write)) return false;
    }
    return true;
  }

  Mm* const mm_;
  const uint64_t start_, last_;
  Sub sub_;
  std::shared_mutex detach_;  // shared across a fault, exclusive in detach()
  bool attached_ = false;     // under detach_
  std::mutex update_;         // the "update" lock: table_, log_
  std::map<uint64_t, ResolvedPage> table_;
  SecondaryMmuLog log_;
};

}  // namespace

int main(int argc, char** argv) {
  SecondaryMmuKind kind;
  kind.name = "dma";
  kind.description = "a prefetching DMA engine (examples/user_driver.cc)";
  kind.factory = &DmaEngine::attach;
  if (register_secondary_mmu_kind(kind) != Errno::kOk) {
    std::fprintf(stderr, "register_secondary_mmu_kind failed\n");
    return 1;
  }
  // The stress workload with reclaim, swap, migration and writeback on, and the new kind
  // beside the built-in ones (process 1 gets the first; each forked child one at random).
  stress::Options o;
  o.threads = 4;
  o.seconds = argc > 1 ? std::atof(argv[1]) : 2;
  o.seed = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 1;
  if (o.seconds <= 0 || o.seed == 0) {
    std::fprintf(stderr, "usage: %s [SECONDS [SEED]] (SECONDS > 0, SEED > 0)\n", argv[0]);
    return 2;
  }
  o.memory_mib = 64;
  o.swap_mib = 256;
  o.nodes = 2;
  o.writeback = true;
  o.drivers = {"dma", "shadow", "iotlb", "xpmem", "interval", "classic"};
  const stress::Report r = stress::run(o);
  uint64_t dma_faults = 0;
  for (const auto& [name, t] : r.mirrors_by_kind) {
    std::printf("driver %s: %llu attached, %llu faults, %llu invalidations\n", name.c_str(),
                static_cast<unsigned long long>(t.attached), static_cast<unsigned long long>(t.faults),
                static_cast<unsigned long long>(t.invalidations));
    if (name == "dma") dma_faults = t.faults;
  }
  for (const std::string& m : r.messages) std::printf("violation: %s\n", m.c_str());
  std::printf("seed %llu, %.0f s: %llu ops, %llu device ops, %llu pages swapped out\n",
              static_cast<unsigned long long>(o.seed), r.seconds, static_cast<unsigned long long>(r.ops),
              static_cast<unsigned long long>(r.device_ops), static_cast<unsigned long long>(r.pswpout));
  std::printf("violations: %llu\n", static_cast<unsigned long long>(r.violations));
  return r.violations == 0 && dma_faults > 0 ? 0 : 1;
}
