// Event counters of the modeled machine (include/linux/vm_event_item.h and mm/vmstat.c's
// role): monotonic counts of what the VM did, under /proc/vmstat's names.
//
// Each counter is split per CPU (a cache line per slot, indexed as the frame pool's per-CPU
// lists are); count_vm_events adds with one relaxed atomic add to the caller's slot, and a
// reader sums the slots, so a sum taken while CPUs run is a snapshot that may miss events in
// flight, as /proc/vmstat's is.
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
    "swap_ra",
    "swap_ra_hit",
};

class VmEvents {
 public:
  void count(VmEvent e, int64_t n = 1) {
    slots_[this_cpu_slot(kSlots)].v[e].fetch_add(n, std::memory_order_relaxed);
  }
  int64_t sum(VmEvent e) const {
    int64_t s = 0;
    for (const Slot& slot : slots_) s += slot.v[e].load(std::memory_order_relaxed);
    return s;
  }

 private:
  static constexpr int kSlots = 64;
  struct alignas(64) Slot {
    std::atomic<int64_t> v[NR_VM_EVENT_ITEMS] = {};
  };
  Slot slots_[kSlots];
};

}  // namespace mirrormm
