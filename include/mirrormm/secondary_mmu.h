// SecondaryMmu: what a secondary-MMU driver implements so that `mirrormm stress`, `.mms`
// scripts (`dev attach NAME KIND …`) and tests drive it like the built-in ones, and the
// registry of driver kinds by name.
//
// A driver attaches to one process (a factory taking the Process and a span of its address
// space), keeps its own translations coherent with the CPU page tables through MMU notifiers
// (mmu_notifier.h), and offers the device's side: fault a range in (for reading or writing),
// read and write bytes through its own translations (with device_access_pfn, so that the
// coherence checker judges every access), show what it maps, count what it did. detach() ends
// the subscription; it is idempotent and may race the process's exit.
//
// Built-in kinds (register_secondary_mmu_kind adds more, from C++):
//
//   interval  DeviceMirror, Mode::kInterval: an HMM device mirror (include/mirrormm/device_mirror.h)
//   classic   DeviceMirror, Mode::kClassic: start/end and release, a sequence count
//   shadow    ShadowMmu: a KVM-style shadow MMU with accessed bits and the aging callbacks
//             (include/mirrormm/shadow_mmu.h)
//   iotlb     SvaIotlb: an IOMMU sharing the CPU page tables (SVA), a translation cache kept
//             coherent by arch_invalidate_secondary_tlbs only (include/mirrormm/sva_iotlb.h)
//   xpmem     XpmemMapper: a remote mapper exporting one process's range to an importer,
//             whose invalidation sleeps until in-flight remote accesses finish
//             (include/mirrormm/xpmem.h)
//
// A kind may have deliberately broken variants, selected as KIND:VARIANT ("shadow:broken-aging"):
// they exist to show that the coherence checker (or the test) catches the broken rule. Attaching
// one counts as a deliberately broken driver (mmu_debug_broken_driver).
//
// Thread safety: every method may be called concurrently with the others and with any
// activity of the process, including its exit. The registry is thread-safe.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mirrormm/mmu_notifier.h"

namespace mirrormm {

class Process;

class SecondaryMmu {
 public:
  // The number of MmuNotifyEvent values (the size of Stats::by_event).
  static constexpr int kEvents = static_cast<int>(MmuNotifyEvent::kExclusive) + 1;
  // The x86-64 user address space, [0, TASK_SIZE): the default span.
  static constexpr uint64_t kUserSpaceEnd = 1ull << 47;

  // What the driver was told: one entry per notification.
  struct Event {
    MmuNotifyEvent event = MmuNotifyEvent::kUnmap;
    uint64_t start = 0, end = 0;  // end exclusive; a classic release() is [0, ~0)
    bool blockable = true;
    bool release = false;        // a classic release() (event is then kRelease)
    bool secondary_tlb = false;  // an arch_invalidate_secondary_tlbs call (event is then kClear)
  };
  struct Stats {
    uint64_t faults = 0;         // fault rounds that installed translations
    uint64_t retries = 0;        // collisions with an invalidation (the fault started again)
    uint64_t invalidations = 0;  // notifications received (start/end pairs count once)
    uint64_t pages_dropped = 0;  // translations removed by notifications
    // invalidations by the range's MmuNotifyEvent; a classic release() counts as kRelease, an
    // arch_invalidate_secondary_tlbs call as kClear
    std::array<uint64_t, kEvents> by_event{};
    uint64_t young_queries = 0;  // clear_flush_young, clear_young and test_young calls
    uint64_t young_answers = 0;  // of those, the ones that answered "young"
    uint64_t waits = 0;          // invalidations that slept for in-flight device accesses
    uint64_t nonblock_refusals = 0;  // non-blockable invalidations refused (-EAGAIN / false)
  };

  virtual ~SecondaryMmu() = default;

  // The registry name of the driver's kind ("shadow"), with its variant if any
  // ("shadow:broken-aging").
  virtual std::string kind() const = 0;
  // Maps every page of [addr, addr+len), faulting it in on the CPU side as needed (for
  // writing when write). Returns the number of pages mapped, or -EFAULT (no VMA, no read
  // access, outside the span, detached), -EPERM (write to a VMA without VM_WRITE), -ENOMEM,
  // -EBUSY (too many collisions).
  virtual Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) = 0;
  // Device DMA through the driver's own translations: false at the first page the device
  // cannot reach (not mapped, or not writable for a write, after whatever the device does on
  // a miss) or whose access was refused; earlier pages were transferred. A failed read
  // leaves out holding the bytes read so far.
  virtual bool read(uint64_t addr, uint64_t len, std::vector<uint8_t>* out) = 0;
  virtual bool write(uint64_t addr, uint64_t len, const uint8_t* data) = 0;
  // One character per page of [addr, addr+len): '-' not mapped, 'r' read-only, 'w' writable.
  virtual std::string show(uint64_t addr, uint64_t len) = 0;
  virtual uint64_t pages_mapped() = 0;
  // The notifications received since the previous call.
  virtual std::vector<Event> take_events() = 0;
  virtual Stats stats() = 0;
  // The name the coherence checker's messages give the device (mmu_checker_name).
  virtual void set_name(const std::string& name) = 0;
  // Ends the subscription and drops every translation. Idempotent; may race the process's
  // exit. Destroying the driver detaches it.
  virtual void detach() = 0;

  // The device fault's steps, one call each, for a scenario that interleaves them with other
  // threads one at a time (a script's `dev begin`, `dev walk`, `dev retry` and `dev map`).
  // Kinds whose fault is the HMM loop over an interval notifier ("interval") provide them; the
  // others answer -EOPNOTSUPP. One stepped fault at a time per device:
  //   fault_begin: mmu_interval_read_begin for [addr, addr+len) (waiting out an invalidation
  //     in progress); the pages of the range, or -EFAULT (outside the span, detached);
  //   fault_walk: hmm_range_fault over the range (faulting pages in, for writing when asked),
  //     keeping the translations; the pages, -EBUSY (an invalidation came since fault_begin),
  //     -EFAULT, -EPERM as fault() answers, -EINVAL (no fault_begin);
  //   fault_retry: whether an invalidation came since fault_begin (mmu_interval_read_retry,
  //     under the driver lock; it decides nothing);
  //   fault_map: under the driver lock, mmu_interval_read_retry and, if no invalidation came,
  //     the walk's translations installed: the pages, -EAGAIN (one came: nothing installed,
  //     the fault starts over with fault_begin), -EINVAL (no walk). With check_retry false it
  //     installs without asking, as a driver that skips read_retry does.
  virtual Result<uint64_t> fault_begin(uint64_t addr, uint64_t len, bool write) {
    (void)addr, (void)len, (void)write;
    return Errno::kOpNotSupp;
  }
  virtual Result<uint64_t> fault_walk() { return Errno::kOpNotSupp; }
  virtual Result<bool> fault_retry() { return Errno::kOpNotSupp; }
  virtual Result<uint64_t> fault_map(bool check_retry) {
    (void)check_retry;
    return Errno::kOpNotSupp;
  }
};

// Attaches a driver of one kind to p over [start, start+length) (the kind may ignore the
// span: a classic subscription covers the whole address space). The variant is the part of
// the kind name after ':', empty for the correct driver; a factory answers -EINVAL for a
// variant it does not know.
using SecondaryMmuFactory = std::function<Result<std::unique_ptr<SecondaryMmu>>(
    Process* p, uint64_t start, uint64_t length, const std::string& variant)>;

struct SecondaryMmuKind {
  std::string name;                   // [a-z][a-z0-9_-]*
  std::string description;            // one line
  std::vector<std::string> variants;  // the deliberately broken variants it accepts
  SecondaryMmuFactory factory;
};

// Adds a kind: -EEXIST when the name is taken, -EINVAL for an empty or malformed name or a
// missing factory.
Errno register_secondary_mmu_kind(SecondaryMmuKind kind);
// Every kind, the built-in ones first, then in registration order.
std::vector<SecondaryMmuKind> secondary_mmu_kinds();
// Whether KIND[:VARIANT] names a registered kind and one of its variants.
bool secondary_mmu_kind_known(const std::string& kind);
// Attaches a driver of kind KIND[:VARIANT]: -ENOENT for an unknown kind, -EINVAL for an
// unknown variant, -ESRCH when p has exited, -EOVERFLOW for an empty or wrapping span, the
// registration's errno otherwise. A broken variant calls mmu_debug_broken_driver first.
Result<std::unique_ptr<SecondaryMmu>> attach_secondary_mmu(const std::string& kind, Process* p, uint64_t start = 0,
                                                           uint64_t length = SecondaryMmu::kUserSpaceEnd);

// Helpers for drivers (the built-in ones use them).
//
// hmm_range_fault's role for one device fault: the primary translation of every page of
// [first, end) (page aligned), faulted in (for writing when write) with mm_get_pfn, in order.
// Stops early, with the pages resolved so far, when collided() says an invalidation came
// (mmu_interval_check_retry's role). Returns the first page's error otherwise.
struct ResolvedPage {
  uint64_t pfn;
  bool writable;
};
Errno secondary_mmu_resolve(Mm* mm, uint64_t first, uint64_t end, bool write, std::vector<ResolvedPage>* out,
                            const std::function<bool()>& collided = {});
//
// The device's side of one DMA: [addr, addr+len) cut at page boundaries, each piece to go
// through device_access_pfn with the piece's own translation (empty when the range wraps).
struct DmaPiece {
  uint64_t addr;    // where the piece starts
  uint64_t page;    // its page
  uint64_t len;     // its length (within the page)
  uint64_t offset;  // its offset in the caller's buffer
};
std::vector<DmaPiece> secondary_mmu_dma_pieces(uint64_t addr, uint64_t len);
// A driver's statistics and notification log, guarded by the driver's own lock.
struct SecondaryMmuLog {
  SecondaryMmu::Stats stats;
  std::vector<SecondaryMmu::Event> events;  // since the last take(); at most 100000 kept
  // Counts a notification (invalidations and by_event) and logs it.
  void record(const SecondaryMmu::Event& e);
  // The same for an invalidation of range, and for a classic release().
  void record(const MmuNotifierRange* range);
  void record_release();
  std::vector<SecondaryMmu::Event> take() { return std::exchange(events, {}); }
};

// show()'s answer for a driver whose translations are a map from page address to an entry
// with a `writable` member.
template <class Map>
std::string secondary_mmu_show(const Map& table, uint64_t addr, uint64_t len) {
  std::string out;
  for (uint64_t a = addr & ~uint64_t{4095}; a < addr + len; a += 4096) {
    auto it = table.find(a);
    out.push_back(it == table.end() ? '-' : it->second.writable ? 'w' : 'r');
  }
  return out;
}

// A base for drivers whose reads and writes are one routine.
class SecondaryMmuDma : public SecondaryMmu {
 public:
  bool read(uint64_t addr, uint64_t len, std::vector<uint8_t>* out) final {
    out->assign(len, 0);
    return access(addr, len, out->data(), false);
  }
  bool write(uint64_t addr, uint64_t len, const uint8_t* data) final {
    return access(addr, len, const_cast<uint8_t*>(data), true);
  }

 protected:
  // The DMA of [addr, addr+len) to or from buf; as read and write answer.
  virtual bool access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) = 0;
};

// A base for drivers that keep their translations in a map from page address to Entry (with
// a `writable` member) under one lock of type Lock (taken with a Guard), beside their
// statistics and log, with a detach lock that faults and accesses hold shared and detach()
// holds exclusively: it answers show, pages_mapped, take_events, stats and set_name. The
// built-in shadow, iotlb and xpmem kinds use it.
template <class Lock, class Guard, class Entry>
class SecondaryMmuTable : public SecondaryMmuDma {
 public:
  std::string show(uint64_t addr, uint64_t len) override {
    Guard g(lock_);
    return secondary_mmu_show(table_, addr, len);
  }
  uint64_t pages_mapped() override {
    Guard g(lock_);
    return table_.size();
  }
  std::vector<Event> take_events() override {
    Guard g(lock_);
    return log_.take();
  }
  Stats stats() override {
    Guard g(lock_);
    return log_.stats;
  }
  void set_name(const std::string& name) override { mmu_checker_name(this, name); }

 protected:
  // The driver reaches [start, last] of mm. The lock classes (ranks in the library's lock
  // order) of the detach lock and of lock_.
  SecondaryMmuTable(Mm* mm, uint64_t start, uint64_t last, LockClass detach_class, LockClass table_class)
      : mm_(mm), start_(start), last_(last) {
    detach_lock_.set_class(detach_class);
    lock_.set_class(table_class);
  }
  // Whether [addr, addr+len) (len > 0) lies in the driver's range.
  bool covers(uint64_t addr, uint64_t len) const {
    return addr + len > addr && (addr & ~uint64_t{4095}) >= start_ && addr + len - 1 <= last_;
  }
  ~SecondaryMmuTable() override { mmu_checker_name(this, ""); }  // this address may name another next
  // Removes the translations of [start, end), each undeclared to the checker.
  void drop_locked(uint64_t start, uint64_t end) REQUIRES(lock_) {
    for (auto it = table_.lower_bound(start & ~uint64_t{4095}); it != table_.end() && it->first < end;) {
      mmu_checker_unmap(this, mm_, it->first);
      log_.stats.pages_dropped++;
      it = table_.erase(it);
    }
  }

  Mm* const mm_;  // the driver's subscription keeps it alive
  const uint64_t start_, last_;  // the range the device reaches (inclusive)
  RwSem detach_lock_;
  bool attached_ GUARDED_BY(detach_lock_) = false;
  Lock lock_;
  std::map<uint64_t, Entry> table_ GUARDED_BY(lock_);
  SecondaryMmuLog log_ GUARDED_BY(lock_);
};

}  // namespace mirrormm
