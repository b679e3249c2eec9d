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
#include <memory>
#include <string>
#include <vector>

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
// Counts a notification in stats and appends it to log (at most 100000 entries are kept).
void secondary_mmu_record(SecondaryMmu::Stats* stats, std::vector<SecondaryMmu::Event>* log,
                          const SecondaryMmu::Event& e);

}  // namespace mirrormm
