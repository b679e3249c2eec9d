// The coherence checker: what mirrormm can tell a secondary-MMU developer that the kernel
// cannot. Secondary MMUs declare their mappings (mmu_checker_map/unmap); the primary paths
// report every PTE change (mmu_checker_pte_change) and frame free; brackets record their
// ranges (checker_range_start/end); device accesses ask before they happen
// (mmu_checker_device_access). Violations go to System::report_violation the moment they
// exist, each with a short kind and a message naming the subscriber, the process, the address
// and the invalidation in progress.
//
// The registry of secondary mappings is sharded by address space, so that one mm's entries
// live in one shard: map/unmap, the per-PTE lookup and the access check take one shard lock
// (a leaf), and exit finds an mm's leftovers without scanning the others. Each entry
// remembers what the primary PTE did to it since it was declared (kCoherent, kReadOnly,
// kStale), which is how a device access through it is judged without walking page tables.
// Frames are counted per (memory, pfn) in their own shards, for the free check.
//
// Lock order: an mm's checker_lock_ and the shard locks are leaves, never nested in each
// other; a frame shard may be taken inside an mm shard; the name lock inside either.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/pgtable_walk.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

// What the primary PTE did to a declared secondary mapping since it was declared.
enum class SpteState : uint8_t {
  kCoherent,  // the PTE maps the frame, writable if the secondary mapping is
  kReadOnly,  // the PTE was write-protected under a writable secondary mapping
  kStale,     // the PTE was cleared or moved to another frame: the frame is not the mm's
};

struct Spte {
  const void* sub;
  uint64_t pfn;
  bool writable;
  SpteState state;
  // A secondary TLB entry over the CPU page tables (mmu_checker_map_tlb): it may lag behind
  // its PTE until the next arch_invalidate_secondary_tlbs of its address, as a CPU's TLB
  // entry lags until the shootdown. fill is the checker's sequence number when it was
  // declared; survived is set once a flush of its address left it in place.
  bool tlb = false;
  bool survived = false;
  uint64_t fill = 0;
};

// The order in which secondary TLB entries were declared, against which a flush tells the
// entries that existed when it began from those filled meanwhile.
std::atomic<uint64_t> tlb_fills{0};

struct MmAddr {
  const Mm* mm;
  uint64_t addr;
  bool operator==(const MmAddr& o) const { return mm == o.mm && addr == o.addr; }
};
struct MmAddrHash {
  size_t operator()(const MmAddr& k) const {
    return std::hash<const void*>()(k.mm) * 31 + std::hash<uint64_t>()(k.addr >> kPageShift);
  }
};

struct MmShard {
  Mutex lock{lock_class::kCheckerMmShard};
  std::unordered_map<MmAddr, std::vector<Spte>, MmAddrHash> sptes GUARDED_BY(lock);
  std::unordered_map<const Mm*, uint64_t> per_mm GUARDED_BY(lock);  // entries per mm
};

struct FrameKey {
  const void* mem;
  uint64_t pfn;
  bool operator==(const FrameKey& o) const { return mem == o.mem && pfn == o.pfn; }
};
struct FrameKeyHash {
  size_t operator()(const FrameKey& k) const { return std::hash<const void*>()(k.mem) * 31 + std::hash<uint64_t>()(k.pfn); }
};
// The secondary mappings naming one frame, and where the latest of them was made (for the
// message when the frame is freed under them).
struct FrameUse {
  uint64_t count = 0;
  System* sys = nullptr;
  const void* sub = nullptr;
  uint64_t pid = 0, mm_id = 0, addr = 0;
};
struct FrameShard {
  Mutex lock{lock_class::kCheckerFrameShard};
  std::unordered_map<FrameKey, FrameUse, FrameKeyHash> frames GUARDED_BY(lock);
};

constexpr size_t kShards = 64;
MmShard mm_shards[kShards];
FrameShard frame_shards[kShards];

MmShard& shard_of(const Mm* mm) { return mm_shards[(reinterpret_cast<uintptr_t>(mm) >> 6) % kShards]; }
FrameShard& shard_of(const void* mem, uint64_t pfn) {
  return frame_shards[(std::hash<const void*>()(mem) ^ pfn) % kShards];
}

void frame_ref(Mm* mm, const void* sub, uint64_t addr, uint64_t pfn, int delta) {
  const void* mem = &mm->mem();
  FrameShard& fs = shard_of(mem, pfn);
  MutexGuard g(fs.lock);
  FrameUse& u = fs.frames[{mem, pfn}];
  u.sys = mm->sys();
  if (delta > 0) {
    u.count++;
    u.sub = sub;
    u.pid = mm->owner_pid_.load(std::memory_order_relaxed);
    u.mm_id = mm->id();
    u.addr = addr;
  } else if (u.count > 0 && --u.count == 0) {
    fs.frames.erase({mem, pfn});
  }
}

// Removes sub's entry from list (an entry of mm at addr); true if there was one.
bool drop_entry(Mm* mm, uint64_t addr, std::vector<Spte>& list, const void* sub) {
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].sub != sub) continue;
    frame_ref(mm, sub, addr, list[i].pfn, -1);
    list[i] = list.back();
    list.pop_back();
    return true;
  }
  return false;
}

// ---- names and messages ----

Mutex names_lock{lock_class::kCheckerNames};
std::unordered_map<const void*, std::string> names GUARDED_BY(names_lock);

std::string name_of(const void* sub) {
  {
    MutexGuard g(names_lock);
    auto it = names.find(sub);
    if (it != names.end()) return it->second;
  }
  return fmt::format("{}", sub);
}

std::string process_of(uint64_t pid, uint64_t mm_id) {
  return pid ? fmt::format("pid {} (mm {})", pid, mm_id) : fmt::format("mm {}", mm_id);
}
std::string process_of(const Mm* mm) {
  return process_of(mm->owner_pid_.load(std::memory_order_relaxed), mm->id());
}

// ", during EVENT [start, end)" for the active invalidation of mm covering addr, or "".
std::string active_invalidation(Mm* mm, uint64_t addr) {
  MutexGuard g(mm->checker_lock_);
  for (const Mm::CheckerRange& r : mm->checker_ranges_) {
    if (r.start <= addr && addr < r.end)
      return fmt::format(", during {} [{:#x}, {:#x})", mmu_notify_event_name(static_cast<MmuNotifyEvent>(r.event)),
                         r.start, r.end);
  }
  return "";
}

// Process-wide record of what the checker reported (for test listeners): how many and the
// last message.
std::atomic<uint64_t> reported{0};
Mutex last_lock{lock_class::kCheckerLastReport};
std::string last_message GUARDED_BY(last_lock);

void report(System* sys, const char* kind, const std::string& what) {
  reported.fetch_add(1, std::memory_order_relaxed);
  const std::string message = "mmu checker: " + what;
  {
    MutexGuard g(last_lock);
    last_message = message;
  }
  sys->report_violation(kind, message);
}

// "subscriber NAME, pid P (mm M), address A"
std::string context(const void* sub, const Mm* mm, uint64_t addr) {
  return fmt::format("subscriber {}, {}, address {:#x}", name_of(sub), process_of(mm), addr);
}

// The primary PTE of addr, read as a hardware walker would (no locks) but trusting nothing:
// every table entry on the way must name a page-table frame of this machine, so that a
// table freed under the walk (a broken kernel) gives a wrong answer, never a wild read.
pteval_t read_pte_untrusted(Mm* mm, uint64_t addr) {
  if (mm->state() != Mm::State::kAlive) return 0;
  PhysMem& mem = mm->mem();
  const Page* pgd = mm->pgd_;
  if (!pgd || !pgd->test(PG_pgtable)) return 0;
  pte_t* table = reinterpret_cast<pte_t*>(mem.page_address(pgd));
  for (int shift : {kPgdShift, kPudShift, kPmdShift}) {
    const pteval_t e = ptep_get(&table[index_at(addr, shift)]);
    const pfn_t pfn = pte_pfn(e);
    if (pte_none(e) || !mem.valid_pfn(pfn) || !mem.pfn_to_page(pfn)->test(PG_pgtable)) return 0;
    table = table_of(mem, e);
  }
  return ptep_get(&table[index_at(addr, kPteShift)]);
}

}  // namespace

uint64_t mmu_checker_reports() { return reported.load(std::memory_order_relaxed); }

std::string mmu_checker_last_report() {
  MutexGuard g(last_lock);
  return last_message;
}

void mmu_checker_name(const void* sub, const std::string& name) {
  MutexGuard g(names_lock);
  if (name.empty()) {
    names.erase(sub);
  } else {
    names[sub] = name;
  }
}

void checker_range_start(const MmuNotifierRange* range) {
  if (!mmu_checker_on(range->mm)) return;
  MutexGuard g(range->mm->checker_lock_);
  range->mm->checker_ranges_.push_back({range->start, range->end, static_cast<int>(range->event)});
}

void checker_range_end(const MmuNotifierRange* range) {
  Mm* mm = range->mm;
  if (!mmu_checker_on(mm)) return;
  {
    MutexGuard g(mm->checker_lock_);
    auto& v = mm->checker_ranges_;
    auto it = std::find(v.begin(), v.end(), Mm::CheckerRange{range->start, range->end, static_cast<int>(range->event)});
    if (it != v.end()) {
      *it = v.back();
      v.pop_back();
      return;
    }
  }
  report(mm->sys(), "end without start",
         fmt::format("invalidate_range_end of {} [{:#x}, {:#x}) on {} without a matching start",
                     mmu_notify_event_name(range->event), range->start, range->end, process_of(mm)));
}

namespace {
void declare_mapping(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool writable, bool tlb) {
  addr &= kPageMask;
  // The caller holds its driver lock after a successful read_retry (or is inside its own
  // start/end exclusion), so no invalidation of addr can have begun: the primary PTE must map
  // this frame, writable if the secondary mapping is.
  const pteval_t v = read_pte_untrusted(mm, addr);
  SpteState state = SpteState::kCoherent;
  if (tlb) {
    // A TLB fill from a walk the PTE has changed since: the flush that follows the change
    // takes it out (checked then).
    if (!pte_hw_present(v) || pte_pfn(v) != pfn) state = SpteState::kStale;
    else if (writable && !pte_write(v)) state = SpteState::kReadOnly;
  } else if (!pte_hw_present(v) || pte_pfn(v) != pfn) {
    state = SpteState::kStale;
    report(mm->sys(), "mapping over a different PTE",
           fmt::format("secondary mapping to pfn {:#x} created while the primary PTE {}: {}{}", pfn,
                       pte_hw_present(v) ? fmt::format("maps pfn {:#x}", pte_pfn(v)) : std::string("is not present"),
                       context(sub, mm, addr), active_invalidation(mm, addr)));
  } else if (writable && !pte_write(v)) {
    state = SpteState::kReadOnly;
    report(mm->sys(), "writable mapping over a read-only PTE",
           fmt::format("writable secondary mapping to pfn {:#x} created over a read-only primary PTE: {}{}", pfn,
                       context(sub, mm, addr), active_invalidation(mm, addr)));
  }
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  std::vector<Spte>& list = s.sptes[{mm, addr}];
  if (!drop_entry(mm, addr, list, sub)) s.per_mm[mm]++;
  Spte e{sub, pfn, writable, state};
  e.tlb = tlb;
  if (tlb) e.fill = tlb_fills.fetch_add(1, std::memory_order_acq_rel) + 1;
  list.push_back(e);
  frame_ref(mm, sub, addr, pfn, +1);
}
}  // namespace

void mmu_checker_map(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool writable) {
  if (mmu_checker_on(mm)) declare_mapping(sub, mm, addr, pfn, writable, false);
}

void mmu_checker_map_tlb(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool writable) {
  if (mmu_checker_on(mm)) declare_mapping(sub, mm, addr, pfn, writable, true);
}

uint64_t checker_tlb_flush_begin(Mm* mm) {
  return mmu_checker_on(mm) ? tlb_fills.load(std::memory_order_acquire) : 0;
}

void checker_tlb_flush_end(Mm* mm, uint64_t start, uint64_t end, uint64_t begun) {
  if (!mmu_checker_on(mm)) return;
  start &= kPageMask;
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  if (!s.per_mm.count(mm)) return;
  auto check = [&](uint64_t addr, std::vector<Spte>& list) {
    for (Spte& e : list) {
      if (!e.tlb || e.survived || e.fill > begun) continue;
      e.survived = true;
      report(mm->sys(), "secondary TLB entry survives its flush",
             fmt::format("a secondary TLB entry to pfn {:#x} ({}) is still cached after "
                         "arch_invalidate_secondary_tlbs [{:#x}, {:#x}) returned: {}",
                         e.pfn, e.state == SpteState::kCoherent ? "still coherent" : "stale", start, end,
                         context(e.sub, mm, addr)));
    }
  };
  // A short range is looked up page by page; a long one (flush_tlb_mm) scans the shard.
  if (end - start <= 64 * kPageSize) {
    for (uint64_t a = start; a < end; a += kPageSize) {
      auto it = s.sptes.find({mm, a});
      if (it != s.sptes.end()) check(a, it->second);
    }
  } else {
    for (auto& [key, list] : s.sptes)
      if (key.mm == mm && key.addr >= start && key.addr < end) check(key.addr, list);
  }
}

void mmu_checker_unmap(const void* sub, Mm* mm, uint64_t addr) {
  addr &= kPageMask;
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  auto it = s.sptes.find({mm, addr});
  if (it == s.sptes.end()) return;
  if (drop_entry(mm, addr, it->second, sub) && --s.per_mm[mm] == 0) s.per_mm.erase(mm);
  if (it->second.empty()) s.sptes.erase(it);
}

void mmu_checker_unmap_all(const void* sub) {
  for (MmShard& s : mm_shards) {
    MutexGuard g(s.lock);
    for (auto it = s.sptes.begin(); it != s.sptes.end();) {
      Mm* mm = const_cast<Mm*>(it->first.mm);
      if (drop_entry(mm, it->first.addr, it->second, sub) && --s.per_mm[mm] == 0) s.per_mm.erase(mm);
      it = it->second.empty() ? s.sptes.erase(it) : std::next(it);
    }
  }
}

void mmu_checker_pte_change_slow(Mm* mm, uint64_t addr, pteval_t old_pte, pteval_t new_pte) {
  if (!pte_hw_present(old_pte)) return;  // nothing was accessible through it
  const uint64_t pfn = pte_pfn(old_pte);
  const bool same_frame = pte_hw_present(new_pte) && pte_pfn(new_pte) == pfn;
  const bool downgrade = !same_frame || (pte_write(old_pte) && !pte_write(new_pte));
  if (!downgrade) return;
  addr &= kPageMask;
  const std::string during = active_invalidation(mm, addr);
  if (during.empty())
    report(mm->sys(), "PTE change outside an invalidation",
           fmt::format("the PTE of {:#x} in {} {} outside an active invalidation", addr, process_of(mm),
                       same_frame ? "was write-protected" : "lost its frame"));
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  auto it = s.sptes.find({mm, addr});
  if (it == s.sptes.end()) return;
  for (Spte& e : it->second) {
    if (e.state == SpteState::kStale) continue;  // reported when it became stale
    if (e.tlb) {
      // Until the flush that follows (checker_tlb_flush_end judges what it leaves).
      if (!pte_hw_present(new_pte) || pte_pfn(new_pte) != e.pfn) e.state = SpteState::kStale;
      else if (e.writable && !pte_write(new_pte)) e.state = SpteState::kReadOnly;
      continue;
    }
    if (!pte_hw_present(new_pte) || pte_pfn(new_pte) != e.pfn) {
      e.state = SpteState::kStale;
      report(mm->sys(), "stale secondary mapping",
             fmt::format("a secondary mapping to pfn {:#x} outlives its primary PTE: {}{}", e.pfn,
                         context(e.sub, mm, addr), during));
    } else if (e.writable && !pte_write(new_pte) && e.state == SpteState::kCoherent) {
      e.state = SpteState::kReadOnly;
      report(mm->sys(), "secondary mapping outranks its PTE",
             fmt::format("a writable secondary mapping to pfn {:#x} outranks its read-only primary PTE: {}{}", e.pfn,
                         context(e.sub, mm, addr), during));
    }
  }
}

bool mmu_checker_device_access(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool write) {
  const uint64_t page = addr & kPageMask;
  const char* access = write ? "device write" : "device read";
  std::optional<Spte> entry;
  {
    MmShard& s = shard_of(mm);
    MutexGuard g(s.lock);
    auto it = s.sptes.find({mm, page});
    if (it != s.sptes.end()) {
      for (const Spte& e : it->second)
        if (e.sub == sub) entry = e;
    }
  }
  const char* kind = nullptr;
  std::string why;
  if (!entry) {
    kind = write ? "device write without a mapping" : "device read without a mapping";
    why = "no secondary mapping of this page was declared (mmu_checker_map)";
  } else if (entry->pfn != pfn) {
    kind = write ? "device write to another frame" : "device read from another frame";
    why = fmt::format("the declared secondary mapping names pfn {:#x}", entry->pfn);
  } else if (entry->tlb && entry->survived) {
    kind = write ? "device write through a TLB entry that survived its flush"
                 : "device read through a TLB entry that survived its flush";
    why = "arch_invalidate_secondary_tlbs of this page returned with the entry still cached";
  } else if (entry->tlb) {
    // Like a CPU's TLB entry between a PTE change and its shootdown: usable (the frame stays
    // allocated until the flush has returned), as long as it is used as it was filled.
    if (write && !entry->writable) {
      kind = "device write through a read-only mapping";
      why = "the secondary TLB entry is read-only";
    }
  } else if (entry->state == SpteState::kStale) {
    kind = write ? "device write through a stale mapping" : "device read through a stale mapping";
    why = "the primary PTE no longer maps the frame";
  } else if (write && !entry->writable) {
    kind = "device write through a read-only mapping";
    why = "the secondary mapping is read-only";
  } else if (write && entry->state == SpteState::kReadOnly) {
    kind = "device write through an outranking mapping";
    why = "the primary PTE is read-only";
  }
  std::string during = active_invalidation(mm, page);
  if (!kind && !during.empty() && !entry->tlb) {
    kind = write ? "device write during an invalidation" : "device read during an invalidation";
    why = "an invalidation covering the page is active";
  }
  if (!kind) return true;
  report(mm->sys(), kind,
         fmt::format("{} of pfn {:#x} refused ({}): {}{}", access, pfn, why, context(sub, mm, addr), during));
  return false;
}

void mmu_checker_report_device(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, const char* kind,
                               const std::string& what) {
  std::string during = mmu_checker_on(mm) ? active_invalidation(mm, addr & kPageMask) : std::string();
  report(mm->sys(), kind,
         fmt::format("{} of pfn {:#x} refused ({}): {}{}", kind, pfn, what, context(sub, mm, addr), during));
}

void mmu_checker_frame_freed_slow(const PhysMem* mem, uint64_t pfn) {
  FrameShard& fs = shard_of(mem, pfn);
  MutexGuard g(fs.lock);
  auto it = fs.frames.find({mem, pfn});
  if (it == fs.frames.end() || it->second.count == 0) return;
  const FrameUse& u = it->second;
  report(u.sys, "frame freed under a secondary mapping",
         fmt::format("frame {:#x} freed while {} secondary mapping(s) name it (the latest: subscriber {}, {}, "
                     "address {:#x})",
                     pfn, u.count, name_of(u.sub), process_of(u.pid, u.mm_id), u.addr));
}

void mmu_checker_mm_exit(Mm* mm) {
  const bool on = mmu_checker_on(mm);
  {
    MutexGuard g(mm->checker_lock_);
    if (on && !mm->checker_ranges_.empty())
      report(mm->sys(), "invalidation never ended",
             fmt::format("{} invalidation(s) started on exiting {} never ended (the first: {} [{:#x}, {:#x}))",
                         mm->checker_ranges_.size(), process_of(mm),
                         mmu_notify_event_name(static_cast<MmuNotifyEvent>(mm->checker_ranges_[0].event)),
                         mm->checker_ranges_[0].start, mm->checker_ranges_[0].end));
    mm->checker_ranges_.clear();
  }
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  auto pm = s.per_mm.find(mm);
  if (pm == s.per_mm.end()) return;
  const void* first_sub = nullptr;
  uint64_t first_addr = 0;
  for (auto it = s.sptes.begin(); it != s.sptes.end();) {
    if (it->first.mm != mm) {
      ++it;
      continue;
    }
    for (const Spte& e : it->second) {
      if (!first_sub) {
        first_sub = e.sub;
        first_addr = it->first.addr;
      }
      frame_ref(mm, e.sub, it->first.addr, e.pfn, -1);
    }
    it = s.sptes.erase(it);
  }
  if (on)
    report(mm->sys(), "mappings outlive their mm",
           fmt::format("{} secondary mapping(s) outlive their address space (one of them: {})", pm->second,
                       context(first_sub, mm, first_addr)));
  s.per_mm.erase(pm);
}

}  // namespace mirrormm
