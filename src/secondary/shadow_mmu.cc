// ShadowMmu (see mirrormm/shadow_mmu.h): kvm_main.c's notifier protocol on the public API.
#include "mirrormm/shadow_mmu.h"

#include <algorithm>

#include "mirrormm/system.h"
#include "mm/lock_order.h"

namespace mirrormm {

namespace {
constexpr uint64_t kPage = 4096;
constexpr int kMaxRetries = 1000;

const char* variant_name(ShadowMmu::Broken b) {
  switch (b) {
    case ShadowMmu::Broken::kNoAging: return ":broken-aging";
    case ShadowMmu::Broken::kKeepMappings: return ":broken-keep";
    case ShadowMmu::Broken::kIgnoreInProgress: return ":broken-inprogress";
    case ShadowMmu::Broken::kFreeInRelease: return ":broken-release-free";
    case ShadowMmu::Broken::kNone: break;
  }
  return "";
}
}  // namespace

ShadowMmu::ShadowMmu(Mm* mm, uint64_t start, uint64_t last, Broken broken)
    : SecondaryMmuTable(mm, start, last, lock_class::kDeviceDetach, lock_class::kShadowMmuLock),
      broken_(broken) {
  sub_.owner = this;
}

Result<std::unique_ptr<ShadowMmu>> ShadowMmu::attach(Process* p, uint64_t start, uint64_t length, Broken broken) {
  static const MmuNotifierOps ops = [] {
    MmuNotifierOps o;
    o.invalidate_range_start = &ShadowMmu::invalidate_range_start;
    o.invalidate_range_end = &ShadowMmu::invalidate_range_end;
    o.release = &ShadowMmu::release;
    o.clear_flush_young = &ShadowMmu::clear_young;
    o.clear_young = &ShadowMmu::clear_young;
    o.test_young = &ShadowMmu::test_young;
    return o;
  }();
  // The broken variant forgets the aging callbacks (the kvm_mmu_notifier_ops of a driver that
  // never reports its accessed bits).
  static const MmuNotifierOps no_aging_ops = [] {
    MmuNotifierOps o = ops;
    o.clear_flush_young = nullptr;
    o.clear_young = nullptr;
    o.test_young = nullptr;
    return o;
  }();
  if (length == 0 || start + (length - 1) < start) return Errno::kOverflow;
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  std::unique_ptr<ShadowMmu> s(new ShadowMmu(mm, start, start + length - 1, broken));
  s->sub_.ops = broken == Broken::kNoAging ? &no_aging_ops : &ops;
  const Errno e = mmu_notifier_register(&s->sub_, mm);
  mmput_ref(mm);
  if (e != Errno::kOk) return e;
  {
    WriteGuard<RwSem> d(s->detach_lock_);
    s->attached_ = true;
  }
  s->set_name("ShadowMmu" + std::string(variant_name(broken)) + " pid " + std::to_string(p->pid()));
  return s;
}

ShadowMmu::~ShadowMmu() { detach(); }

std::string ShadowMmu::kind() const { return std::string("shadow") + variant_name(broken_); }

void ShadowMmu::detach() {
  WriteGuard<RwSem> d(detach_lock_);
  if (!attached_) return;
  // Unregistering calls release() unless exit did: every SPTE goes, no fault maps again.
  mmu_notifier_unregister(&sub_, mm_);
  attached_ = false;
}

int ShadowMmu::invalidate_range_start(MmuNotifier* sub, const MmuNotifierRange* range) {
  ShadowMmu* s = static_cast<Sub*>(sub)->owner;
  SpinGuard g(s->lock_);
  // kvm_mmu_invalidate_begin: the first invalidation in progress resets the accumulated range.
  if (s->mmu_invalidate_in_progress_++ == 0) {
    s->mmu_invalidate_range_start_ = range->start;
    s->mmu_invalidate_range_end_ = range->end;
  } else {
    s->mmu_invalidate_range_start_ = std::min(s->mmu_invalidate_range_start_, range->start);
    s->mmu_invalidate_range_end_ = std::max(s->mmu_invalidate_range_end_, range->end);
  }
  s->log_.record(range);
  if (s->broken_ != Broken::kKeepMappings) s->drop_locked(range->start, range->end);
  return 0;  // cannot fail: it has an end
}

void ShadowMmu::invalidate_range_end(MmuNotifier* sub, const MmuNotifierRange* range) {
  (void)range;
  ShadowMmu* s = static_cast<Sub*>(sub)->owner;
  SpinGuard g(s->lock_);
  // kvm_mmu_invalidate_end: the sequence moves before the count drops, so that a fault that
  // saw the count at zero after this end also sees the new sequence.
  s->mmu_invalidate_seq_++;
  if (s->mmu_invalidate_in_progress_ > 0) s->mmu_invalidate_in_progress_--;
}

void ShadowMmu::release(MmuNotifier* sub, Mm* mm) {
  (void)mm;
  ShadowMmu* s = static_cast<Sub*>(sub)->owner;
  SpinGuard g(s->lock_);
  s->released_ = true;
  s->log_.record_release();
  s->drop_locked(0, ~0ull);
  // The broken variant frees its subscription here, as drivers did before Linux gave them
  // mmu_notifier_put: the core may still be on it (an SRCU reader, unregister's unhash).
  if (s->broken_ == Broken::kFreeInRelease) mmu_notifier_debug_free(sub);
}

int ShadowMmu::clear_young(MmuNotifier* sub, Mm* mm, uint64_t start, uint64_t end) {
  (void)mm;
  ShadowMmu* s = static_cast<Sub*>(sub)->owner;
  SpinGuard g(s->lock_);
  int young = 0;
  for (auto it = s->table_.lower_bound(start & ~(kPage - 1)); it != s->table_.end() && it->first < end; ++it) {
    if (it->second.accessed) young = 1;
    it->second.accessed = false;
  }
  s->log_.stats.young_queries++;
  s->log_.stats.young_answers += static_cast<uint64_t>(young);
  return young;
}

int ShadowMmu::test_young(MmuNotifier* sub, Mm* mm, uint64_t addr) {
  (void)mm;
  ShadowMmu* s = static_cast<Sub*>(sub)->owner;
  SpinGuard g(s->lock_);
  auto it = s->table_.find(addr & ~(kPage - 1));
  const int young = it != s->table_.end() && it->second.accessed;
  s->log_.stats.young_queries++;
  s->log_.stats.young_answers += static_cast<uint64_t>(young);
  return young;
}

bool ShadowMmu::mmu_invalidate_retry_locked(uint64_t mmu_seq) {
  const bool in_progress = mmu_invalidate_in_progress_ != 0 && broken_ != Broken::kIgnoreInProgress;
  return in_progress || mmu_invalidate_seq_ != mmu_seq || released_;
}

Result<uint64_t> ShadowMmu::fault(uint64_t addr, uint64_t len, bool write) {
  if (len == 0) return uint64_t{0};
  if (!covers(addr, len)) return Errno::kFault;
  ReadGuard<RwSem> d(detach_lock_);
  if (!attached_) return Errno::kFault;
  const uint64_t first = addr & ~(kPage - 1), end = addr + len;
  std::vector<ResolvedPage> found;
  for (int attempt = 0; attempt < kMaxRetries; ++attempt) {
    if (attempt) explore_hook::retry_wait();
    uint64_t mmu_seq = 0;
    {
      SpinGuard g(lock_);
      if (released_) return Errno::kFault;
      mmu_seq = mmu_invalidate_seq_;
    }
    if (Errno e = secondary_mmu_resolve(mm_, first, end, write, &found); e != Errno::kOk) return e;
    SpinGuard g(lock_);
    if (mmu_invalidate_retry_locked(mmu_seq)) {
      log_.stats.retries++;
      continue;
    }
    uint64_t a = first;
    for (const ResolvedPage& p : found) {
      mmu_checker_map(this, mm_, a, p.pfn, p.writable);
      table_[a] = ShadowSpte{p.pfn, p.writable, /*accessed=*/true};
      a += kPage;
    }
    log_.stats.faults++;
    return static_cast<uint64_t>(found.size());
  }
  return Errno::kBusy;
}

bool ShadowMmu::access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) {
  SpinGuard g(lock_);
  for (const DmaPiece& p : secondary_mmu_dma_pieces(addr, len)) {
    auto it = table_.find(p.page);
    if (it == table_.end() || (write && !it->second.writable)) return false;
    it->second.accessed = true;  // the guest's access sets the SPTE's accessed bit
    if (!device_access_pfn(this, mm_, p.addr, it->second.pfn, buf + p.offset, p.len, write)) return false;
  }
  return true;
}

bool ShadowMmu::debug_young(uint64_t addr) {
  SpinGuard g(lock_);
  auto it = table_.find(addr & ~(kPage - 1));
  return it != table_.end() && it->second.accessed;
}

}  // namespace mirrormm
