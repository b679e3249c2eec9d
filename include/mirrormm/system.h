// The modeled system: physical memory, software CPUs, and processes with address spaces,
// with Linux's system calls (mmap, munmap, mprotect, mincore, fork, exit) and memory accesses
// that fault as on Linux.
//
// A System starts with process 1. System calls run on behalf of a Process and return Linux's
// results (Result<T> carries the value or the errno). Accesses run on a software CPU through
// its TLB and the page tables, faulting into the fault handler as hardware would.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mirrormm/config.h"
#include "mirrormm/errno.h"
#include "mirrormm/mman.h"

namespace mirrormm {

class Cpu;
class Mm;
class PhysMem;
class ShmemInode;
class System;
struct File;
struct ProcessAccess;  // the library's internal access to Process

// How an access ended.
struct AccessResult {
  enum class Kind { kOk, kSegv, kBus, kOom, kNoProcess };
  Kind kind = Kind::kOk;
  uint64_t fault_addr = 0;  // the first address that could not be accessed
  bool ok() const { return kind == Kind::kOk; }
};

// One modeled process (a task with its own address space).
//
// Lifecycle: kAlive from creation (System's constructor or fork) until exit(); a dead
// Process stays in the table (its number is never reused) and answers -ESRCH.
class Process {
 public:
  uint64_t pid() const { return pid_; }
  bool alive() const { return mm_.load(std::memory_order_acquire) != nullptr; }
  // The address space, or nullptr once exited. A caller that is not the only thread working
  // with this process must hold a reference (System's calls do) or an RCU read lock.
  Mm* mm() const { return mm_.load(std::memory_order_acquire); }

 private:
  friend class System;
  friend struct ProcessAccess;
  Process(uint64_t pid, Mm* mm) : pid_(pid), mm_(mm) {}
  const uint64_t pid_;
  // The process's reference (one of mm_users); swapped to nullptr by exit. lock_ makes
  // "load and take a reference" atomic against exit (get_task_mm's task_lock).
  std::atomic<Mm*> mm_;
  std::mutex lock_;
};

class System {
 public:
  explicit System(const SystemConfig& config = SystemConfig{}, int nr_cpus = 1);
  ~System();
  System(const System&) = delete;
  System& operator=(const System&) = delete;

  const SystemConfig& config() const { return config_; }
  PhysMem& mem() { return *mem_; }
  int nr_cpus() const { return static_cast<int>(cpus_.size()); }
  Cpu& cpu(int i) { return *cpus_[i]; }

  // The process with this number, or nullptr when it never existed or has exited.
  Process* process(uint64_t pid);
  uint64_t nr_processes_created();

  // ---- system calls (Linux 6.18 semantics and errno order) ----
  // file: a shared-memory file to map from byte offset off (nullptr for anonymous memory).
  Result<uint64_t> mmap(Process* p, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                        File* file = nullptr, uint64_t off = 0);
  Status munmap(Process* p, uint64_t addr, uint64_t len);
  Status mprotect(Process* p, uint64_t addr, uint64_t len, uint64_t prot);
  // flags: MREMAP_MAYMOVE 1, MREMAP_FIXED 2, MREMAP_DONTUNMAP 4.
  Result<uint64_t> mremap(Process* p, uint64_t addr, uint64_t old_len, uint64_t new_len, uint64_t flags,
                          uint64_t new_addr);
  // Maps the shared-memory file NAME through a fresh open file description (read-only when
  // mode is kReadOnly, as a mapping made through an O_RDONLY descriptor); -EBADF when no file
  // of that name exists.
  enum class FileMode { kReadWrite, kReadOnly };
  Result<uint64_t> mmap_file(Process* p, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                             const std::string& name, uint64_t off, FileMode mode);
  // Shared-memory files (memfd_create + ftruncate), shared by every process. memfd creates
  // NAME or resizes it; truncate resizes an existing one (-ENOENT otherwise). Shrinking
  // removes the pages beyond the new end from every mapping, private copies included.
  Status memfd(const std::string& name, uint64_t size);
  Status truncate(const std::string& name, uint64_t size);

  Status madvise(Process* p, uint64_t addr, uint64_t len, uint64_t advice);
  // Fills vec with one byte per page (bit 0: resident).
  Status mincore(Process* p, uint64_t addr, uint64_t len, std::vector<uint8_t>* vec);
  Result<Process*> fork(Process* p);
  void exit(Process* p);

  // Makes the calling thread run as CPU `cpu` (-1: none) for the system calls it issues, so
  // that they use that CPU's per-CPU structures (frame lists, counters). Accesses always run
  // as the CPU they name.
  static void bind_thread_to_cpu(int cpu);

  // ---- memory access through CPU `cpu` ----
  // Calls fn for each contiguous piece (at most a page) in ascending order; stops at the
  // first address that faults without a fix.
  using ChunkFn = std::function<void(uint8_t* data, uint64_t addr, uint64_t n)>;
  AccessResult access(Process* p, int cpu, uint64_t addr, uint64_t len, bool write, const ChunkFn& fn);

  // ---- accounting used by the overcommit policy ----
  std::atomic<int64_t>& committed_pages() { return committed_pages_; }
  uint64_t next_mm_id() { return next_mm_id_.fetch_add(1, std::memory_order_relaxed); }

  // ---- checkers (stress, tests) ----
  // Records an invariant violation (thread-safe). Every violation is counted; the first
  // kMaxViolationMessages messages are kept. The kind is a short fixed string ("stale TLB
  // entry", "device write to a freed frame") under which the report is also tallied, so that
  // a flood of one kind is summarised instead of drowning the others; reports made without
  // one count under "other".
  static constexpr size_t kMaxViolationMessages = 20;
  void report_violation(const std::string& what);
  void report_violation(std::string_view kind, const std::string& what);
  uint64_t violations() const { return violations_.load(std::memory_order_relaxed); }
  std::vector<std::string> violation_messages();
  // Violations per kind, most frequent first.
  std::vector<std::pair<std::string, uint64_t>> violation_kinds();
  // The MMU coherence checker of this machine (mmu_notifier.h): starts as
  // SystemConfig::mmu_checker. Switch it between system calls (no invalidation under way),
  // and on before the first secondary mapping is declared: the checker knows only the
  // mappings declared while it is on, and reports device accesses through any other.
  void set_mmu_checker(bool on);
  bool mmu_checker() const;
  // Quiescent-point check (no access or system call may run meanwhile): rss counters,
  // mapcounts and refcounts agree with the page tables and page caches, and nothing maps a
  // freed frame. Returns the number of violations found (also reported).
  uint64_t debug_check_consistency();
  // Whether the page-cache page of file NAME at pgoff is marked dirty (false if absent).
  bool debug_file_page_dirty(const std::string& name, uint64_t pgoff);
  // Deliberately broken kernels, for the checkers' own tests: each switch removes one rule
  // the model normally keeps, so that a test can show the rule's checker reports the breakage
  // (instead of the model crashing or hanging). Off by default; never used outside tests,
  // `stress --break-*` and the mutation runs.
  enum class DebugBreak : unsigned {
    kShootdown,            // TLB shootdowns do nothing
    kPutBeforeFlush,       // zap frees pages before the TLB flush (not after it)
    kNoPteNoneRecheck,     // faults install without rechecking the PTE under its lock
    kNoVmaLockRecheck,     // the per-VMA-lock fault path skips its recheck of the VMA
    kForkUnchainedAnonVma, // fork leaves the child's anon_vma out of the child's chain
    kInsertWhileFrozen,    // interval inserts enter the tree during an invalidation
    kCount
  };
  void debug_break(DebugBreak b, bool broken) {
    const unsigned bit = 1u << static_cast<unsigned>(b);
    if (broken) broken_.fetch_or(bit, std::memory_order_relaxed);
    else broken_.fetch_and(~bit, std::memory_order_relaxed);
  }
  bool debug_broken(DebugBreak b) const {
    return broken_.load(std::memory_order_relaxed) & (1u << static_cast<unsigned>(b));
  }
  void debug_break_shootdown(bool broken) { debug_break(DebugBreak::kShootdown, broken); }
  bool debug_shootdown_broken() const { return debug_broken(DebugBreak::kShootdown); }

  // Model metadata bytes (page descriptors of used frames, page tables, VMAs), for the
  // metadata-per-page figure.
  uint64_t debug_metadata_bytes();

 private:
  SystemConfig config_;
  std::unique_ptr<PhysMem> mem_;
  std::vector<std::unique_ptr<Cpu>> cpus_;
  std::atomic<int64_t> committed_pages_{0};
  std::atomic<uint64_t> next_mm_id_{1};
  Status resize_file(ShmemInode* inode, uint64_t size);

  std::atomic<uint64_t> violations_{0};
  std::atomic<unsigned> broken_{0};  // DebugBreak bits
  std::mutex violations_lock_;
  std::vector<std::string> violation_messages_;  // guarded by violations_lock_
  std::map<std::string, uint64_t, std::less<>> violation_kinds_;  // guarded by violations_lock_

  std::mutex files_lock_;
  std::map<std::string, ShmemInode*> files_;  // guarded by files_lock_; holds a reference each
  std::mutex procs_lock_;
  std::vector<std::unique_ptr<Process>> procs_;  // index pid-1; guarded by procs_lock_
};

}  // namespace mirrormm
