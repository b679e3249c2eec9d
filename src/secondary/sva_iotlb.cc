// SvaIotlb (see mirrormm/sva_iotlb.h): an SVA IOMMU's IOTLB on the public API.
#include "mirrormm/sva_iotlb.h"

#include <fmt/format.h>

#include <chrono>
#include <thread>

#include "mirrormm/system.h"
#include "mm/lock_order.h"

namespace mirrormm {

namespace {
constexpr uint64_t kPage = 4096;
constexpr int kMaxRetries = 1000;
// How long a write may keep hitting the same read-only entry after page requests that found
// its PTE writable before the device reports that it faults forever. A flush already under
// way (a zap's gather, say) ends such a loop within microseconds; a missing upgrade
// invalidation never does.
constexpr auto kFaultLoop = std::chrono::milliseconds(500);
// Lookups of one page in one access (each after a walk or a page request) before the device
// gives up without a report (an access racing a workload that keeps unmapping the page).
constexpr int kMaxRounds = 64;
// Under the interleaving explorer time means nothing (one thread runs at a time, by the
// schedule): a write that met the same read-only entry this many times after page requests
// that found the PTE writable, with every other scenario thread given its turn in between,
// faults forever.
constexpr int kExploredFaultLoop = 16;

const char* variant_name(SvaIotlb::Broken b) {
  switch (b) {
    case SvaIotlb::Broken::kKeepEntries: return ":broken-keep";
    case SvaIotlb::Broken::kNoUpgradeFlush: return ":broken-upgrade";
    case SvaIotlb::Broken::kNone: break;
  }
  return "";
}
}  // namespace

SvaIotlb::SvaIotlb(Mm* mm, uint64_t start, uint64_t last, Broken broken)
    : SecondaryMmuTable(mm, start, last, lock_class::kDeviceDetach, lock_class::kSvaIotlb),
      broken_(broken) {
  sub_.owner = this;
}

Result<std::unique_ptr<SvaIotlb>> SvaIotlb::attach(Process* p, uint64_t start, uint64_t length, Broken broken) {
  // Intel's and SMMUv3's SVA ops: no start/end, which Linux refuses together with
  // arch_invalidate_secondary_tlbs.
  static const MmuNotifierOps ops = [] {
    MmuNotifierOps o;
    o.arch_invalidate_secondary_tlbs = &SvaIotlb::invalidate_secondary_tlbs;
    o.release = &SvaIotlb::release;
    return o;
  }();
  if (length == 0 || start + (length - 1) < start) return Errno::kOverflow;
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  std::unique_ptr<SvaIotlb> t(new SvaIotlb(mm, start, start + length - 1, broken));
  t->sub_.ops = &ops;
  const Errno e = mmu_notifier_register(&t->sub_, mm);
  if (e == Errno::kOk && broken == Broken::kNoUpgradeFlush)
    mm_sys(mm)->debug_break(System::DebugBreak::kNoSecondaryTlbUpgrade, true);
  mmput_ref(mm);
  if (e != Errno::kOk) return e;
  {
    WriteGuard<RwSem> d(t->detach_lock_);
    t->attached_ = true;
  }
  t->set_name("SvaIotlb" + std::string(variant_name(broken)) + " pid " + std::to_string(p->pid()));
  return t;
}

SvaIotlb::~SvaIotlb() { detach(); }

std::string SvaIotlb::kind() const { return std::string("iotlb") + variant_name(broken_); }

void SvaIotlb::detach() {
  WriteGuard<RwSem> d(detach_lock_);
  if (!attached_) return;
  // iommu_sva_unbind_device: release() (unless exit ran it) drops the whole IOTLB.
  mmu_notifier_unregister(&sub_, mm_);
  attached_ = false;
}

void SvaIotlb::invalidate_secondary_tlbs(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end) {
  (void)mm;
  SvaIotlb* t = static_cast<Sub*>(sub)->owner;
  SpinGuard g(t->lock_);
  t->invalidations_++;
  Event e;
  e.event = MmuNotifyEvent::kClear;
  e.start = start;
  e.end = end;
  e.blockable = false;  // called from the TLB flush: never sleeps
  e.secondary_tlb = true;
  t->log_.record(e);
  if (t->broken_ != Broken::kKeepEntries) t->drop_locked(start, end);
}

void SvaIotlb::release(MmuNotifier* sub, Mm* mm) {
  (void)mm;
  SvaIotlb* t = static_cast<Sub*>(sub)->owner;
  SpinGuard g(t->lock_);
  // The PASID entry goes (intel_pasid_tear_down_entry): no walk from now on.
  t->released_ = true;
  t->invalidations_++;
  t->log_.record_release();
  t->drop_locked(0, ~0ull);
}

Errno SvaIotlb::walk_and_fill(uint64_t page) {
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    if (attempt) explore_hook::retry_wait();
    uint64_t seq = 0;
    {
      SpinGuard g(lock_);
      if (released_) return Errno::kFault;
      seq = invalidations_;
    }
    // The hardware walk: what the PTE says now, nothing faulted in.
    bool writable = false;
    Result<uint64_t> pfn = mm_get_pfn(mm_, page, /*fault=*/false, /*write=*/false, &writable);
    if (!pfn.ok()) return pfn.error();
    SpinGuard g(lock_);
    if (released_) return Errno::kFault;
    if (invalidations_ != seq) {
      // A flush ran during the walk: what it read may be what the flush invalidated.
      log_.stats.retries++;
      continue;
    }
    mmu_checker_map_tlb(this, mm_, page, pfn.value(), writable);
    table_[page] = IotlbEntry{pfn.value(), writable, ++fills_};
    log_.stats.faults++;
    return Errno::kOk;
  }
  return Errno::kBusy;
}

Errno SvaIotlb::page_request(uint64_t page, bool write, bool* writable) {
  Result<uint64_t> pfn = mm_get_pfn(mm_, page, /*fault=*/true, write, writable);
  return pfn.ok() ? Errno::kOk : pfn.error();
}

Result<uint64_t> SvaIotlb::fault(uint64_t addr, uint64_t len, bool write) {
  if (len == 0) return uint64_t{0};
  if (!covers(addr, len)) return Errno::kFault;
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return Errno::kFault;
  const uint64_t first = addr & ~(kPage - 1), end = addr + len;
  uint64_t pages = 0;
  for (uint64_t a = first; a < end; a += kPage, pages++) {
    bool writable = false;
    if (Errno e = page_request(a, write, &writable); e != Errno::kOk) return e;
    if (Errno e = walk_and_fill(a); e != Errno::kOk) return e == Errno::kNoEnt ? Errno::kBusy : e;
  }
  return pages;
}

bool SvaIotlb::access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) {
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return false;
  for (const DmaPiece& p : secondary_mmu_dma_pieces(addr, len)) {
    if (p.page < start_ || p.page > last_) return false;
    // A write that hits a read-only entry after a page request found the PTE writable: the
    // entry (by its fill number) and since when.
    uint64_t stuck_fill = 0;
    int stuck_rounds = 0;
    auto stuck_since = std::chrono::steady_clock::now();
    for (int rounds = 0;; rounds++) {
      bool miss = false;
      uint64_t filled = 0, pfn = 0;
      {
        SpinGuard g(lock_);
        if (released_) return false;
        auto it = table_.find(p.page);
        if (it != table_.end() && (!write || it->second.writable)) {
          if (!device_access_pfn(this, mm_, p.addr, it->second.pfn, buf + p.offset, p.len, write)) return false;
          break;
        }
        miss = it == table_.end();
        if (!miss) {
          filled = it->second.filled;
          pfn = it->second.pfn;
          log_.stats.retries++;  // a permission fault
        }
      }
      // Give up after many rounds (a workload that keeps unmapping the page), unless the
      // entry is the one a missing upgrade invalidation would leave (reported below).
      if (rounds >= kMaxRounds && (stuck_fill == 0 || filled != stuck_fill)) return false;
      if (miss && walk_and_fill(p.page) == Errno::kOk) continue;
      bool writable = false;
      if (page_request(p.page, write, &writable) != Errno::kOk) return false;
      if (miss || !writable) {
        stuck_fill = 0;
        continue;
      }
      // The OS says the page is writable, yet the IOTLB answered read-only.
      const auto now = std::chrono::steady_clock::now();
      const bool explored = explore_hook::exploring() && explore_hook::scenario_thread();
      if (filled != stuck_fill) {
        stuck_fill = filled;
        stuck_since = now;
        stuck_rounds = 0;
      } else if (explored ? ++stuck_rounds >= kExploredFaultLoop : now - stuck_since >= kFaultLoop) {
        mm_sys(mm_)->report_violation(
            "iotlb fault loop",
            fmt::format("device {} at {:#x}: a write keeps faulting on a read-only IOTLB entry (pfn {:#x}) although "
                        "page requests found the PTE writable: the PTE's upgrade never reached "
                        "arch_invalidate_secondary_tlbs",
                        kind(), p.page, pfn));
        return false;
      } else if (explored) {
        explore_hook::retry_wait();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
    }
  }
  return true;
}

}  // namespace mirrormm
