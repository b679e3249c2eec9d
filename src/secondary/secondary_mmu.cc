// The SecondaryMmu registry (see mirrormm/secondary_mmu.h), the built-in kinds, the
// DeviceMirror adapter and the helpers drivers share.
#include "mirrormm/secondary_mmu.h"

#include <algorithm>
#include <optional>

#include "mirrormm/device_mirror.h"
#include "mirrormm/dmirror.h"
#include "mirrormm/shadow_mmu.h"
#include "mirrormm/sva_iotlb.h"
#include "mirrormm/system.h"
#include "mirrormm/xpmem.h"
#include "mm/lock_order.h"

namespace mirrormm {

namespace {

constexpr uint64_t kPage = 4096;

// DeviceMirror behind the SecondaryMmu interface ("interval" and "classic").
class DeviceMirrorAdapter : public SecondaryMmu {
 public:
  explicit DeviceMirrorAdapter(std::unique_ptr<DeviceMirror> m) : m_(std::move(m)) {}
  std::string kind() const override { return m_->mode() == DeviceMirror::Mode::kInterval ? "interval" : "classic"; }
  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) override { return m_->fault(addr, len, write); }
  bool read(uint64_t addr, uint64_t len, std::vector<uint8_t>* out) override { return m_->read(addr, len, out); }
  bool write(uint64_t addr, uint64_t len, const uint8_t* data) override { return m_->write(addr, len, data); }
  std::string show(uint64_t addr, uint64_t len) override { return m_->show(addr, len); }
  uint64_t pages_mapped() override { return m_->pages_mirrored(); }
  std::vector<Event> take_events() override {
    std::vector<Event> out;
    for (const DeviceMirror::Event& d : m_->take_events()) {
      Event e;
      e.event = d.event;
      e.start = d.start;
      e.end = d.end;
      e.blockable = d.blockable;
      e.release = d.release;
      out.push_back(e);
    }
    return out;
  }
  Stats stats() override {
    const DeviceMirror::Stats d = m_->stats();
    Stats s;
    s.faults = d.faults;
    s.retries = d.retries;
    s.invalidations = d.invalidations;
    s.pages_dropped = d.pages_dropped;
    static_assert(DeviceMirror::kEvents == kEvents);
    std::copy(d.by_event.begin(), d.by_event.end(), s.by_event.begin());
    return s;
  }
  void set_name(const std::string& name) override { m_->set_name(name); }
  void detach() override { m_->detach(); }
  Result<uint64_t> fault_begin(uint64_t addr, uint64_t len, bool write) override {
    return m_->fault_begin(addr, len, write);
  }
  Result<uint64_t> fault_walk() override { return m_->fault_walk(); }
  Result<bool> fault_retry() override { return m_->fault_retry(); }
  Result<uint64_t> fault_map(bool check_retry) override { return m_->fault_map(check_retry); }

 private:
  std::unique_ptr<DeviceMirror> m_;
};

template <class T>
Result<std::unique_ptr<SecondaryMmu>> upcast(Result<std::unique_ptr<T>> r) {
  if (!r.ok()) return r.error();
  return std::unique_ptr<SecondaryMmu>(std::move(r.value()));
}

// A factory for a driver whose variants map to its Broken enum: names[i] is the variant of
// Broken value i + 1.
template <class T>
SecondaryMmuKind kind_of(const char* name, const char* description, std::vector<std::string> variants) {
  SecondaryMmuKind k;
  k.name = name;
  k.description = description;
  k.variants = variants;
  k.factory = [variants](Process* p, uint64_t start, uint64_t length,
                         const std::string& variant) -> Result<std::unique_ptr<SecondaryMmu>> {
    int broken = 0;
    if (!variant.empty()) {
      auto it = std::find(variants.begin(), variants.end(), variant);
      if (it == variants.end()) return Errno::kInval;
      broken = static_cast<int>(it - variants.begin()) + 1;
    }
    return upcast(T::attach(p, start, length, static_cast<typename T::Broken>(broken)));
  };
  return k;
}

SecondaryMmuKind mirror_kind(const char* name, const char* description, DeviceMirror::Mode mode) {
  SecondaryMmuKind k;
  k.name = name;
  k.description = description;
  k.factory = [mode](Process* p, uint64_t start, uint64_t length,
                     const std::string& variant) -> Result<std::unique_ptr<SecondaryMmu>> {
    if (!variant.empty()) return Errno::kInval;
    Result<std::unique_ptr<DeviceMirror>> m = DeviceMirror::attach(p, mode, start, length);
    if (!m.ok()) return m.error();
    return std::unique_ptr<SecondaryMmu>(new DeviceMirrorAdapter(std::move(m.value())));
  };
  return k;
}

struct Registry {
  Mutex lock{lock_class::kSecondaryMmuKinds};
  std::vector<SecondaryMmuKind> kinds GUARDED_BY(lock);
  Registry() {
    MutexGuard g(lock);
    kinds.push_back(mirror_kind("interval", "an HMM device mirror: an interval notifier and read_begin/read_retry",
                                DeviceMirror::Mode::kInterval));
    kinds.push_back(mirror_kind("classic", "a device mirror with start/end, release and a sequence count",
                                DeviceMirror::Mode::kClassic));
    kinds.push_back(kind_of<ShadowMmu>(
        "shadow", "a KVM-style shadow MMU: mmu_invalidate_seq/in_progress, accessed bits and the aging callbacks",
        {"broken-aging", "broken-keep", "broken-inprogress", "broken-release-free"}));
    kinds.push_back(kind_of<SvaIotlb>(
        "iotlb", "an SVA IOMMU's IOTLB over the CPU page tables, kept coherent by arch_invalidate_secondary_tlbs",
        {"broken-keep", "broken-upgrade"}));
    kinds.push_back(kind_of<XpmemMapper>(
        "xpmem", "an XPMEM-style remote mapper whose invalidation sleeps until in-flight accesses finish",
        {"broken-retry"}));
    kinds.push_back(dmirror_secondary_mmu_kind());
  }
};

Registry& registry() {
  static Registry* r = new Registry();  // never destroyed: drivers may be attached at exit
  return *r;
}

bool valid_kind_name(const std::string& name) {
  if (name.empty() || !(name[0] >= 'a' && name[0] <= 'z')) return false;
  return std::all_of(name.begin(), name.end(),
                     [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-'; });
}

// KIND[:VARIANT] split; the kind's entry, or nullptr.
std::optional<SecondaryMmuKind> find_kind(const std::string& spec, std::string* variant) {
  const size_t colon = spec.find(':');
  const std::string name = spec.substr(0, colon);
  *variant = colon == std::string::npos ? "" : spec.substr(colon + 1);
  Registry& r = registry();
  MutexGuard g(r.lock);
  for (const SecondaryMmuKind& k : r.kinds)
    if (k.name == name) return k;
  return std::nullopt;
}

}  // namespace

Errno register_secondary_mmu_kind(SecondaryMmuKind kind) {
  if (!valid_kind_name(kind.name) || !kind.factory) return Errno::kInval;
  Registry& r = registry();
  MutexGuard g(r.lock);
  for (const SecondaryMmuKind& k : r.kinds)
    if (k.name == kind.name) return Errno::kExist;
  r.kinds.push_back(std::move(kind));
  return Errno::kOk;
}

std::vector<SecondaryMmuKind> secondary_mmu_kinds() {
  Registry& r = registry();
  MutexGuard g(r.lock);
  return r.kinds;
}

bool secondary_mmu_kind_known(const std::string& spec) {
  std::string variant;
  std::optional<SecondaryMmuKind> k = find_kind(spec, &variant);
  return k && (variant.empty() || std::find(k->variants.begin(), k->variants.end(), variant) != k->variants.end());
}

Result<std::unique_ptr<SecondaryMmu>> attach_secondary_mmu(const std::string& spec, Process* p, uint64_t start,
                                                           uint64_t length) {
  std::string variant;
  std::optional<SecondaryMmuKind> k = find_kind(spec, &variant);
  if (!k) return Errno::kNoEnt;
  if (!variant.empty()) {
    if (std::find(k->variants.begin(), k->variants.end(), variant) == k->variants.end()) return Errno::kInval;
    mmu_debug_broken_driver();
  }
  return k->factory(p, start, length, variant);
}

Errno secondary_mmu_resolve(Mm* mm, uint64_t first, uint64_t end, bool write, std::vector<ResolvedPage>* out,
                            const std::function<bool()>& collided) {
  out->clear();
  for (uint64_t a = first; a < end; a += kPage) {
    bool writable = false;
    Result<uint64_t> pfn = mm_get_pfn(mm, a, /*fault=*/true, write, &writable);
    if (!pfn.ok()) return pfn.error();
    out->push_back({pfn.value(), writable});
    if (collided && collided()) break;
  }
  mm_sys(mm)->debug_race_pause();  // the window between the walk and the caller's install
  return Errno::kOk;
}

std::vector<DmaPiece> secondary_mmu_dma_pieces(uint64_t addr, uint64_t len) {
  std::vector<DmaPiece> out;
  if (addr + len < addr) return out;
  for (uint64_t a = addr; a < addr + len;) {
    const uint64_t page = a & ~(kPage - 1);
    const uint64_t n = std::min(page + kPage, addr + len) - a;
    out.push_back({a, page, n, a - addr});
    a += n;
  }
  return out;
}

void SecondaryMmuLog::record(const MmuNotifierRange* range) {
  SecondaryMmu::Event e;
  e.event = range->event;
  e.start = range->start;
  e.end = range->end;
  e.blockable = mmu_notifier_range_blockable(range);
  record(e);
}

void SecondaryMmuLog::record_release() {
  SecondaryMmu::Event e;
  e.event = MmuNotifyEvent::kRelease;
  e.start = 0;
  e.end = ~0ull;
  e.release = true;
  record(e);
}

void SecondaryMmuLog::record(const SecondaryMmu::Event& e) {
  stats.invalidations++;
  stats.by_event[static_cast<size_t>(e.event)]++;
  if (events.size() < 100000) events.push_back(e);
}

}  // namespace mirrormm
