// The coherence checker: what mirrormm can tell a secondary-MMU developer that the kernel
// cannot. Secondary MMUs declare their mappings (mmu_checker_map/unmap); the primary paths
// report every PTE change (mmu_checker_pte_change) and frame free; brackets record their
// ranges (mmu_notifier.cc). Violations go to System::report_violation the moment they exist.
//
// The registry of secondary mappings is sharded by address space, so that one mm's entries
// live in one shard: map/unmap and the per-PTE lookup take one shard lock (a leaf), and exit
// finds an mm's leftovers without scanning the others. Frames are counted per (memory, pfn)
// in their own shards, for the free check.
#include <algorithm>
#include <atomic>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

struct Spte {
  const void* sub;
  uint64_t pfn;
  bool writable;
};

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

// Shard locks are leaves: a frame shard may be taken inside an mm shard, nothing inside either.
struct MmShard {
  Mutex lock;
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
struct FrameUse {
  uint64_t count = 0;
  System* sys = nullptr;
};
struct FrameShard {
  Mutex lock;
  std::unordered_map<FrameKey, FrameUse, FrameKeyHash> frames GUARDED_BY(lock);
};

constexpr size_t kShards = 64;
MmShard mm_shards[kShards];
FrameShard frame_shards[kShards];

MmShard& shard_of(const Mm* mm) { return mm_shards[(reinterpret_cast<uintptr_t>(mm) >> 6) % kShards]; }
FrameShard& shard_of(const void* mem, uint64_t pfn) {
  return frame_shards[(std::hash<const void*>()(mem) ^ pfn) % kShards];
}

void frame_ref(Mm* mm, uint64_t pfn, int delta) {
  const void* mem = &mm->sys()->mem();
  FrameShard& fs = shard_of(mem, pfn);
  MutexGuard g(fs.lock);
  FrameUse& u = fs.frames[{mem, pfn}];
  u.sys = mm->sys();
  if (delta > 0) {
    u.count++;
  } else if (u.count > 0 && --u.count == 0) {
    fs.frames.erase({mem, pfn});
  }
}

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Removes sub's entry from list (an entry of mm at addr); true if there was one.
bool drop_entry(Mm* mm, std::vector<Spte>& list, const void* sub) {
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].sub != sub) continue;
    frame_ref(mm, list[i].pfn, -1);
    list[i] = list.back();
    list.pop_back();
    return true;
  }
  return false;
}

// Process-wide record of what the checker reported (for test listeners): how many, the last
// message, and whether a deliberately broken kernel (mmu_debug_drop_bracket) was asked for.
std::atomic<uint64_t> reported{0};
Mutex last_lock;
std::string last_message GUARDED_BY(last_lock);

void report(System* sys, const std::string& what) {
  reported.fetch_add(1, std::memory_order_relaxed);
  {
    MutexGuard g(last_lock);
    last_message = what;
  }
  sys->report_violation(what);
}

}  // namespace

uint64_t mmu_checker_reports() { return reported.load(std::memory_order_relaxed); }

std::string mmu_checker_last_report() {
  MutexGuard g(last_lock);
  return last_message;
}

void mmu_checker_enable(bool on) { notifier_internal::checker_on.store(on, std::memory_order_relaxed); }
bool mmu_checker_enabled() { return notifier_internal::checker_on.load(std::memory_order_relaxed); }

void mmu_checker_map(const void* sub, Mm* mm, uint64_t addr, uint64_t pfn, bool writable) {
  if (!mmu_checker_enabled()) return;
  addr &= kPageMask;
  // The caller holds its driver lock after a successful read_retry (or is inside its own
  // start/end exclusion), so no invalidation of addr can have begun: the primary PTE must map
  // this frame, writable if the secondary mapping is.
  pte_t* ptep = pte_offset(mm, addr);
  pteval_t v = ptep ? ptep_get(ptep) : 0;
  if (!pte_hw_present(v) || pte_pfn(v) != pfn) {
    report(mm->sys(), "mmu checker: secondary mapping of " + hex(addr) + " -> pfn " + hex(pfn) +
                                " created while the primary PTE " +
                                (pte_hw_present(v) ? "maps pfn " + hex(pte_pfn(v)) : std::string("is not present")));
  } else if (writable && !pte_write(v)) {
    report(mm->sys(), "mmu checker: writable secondary mapping of " + hex(addr) +
                                " created over a read-only primary PTE");
  }
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  std::vector<Spte>& list = s.sptes[{mm, addr}];
  if (!drop_entry(mm, list, sub)) s.per_mm[mm]++;
  list.push_back({sub, pfn, writable});
  frame_ref(mm, pfn, +1);
}

void mmu_checker_unmap(const void* sub, Mm* mm, uint64_t addr) {
  addr &= kPageMask;
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  auto it = s.sptes.find({mm, addr});
  if (it == s.sptes.end()) return;
  if (drop_entry(mm, it->second, sub) && --s.per_mm[mm] == 0) s.per_mm.erase(mm);
  if (it->second.empty()) s.sptes.erase(it);
}

void mmu_checker_unmap_all(const void* sub) {
  for (MmShard& s : mm_shards) {
    MutexGuard g(s.lock);
    for (auto it = s.sptes.begin(); it != s.sptes.end();) {
      Mm* mm = const_cast<Mm*>(it->first.mm);
      if (drop_entry(mm, it->second, sub) && --s.per_mm[mm] == 0) s.per_mm.erase(mm);
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
  {
    MutexGuard g(mm->checker_lock_);
    bool covered = std::any_of(mm->checker_ranges_.begin(), mm->checker_ranges_.end(),
                               [&](const auto& r) { return r.first <= addr && addr < r.second; });
    if (!covered)
      report(mm->sys(), "mmu checker: the PTE of " + hex(addr) + " lost access or changed frame "
                                  "outside an active invalidation");
  }
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  auto it = s.sptes.find({mm, addr});
  if (it == s.sptes.end()) return;
  for (const Spte& e : it->second) {
    if (!pte_hw_present(new_pte) || pte_pfn(new_pte) != e.pfn) {
      report(mm->sys(), "mmu checker: a secondary mapping of " + hex(addr) + " -> pfn " + hex(e.pfn) +
                                  " outlives its primary PTE");
    } else if (e.writable && !pte_write(new_pte)) {
      report(mm->sys(), "mmu checker: a writable secondary mapping of " + hex(addr) +
                                  " outranks its read-only primary PTE");
    }
  }
}

void mmu_checker_frame_freed_slow(const void* mem, uint64_t pfn) {
  FrameShard& fs = shard_of(mem, pfn);
  MutexGuard g(fs.lock);
  auto it = fs.frames.find({mem, pfn});
  if (it == fs.frames.end() || it->second.count == 0) return;
  report(it->second.sys, "mmu checker: frame " + hex(pfn) + " freed while " +
                                   std::to_string(it->second.count) + " secondary mapping(s) name it");
}

void mmu_checker_mm_exit(Mm* mm) {
  if (!mmu_checker_enabled()) return;
  {
    MutexGuard g(mm->checker_lock_);
    if (!mm->checker_ranges_.empty()) {
      report(mm->sys(), "mmu checker: " + std::to_string(mm->checker_ranges_.size()) +
                                  " invalidation(s) started on an exiting mm never ended");
      mm->checker_ranges_.clear();
    }
  }
  MmShard& s = shard_of(mm);
  MutexGuard g(s.lock);
  auto pm = s.per_mm.find(mm);
  if (pm == s.per_mm.end()) return;
  report(mm->sys(), "mmu checker: " + std::to_string(pm->second) +
                              " secondary mapping(s) outlive their address space");
  for (auto it = s.sptes.begin(); it != s.sptes.end();) {
    if (it->first.mm != mm) {
      ++it;
      continue;
    }
    for (const Spte& e : it->second) frame_ref(mm, e.pfn, -1);
    it = s.sptes.erase(it);
  }
  s.per_mm.erase(pm);
}

}  // namespace mirrormm
