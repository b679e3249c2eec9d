// XpmemMapper: an XPMEM-style remote mapper. One process (the exporter) exports a range of its
// address space; another (the importer) sees it through the mapper's translations (the
// "device" view: importer address import_base + (a - start) is the exporter's a), reading
// and writing the exporter's memory without going through the exporter's CPU page tables.
//
// Coherence comes from an interval notifier over the exported range, with the
// read_begin/read_retry protocol for faults. What is particular is the invalidation: remote
// accesses copy without holding the mapper's lock (they may be long), each registered as in
// flight over its range, and invalidate() closes its range to new accesses, sleeps until the
// in-flight accesses overlapping it have finished (as XPMEM waits for its in-flight remote
// faults) and then removes the translations of the range. A non-blockable invalidation (the OOM reaper) must not sleep: when
// the lock is contended or an access overlapping the range is in flight, invalidate() returns
// false (the core answers -EAGAIN and the reaper tries again later).
//
// Locking: the mapper's lock (a mutex, ranked just after DeviceMirror's in
// src/mm/lock_order.h) guards the translations and the in-flight list; it is taken inside
// invalidate() and around read_retry, never across a call into the VM. The detach lock is held
// shared across a fault and an access.
#pragma once

#include <condition_variable>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "mirrormm/base/locking.h"
#include "mirrormm/secondary_mmu.h"

namespace mirrormm {

struct XpmemEntry {
  uint64_t pfn;
  bool writable;
};

class XpmemMapper : public SecondaryMmuTable<Mutex, MutexGuard, XpmemEntry> {
 public:
  enum class Broken {
    kNone,
    kNoReadRetry,  // "broken-retry": faults install what they looked up without read_retry
  };
  // Exports [start, start+length) of exporter; importer (optional) only names the view in
  // messages; the importer sees the range at import_base (start when 0).
  static Result<std::unique_ptr<XpmemMapper>> attach(Process* exporter, uint64_t start, uint64_t length,
                                                     Broken broken = Broken::kNone, Process* importer = nullptr,
                                                     uint64_t import_base = 0);
  ~XpmemMapper() override;

  // The exporter's address behind an importer address, or ~0 outside the export.
  uint64_t exporter_address(uint64_t import_addr) const;

  // The interface's addresses are the exporter's.
  std::string kind() const override;
  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) override;
  void detach() override;

 private:
  struct InFlight {
    uint64_t start, end;
  };
  struct Sub : MmuIntervalNotifier {
    XpmemMapper* owner;
  };
  XpmemMapper(Mm* mm, uint64_t start, uint64_t last, uint64_t import_base, Broken broken);
  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq);
  bool overlaps_in_flight_locked(uint64_t start, uint64_t end) REQUIRES(lock_);
  bool access(uint64_t addr, uint64_t len, uint8_t* buf, bool write) override;

  const Broken broken_;
  const uint64_t import_base_;
  Sub sub_;
  // Besides the translations, under lock_:
  std::vector<InFlight> in_flight_ GUARDED_BY(lock_);
  // The ranges of the invalidations waiting for in-flight accesses: no access starts there.
  std::vector<InFlight> invalidating_ GUARDED_BY(lock_);
  std::condition_variable_any drained_;  // an in-flight access finished (waited on with lock_)
};

}  // namespace mirrormm
