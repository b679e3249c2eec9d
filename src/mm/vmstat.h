// Event counters of the modeled machine (include/linux/vm_event_item.h and mm/vmstat.c's
// role): monotonic counts of what the VM did, under /proc/vmstat's names.
//
// Each counter is split per counting thread (Linux splits them per CPU and counts with
// this_cpu_inc, which needs no locked instruction because only the CPU itself writes its
// slot; a software CPU of the model may be run by several threads at once, so the model
// gives the same single-writer property to threads instead). count_vm_events adds to the
// calling thread's block with a plain load and store, and a reader sums the blocks, so a sum
// taken while CPUs run is a snapshot that may miss events in flight, as /proc/vmstat's is.
//
// Memory ordering: a block is written by its owning thread only, so its load-and-store
// increments lose nothing; its values are atomics (relaxed) so that readers may load them
// while the owner writes. Blocks are pushed on a singly linked list with a release
// compare-exchange of its head and read after an acquire load of it: a block's owner and
// link are written before it is published and never change. Blocks stay on the list until
// the VmEvents is destroyed, so the counts of threads that exited stay in the sums.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string_view>

#include "mm/physmem.h"

namespace mirrormm {

// In /proc/vmstat's order.
enum VmEvent : int {
  PGFAULT,
  PGMAJFAULT,
  PSWPIN,
  PSWPOUT,
  PGACTIVATE,
  PGDEACTIVATE,
  PGREFILL,
  PGSCAN_KSWAPD,
  PGSCAN_DIRECT,
  PGSTEAL_KSWAPD,
  PGSTEAL_DIRECT,
  PGSCAN_ANON,
  PGSCAN_FILE,
  PGSTEAL_ANON,
  PGSTEAL_FILE,
  WORKINGSET_REFAULT_ANON,
  WORKINGSET_REFAULT_FILE,
  WORKINGSET_ACTIVATE_ANON,
  WORKINGSET_ACTIVATE_FILE,
  PAGEOUTRUN,        // kswapd reclaim passes
  ALLOCSTALL,        // direct reclaim entries (allocstall_normal)
  OOM_KILL,
  PGMIGRATE_SUCCESS,  // pages migrated
  PGMIGRATE_FAIL,     // migration attempts that failed (each retry counts)
  UNEVICTABLE_PGCULLED,     // pages reclaim found mapped by a VM_LOCKED VMA and moved to the unevictable list
  UNEVICTABLE_PGMLOCKED,    // pages that became mlocked
  UNEVICTABLE_PGMUNLOCKED,  // pages that stopped being mlocked
  SWAP_RA,           // pages read ahead into the swap cache
  SWAP_RA_HIT,
  NR_VM_EVENT_ITEMS
};

// The name /proc/vmstat gives the event.
inline constexpr std::array<std::string_view, NR_VM_EVENT_ITEMS> kVmEventNames = {
    "pgfault",
    "pgmajfault",
    "pswpin",
    "pswpout",
    "pgactivate",
    "pgdeactivate",
    "pgrefill",
    "pgscan_kswapd",
    "pgscan_direct",
    "pgsteal_kswapd",
    "pgsteal_direct",
    "pgscan_anon",
    "pgscan_file",
    "pgsteal_anon",
    "pgsteal_file",
    "workingset_refault_anon",
    "workingset_refault_file",
    "workingset_activate_anon",
    "workingset_activate_file",
    "pageoutrun",
    "allocstall_normal",
    "oom_kill",
    "pgmigrate_success",
    "pgmigrate_fail",
    "unevictable_pgs_culled",
    "unevictable_pgs_mlocked",
    "unevictable_pgs_munlocked",
    "swap_ra",
    "swap_ra_hit",
};

class VmEvents {
 public:
  VmEvents() : id_(next_id_.fetch_add(1, std::memory_order_relaxed) + 1) {}
  ~VmEvents();
  VmEvents(const VmEvents&) = delete;
  VmEvents& operator=(const VmEvents&) = delete;

  void count(VmEvent e, int64_t n = 1) {
    std::atomic<int64_t>& v = this_thread_block()->v[e];
    v.store(v.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);  // the only writer
  }
  int64_t sum(VmEvent e) const {
    int64_t s = 0;
    for (const Block* b = head_.load(std::memory_order_acquire); b; b = b->next)
      s += b->v[e].load(std::memory_order_relaxed);
    return s;
  }

 private:
  struct alignas(64) Block {
    std::atomic<int64_t> v[NR_VM_EVENT_ITEMS] = {};
    const void* owner = nullptr;  // the owning thread's tls_cache_; written before publication
    Block* next = nullptr;        // written before publication
  };
  // The block the calling thread used last, and the VmEvents it belongs to (by id_: an
  // address could be reused by another VmEvents). Zero-initialized, as thread-local storage
  // is: id 0 names no VmEvents.
  struct ThreadCache {
    uint64_t id;
    Block* block;
  };
  static inline thread_local ThreadCache tls_cache_;
  static inline std::atomic<uint64_t> next_id_{0};

  Block* this_thread_block() {
    const ThreadCache& c = tls_cache_;
    if (c.id == id_) [[likely]] return c.block;
    return this_thread_block_slow();
  }
  // Finds the calling thread's block on the list or publishes a new one, and caches it.
  Block* this_thread_block_slow();

  const uint64_t id_;                 // unique among all VmEvents ever made; never changes
  std::atomic<Block*> head_{nullptr};  // lock-free list, see "Memory ordering" above
};

}  // namespace mirrormm
