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
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mirrormm/access.h"
#include "mirrormm/base/locking.h"
#include "mirrormm/config.h"
#include "mirrormm/errno.h"
#include "mirrormm/mman.h"

namespace mirrormm {

class Cpu;
class Flusher;
class Mm;
class PhysMem;
class ShmemInode;
class SwapTable;
class ShmemSwaplist;
class System;
class OomKiller;
class MachineReclaim;
struct File;
struct ProcessAccess;  // the library's internal access to Process

// One VMA as /proc/PID/maps shows it (fs/proc/task_mmu.c, show_map_vma): its range, its
// protections, private or shared, and for a mapping of a file the offset and the file.
struct MapsEntry {
  // What the VMA maps. Shared anonymous memory is backed by a shmem file of its own
  // (shmem_zero_setup), which Linux shows as "/dev/zero (deleted)".
  enum class Backing { kAnon, kSharedAnon, kFile };
  uint64_t start = 0, end = 0;  // [vm_start, vm_end)
  bool read = false, write = false, exec = false;  // VM_READ, VM_WRITE, VM_EXEC
  bool shared = false;  // VM_MAYSHARE: 's' in the permissions, else 'p'
  Backing backing = Backing::kAnon;
  uint64_t offset = 0;  // bytes into the file (vm_pgoff << PAGE_SHIFT); 0 for kAnon
  std::string file;     // the shared-memory file's name for kFile, else empty
};

// One entry in the layout of the `maps` result line of the script format:
// "START-END PERMS[ OFFSET NAME]", START, END and OFFSET in lowercase hex without 0x, PERMS as
// in /proc/PID/maps ("rw-p"), OFFSET and NAME only for a file, shared anonymous memory
// named "shmem". Example: "200000008000-20000000a000 rw-s 0 shmem".
std::string format_maps_entry(const MapsEntry& e);

// One VMA as /proc/PID/smaps shows it (fs/proc/task_mmu.c, show_smap): the VMA and the
// counters of its mem_size_stats, gathered by a walk of its page tables
// (smap_gather_stats). Sizes are in bytes; the proportional sizes (pss*, swap_pss) are
// bytes << kPssShift, so that a page shared by three processes still adds an exact third.
struct SmapsEntry {
  static constexpr unsigned kPssShift = 12;  // Linux's PSS_SHIFT
  MapsEntry vma;
  uint64_t resident = 0;      // Rss: pages the page tables map (not the zero page)
  uint64_t pss = 0;           // Pss: each page divided by the number of PTEs mapping it
  uint64_t pss_dirty = 0;     // Pss_Dirty
  uint64_t pss_anon = 0;      // Pss_Anon
  uint64_t pss_file = 0;      // Pss_File
  uint64_t pss_shmem = 0;     // Pss_Shmem
  uint64_t shared_clean = 0;  // mapped more than once (or not present), PTE and page clean
  uint64_t shared_dirty = 0;
  uint64_t private_clean = 0;  // mapped once
  uint64_t private_dirty = 0;
  uint64_t referenced = 0;  // PTE young or PG_referenced
  uint64_t anonymous = 0;   // anonymous pages (PageAnon)
  uint64_t lazyfree = 0;    // anonymous, clean and not swap-backed
  uint64_t swap = 0;        // swap entries in the PTEs, or of the shmem file in the VMA's range
  uint64_t swap_pss = 0;    // swap entries divided by their swap count
  uint64_t pss_locked = 0;  // Locked: the pss of a VM_LOCKED VMA, else 0
  bool vm_locked = false;       // VmFlags "lo" (VM_LOCKED)
  bool vm_lockonfault = false;  // VmFlags "lf" (VM_LOCKONFAULT)
  // The whole VmFlags line after "VmFlags: " (show_smap_vma_flags): the two-letter names of
  // the VMA's flags in bit order, each followed by a space ("rd wr mr mw me ac ").
  std::string vm_flags;
};

// One entry in the layout of the `smaps` result line of the script format:
// "START-END Rss=N Pss=N Shared_Clean=N Shared_Dirty=N Private_Clean=N Private_Dirty=N
// Anonymous=N Swap=N", START and END as format_maps_entry prints them and each N the kB
// value /proc/PID/smaps prints (Pss: pss >> kPssShift >> 10).
std::string format_smaps_entry(const SmapsEntry& e);

// One entry of the `mlocked` result line of the script format: "START-END LOCK Locked=N",
// LOCK the VMA's lock flags as /proc/PID/smaps' VmFlags names them ("lo", "lo+lf" for
// VM_LOCKED with VM_LOCKONFAULT, "-" for neither) and N its Locked: value in kB.
std::string format_mlock_entry(const SmapsEntry& e);

// What one user address maps, as System::pageinfo reports it (the model's combination of
// /proc/PID/pagemap, /proc/kpagecount, /proc/kpagemapcount and /proc/kpageflags, with the
// LRU list the page is on).
struct PageInfo {
  // What the PTE at the address holds.
  enum class Entry { kNone, kPresent, kSwap };
  Entry entry = Entry::kNone;

  // kPresent: the frame and the PTE's bits. zero_page: the shared zero page, for which the
  // page fields below are not filled.
  uint64_t pfn = 0;
  bool writable = false, dirty = false, young = false;
  bool zero_page = false;

  // kSwap: the swap entry (type and offset of its slot; types at or above 32 minus the
  // non-swap kinds are migration and device entries).
  unsigned swap_type = 0;
  uint64_t swap_offset = 0;

  // kPresent, not the zero page: the page's state, read under the PTE lock.
  int node = 0;      // the NUMA node of its frame (page_to_nid)
  int mapcount = 0;  // PTEs mapping it (Linux's page_mapcount, starting at 0)
  int refcount = 0;  // references (page_count), including an LRU add batch's
  // Flag names, in this order when set: locked, anon, anon_exclusive, shmem, dirty, lru,
  // active, referenced, workingset, swapbacked, swapcache, unevictable, writeback, reclaim,
  // external_rmap, mlocked.
  std::vector<std::string> flags;
  // The LRU list it is on: inactive_anon, active_anon, inactive_file, active_file,
  // unevictable; "none" when it is on none (in an add batch, isolated).
  std::string lru = "none";
  // A page in the swap cache (PG_swapcache): its swap entry.
  bool in_swapcache = false;
  unsigned swapcache_type = 0;
  uint64_t swapcache_offset = 0;
  // What it belongs to: "anon" (an anonymous page), "file NAME" (a page-cache page of the
  // shared-memory file NAME; "dev/zero" for shared anonymous memory), or "none" (a page
  // truncated out of its file, still mapped by a private mapping's PTE, or a driver's page
  // that vm_insert_page mapped: mirrormm/device_file.h).
  std::string owner = "none";
};

// The result line of the script command `pageinfo` (docs/mms-v2.md): "none", "zero",
// "swap=TYPE:OFFSET", or for a page
// "pfn=0xPFN node=N pte=WDY map=N ref=N flags=F,F lru=LIST owner=OWNER[ swapcache=TYPE:OFFSET]"
// with WDY three characters `w`/`-`, `d`/`-`, `y`/`-`, flags "none" when none is set, and
// OWNER "anon" or "file:NAME". Example:
// "pfn=0x2a node=0 pte=wdy map=1 ref=1 flags=anon,anon_exclusive,lru,swapbacked lru=inactive_anon owner=anon".
std::string format_pageinfo(const PageInfo& info);

// The names of System::vmstat()'s counters, in its order.
const std::vector<std::string>& vmstat_item_names();

// The swap devices' totals (/proc/meminfo's SwapTotal/SwapFree and SwapCached, in pages).
struct SwapStats {
  uint64_t devices = 0;  // devices switched on
  uint64_t total = 0;    // usable slots (each device's slot 0 is its header's)
  uint64_t used = 0;     // slots in use: referenced by a swap PTE or by the swap cache
  uint64_t cached = 0;   // pages in the swap cache
};

// One modeled process (a task with its own address space).
//
// Lifecycle: kAlive from creation (System's constructor or fork) until exit(), then kDead. A
// dead Process stays in the table (its number is never reused) and answers -ESRCH.
class Process {
 public:
  enum class State : uint8_t { kAlive, kDead };

  uint64_t pid() const { return pid_; }
  State state() const { return state_.load(std::memory_order_acquire); }
  bool alive() const { return state() == State::kAlive; }
  // Killed by the OOM killer: from then on system calls answer -ESRCH and accesses kNoProcess
  // (a task with SIGKILL pending never returns to user space); it exits once its memory has
  // been reaped.
  bool oom_killed() const { return oom_killed_.load(std::memory_order_acquire); }
  // The address space, or nullptr once exited. A caller that is not the only thread working
  // with this process must hold a reference (System's calls do) or an RCU read lock.
  Mm* mm() const { return mm_.load(std::memory_order_acquire); }

 private:
  friend class System;
  friend struct ProcessAccess;
  friend class OomKiller;
  void oom_kill() { oom_killed_.store(true, std::memory_order_release); }
  Process(uint64_t pid, Mm* mm);
  const uint64_t pid_;
  // lock_ makes "load the mm and take a reference" atomic against exit (get_task_mm's
  // task_lock). mm_ is the process's reference (one of mm_users), swapped to nullptr by exit;
  // state_ moves to kDead at the same time. Both are written under lock_ and read without it
  // (acquire) by the accessors above.
  Mutex lock_;
  std::atomic<Mm*> mm_;
  std::atomic<State> state_{State::kAlive};
  std::atomic<bool> oom_killed_{false};
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
  // Removes the name of a shared-memory file (unlink, or the close of a memfd's last
  // descriptor): the file itself lives on while mappings reference it, and its pages and swap
  // slots are freed with its last mapping. -ENOENT when no file has that name.
  Status unlink_file(const std::string& name);

  // ---- regular files on the model disk (src/mm/filemap.h) ----
  // Creates the regular file NAME (open O_CREAT + ftruncate) or resizes it. Regular files and
  // shared-memory files share one namespace: -EEXIST (nothing changes) when NAME is a
  // shared-memory file, as memfd() answers for a regular file's name. -EINVAL for a size
  // above 2^63 - 1, -EFBIG above the disk file system's limit (ext4 with 4 KiB blocks,
  // kMaxRegularFileSize); a new file then stays, with size 0. Growing a file zeroes what a
  // mapping wrote beyond the old end of file in its last page.
  static constexpr uint64_t kMaxRegularFileSize = 0xffffffff000ull;
  Status file_create(const std::string& name, uint64_t size);
  // msync(2) with Linux's flags (MS_ASYNC 1, MS_INVALIDATE 2, MS_SYNC 4) and errno order:
  // -EINVAL for unknown flags, an unaligned addr, or MS_SYNC with MS_ASYNC; -ENOMEM when the
  // rounded range wraps, or when part of it is unmapped (after the mapped parts were synced,
  // except with plain MS_ASYNC); -EBUSY for MS_INVALIDATE over a locked mapping. MS_SYNC
  // writes back what shared file mappings of the range map; a zero length is 0.
  Status msync(Process* p, uint64_t addr, uint64_t len, uint64_t flags);
  // fsync(2) of file NAME: writes back every dirty page of a regular file (0 for shared
  // memory). -EBADF when no file has that name.
  Status fsync(const std::string& name);
  // pread(2) of file NAME: the bytes read(2) returns for len bytes at off (fewer at the end
  // of the file). A regular file's pages read come into its page cache; a shared-memory hole
  // reads as zeros without a page. -EBADF when no file has that name, -EINVAL for an offset
  // above 2^63 - 1.
  Result<std::vector<uint8_t>> pread(const std::string& name, uint64_t off, uint64_t len);
  // sync(2): writes back every named regular file; returns the pages written.
  uint64_t sync();
  // wakeup_flusher_threads: a writeback pass of the flusher thread (page_writeback.h) soon.
  void wakeup_flusher();
  // The flusher thread (tests run a pass with it, or count its passes).
  Flusher& flusher() { return *flusher_; }
  // The named regular files, each with a new reference (the caller puts them).
  std::vector<ShmemInode*> get_regular_files();
  // Page writes to the disk blocks of the named regular files so far (writeback of any cause).
  uint64_t debug_disk_writes();
  // Dirty pages in the caches of the named regular files.
  uint64_t debug_dirty_file_pages();

  // ---- locked memory and resource limits (mm/mlock.c, kernel/sys.c) ----
  // mlock(2), mlock2(2) (flags: MLOCK_ONFAULT), munlock(2), mlockall(2) (MCL_CURRENT,
  // MCL_FUTURE, MCL_ONFAULT), munlockall(2), with Linux 6.18's errno order: mlock2 -EINVAL
  // for unknown flags; -EPERM when the process may not lock (RLIMIT_MEMLOCK 0 without
  // SystemConfig::cap_ipc_lock); -ENOMEM when the range starts in or crosses a hole (the
  // VMAs before the hole stay changed), when the lock would pass RLIMIT_MEMLOCK, or when
  // population fails at a page that cannot be faulted (PROT_NONE, beyond the end of a file;
  // the range stays locked); -EAGAIN when population runs out of memory. mlockall: -EINVAL
  // for no flags, unknown ones or MCL_ONFAULT alone; -ENOMEM for MCL_CURRENT when the address
  // space is larger than the limit.
  Status mlock(Process* p, uint64_t addr, uint64_t len);
  Status mlock2(Process* p, uint64_t addr, uint64_t len, uint64_t flags);
  Status munlock(Process* p, uint64_t addr, uint64_t len);
  Status mlockall(Process* p, uint64_t flags);
  Status munlockall(Process* p);
  // setrlimit(2) / getrlimit(2) for the RLIMIT_* numbers of mirrormm/mman.h (RLIMIT_AS,
  // RLIMIT_DATA, RLIMIT_STACK and RLIMIT_MEMLOCK are applied; the others are only kept):
  // -EINVAL for an unknown resource or soft above hard, -EPERM for a hard limit above the
  // current one (no process has CAP_SYS_RESOURCE). Limits are per process, inherited by fork.
  Status setrlimit(Process* p, unsigned resource, uint64_t soft, uint64_t hard);
  Result<std::pair<uint64_t, uint64_t>> getrlimit(Process* p, unsigned resource);
  // The address-space sizes /proc/PID/status shows (VmSize, VmData, VmLck), in pages.
  Result<VmCounts> vm_counts(Process* p);

  Status madvise(Process* p, uint64_t addr, uint64_t len, uint64_t advice);
  // process_madvise(pidfd of target, one iovec {addr, len}, advice, 0) made by p: -ESRCH when
  // target is gone; another process takes only MADV_COLD, MADV_PAGEOUT and MADV_WILLNEED.
  Status process_madvise(Process* p, Process* target, uint64_t addr, uint64_t len, uint64_t advice);
  // mseal(addr, len, flags).
  Status mseal(Process* p, uint64_t addr, uint64_t len, uint64_t flags);
  // Fills vec with one byte per page (bit 0: resident).
  Status mincore(Process* p, uint64_t addr, uint64_t len, std::vector<uint8_t>* vec);
  Result<Process*> fork(Process* p);
  void exit(Process* p);

  // The VMAs of p's address space in address order, as /proc/PID/maps lists them
  // (src/mm/task_mmu.cc). Takes the mmap_lock for read, so the list is one consistent
  // snapshot; -ESRCH when p is null or has exited.
  Result<std::vector<MapsEntry>> proc_maps(Process* p);

  // The VMAs of p's address space with their memory statistics, as /proc/PID/smaps lists
  // them (src/mm/task_mmu.cc). Takes the mmap_lock for read and each PTE table's lock while
  // it counts that table's entries; -ESRCH when p is null or has exited.
  Result<std::vector<SmapsEntry>> smaps(Process* p);

  // What the PTE at addr in p's address space holds and, for a page, its state
  // (src/mm/page_info.cc). Takes the mmap_lock for read and the PTE lock. -ESRCH when p is
  // null or has exited, -EFAULT when no VMA contains addr.
  Result<PageInfo> pageinfo(Process* p, uint64_t addr);

  // The machine's /proc/vmstat (src/mm/vmstat.cc): (name, value) pairs in its order, first
  // the state counters nr_free_pages (frames the allocator's global list holds: frames cached
  // on per-CPU lists count as allocated, as in Linux), nr_inactive_anon, nr_active_anon,
  // nr_inactive_file, nr_active_file, nr_unevictable (pages on each LRU list; pages still in
  // a per-CPU LRU add batch are on none yet), then every event counter. A snapshot: while
  // CPUs run, the values need not be consistent with each other.
  std::vector<std::pair<std::string, uint64_t>> vmstat();
  // Moves every CPU's LRU add batch to the LRU lists (lru_add_drain_all), dropping the
  // batches' page references.
  void lru_add_drain_all();

  // Makes the calling thread run as CPU `cpu` (-1: none) for the system calls it issues, so
  // that they use that CPU's per-CPU structures (frame lists, counters). Accesses always run
  // as the CPU they name.
  static void bind_thread_to_cpu(int cpu);
  // The CPU the calling thread is bound to, or -1.
  static int bound_cpu();

  // ---- NUMA nodes and page migration (mm/migrate.c, mm/mempolicy.c) ----
  // Splits the frame pool into n nodes of equal size (the last takes the remainder), the CPUs
  // spread evenly over them (CPU i on node i * n / nr_cpus). Only while no process has a
  // mapping and no file exists: -EBUSY otherwise; -EINVAL for n outside 1 .. 64. Call it
  // while no other thread uses the machine. SystemConfig::nodes does the same at creation.
  Status set_nodes(int n);
  int nr_nodes();
  // migrate_pages(2) with MPOL_MF_MOVE_ALL for one range: moves every page that a present
  // PTE in [addr, addr + len) of p's address space maps (anonymous, shared-memory and
  // swap-cache pages, those other processes map too) to node `node`, updating every mapping
  // of each page through the reverse map. Pages already on the node are left alone. A page
  // that cannot move (someone holds an extra reference, e.g. a pin; no free frame on the
  // node; it is being reclaimed) stays where it is, after up to 10 attempts as Linux's
  // migrate_pages makes. The value is the number of pages moved. -EINVAL for a node outside
  // 0 .. nr_nodes()-1 or an unaligned addr, -EFAULT when part of the range is not mapped
  // (checked before anything moves), -ESRCH for a dead process. Safe against every other
  // operation, from any thread.
  Result<uint64_t> migrate_pages(Process* p, uint64_t addr, uint64_t len, int node);
  // move_pages(2): for each addrs[i], moves the page mapped there to nodes[i] (with nodes
  // empty, only reports where each page is) and sets (*status)[i] to the node the page is on
  // afterwards, or to a negative errno: -EFAULT (no VMA, or the zero page), -ENOENT (nothing
  // present: never touched, swapped out, or being migrated), -EBUSY (the page is pinned, isolated by someone else or being migrated),
  // -EAGAIN (references kept it after the retries), -ENOMEM (no free frame on the node).
  // The call itself fails with -ENODEV for a node outside 0 .. nr_nodes()-1, -EINVAL when
  // nodes is neither empty nor as long as addrs, -ESRCH for a dead process.
  Status move_pages(Process* p, const std::vector<uint64_t>& addrs, const std::vector<int>& nodes,
                    std::vector<int>* status);

  // ---- swap (mm/swapfile.c) ----
  // swapon: adds a swap device of bytes / 4096 slots (slot 0 is never used). With an empty
  // path the slots live in memory, reserved without backing so that a large device costs
  // nothing until used; with a path they live in that regular file (created if missing and
  // sized), written with pwrite and read with pread. The value is the device's type (the
  // lowest free one, 0 .. 7), which swapoff takes. -EINVAL for a size under two pages,
  // -EBUSY when all eight types are in use, the host's errno when the file cannot be set up.
  Status swapon(uint64_t bytes, const std::string& path = "");
  // swapoff: brings every page of device `type` back into memory (try_to_unuse: each live
  // process's swap entries of the device are faulted in as a read fault would, the swapped
  // pages of shared-memory files and shared anonymous mappings return to their page caches,
  // and swap-cache pages leave the cache), then removes the device. -EINVAL when no such device is on;
  // -ENOMEM when memory runs out, leaving the device on (pages already brought in stay);
  // -EBUSY, leaving it on, when slots stay in use by an address space no live process owns
  // (one still referenced elsewhere) for a long time.
  Status swapoff(unsigned type);
  // Totals over the devices that are on. Exact at a quiescent point; a snapshot otherwise.
  SwapStats swap_stats();
  // The library's internal swap devices (src/mm/swapfile.h).
  SwapTable& swap_table() { return *swap_; }
  // The shmem inodes that hold swap entries (src/mm/shmem.h).
  ShmemSwaplist& shmem_swaplist() { return *shmem_swaplist_; }

  // ---- reclaim (mm/vmscan.c, mm/oom_kill.c) ----
  // Proactive reclaim (memory.reclaim's role): scans the LRU lists as direct reclaim does,
  // until nr_pages pages were freed or every list was scanned whole, and returns the number
  // freed. Anonymous and shmem pages go to swap, so without a swap device with free slots
  // only pages that need no swap are freed. Under memory pressure kswapd (a thread of the
  // machine, woken when the free frames fall below the low watermark) and the faulting CPUs
  // (direct reclaim, then the OOM killer) do the same on their own.
  uint64_t reclaim(uint64_t nr_pages);
  // Test-only and checkers: kswapd and the OOM reaper finish their current step and wait
  // until resumed (the stress workload's quiescent points). Pairs nest.
  void debug_pause_reclaim();
  void debug_resume_reclaim();
  // -EAGAIN answers (non-blockable invalidations refused by a subscriber) the OOM reaper met.
  uint64_t debug_oom_reap_retries();
  // kswapd's reclaim batches so far.
  uint64_t debug_kswapd_runs();

  // ---- memory access through CPU `cpu` ----
  // Calls fn for each contiguous piece (at most a page) in ascending order; stops at the
  // first address that faults without a fix.
  using ChunkFn = AccessChunkFn;
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
    kShootdownLocal,       // TLB shootdowns flush only the initiating CPU (the caller's)
    kAnonVmaNotTypesafe,   // anon_vmas come from a cache without SLAB_TYPESAFE_BY_RCU
    kNoAnonVmaRecheck,     // folio_lock_anon_vma_read skips its recheck under the lock
    kMprotectKeepsWriteMigration,  // mprotect leaves write migration entries writable
    kForkCopiesWriteMigration,     // fork copies a COW mapping's write migration entry as is
    kNoSecondaryTlbUpgrade,        // a PTE that gains write (mprotect, write-fault reuse) does not
                                   // invalidate secondary TLBs (arm64 SMMUs before Linux 6.6)
    kUnregisterSkipsRelease,       // mmu_notifier_unregister unhashes a subscription without
                                   // calling its release() (before "mm: mmu_notifier: fix freed
                                   // page still mapped in secondary MMU")
    kReleaseTwice,                 // unregister and exit both call release() when they race
                                   // (before "mmu_notifier_unregister NULL Pointer deref and
                                   // multiple ->release() callouts")
    kIntervalRemoveNoWait,         // mmu_interval_notifier_remove returns while its deferred
                                   // removal is pending (before "mm/mmu_notifier.c: fix race
                                   // in mmu_interval_notifier_remove()")
    kNonblockStartSkipsEnds,       // a non-blocking start that fails on one subscriber calls
                                   // no end on the others (before "mm/mmu_notifiers: ensure
                                   // range_end() is paired with range_start()")
    kUnmapPutBeforeEnd,            // try_to_unmap_one drops the PTE's page reference before
                                   // invalidate_range_end and leaves the secondary TLBs to the
                                   // end, and reclaim discards a lazily freed page through that
                                   // put (it lends its own reference): the last put frees the
                                   // frame while an IOTLB still caches it
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
  // Test-only: when set, every fault calls it with the faulting address between its unlocked
  // read of the PTE and taking the PTE lock (handle_mm_fault), so that a test can hold one
  // fault there while another runs. Set and clear it only while no fault runs.
  using FaultGate = std::function<void(uint64_t addr)>;
  void debug_set_fault_gate(FaultGate gate) { fault_gate_ = std::move(gate); }
  const FaultGate& debug_fault_gate() const { return fault_gate_; }
  // Test-only: when set, a reverse-map walk of an anonymous page calls it with the page after
  // reading the page's anon_vma (inside the RCU read-side section) and before taking its lock,
  // so that a test can free the anon_vma there. Set and clear it only while no walk runs.
  using RmapGate = std::function<void(const void* page)>;
  void debug_set_rmap_gate(RmapGate gate) { rmap_gate_ = std::move(gate); }
  const RmapGate& debug_rmap_gate() const { return rmap_gate_; }
  // Test-only: when set, every page migration calls it with the source page after all its
  // mappings became migration entries and before the copy (between try_to_migrate and
  // remove_migration_ptes), with the page locked, so that a test can hold a migration there.
  // The gate must not wait for anything that needs the page lock. Set and clear it only while
  // no migration runs.
  using MigrateGate = std::function<void(const void* page)>;
  void debug_set_migrate_gate(MigrateGate gate) { migrate_gate_ = std::move(gate); }
  const MigrateGate& debug_migrate_gate() const { return migrate_gate_; }
  // Race widening, for re-injected bugs (mirrormm/bugs.h): when nonzero, the model sleeps
  // this many microseconds where the catalog's races live: after a blockable invalidation's
  // start callbacks (before the primary PTEs change), between a secondary MMU's page-table
  // walk and its install (secondary_mmu_resolve), between a migration's entries and its copy,
  // and between an rmap walk's read of page->mapping and its lock. A stress run then meets
  // those windows in seconds. 0 (the default): no pause, one relaxed load at each point.
  void debug_set_race_delay_us(unsigned us) { race_delay_us_.store(us, std::memory_order_relaxed); }
  void debug_race_pause() const {
    MM_EXPLORE_POINT(kRaceWindow, this);
    if (race_delay_us_.load(std::memory_order_relaxed)) [[unlikely]]
      race_pause_slow();
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
  // The file called name, with a new reference; nullptr if none.
  ShmemInode* lookup_file(const std::string& name);
  // memfd() and file_create(): creates or resizes a file of one kind.
  Status create_file(const std::string& name, uint64_t size, bool regular);
  // Switches every device off (the destructor, after every process exited).
  void swapoff_all();
  // Declared after mem_: destroyed before the frames its cache pages live in.
  std::unique_ptr<SwapTable> swap_;
  // Outlives every inode (destroyed after files_ and every process released theirs).
  std::unique_ptr<ShmemSwaplist> shmem_swaplist_;
  // kswapd, the OOM killer and the allocator's slow path; stopped first by the destructor.
  std::unique_ptr<MachineReclaim> reclaim_;
  // The writeback thread; stopped with reclaim, before the files go.
  std::unique_ptr<Flusher> flusher_;

  RmapGate rmap_gate_;
  MigrateGate migrate_gate_;  // test-only; written while no migration runs
  std::atomic<unsigned> race_delay_us_{0};
  void race_pause_slow() const;
  std::atomic<uint64_t> violations_{0};
  std::atomic<unsigned> broken_{0};  // DebugBreak bits
  FaultGate fault_gate_;             // test-only; written while no fault runs
  // Lock classes (src/mm/lock_order.h) are set by the constructor.
  Mutex violations_lock_;
  std::vector<std::string> violation_messages_ GUARDED_BY(violations_lock_);
  std::map<std::string, uint64_t, std::less<>> violation_kinds_ GUARDED_BY(violations_lock_);

  Mutex files_lock_;
  std::map<std::string, ShmemInode*> files_ GUARDED_BY(files_lock_);  // holds a reference each
  Mutex procs_lock_;
  std::vector<std::unique_ptr<Process>> procs_ GUARDED_BY(procs_lock_);  // index pid-1
};

}  // namespace mirrormm
