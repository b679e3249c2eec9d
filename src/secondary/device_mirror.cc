// DeviceMirror (see mirrormm/device_mirror.h): the two driver protocols on the public API.
#include "mirrormm/device_mirror.h"

#include <algorithm>

#include "mirrormm/hmm.h"
#include "mirrormm/system.h"
#include "mirrormm/trace.h"
#include "mm/lock_order.h"

namespace mirrormm {

namespace {
constexpr uint64_t kPage = 4096;
constexpr int kMaxRetries = 1000;
}  // namespace

DeviceMirror::DeviceMirror(Mode mode, Mm* mm, uint64_t start, uint64_t last)
    : mode_(mode), mm_(mm), start_(start), last_(last) {
  detach_lock_.set_class(lock_class::kDeviceDetach);
  interval_.owner = this;
  classic_.owner = this;
}

Result<std::unique_ptr<DeviceMirror>> DeviceMirror::attach(Process* p, Mode mode, uint64_t start, uint64_t length) {
  static const MmuIntervalNotifierOps interval_ops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = &DeviceMirror::interval_invalidate;
    return o;
  }();
  static const MmuNotifierOps classic_ops = [] {
    MmuNotifierOps o;
    o.invalidate_range_start = &DeviceMirror::classic_start;
    o.invalidate_range_end = &DeviceMirror::classic_end;
    o.release = &DeviceMirror::classic_release;
    return o;
  }();
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  if (mode == Mode::kClassic) {
    start = 0;
    length = kUserSpaceEnd;
  }
  if (length == 0 || start + (length - 1) < start) {
    mmput_ref(mm);
    return Errno::kOverflow;
  }
  std::unique_ptr<DeviceMirror> m(new DeviceMirror(mode, mm, start, start + length - 1));
  Errno e;
  if (mode == Mode::kInterval) {
    e = mmu_interval_notifier_insert(&m->interval_, mm, start, length, &interval_ops);
  } else {
    m->classic_.ops = &classic_ops;
    e = mmu_notifier_register(&m->classic_, mm);
  }
  mmput_ref(mm);
  if (e != Errno::kOk) return e;
  {
    WriteGuard<RwSem> d(m->detach_lock_);
    m->attached_ = true;
  }
  m->set_name(std::string("DeviceMirror ") + (mode == Mode::kInterval ? "interval" : "classic") + " pid " +
              std::to_string(p->pid()));
  return m;
}

DeviceMirror::~DeviceMirror() {
  detach();
  mmu_checker_name(this, "");  // this address may name another subscriber next
  trace::name_subscriber(trace_key(), "");
}

void DeviceMirror::set_name(const std::string& name) {
  mmu_checker_name(this, name);
  trace::name_subscriber(trace_key(), name);
}

const void* DeviceMirror::trace_key() const {
  if (mode_ == Mode::kInterval) return static_cast<const MmuIntervalNotifier*>(&interval_);
  return static_cast<const MmuNotifier*>(&classic_);
}

void DeviceMirror::detach() {
  WriteGuard<RwSem> d(detach_lock_);
  if (!attached_) return;
  // Stop using the device page table first (no fault can refill it: they hold detach_lock_
  // shared), then leave: between the two the subscription still covers every entry.
  {
    DriverLockGuard g(lock_);
    drop_locked(0, ~0ull);
  }
  if (mode_ == Mode::kInterval) {
    mmu_interval_notifier_remove(&interval_);
  } else {
    mmu_notifier_unregister(&classic_, mm_);
  }
  attached_ = false;
}

void DeviceMirror::drop_locked(uint64_t start, uint64_t end) {
  auto it = table_.lower_bound(start);
  while (it != table_.end() && it->first < end) {
    mmu_checker_unmap(this, mm_, it->first);
    stats_.pages_dropped++;
    it = table_.erase(it);
  }
}

void DeviceMirror::record_locked(const MmuNotifierRange* range, bool release) {
  stats_.invalidations++;
  Event e;
  e.event = release ? MmuNotifyEvent::kRelease : range->event;
  e.start = release ? 0 : range->start;
  e.end = release ? ~0ull : range->end;
  e.blockable = release || mmu_notifier_range_blockable(range);
  e.release = release;
  stats_.by_event[static_cast<size_t>(e.event)]++;
  if (events_.size() < 100000) events_.push_back(e);
}

bool DeviceMirror::interval_invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
  DeviceMirror* m = static_cast<IntervalSub*>(sub)->owner;
  if (mmu_notifier_range_blockable(range)) {
    m->lock_.lock();
  } else if (!m->lock_.try_lock()) {
    return false;  // would sleep
  }
  mmu_interval_set_seq(sub, cur_seq);
  m->record_locked(range, false);
  m->drop_locked(range->start, range->end);
  m->lock_.unlock();
  return true;
}

int DeviceMirror::classic_start(MmuNotifier* sub, const MmuNotifierRange* range) {
  DeviceMirror* m = static_cast<ClassicSub*>(sub)->owner;
  // KVM's rule: a start that cannot fail, paired with an end.
  DriverLockGuard g(m->lock_);
  m->invalidate_in_progress_++;
  m->record_locked(range, false);
  m->drop_locked(range->start, range->end);
  return 0;
}

void DeviceMirror::classic_end(MmuNotifier* sub, const MmuNotifierRange* range) {
  (void)range;
  DeviceMirror* m = static_cast<ClassicSub*>(sub)->owner;
  DriverLockGuard g(m->lock_);
  m->invalidate_seq_++;
  if (m->invalidate_in_progress_ > 0) m->invalidate_in_progress_--;
}

void DeviceMirror::classic_release(MmuNotifier* sub, Mm* mm) {
  (void)mm;
  DeviceMirror* m = static_cast<ClassicSub*>(sub)->owner;
  DriverLockGuard g(m->lock_);
  m->released_ = true;
  m->record_locked(nullptr, true);
  m->drop_locked(0, ~0ull);
}

Result<uint64_t> DeviceMirror::fault(uint64_t addr, uint64_t len, bool write) {
  if (len == 0) return uint64_t{0};
  trace::Span span(trace::Kind::kDeviceFault, trace_key(), addr, len, write);
  const uint64_t first = addr & ~(kPage - 1);
  const uint64_t end = addr + len;
  if (end < addr || first < start_ || end - 1 > last_) return Errno::kFault;
  if (mode_ == Mode::kClassic) {
    ReadGuard<RwSem> d(detach_lock_);
    if (!attached_) return Errno::kFault;
    return fault_classic(first, end, write);
  }
  Result<uint64_t> r = Errno::kFault;
  {
    ReadGuard<RwSem> d(detach_lock_);
    if (!attached_) return Errno::kFault;
    // A user reference for the faults' duration (the subscription's only keeps the structure),
    // as test_hmm's dmirror_fault takes one.
    if (!mmget_not_zero(mm_)) return Errno::kFault;
    r = fault_interval(first, end, write);
  }
  // Dropped without detach_lock_: the last reference tears the address space down (exit_mmap
  // takes locks ranked before detach_lock_). The reference itself keeps mm_ alive until then.
  mmput(mm_);
  return r;
}

// The HMM driver loop (mirrormm/hmm.h): one hmm_range_fault over the whole range per round,
// with the update lock taken only to check the sequence and program the device.
Result<uint64_t> DeviceMirror::fault_interval(uint64_t first, uint64_t end, bool write) {
  const uint64_t last_page = (end - 1) & ~(kPage - 1);
  std::vector<uint64_t> pfns((last_page - first) / kPage + 1);
  HmmRange range;
  range.notifier = &interval_;
  range.start = first;
  range.end = last_page + kPage;
  range.hmm_pfns = pfns.data();
  range.default_flags = HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0);
  range.dev_private_owner = this;
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    if (attempt) explore_hook::retry_wait();
    range.notifier_seq = mmu_interval_read_begin(&interval_);
    mmap_read_lock(mm_);
    Errno e = hmm_range_fault(&range);
    mmap_read_unlock(mm_);
    if (e == Errno::kBusy) {
      DriverLockGuard g(lock_);
      stats_.retries++;
      continue;
    }
    if (e != Errno::kOk) return e;
    DriverLockGuard g(lock_);
    if (mmu_interval_read_retry(&interval_, range.notifier_seq)) {
      stats_.retries++;
      continue;
    }
    uint64_t a = range.start;
    for (const uint64_t* p = range.hmm_pfns; a < range.end; ++p) {
      const Entry entry{hmm_pfn_to_pfn(*p), (*p & HMM_PFN_WRITE) != 0};
      mmu_checker_map(this, mm_, a, entry.pfn, entry.writable);
      table_[a] = entry;
      a += kPage;
    }
    stats_.faults++;
    return (range.end - range.start) / kPage;
  }
  return Errno::kBusy;
}

// The KVM-style loop: snapshot the invalidation count, resolve each page unlocked, and install
// only if no invalidation started or ended meanwhile.
Result<uint64_t> DeviceMirror::fault_classic(uint64_t first, uint64_t end, bool write) {
  std::vector<Entry> found;
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    if (attempt) explore_hook::retry_wait();
    uint64_t seq = 0;
    {
      DriverLockGuard g(lock_);
      if (released_) return Errno::kFault;
      seq = invalidate_seq_;
    }
    found.clear();
    for (uint64_t a = first; a < end; a += kPage) {
      bool writable = false;
      Result<uint64_t> pfn = mm_get_pfn(mm_, a, /*fault=*/true, write, &writable);
      if (!pfn.ok()) return pfn.error();
      found.push_back({pfn.value(), writable});
    }
    DriverLockGuard g(lock_);
    if (invalidate_in_progress_ != 0 || invalidate_seq_ != seq || released_) {
      stats_.retries++;
      continue;
    }
    uint64_t a = first;
    for (const Entry& e : found) {
      mmu_checker_map(this, mm_, a, e.pfn, e.writable);
      table_[a] = e;
      a += kPage;
    }
    stats_.faults++;
    return static_cast<uint64_t>(found.size());
  }
  return Errno::kBusy;
}

// The steps of fault_interval's loop, each taking the locks that step takes there.
Result<uint64_t> DeviceMirror::fault_begin(uint64_t addr, uint64_t len, bool write) {
  if (mode_ != Mode::kInterval) return Errno::kOpNotSupp;
  const uint64_t first = addr & ~(kPage - 1);
  const uint64_t end = addr + len;
  if (len == 0 || end < addr || first < start_ || end - 1 > last_) return Errno::kFault;
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return Errno::kFault;
  const uint64_t seq = mmu_interval_read_begin(&interval_);
  DriverLockGuard g(lock_);
  stepped_ = Stepped{true, first, ((end - 1) & ~(kPage - 1)) + kPage, write, seq, {}};
  return (stepped_.end - stepped_.start) / kPage;
}

Result<uint64_t> DeviceMirror::fault_walk() {
  if (mode_ != Mode::kInterval) return Errno::kOpNotSupp;
  HmmRange range;
  std::vector<uint64_t> pfns;
  {
    DriverLockGuard g(lock_);
    if (!stepped_.begun) return Errno::kInval;
    range.start = stepped_.start;
    range.end = stepped_.end;
    range.notifier_seq = stepped_.seq;
    range.default_flags = HMM_PFN_REQ_FAULT | (stepped_.write ? HMM_PFN_REQ_WRITE : 0);
  }
  pfns.resize((range.end - range.start) / kPage);
  range.notifier = &interval_;
  range.hmm_pfns = pfns.data();
  range.dev_private_owner = this;
  Errno e = Errno::kFault;
  {
    ReadGuard<RwSem> d(detach_lock_);
    if (!attached_) return Errno::kFault;
    if (!mmget_not_zero(mm_)) return Errno::kFault;
    mmap_read_lock(mm_);
    e = hmm_range_fault(&range);
    mmap_read_unlock(mm_);
  }
  mmput(mm_);  // outside detach_lock_, as fault() drops it
  DriverLockGuard g(lock_);
  if (e != Errno::kOk) {
    if (e == Errno::kBusy) stats_.retries++;
    return e;
  }
  if (!stepped_.begun || stepped_.seq != range.notifier_seq) return Errno::kInval;  // begun again meanwhile
  stepped_.pfns = std::move(pfns);
  return static_cast<uint64_t>(stepped_.pfns.size());
}

Result<bool> DeviceMirror::fault_retry() {
  if (mode_ != Mode::kInterval) return Errno::kOpNotSupp;
  DriverLockGuard g(lock_);
  if (!stepped_.begun) return Errno::kInval;
  return mmu_interval_read_retry(&interval_, stepped_.seq);
}

Result<uint64_t> DeviceMirror::fault_map(bool check_retry) {
  if (mode_ != Mode::kInterval) return Errno::kOpNotSupp;
  if (!check_retry) mmu_debug_broken_driver();  // a deliberately broken driver's install
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return Errno::kFault;
  DriverLockGuard g(lock_);
  if (!stepped_.begun || stepped_.pfns.empty()) return Errno::kInval;
  if (check_retry && mmu_interval_read_retry(&interval_, stepped_.seq)) {
    stats_.retries++;
    stepped_ = Stepped{};
    return Errno::kAgain;
  }
  uint64_t a = stepped_.start;
  for (const uint64_t p : stepped_.pfns) {
    const Entry entry{hmm_pfn_to_pfn(p), (p & HMM_PFN_WRITE) != 0};
    mmu_checker_map(this, mm_, a, entry.pfn, entry.writable);
    table_[a] = entry;
    a += kPage;
  }
  stats_.faults++;
  const uint64_t pages = stepped_.pfns.size();
  stepped_ = Stepped{};
  return pages;
}

bool DeviceMirror::read(uint64_t addr, uint64_t len, std::vector<uint8_t>* out) {
  out->clear();
  DriverLockGuard g(lock_);
  for (uint64_t a = addr; a < addr + len;) {
    auto it = table_.find(a & ~(kPage - 1));
    if (it == table_.end()) return false;
    const uint64_t off = a & (kPage - 1);
    const uint64_t n = std::min(kPage - off, addr + len - a);
    size_t at = out->size();
    out->resize(at + n);
    if (!device_access_pfn(this, mm_, a, it->second.pfn, out->data() + at, n, false)) return false;
    a += n;
  }
  return true;
}

bool DeviceMirror::write(uint64_t addr, uint64_t len, const uint8_t* data) {
  DriverLockGuard g(lock_);
  for (uint64_t a = addr; a < addr + len;) {
    auto it = table_.find(a & ~(kPage - 1));
    if (it == table_.end() || !it->second.writable) return false;
    const uint64_t off = a & (kPage - 1);
    const uint64_t n = std::min(kPage - off, addr + len - a);
    if (!device_access_pfn(this, mm_, a, it->second.pfn, const_cast<uint8_t*>(data + (a - addr)), n, true))
      return false;
    a += n;
  }
  return true;
}

std::string DeviceMirror::show(uint64_t addr, uint64_t len) {
  std::string s;
  DriverLockGuard g(lock_);
  for (uint64_t a = addr & ~(kPage - 1); a < addr + len; a += kPage) {
    auto it = table_.find(a);
    s.push_back(it == table_.end() ? '-' : it->second.writable ? 'w' : 'r');
  }
  return s;
}

uint64_t DeviceMirror::pages_mirrored() {
  DriverLockGuard g(lock_);
  return table_.size();
}

std::vector<DeviceMirror::Event> DeviceMirror::take_events() {
  DriverLockGuard g(lock_);
  std::vector<Event> out;
  out.swap(events_);
  return out;
}

DeviceMirror::Stats DeviceMirror::stats() {
  DriverLockGuard g(lock_);
  return stats_;
}

}  // namespace mirrormm
