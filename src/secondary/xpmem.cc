// XpmemMapper (see mirrormm/xpmem.h): a remote mapper whose invalidation sleeps.
#include "mirrormm/xpmem.h"

#include "mirrormm/system.h"
#include "mm/lock_order.h"

namespace mirrormm {

namespace {
constexpr uint64_t kPage = 4096;
constexpr int kMaxRetries = 1000;
}  // namespace

XpmemMapper::XpmemMapper(Mm* mm, uint64_t start, uint64_t last, uint64_t import_base, Broken broken)
    : SecondaryMmuTable(mm, start, last, lock_class::kDeviceDetach, lock_class::kXpmem),
      broken_(broken),
      import_base_(import_base) {
  sub_.owner = this;
}

Result<std::unique_ptr<XpmemMapper>> XpmemMapper::attach(Process* exporter, uint64_t start, uint64_t length,
                                                         Broken broken, Process* importer, uint64_t import_base) {
  static const MmuIntervalNotifierOps ops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = &XpmemMapper::invalidate;
    return o;
  }();
  if (length == 0 || start + (length - 1) < start) return Errno::kOverflow;
  Mm* mm = get_task_mm(exporter);
  if (!mm) return Errno::kSrch;
  std::unique_ptr<XpmemMapper> x(
      new XpmemMapper(mm, start, start + length - 1, import_base ? import_base : start, broken));
  const Errno e = mmu_interval_notifier_insert(&x->sub_, mm, start, length, &ops);
  mmput_ref(mm);
  if (e != Errno::kOk) return e;
  {
    WriteGuard<RwSem> d(x->detach_lock_);
    x->attached_ = true;
  }
  std::string name = "XpmemMapper" + std::string(broken == Broken::kNoReadRetry ? ":broken-retry" : "") +
                     " pid " + std::to_string(exporter->pid());
  if (importer) name += " to pid " + std::to_string(importer->pid());
  x->set_name(name);
  return x;
}

XpmemMapper::~XpmemMapper() { detach(); }

std::string XpmemMapper::kind() const {
  return broken_ == Broken::kNoReadRetry ? "xpmem:broken-retry" : "xpmem";
}

uint64_t XpmemMapper::exporter_address(uint64_t import_addr) const {
  if (import_addr < import_base_ || import_addr - import_base_ > last_ - start_) return ~0ull;
  return start_ + (import_addr - import_base_);
}

void XpmemMapper::detach() {
  WriteGuard<RwSem> d(detach_lock_);
  if (!attached_) return;
  {
    // No access is in flight (they hold detach_lock_ shared); no fault can refill.
    MutexGuard g(lock_);
    drop_locked(0, ~0ull);
  }
  mmu_interval_notifier_remove(&sub_);
  attached_ = false;
}

bool XpmemMapper::overlaps_in_flight_locked(uint64_t start, uint64_t end) {
  for (const InFlight& f : in_flight_)
    if (f.start < end && start < f.end) return true;
  return false;
}

bool XpmemMapper::invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
  XpmemMapper* x = static_cast<Sub*>(sub)->owner;
  const bool blockable = mmu_notifier_range_blockable(range);
  if (blockable) {
    x->lock_.lock();
  } else if (!x->lock_.try_lock()) {
    return false;  // the lock is contended: it would sleep
  }
  mmu_interval_set_seq(sub, cur_seq);
  if (!blockable && x->overlaps_in_flight_locked(range->start, range->end)) {
    // It would have to wait for the access: refuse without changing anything (the caller
    // leaves the range alone).
    x->log_.stats.nonblock_refusals++;
    x->lock_.unlock();
    return false;
  }
  x->log_.record(range);
  // From now on no access starts in the range; wait for the ones that started before (they
  // copy without the lock and take it only to finish), then drop the translations they used.
  x->invalidating_.push_back({range->start, range->end});
  if (x->overlaps_in_flight_locked(range->start, range->end)) {
    x->log_.stats.waits++;
    while (x->overlaps_in_flight_locked(range->start, range->end)) explore_hook::cond_wait(x->drained_, x->lock_);
  }
  x->drop_locked(range->start, range->end);
  for (auto it = x->invalidating_.begin(); it != x->invalidating_.end(); ++it) {
    if (it->start == range->start && it->end == range->end) {
      x->invalidating_.erase(it);
      break;
    }
  }
  x->lock_.unlock();
  return true;
}

Result<uint64_t> XpmemMapper::fault(uint64_t addr, uint64_t len, bool write) {
  if (len == 0) return uint64_t{0};
  if (!covers(addr, len)) return Errno::kFault;
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return Errno::kFault;
  const uint64_t first = addr & ~(kPage - 1), end = addr + len;
  const bool check = broken_ != Broken::kNoReadRetry;
  std::vector<ResolvedPage> found;
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    if (attempt) explore_hook::retry_wait();
    const uint64_t seq = mmu_interval_read_begin(&sub_);
    std::function<bool()> collided;
    if (check) collided = [&] { return mmu_interval_check_retry(&sub_, seq); };
    if (Errno e = secondary_mmu_resolve(mm_, first, end, write, &found, collided); e != Errno::kOk) return e;
    MutexGuard g(lock_);
    if (check && (found.size() < (end - first + kPage - 1) / kPage || mmu_interval_read_retry(&sub_, seq))) {
      log_.stats.retries++;
      continue;
    }
    uint64_t a = first;
    for (const ResolvedPage& p : found) {
      mmu_checker_map(this, mm_, a, p.pfn, p.writable);
      table_[a] = XpmemEntry{p.pfn, p.writable};
      a += kPage;
    }
    log_.stats.faults++;
    return static_cast<uint64_t>(found.size());
  }
  return Errno::kBusy;
}

bool XpmemMapper::access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) {
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return false;
  // Under the lock: the translations of the pages this access can reach (up to the first it
  // cannot), and its registration as in flight over them.
  std::vector<DmaPiece> pieces = secondary_mmu_dma_pieces(addr, len);
  if (pieces.empty()) return len == 0;
  std::vector<uint64_t> pfns;
  InFlight f{addr, addr};
  {
    MutexGuard g(lock_);
    for (const DmaPiece& p : pieces) {
      auto it = table_.find(p.page);
      if (it == table_.end() || (write && !it->second.writable)) break;
      bool blocked = false;
      for (const InFlight& r : invalidating_) blocked |= r.start <= p.page && p.page < r.end;
      if (blocked) break;
      pfns.push_back(it->second.pfn);
      f.end = p.addr + p.len;
    }
    if (pfns.empty()) return false;
    in_flight_.push_back(f);
  }
  // The copy itself, unlocked: an invalidation of these pages waits for it.
  bool ok = true;
  for (size_t i = 0; ok && i < pfns.size(); i++)
    ok = device_access_pfn(this, mm_, pieces[i].addr, pfns[i], buf + pieces[i].offset, pieces[i].len, write);
  {
    MutexGuard g(lock_);
    for (auto it = in_flight_.begin(); it != in_flight_.end(); ++it) {
      if (it->start == f.start && it->end == f.end) {
        in_flight_.erase(it);
        break;
      }
    }
  }
  drained_.notify_all();
  return ok && pfns.size() == pieces.size();
}

}  // namespace mirrormm
