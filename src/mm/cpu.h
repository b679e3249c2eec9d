// The software CPU: performs reads and writes through a per-CPU TLB and the page tables,
// setting accessed and dirty bits as x86 hardware does, and faulting into the fault handler.
//
// The TLB is direct-mapped and tagged with the address space id (like PCIDs), so switching
// between processes needs no flush. tlb_lock_ is held across lookup, page walk, A/D update and
// the data copy of one page; TLB shootdown (tlb.h) takes it, which is what makes a flushed
// translation unusable the moment the flush returns.
#pragma once

#include <cstdint>
#include <vector>

#include "mirrormm/access.h"
#include "mm/mm_types.h"

namespace mirrormm {

class alignas(64) Cpu final : public PhysMem::TlbWatcher {
 public:
  static constexpr int kTlbEntries = 256;

  // Registers this CPU's TLB with the frame pool for the free-time check (PhysMem::register_tlb);
  // System creates its CPUs before it is shared.
  Cpu(System* sys, PhysMem* mem, int id) : sys_(sys), mem_(mem), id_(id) { mem->register_tlb(this); }
  int id() const { return id_; }

  // Accesses [addr, addr+len) of mm, calling fn for each piece in ascending order.
  AccessResult access(Mm* mm, uint64_t addr, uint64_t len, bool write, const AccessChunkFn& fn)
      EXCLUDES(tlb_lock_);

  // Shootdown targets.
  void flush_range(uint64_t mm_id, uint64_t start, uint64_t end) EXCLUDES(tlb_lock_);
  void flush_mm(uint64_t mm_id) EXCLUDES(tlb_lock_);

  // Checker (PhysMem's free path, with the checker on): frame pfn is being freed, so no
  // translation to it may remain. Reports each entry that still maps it (frame, CPU, address)
  // and leaves it for the access-time generation check; a paging-structure cache entry that
  // points at it (a freed PTE table) is reported and dropped, so that no walk reads a freed
  // table.
  void debug_check_frame_free(pfn_t pfn) EXCLUDES(tlb_lock_);
  void frame_freed(pfn_t pfn) override { debug_check_frame_free(pfn); }

  // A copy of the valid TLB entries, for the quiescent checks (debug_check_consistency) and
  // tests. Racy with accesses by nature; the entries themselves are read under tlb_lock_.
  struct DebugTlbEntry {
    uint64_t addr;
    uint64_t mm_id;
    pfn_t pfn;
    bool writable;
    bool dirty;
    bool stale;  // the frame was freed since the entry was filled (generation mismatch)
  };
  std::vector<DebugTlbEntry> debug_tlb_entries() EXCLUDES(tlb_lock_);

  uint64_t debug_tlb_hits() const { return hits_.load(std::memory_order_relaxed); }
  uint64_t debug_tlb_misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  struct TlbEntry {
    uint64_t vpn = ~0ull;   // virtual page number; ~0 when empty
    uint64_t mm_id = 0;
    uint8_t* data = nullptr;
    Page* page = nullptr;   // the frame, and its generation when the entry was filled: a
    uint32_t gen = 0;       // mismatch on use means the frame was freed under the entry
    bool writable = false;  // the PTE was writable when filled
    bool dirty = false;     // the PTE's dirty bit was set (a write may use the entry)
  };

  // Whether a shootdown asked of this CPU keeps its data translations (the test switches
  // kShootdown, and kShootdownLocal for a CPU other than the initiating one).
  bool debug_keeps_stale_entries() const;

  // Translates addr under tlb_lock_; returns the frame data or nullptr when the access must
  // fault. Part of access()'s loop (defined and inlined there).
  [[gnu::always_inline]] inline uint8_t* translate_locked(Mm* mm, uint64_t addr, bool write) REQUIRES(tlb_lock_);
  // The checker's reports of translate_locked, kept out of its path: a hit on an entry whose
  // frame was freed (reported and dropped), a PTE that maps a free frame.
  [[gnu::cold, gnu::noinline]] void drop_stale_entry_locked(TlbEntry& e) REQUIRES(tlb_lock_);
  [[gnu::cold, gnu::noinline]] void report_pte_to_free_frame();

  System* sys_;   // written once
  PhysMem* mem_;  // sys_'s frames; written once
  int id_;        // written once
  alignas(64) SpinLock tlb_lock_{lock_class::kTlb};  // its own cache line: taken by shootdowns from other CPUs
  TlbEntry tlb_[kTlbEntries] GUARDED_BY(tlb_lock_);
  // The last PTE table this CPU walked to (a paging-structure cache, as x86's PDE cache):
  // valid for 2 MiB of one address space. Page tables are freed only after a flush of the
  // range they map, and every flush clears this, so it never points at a freed table.
  uint64_t ptc_mm_id_ GUARDED_BY(tlb_lock_) = 0;
  uint64_t ptc_pmd_ GUARDED_BY(tlb_lock_) = ~0ull;  // addr >> kPmdShift
  pte_t* ptc_table_ GUARDED_BY(tlb_lock_) = nullptr;
  // Statistics: written only by this CPU under tlb_lock_ (plain load+store, no RMW), atomic
  // so that debug readers may race with it.
  alignas(64) std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
};

}  // namespace mirrormm
