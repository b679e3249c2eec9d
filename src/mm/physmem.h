// Physical memory: a pool of 4 KiB frames holding real data, one page descriptor per frame,
// and the shared zero page (mm/page_alloc.c's role).
//
// Frames are numbered by pfn; pfn 0 is never handed out (a zero pfn in an entry means
// "none"), pfn 1 is the zero page. The pool and the descriptor array are reserved with
// MAP_NORESERVE and touched only as frames come into use, so a large configured pool costs
// nothing until it is used. Freed frames go to a LIFO list so hot frames are reused first.
//
// NUMA nodes: the pool is split into nodes, each a contiguous range of pfns with its own free
// list (one node, the whole pool, by default; set_nodes re-splits it before the machine is in
// use). A CPU's node is fixed by its number (CPUs spread evenly over the nodes); an allocation
// takes frames of the node asked for (the calling CPU's by default, node 0 for a thread that
// runs as no CPU) and falls back to the other nodes in turn when that node is empty, as
// Linux's zonelist does, unless it asked for that node only (__GFP_THISNODE). A CPU's per-CPU
// list caches frames of its own node only. The watermarks apply to the pool as a whole.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "mirrormm/base/assert.h"
#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mm/lock_order.h"

namespace mirrormm {

class VmEvents;
struct Lruvec;
class LruAddBatches;

inline constexpr uint64_t kPageShift = 12;
inline constexpr uint64_t kPageSize = 1ull << kPageShift;
inline constexpr uint64_t kPageMask = ~(kPageSize - 1);

inline constexpr uint64_t page_align(uint64_t x) { return (x + kPageSize - 1) & kPageMask; }
inline constexpr uint64_t offset_in_page(uint64_t x) { return x & (kPageSize - 1); }

using pfn_t = uint32_t;

// The software CPU the calling thread is running as (set by Cpu::access for its duration),
// or -1. Per-CPU structures (frame caches, rss slots) are indexed by it.
inline thread_local int tls_this_cpu = -1;
inline int this_cpu_slot(int nslots) { return tls_this_cpu >= 0 ? tls_this_cpu % nslots : nslots - 1; }

// Page flags (the subset of Linux's PG_* the model uses).
enum PageFlags : uint32_t {
  PG_locked = 1u << 0,
  PG_reserved = 1u << 1,   // the zero page: never freed, never counted in rss
  PG_pgtable = 1u << 2,    // a page-table page (its ptl is the split PTE lock)
  PG_anon = 1u << 3,       // mapping_ is an AnonVma
  PG_anon_exclusive = 1u << 4,  // mapped by exactly one process; a write may reuse it
  PG_dirty = 1u << 5,
  PG_shmem = 1u << 6,      // mapping_ is a ShmemInode (page cache)
  PG_free = 1u << 7,       // on the free list; any reference to it is a use-after-free
  PG_external_rmap = 1u << 8,  // a secondary MMU maps it through its own rmap (rmap notifiers)
  // LRU and swap state (mm/swap.c, mm/vmscan.c, mm/swap_state.c). PG_lru and PG_active change
  // under the LRU lock; PG_referenced and PG_workingset are hints set and cleared racily, as
  // in Linux; PG_swapcache and PG_swapbacked under the page lock.
  PG_lru = 1u << 9,            // on an LRU list (lru_prev/lru_next link it)
  PG_active = 1u << 10,        // on the active list of its type
  PG_referenced = 1u << 11,    // mark_page_accessed's first touch (second chance)
  PG_workingset = 1u << 12,    // was active before it was reclaimed, or refaulted
  PG_swapbacked = 1u << 13,    // anonymous or shmem: reclaimed to swap, not written to a file
  PG_swapcache = 1u << 14,     // in the swap cache; swap holds its swap entry
  PG_unevictable = 1u << 15,   // on the unevictable list (mlocked)
  PG_writeback = 1u << 16,     // being written to its backing store
  PG_reclaim = 1u << 17,       // reclaim wants it freed once writeback ends
  // A frame of a device's memory (ZONE_DEVICE, mirrormm/memremap.h): it belongs to its
  // pgmap for the pgmap's lifetime and never reaches the free lists; when its last
  // reference goes, the pgmap's folio_free takes it back (free_zone_device_folio).
  PG_zone_device = 1u << 18,
  // Mapped by a VM_LOCKED VMA (mlock_folio): the page is unevictable. Set atomically by
  // mlock_folio and mlock_new_folio, cleared under the LRU lock by the mlock batch, which
  // also moves the page to or from the unevictable list (mm/mlock.cc).
  PG_mlocked = 1u << 19,
  // A driver's page that vm_insert_page mapped into user space (mirrormm/device_file.h):
  // user data, like an anonymous or page-cache page, but with no rmap identity (mapping is
  // null) and on no LRU list. Set when first inserted, cleared when the frame is freed.
  // (Linux has no such flag; the model needs it to tell these pages from kernel frames.)
  PG_driver = 1u << 20,
};

struct DevPagemap;

// Page::lru_state's values (mm/lru.h describes the protocol).
enum LruState : uint8_t {
  kLruNone = 0,      // on no list and in no add batch
  kLruListed = 1,    // on an LRU list: PG_lru
  kLruQueued = 2,    // in a per-CPU add batch, which holds no reference
  kLruOrphaned = 3,  // in an add batch, its last reference gone: the batch's drain frees it
};

// The page descriptor (struct page). 64 bytes.
//
// refcount_ and mapcount_ are atomics (Linux's _refcount/_mapcount; mapcount_ counts PTEs,
// starting at 0). flags_ is atomic; its bits are set under the lock that owns the state they
// describe (PG_anon_exclusive under the PTE lock of the mapping PTE). mapping_ and index_ are
// written once when the frame is first mapped (under the PTE lock or the shmem inode lock) and
// cleared when it is freed; rmap readers hold the page lock. ptl is used only when the frame is
// a page table. No field is GUARDED_BY: which lock owns mapping_/index_ depends on what the
// frame is (PTE lock, inode lock, page lock: Linux's rules, stated above), and next_free is
// used only while the frame is free, under PhysMem::lock_, which the analysis cannot tie to a
// descriptor.
struct Page {
  std::atomic<uint32_t> flags{0};
  std::atomic<int32_t> refcount{0};
  std::atomic<int32_t> mapcount{0};
  std::atomic<uint32_t> gen{0};  // bumped each time the frame is freed (use-after-free checks)
  void* mapping = nullptr;    // AnonVma* (PG_anon) or ShmemInode* (PG_shmem)
  uint64_t index = 0;         // page offset within mapping
  SpinLock ptl{lock_class::kPtl};  // split page-table lock when PG_pgtable
  // Where the page stands with the LRU (an LruState): on a list (PG_lru, which test/set/clear
  // read and write here), queued in a per-CPU add batch, or neither. A byte of its own
  // rather than bits of flags: every change of it is made under lru_lock, by folio_add_lru
  // (kNone to kQueued, holding a reference to a page on no list), or by the free path once
  // the last reference is gone, so a plain store suffices where a bit of flags needs a
  // locked read-modify-write. Readers without lru_lock see it as they see flags.
  std::atomic<uint8_t> lru_state{0};
  // next_free: the free-list link while the frame is free, guarded by PhysMem::lock_.
  // mlock_count: while the page is allocated, the number of locked mappings counted for an
  // mlocked page on the unevictable list (folio->mlock_count; it may undercount, never
  // overcount), guarded by the LRU lock (mm/mlock.cc).
  union {
    uint32_t next_free = 0;
    uint32_t mlock_count;
  };
  // LRU links (struct folio's lru): pfns of the neighbours on the LRU list this page is on
  // (PG_lru), 0 at the ends; guarded by the lock of that list's lruvec.
  pfn_t lru_prev = 0, lru_next = 0;
  // folio->swap: the swap entry (swp_entry value) of a PG_swapcache page; written under the
  // page lock when it enters or leaves the swap cache.
  uint64_t swap = 0;
  // page_pgmap: the dev_pagemap a PG_zone_device frame belongs to. Written by memremap_pages
  // and memunmap_pages while no reference to the frame exists, read by anyone holding one.
  DevPagemap* pgmap = nullptr;

  bool test(PageFlags f) const {
    if (f == PG_lru) return lru_state.load(std::memory_order_relaxed) == kLruListed;
    return flags.load(std::memory_order_relaxed) & f;
  }
  void set(PageFlags f) {
    if (f == PG_lru) lru_state.store(kLruListed, std::memory_order_relaxed);
    else flags.fetch_or(f, std::memory_order_relaxed);
  }
  void clear(PageFlags f) {
    if (f == PG_lru) lru_state.store(kLruNone, std::memory_order_relaxed);
    else flags.fetch_and(~static_cast<uint32_t>(f), std::memory_order_relaxed);
  }
  // All the flags, PG_lru included, in one value (each word read once; for display and for
  // checks that test several flags together).
  uint32_t flags_snapshot() const {
    return flags.load(std::memory_order_relaxed) |
           (lru_state.load(std::memory_order_relaxed) == kLruListed ? uint32_t{PG_lru} : 0u);
  }
};
static_assert(sizeof(Page) == 64, "the page descriptor stays one cache line");

// folio_ref_count as Linux reads it. Linux's per-CPU add batches hold a reference on each
// page they queue (folio_add_lru's folio_get); the model's hold none (Page::lru_state marks
// the page instead, mm/lru.h), so a queued page counts one more here. The checks whose
// outcome Linux's batch reference decides (is the page shared, may a migration or a cache
// removal go ahead) read this, so that they decide as Linux does.
inline int32_t folio_ref_count(const Page* page) {
  return page->refcount.load(std::memory_order_acquire) +
         (page->lru_state.load(std::memory_order_relaxed) == kLruQueued ? 1 : 0);
}

enum class Zero { kNo, kYes };

// Whether an allocation for a node may take another node's frames when that node is empty
// (the zonelist fallback), or must fail (__GFP_THISNODE: migration's target pages).
enum class NodeFallback { kYes, kThisNode };

// No node preference: the calling CPU's node (NUMA_NO_NODE).
inline constexpr int kNumaNoNode = -1;


// How hard an allocation may try when the free lists are empty (gfp_t's reclaim bits).
enum class Gfp {
  // The free lists (and a drain of the LRU add batches) only: for callers that hold locks
  // reclaim takes (an inode's page-cache lock, a page-table lock) or the mmap_lock for write.
  kNowait,
  // GFP_HIGHUSER_MOVABLE: may reclaim directly and invoke the OOM killer, and waits while an
  // OOM victim's memory comes back. The caller holds at most the mmap_lock for read or a
  // VMA read lock (the fault path), as mm/lock_order.h allows reclaim under them.
  kUser,
};

// The page lock (PG_locked), a bit lock in the descriptor: rmap walks, migration and
// truncation of one page hold it (rank in mm/lock_order.h: after the mmap_lock, before i_mmap
// and anon_vma locks). lock_page waits; trylock_page does not.
bool trylock_page(Page* page);
// free_zone_device_folio (src/mm/memremap.cc): the last reference to a device frame went.
void free_zone_device_folio(Page* page);
void lock_page(Page* page);
void unlock_page(Page* page);

class PhysMem {
 public:
  // Reserves room for `bytes` of frames (rounded down to pages; at least 16 frames).
  explicit PhysMem(uint64_t bytes);
  ~PhysMem();
  PhysMem(const PhysMem&) = delete;
  PhysMem& operator=(const PhysMem&) = delete;

  // A frame with refcount 1, or nullptr when the pool is exhausted (after draining the LRU
  // add batches, whose drains free the pages that lost their last reference while queued,
  // and, for Gfp::kUser, after reclaim and the OOM killer gave up). The caller holds no lock
  // of the LRU lock's rank (65) or above. Every allocation that leaves the global free list
  // below the low watermark wakes kswapd.
  Page* alloc_page(Zero zero, Gfp gfp = Gfp::kNowait) EXCLUDES(lock_) {
    return alloc_page_node(kNumaNoNode, NodeFallback::kYes, zero, gfp);
  }
  // The same for node nid (kNumaNoNode: the calling CPU's node), falling back to the other
  // nodes or not.
  Page* alloc_page_node(int nid, NodeFallback fallback, Zero zero, Gfp gfp = Gfp::kNowait) EXCLUDES(lock_);

  // ---- NUMA nodes ----
  static constexpr int kMaxNodes = 64;
  int nr_nodes() const { return nr_nodes_.load(std::memory_order_relaxed); }
  // page_to_nid: the node a frame belongs to. One relaxed load with a single node.
  int pfn_to_nid(pfn_t pfn) const {
    const int n = nr_nodes_.load(std::memory_order_relaxed);
    return n == 1 ? 0 : pfn_to_nid_slow(pfn, n);
  }
  int page_to_nid(const Page* page) const { return pfn_to_nid(page_to_pfn(page)); }
  // The node of CPU cpu (cpu_to_node), and of the calling thread (numa_node_id: its CPU's,
  // node 0 for a thread that runs as no CPU).
  int cpu_to_node(int cpu) const { return cpu < 0 ? 0 : pcp_[cpu % kPcpSlots].node.load(std::memory_order_relaxed); }
  int numa_node_id() const { return cpu_to_node(tls_this_cpu); }
  // Frames of node nid, and those of them that are free (on its list or never used; frames
  // cached on per-CPU lists count as allocated).
  uint64_t node_frames(int nid) const {
    return node_start_[nid + 1].load(std::memory_order_relaxed) - node_start_[nid].load(std::memory_order_relaxed);
  }
  uint64_t node_nr_free(int nid) const { return node_free_[nid].load(std::memory_order_relaxed); }
  // Splits the pool into frames.size() nodes of frames[i] frames each (their sum must be the
  // pool's size; 1 to kMaxNodes nodes), CPUs 0 .. nr_cpus-1 spread over them, and moves every
  // free frame to its new node's list. Frames in use stay where they are (and belong to the
  // node whose range holds them). -EINVAL for a bad split. Call it only while nothing else
  // uses the pool (the machine's set-up).
  Errno set_nodes(const std::vector<uint64_t>& frames, int nr_cpus) EXCLUDES(lock_);
  // Even split of the pool into n nodes (the last one takes the remainder).
  std::vector<uint64_t> even_node_split(int n) const;

  // What the allocator does when memory runs short, provided by the machine that owns the
  // pool (the System): wake kswapd, and the slow path of a Gfp::kUser allocation that found
  // no frame (__alloc_pages_slowpath: direct reclaim, then the OOM killer). alloc_slowpath
  // is called with attempt = 0, 1, ... and says whether to try the free lists again.
  class Pressure {
   public:
    virtual void wakeup_kswapd() = 0;
    virtual bool alloc_slowpath(int attempt) = 0;

   protected:
    ~Pressure() = default;
  };
  // Set once, before the pool is shared; cleared (nullptr) before the owner goes.
  void set_pressure(Pressure* p) { pressure_.store(p, std::memory_order_release); }

  // The zone watermarks (mm/page_alloc.c's __setup_per_zone_wmarks with Linux's default
  // min_free_kbytes = sqrt(16 * memory in KiB) and watermark_scale_factor 10), in frames of
  // the global free list: kswapd wakes below low and reclaims up to high.
  uint64_t wmark_min() const { return wmark_min_; }
  uint64_t wmark_low() const { return wmark_low_; }
  uint64_t wmark_high() const { return wmark_high_; }
  // Drops a reference; the frame is freed when the last one goes (after leaving its LRU
  // list, if it is on one: the caller must not hold the LRU lock).
  void put_page(Page* page) EXCLUDES(lock_) {
    MM_BUG_ON(page->test(PG_reserved));
    int32_t old = page->refcount.fetch_sub(1, std::memory_order_acq_rel);
    MM_BUG_ON(old <= 0);
    if (old == 1) {
      if (page->test(PG_zone_device)) free_zone_device_folio(page);
      else free_page(page);
    }
  }
  // Drops one reference on each page, freeing those that reach zero under one lock hold
  // (folios_put: those on an LRU list leave it under one hold of the LRU lock first).
  void put_pages(Page* const* pages, size_t n) EXCLUDES(lock_);
  // Frees pages whose refcount already reached zero and that are on no LRU list (PG_lru
  // clear): the LRU code's own frees, which drop the last reference under the LRU lock and
  // free after releasing it.
  void free_unref_pages(Page* const* pages, size_t n) EXCLUDES(lock_);
  // get_page_unless_zero: a reference on a frame that is allocated now, or false when it is
  // free or on its way there. Once it succeeds the frame cannot be freed, hence not reused,
  // until the reference is dropped; what it holds must still be checked (it may have been
  // reused before the reference was taken).
  static bool get_page_unless_zero(Page* page) {
    int32_t c = page->refcount.load(std::memory_order_relaxed);
    while (c > 0)
      if (page->refcount.compare_exchange_weak(c, c + 1, std::memory_order_acq_rel)) return true;
    return false;
  }
  void get_page(Page* page) {
    int32_t old = page->refcount.fetch_add(1, std::memory_order_relaxed);
    MM_BUG_ON(old <= 0 && !page->test(PG_reserved));
  }

  Page* pfn_to_page(pfn_t pfn) const {
    MM_DEBUG_ON(pfn == 0 || pfn >= nr_frames_);
    return &pages_[pfn];
  }
  pfn_t page_to_pfn(const Page* page) const { return static_cast<pfn_t>(page - pages_); }
  uint8_t* pfn_to_virt(pfn_t pfn) const { return base_ + (static_cast<uint64_t>(pfn) << kPageShift); }
  uint8_t* page_address(const Page* page) const { return pfn_to_virt(page_to_pfn(page)); }

  pfn_t zero_pfn() const { return kZeroPfn; }
  Page* zero_page() const { return &pages_[kZeroPfn]; }
  bool is_zero_pfn(pfn_t pfn) const { return pfn == kZeroPfn; }

  uint64_t nr_frames() const { return nr_frames_; }
  uint64_t nr_free() const {
    uint64_t n = nr_free_.load(std::memory_order_relaxed);
    for (const Pcp& c : pcp_) n += static_cast<uint64_t>(c.count.load(std::memory_order_relaxed));
    return n;
  }
  // Free frames on the global list (and never used), without those cached on the per-CPU
  // lists: Linux's NR_FREE_PAGES, which counts a frame free only while the buddy allocator
  // holds it.
  uint64_t nr_free_global() const { return nr_free_.load(std::memory_order_relaxed); }
  // Frames handed out and not yet freed (page tables and data, zero page excluded).
  uint64_t nr_used() const { return nr_frames_ - 2 - nr_free(); }
  bool debug_is_free(pfn_t pfn) const { return pages_[pfn].test(PG_free); }
  // Frames at or above this pfn have never been handed out (their descriptors are untouched):
  // a whole-pool scan stops here.
  pfn_t debug_pfn_end() EXCLUDES(lock_) {
    SpinGuard g(lock_);
    pfn_t end = 2;
    for (int i = 0; i < nr_nodes(); i++)
      if (node_lists_[i].next_fresh > node_start_[i].load(std::memory_order_relaxed))
        end = std::max(end, node_lists_[i].next_fresh);
    return end;
  }

  // The free-time TLB check: while the checker is on (mmu_checker_on(), on in
  // debug builds, in stress and for the suite), every frame about to be freed is looked up in
  // the TLB of each registered CPU (Cpu::debug_check_frame_free), which reports a translation
  // that outlived its shootdown. Off, it costs the one relaxed load of that flag. Each CPU
  // registers itself when System creates it, before the System is shared.
  class TlbWatcher {
   public:
    virtual void frame_freed(pfn_t pfn) = 0;

   protected:
    ~TlbWatcher() = default;
  };
  void register_tlb(TlbWatcher* tlb) { tlbs_.push_back(tlb); }
  bool valid_pfn(pfn_t pfn) const { return pfn >= 2 && pfn < nr_frames_; }

  static constexpr size_t kDescriptorBytes = sizeof(Page);

  // Whether the MMU coherence checker watches this machine (SystemConfig::mmu_checker,
  // System::set_mmu_checker): the one switch that every notifier hook reads, with one relaxed
  // load, from the frames and address spaces of this machine.
  // The machine's VM event counters (/proc/vmstat's events; mm/vmstat.h).
  VmEvents& events() { return *events_; }
  // The machine's LRU lists and per-CPU LRU add batches (mm/lru.h).
  Lruvec& lruvec() { return *lruvec_; }
  LruAddBatches& lru_add_batches() { return *lru_add_batches_; }

  bool mmu_checker_on() const { return mmu_checker_on_.load(std::memory_order_relaxed); }
  void set_mmu_checker_on(bool on) { mmu_checker_on_.store(on, std::memory_order_relaxed); }

 private:
  void free_page(Page* page) EXCLUDES(lock_);
  // A frame of node nid (or, with fallback, of another node) from this CPU's list, the
  // nodes' lists or another CPU's list, or nullptr.
  Page* rmqueue(int nid, NodeFallback fallback, Zero zero) EXCLUDES(lock_);
  int pfn_to_nid_slow(pfn_t pfn, int n) const;
  // Prepares a frame whose last reference went for the free list (outside the lock).
  void prep_free(Page* page);

  static constexpr pfn_t kZeroPfn = 1;
  static constexpr int kPcpSlots = 64;
  static constexpr int kPcpBatch = 64;
  static constexpr int kPcpHigh = 512;

  // Per-CPU frame lists (Linux's pcp lists): a CPU allocates and frees through its own
  // list and moves batches to and from the global list. Each list's lock is taken only by
  // its CPU's thread, and by nobody else, so it is uncontended; it exists for threads that
  // are not CPUs (they use the last slot).
  struct alignas(64) Pcp {
    SpinLock lock{lock_class::kPcp};
    // The node whose frames this list caches (its CPU's); changed only by set_nodes.
    std::atomic<int> node{0};
    std::atomic<int> count{0};  // written under lock (load + store); read racily by nr_free()
    pfn_t pfns[kPcpHigh + kPcpBatch];
  };
  Pcp pcp_[kPcpSlots];

  // Takes up to n frames of node nid from its list into out; returns how many.
  int take_global(int nid, pfn_t* out, int n) EXCLUDES(lock_);
  // Puts frames back on their nodes' lists.
  void give_global(const pfn_t* pfns, int n) EXCLUDES(lock_);
  void give_global_locked(pfn_t pfn) REQUIRES(lock_);
  void init_page(Page* page, Zero zero);
  void put_free_pfns(const pfn_t* pfns, int n) EXCLUDES(lock_);
  // Takes pages whose last reference went off the LRU, then frees them.
  void free_dying(Page* const* pages, int n) EXCLUDES(lock_);

  std::vector<TlbWatcher*> tlbs_;  // written before the System is shared (register_tlb)
  uint8_t* base_ = nullptr;   // frame data; written once in the constructor
  Page* pages_ = nullptr;     // descriptors; written once in the constructor
  uint64_t nr_frames_ = 0;    // written once in the constructor
  // Free frames. Changed only under lock_ (load + store, no read-modify-write); atomic so
  // that statistics readers may race.
  std::atomic<uint64_t> nr_free_{0};  // frames on the global list and never used

  std::atomic<bool> mmu_checker_on_{false};  // atomic: switched while CPUs run
  std::atomic<Pressure*> pressure_{nullptr};  // set by the owner before sharing, cleared at its end
  uint64_t wmark_min_ = 0, wmark_low_ = 0, wmark_high_ = 0;  // written once in the constructor
  std::unique_ptr<VmEvents> events_;           // created in the constructor
  std::unique_ptr<Lruvec> lruvec_;             // created in the constructor
  std::unique_ptr<LruAddBatches> lru_add_batches_;  // created in the constructor

  // The nodes: node i holds pfns [node_start_[i], node_start_[i + 1]). Atomics only so that
  // the free path may read them without lock_; they change only in set_nodes, while nothing
  // else uses the pool. node_free_ changes under lock_ (load + store) and is read racily.
  std::atomic<int> nr_nodes_{1};
  std::atomic<pfn_t> node_start_[kMaxNodes + 1] = {};
  std::atomic<uint64_t> node_free_[kMaxNodes] = {};

  SpinLock lock_{lock_class::kFreeList};
  // Per node: the LIFO list of freed frames, and where its frames never used yet start.
  struct NodeFree {
    pfn_t free_head = 0;
    pfn_t next_fresh = 0;
  };
  NodeFree node_lists_[kMaxNodes] GUARDED_BY(lock_);
};

}  // namespace mirrormm
