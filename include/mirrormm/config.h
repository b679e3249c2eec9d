// The modeled machine: sizes, limits and policies that decide system-call results.
#pragma once

#include <cstdint>
#include <vector>

namespace mirrormm {

struct SystemConfig {
  // Physical memory that frames (data, page tables) come from. Running out is an OOM for a
  // faulting access and -ENOMEM for a system call, as in Linux.
  uint64_t memory_bytes = 1ull << 30;

  // What the overcommit heuristic compares a request with (Linux's totalram_pages() and
  // total_swap_pages). Defaults are those of the reference machine (24 GiB, no swap).
  uint64_t totalram_pages = 6171021;
  uint64_t total_swap_pages = 0;

  // vm.overcommit_memory (0 heuristic, 1 always, 2 never), vm.overcommit_ratio,
  // vm.max_map_count.
  int overcommit_memory = 0;
  int overcommit_ratio = 50;
  uint64_t max_map_count = 65530;

  // NUMA nodes the frame pool is split into (1 .. 64), equal in size unless node_memory_bytes
  // gives each node's size (as many entries as nodes, summing to memory_bytes rounded down to
  // pages). CPUs are spread evenly over the nodes.
  int nodes = 1;
  std::vector<uint64_t> node_memory_bytes;

  // RLIMIT_STACK, which bounds MAP_GROWSDOWN expansion; stack_guard_gap in bytes.
  uint64_t stack_rlimit = 8ull << 20;
  uint64_t stack_guard_gap = 256ull << 12;

  // Privilege of the processes: with cap_ipc_lock (CAP_IPC_LOCK, as the host runner's root
  // has) RLIMIT_MEMLOCK binds nobody and a limit of 0 still allows locking; without it
  // mlock, mlockall, MAP_LOCKED and growing a locked mapping count against the limit
  // (can_do_mlock, mlock_future_ok). No process has CAP_SYS_RESOURCE (the host runner's root
  // lacks it too): raising a hard limit is -EPERM for everyone. memlock_rlimit is the first
  // process's RLIMIT_MEMLOCK (soft and hard; Linux's default MLOCK_LIMIT); RLIMIT_STACK starts
  // at stack_rlimit (soft; the hard limit is unlimited), RLIMIT_AS and RLIMIT_DATA unlimited.
  bool cap_ipc_lock = true;
  uint64_t memlock_rlimit = 8ull << 20;

  // Writeback of regular files (vm.dirty_expire_centisecs, vm.dirty_writeback_centisecs and
  // vm.dirty_background_ratio, in milliseconds and percent): the flusher wakes every
  // writeback interval and writes back the files that have been dirty for longer than the
  // expire interval, and every file once the dirty pages pass the background ratio of
  // memory. A script of a few seconds therefore sees no writeback it did not ask for.
  uint32_t dirty_expire_ms = 30000;
  uint32_t dirty_writeback_ms = 5000;
  uint32_t dirty_background_ratio = 10;
  // The most pages one MADV_WILLNEED reads into a regular file's page cache
  // (force_page_cache_ra's max(bdi->io_pages, bdi->ra_pages)): the reference machine's disk
  // has read_ahead_kb 8192 and max_sectors_kb 4096.
  uint64_t readahead_max_pages = 2048;

  // x86 protection keys: with them an exactly-PROT_EXEC mapping gets the execute-only key and
  // reads fault; without them x86 lets every accessible mapping be read.
  bool exec_only_pkey = false;

  // The MMU coherence checker (mmu_notifier.h: stale or outranking secondary mappings,
  // unbracketed PTE changes, device accesses through stale mappings) on this machine;
  // System::set_mmu_checker switches it later. Starts as default_mmu_checker().
  bool mmu_checker = default_mmu_checker();

  // The starting value of mmu_checker for configurations made from now on: on in debug builds
  // (kDebugChecks), off otherwise, unless the program changed it. A program that wants every
  // machine it builds checked sets it once, before building any (the test suite does, in
  // tests/support/checker_listener.cc). Thread-safe.
  static bool default_mmu_checker();
  static void set_default_mmu_checker(bool on);

  // Reads the running host's values (MemTotal, SwapTotal, vm.* sysctls, RLIMIT_STACK, PKU),
  // so that the model answers as this machine's kernel does. Fields it cannot read keep the
  // defaults above.
  static SystemConfig from_host();
};

}  // namespace mirrormm
