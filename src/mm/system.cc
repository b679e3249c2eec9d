// The System: processes, their system calls, and memory accesses on software CPUs.
#include "mirrormm/system.h"

#include <algorithm>
#include <chrono>
#include <thread>

#include "mirrormm/mmu_notifier.h"

#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/page_writeback.h"
#include "mm/vmscan.h"
#include "mm/mm.h"
#include "mm/shmem.h"
#include "mm/swapfile.h"
#include "mirrormm/base/rcu.h"
#include "mm/system_internal.h"

namespace mirrormm {

Process::Process(uint64_t pid, Mm* mm) : pid_(pid), mm_(mm) { lock_.set_class(lock_class::kProcess); }

System::System(const SystemConfig& config, int nr_cpus) : config_(config) {
  violations_lock_.set_class(lock_class::kViolations);
  files_lock_.set_class(lock_class::kFiles);
  procs_lock_.set_class(lock_class::kProcs);
  mem_ = std::make_unique<PhysMem>(config.memory_bytes);
  mem_->set_mmu_checker_on(config.mmu_checker);
  swap_ = std::make_unique<SwapTable>();
  shmem_swaplist_ = std::make_unique<ShmemSwaplist>();
  reclaim_ = std::make_unique<MachineReclaim>(this);
  flusher_ = std::make_unique<Flusher>(this);
  if (nr_cpus < 1) nr_cpus = 1;
  if (nr_cpus > 64) nr_cpus = 64;
  for (int i = 0; i < nr_cpus; i++) cpus_.push_back(std::make_unique<Cpu>(this, mem_.get(), i));
  if (config.nodes != 1 || !config.node_memory_bytes.empty()) {
    // The pool is split before anything but this constructor uses it.
    std::vector<uint64_t> frames = mem_->even_node_split(std::clamp(config.nodes, 1, PhysMem::kMaxNodes));
    if (!config.node_memory_bytes.empty()) {
      frames.clear();
      for (uint64_t b : config.node_memory_bytes) frames.push_back(b >> kPageShift);
    }
    MM_BUG_ON(mem_->set_nodes(frames, nr_cpus) != Errno::kOk);  // a configuration error
  }
  Mm* mm = mm_alloc(this);
  MM_BUG_ON(!mm);
  MutexGuard g(procs_lock_);
  mm->owner_pid_.store(1, std::memory_order_relaxed);
  procs_.push_back(std::unique_ptr<Process>(new Process(1, mm)));
}

System::~System() {
  reclaim_->stop();  // no kswapd pass or OOM kill runs into the teardown
  flusher_->stop();  // nor a writeback pass
  std::vector<Process*> procs;
  {
    MutexGuard g(procs_lock_);
    for (auto& p : procs_) procs.push_back(p.get());
  }
  for (Process* p : procs)
    if (p->alive()) exit(p);
  swapoff_all();  // the swap cache's pages go back to the frame pool
  {
    MutexGuard g(files_lock_);
    for (auto& [name, inode] : files_) inode->put();
  }
  rcu_barrier();  // deferred frees of VMAs and address spaces run before memory goes
}

struct ProcessAccess {
  static Mutex& lock(Process* p) RETURN_CAPABILITY(p->lock_) { return p->lock_; }
};

namespace {
// A user reference on a process's address space for the duration of a system call: the one
// lock boundary of every call (System takes the reference, the mechanism takes the mmap_lock).
class MmRef {
 public:
  // A process the OOM killer killed gets no system call in (it never returns to user space).
  explicit MmRef(Process* p) : mm_(p && !p->oom_killed() ? get_task_mm(p) : nullptr) {
    MM_BUG_ON(mm_ && mm_->state() != Mm::State::kAlive);
  }
  ~MmRef() {
    if (mm_) mmput(mm_);
  }
  MmRef(const MmRef&) = delete;
  MmRef& operator=(const MmRef&) = delete;
  Mm* get() const { return mm_; }
  explicit operator bool() const { return mm_ != nullptr; }

 private:
  Mm* mm_;
};
}  // namespace

Mm* get_task_mm(Process* p) {
  if (!p) return nullptr;
  MutexGuard g(ProcessAccess::lock(p));
  Mm* mm = p->mm();
  if (mm) mm->mm_users_.fetch_add(1, std::memory_order_relaxed);
  return mm;
}

void mmput_ref(Mm* mm) { mmput(mm); }

System* mm_sys(const Mm* mm) { return mm->sys(); }

Process* System::process(uint64_t pid) {
  MutexGuard g(procs_lock_);
  if (pid == 0 || pid > procs_.size()) return nullptr;
  Process* p = procs_[pid - 1].get();
  return p->alive() ? p : nullptr;
}

uint64_t System::nr_processes_created() {
  MutexGuard g(procs_lock_);
  return procs_.size();
}

namespace {

// A system call on p's address space: -ESRCH for a process without an mm, else what fn (one
// of mm.h's entry points, given the Mm) answers.
template <class Fn>
Status call_on_mm(Process* p, Fn fn) {
  MmRef ref(p);
  if (!ref) return Errno::kSrch;
  const Errno e = fn(ref.get());
  if (e != Errno::kOk) return e;
  return kSuccess;
}

}  // namespace

Result<uint64_t> System::mmap(Process* p, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                              File* file, uint64_t off) {
  MmRef ref(p);
  if (!ref) return Errno::kSrch;
  if (offset_in_page(off)) return Errno::kInval;  // sys_mmap's check, even for anonymous memory
  if (flags & kMapAnonymous) file = nullptr;
  else if (!file) return Errno::kBadf;
  Result<uint64_t> r = vm_mmap_pgoff(ref.get(), file, addr, len, prot, flags, off >> kPageShift);
  return r;
}

Status System::munmap(Process* p, uint64_t addr, uint64_t len) {
  return call_on_mm(p, [&](Mm* mm) { return vm_munmap(mm, addr, len); });
}

Status System::mprotect(Process* p, uint64_t addr, uint64_t len, uint64_t prot) {
  return call_on_mm(p, [&](Mm* mm) { return do_mprotect_pkey(mm, addr, len, prot, -1); });
}

Status System::mlock(Process* p, uint64_t addr, uint64_t len) { return mlock2(p, addr, len, 0); }

Status System::mlock2(Process* p, uint64_t addr, uint64_t len, uint64_t flags) {
  if (flags & ~kMlockOnfault) return Errno::kInval;
  const vm_flags_t vm_flags = VM_LOCKED | ((flags & kMlockOnfault) ? VM_LOCKONFAULT : 0);
  return call_on_mm(p, [&](Mm* mm) { return do_mlock(mm, addr, len, vm_flags); });
}

Status System::munlock(Process* p, uint64_t addr, uint64_t len) {
  return call_on_mm(p, [&](Mm* mm) { return do_munlock(mm, addr, len); });
}

Status System::mlockall(Process* p, uint64_t flags) {
  return call_on_mm(p, [&](Mm* mm) { return do_mlockall(mm, flags); });
}

Status System::munlockall(Process* p) {
  return call_on_mm(p, [](Mm* mm) { return do_munlockall(mm); });
}

Status System::setrlimit(Process* p, unsigned resource, uint64_t soft, uint64_t hard) {
  return call_on_mm(p, [&](Mm* mm) { return do_setrlimit(mm, resource, soft, hard); });
}

Result<std::pair<uint64_t, uint64_t>> System::getrlimit(Process* p, unsigned resource) {
  MmRef ref(p);
  if (!ref) return Errno::kSrch;
  return do_getrlimit(ref.get(), resource);
}

Result<VmCounts> System::vm_counts(Process* p) {
  MmRef ref(p);
  if (!ref) return Errno::kSrch;
  return mirrormm::vm_counts(ref.get());
}

Result<uint64_t> System::mremap(Process* p, uint64_t addr, uint64_t old_len, uint64_t new_len,
                                uint64_t flags, uint64_t new_addr) {
  MmRef ref(p);
  if (!ref) return Errno::kSrch;
  return do_mremap(ref.get(), addr, old_len, new_len, flags, new_addr);
}

Result<uint64_t> System::mmap_file(Process* p, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                                   const std::string& name, uint64_t off, FileMode mode) {
  if (!p || !p->alive()) return Errno::kSrch;
  if (flags & kMapAnonymous) return mmap(p, addr, len, prot, flags, nullptr, off);
  if (offset_in_page(off)) return Errno::kInval;
  ShmemInode* inode = nullptr;
  {
    MutexGuard g(files_lock_);
    auto it = files_.find(name);
    if (it == files_.end()) return Errno::kBadf;
    inode = it->second;
  }
  File* f = open_file(inode, mode == FileMode::kReadWrite);  // like open("/proc/self/fd/N")
  Result<uint64_t> r = mmap(p, addr, len, prot, flags, f, off);
  fput(f);  // ... and close(): the mapping keeps its own reference
  return r;
}

Status System::resize_file(ShmemInode* inode, uint64_t size) {
  if (static_cast<int64_t>(size) < 0) return Errno::kInval;
  if (inode->is_regular() && size > kMaxRegularFileSize) return Errno::kFbig;  // inode_newsize_ok
  const uint64_t old = inode->size();
  inode->set_size(size);
  if (size <= old) {
    // shmem_setattr, ext4_setattr: unmap beyond the new end (private copies too), drop and
    // zero the page cache, and unmap again for copies made meanwhile.
    const uint64_t holebegin = page_align(size) >> kPageShift;
    if (old > (holebegin << kPageShift)) unmap_mapping_range(inode, holebegin, ZapCows::kYes);
    inode->truncate_pages(size);
    if (old > (holebegin << kPageShift)) unmap_mapping_range(inode, holebegin, ZapCows::kYes);
    // ext4_truncate (which ext4_setattr calls for any size not above the old one) marks a
    // file it leaves empty for auto_da_alloc.
    if (inode->is_regular() && size == 0) inode->set_da_alloc_close();
  } else if (inode->is_regular()) {
    inode->zero_eof_tail(old);
  }
  return kSuccess;
}

ShmemInode* System::lookup_file(const std::string& name) {
  MutexGuard g(files_lock_);
  auto it = files_.find(name);
  if (it == files_.end()) return nullptr;
  it->second->get();
  return it->second;
}

Status System::create_file(const std::string& name, uint64_t size, bool regular) {
  if (!regular && name.size() > 249) return Errno::kInval;  // memfd_create's name limit
  const InodeKind kind = regular ? InodeKind::kRegular : InodeKind::kShmem;
  ShmemInode* inode;
  {
    MutexGuard g(files_lock_);
    auto it = files_.find(name);
    if (it == files_.end()) {
      inode = new ShmemInode(this, name, 0, kind);
      files_.emplace(name, inode);
      // Created empty, then sized (ftruncate); a size ftruncate refuses leaves it empty.
      if (static_cast<int64_t>(size) < 0) return Errno::kInval;
      if (regular && size > kMaxRegularFileSize) return Errno::kFbig;
      inode->set_size(size);
      if (regular && size == 0) inode->set_da_alloc_close();  // ext4_setattr's ext4_truncate
      return kSuccess;
    }
    inode = it->second;
    if (inode->kind() != kind) return Errno::kExist;  // one namespace for both kinds
    inode->get();
  }
  Status st = resize_file(inode, size);
  inode->put();
  return st;
}

Status System::memfd(const std::string& name, uint64_t size) { return create_file(name, size, false); }

Status System::file_create(const std::string& name, uint64_t size) { return create_file(name, size, true); }

Status System::truncate(const std::string& name, uint64_t size) {
  ShmemInode* inode = lookup_file(name);
  if (!inode) return Errno::kNoEnt;
  Status st = resize_file(inode, size);
  inode->put();
  return st;
}

Status System::unlink_file(const std::string& name) {
  ShmemInode* inode;
  {
    MutexGuard g(files_lock_);
    auto it = files_.find(name);
    if (it == files_.end()) return Errno::kNoEnt;
    inode = it->second;
    files_.erase(it);
  }
  inode->put();  // the name's reference
  return kSuccess;
}

Status System::msync(Process* p, uint64_t addr, uint64_t len, uint64_t flags) {
  return call_on_mm(p, [&](Mm* mm) { return do_msync(mm, addr, len, flags); });
}

Status System::fsync(const std::string& name) {
  ShmemInode* inode = lookup_file(name);
  if (!inode) return Errno::kBadf;
  Errno e = vfs_fsync_range(inode, 0, ~0ull);
  inode->put();
  if (e != Errno::kOk) return e;
  return kSuccess;
}

Result<std::vector<uint8_t>> System::pread(const std::string& name, uint64_t off, uint64_t len) {
  ShmemInode* inode = lookup_file(name);
  if (!inode) return Errno::kBadf;
  // ksys_pread64 and rw_verify_area: a negative offset, or one whose end overflows loff_t.
  const bool bad = static_cast<int64_t>(off) < 0 || static_cast<int64_t>(off + len) < 0;
  Result<std::vector<uint8_t>> r = bad ? Result<std::vector<uint8_t>>(Errno::kInval) : filemap_read(inode, off, len);
  inode->put();
  return r;
}

std::vector<ShmemInode*> System::get_regular_files() {
  std::vector<ShmemInode*> out;
  MutexGuard g(files_lock_);
  for (auto& [name, inode] : files_) {
    if (!inode->is_regular()) continue;
    inode->get();
    out.push_back(inode);
  }
  return out;
}

uint64_t System::debug_disk_writes() {
  uint64_t writes = 0;
  for (ShmemInode* inode : get_regular_files()) {
    writes += inode->disk()->nr_writes();
    inode->put();
  }
  return writes;
}

uint64_t System::sync() {
  uint64_t written = 0;
  for (ShmemInode* inode : get_regular_files()) {
    written += filemap_write_and_wait_range(inode, 0, ~0ull);
    inode->put();
  }
  return written;
}

void System::wakeup_flusher() { flusher_->wakeup(); }

uint64_t System::debug_dirty_file_pages() {
  uint64_t n = 0;
  for (ShmemInode* inode : get_regular_files()) {
    n += count_dirty_pages(inode);
    inode->put();
  }
  return n;
}

Status System::madvise(Process* p, uint64_t addr, uint64_t len, uint64_t advice) {
  return call_on_mm(p, [&](Mm* mm) { return do_madvise(mm, addr, len, advice); });
}

Status System::process_madvise(Process* p, Process* target, uint64_t addr, uint64_t len, uint64_t advice) {
  MmRef ref(p);
  if (!ref || !target) return Errno::kSrch;
  MmRef tref(target);
  if (!tref) return Errno::kSrch;  // mm_access: a process without an mm
  Errno e = do_process_madvise(ref.get(), tref.get(), addr, len, advice);
  if (e != Errno::kOk) return e;
  return kSuccess;
}

Status System::mseal(Process* p, uint64_t addr, uint64_t len, uint64_t flags) {
  return call_on_mm(p, [&](Mm* mm) { return do_mseal(mm, addr, len, flags); });
}

Status System::mincore(Process* p, uint64_t addr, uint64_t len, std::vector<uint8_t>* vec) {
  return call_on_mm(p, [&](Mm* mm) { return do_mincore_syscall(mm, addr, len, vec); });
}

Result<Process*> System::fork(Process* p) {
  MmRef ref(p);
  if (!ref) return Errno::kSrch;
  Result<Mm*> r = dup_mm(ref.get());
  if (!r.ok()) return r.error();
  MutexGuard g(procs_lock_);
  r.value()->owner_pid_.store(procs_.size() + 1, std::memory_order_relaxed);
  procs_.push_back(std::unique_ptr<Process>(new Process(procs_.size() + 1, r.value())));
  return procs_.back().get();
}

void System::exit(Process* p) {
  if (!p) return;
  Mm* mm;
  {
    MutexGuard g(p->lock_);
    mm = p->mm_.exchange(nullptr, std::memory_order_acq_rel);
    p->state_.store(Process::State::kDead, std::memory_order_release);
  }
  if (mm) mmput(mm);
}

AccessResult System::access(Process* p, int cpu, uint64_t addr, uint64_t len, bool write, const ChunkFn& fn) {
  MM_BUG_ON(!p || cpu < 0 || cpu >= nr_cpus());
  AccessResult r;
  {
    // The CPU runs the process's address space; the RCU read section keeps the Mm alive
    // against a concurrent exit (which frees it after a grace period).
    RcuReadGuard rcu;
    Mm* mm = p->mm();
    if (!mm || p->oom_killed()) return {AccessResult::Kind::kNoProcess, addr};
    ScopedCurrent current(p);
    r = cpus_[cpu]->access(mm, addr, len, write, fn);
  }
  // Killed by the OOM killer during the access (its address space may be torn down under
  // it): the access ends as the kill does. Out of frames in a fault with no victim found: the
  // faulting process goes.
  if (!r.ok() && p->oom_killed()) r.kind = AccessResult::Kind::kOom;
  if (r.kind == AccessResult::Kind::kOom) exit(p);
  return r;
}

void System::bind_thread_to_cpu(int cpu) { tls_this_cpu = cpu; }
int System::bound_cpu() { return tls_this_cpu; }

void System::set_mmu_checker(bool on) { mem_->set_mmu_checker_on(on); }
bool System::mmu_checker() const { return mem_->mmu_checker_on(); }

void System::report_violation(std::string_view kind, const std::string& what) {
  violations_.fetch_add(1, std::memory_order_relaxed);
  MutexGuard g(violations_lock_);
  auto it = violation_kinds_.find(kind);
  if (it == violation_kinds_.end()) it = violation_kinds_.emplace(std::string(kind), 0).first;
  it->second++;
  if (violation_messages_.size() < kMaxViolationMessages) violation_messages_.push_back(what);
}

std::vector<std::pair<std::string, uint64_t>> System::violation_kinds() {
  std::vector<std::pair<std::string, uint64_t>> out;
  uint64_t with_kind = 0;
  {
    MutexGuard g(violations_lock_);
    for (const auto& [kind, n] : violation_kinds_) {
      out.emplace_back(kind, n);
      with_kind += n;
    }
  }
  // Reports made without a kind (and any that raced with the reads above).
  const uint64_t total = violations();
  if (total > with_kind) out.emplace_back("other", total - with_kind);
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.second > b.second; });
  return out;
}

void System::race_pause_slow() const {
  std::this_thread::sleep_for(std::chrono::microseconds(race_delay_us_.load(std::memory_order_relaxed)));
}

uint64_t System::debug_metadata_bytes() {
  uint64_t bytes = mem_->nr_used() * sizeof(Page);
  MutexGuard g(procs_lock_);
  for (auto& p : procs_) {
    MmRef ref(p.get());
    if (!ref) continue;
    Mm* mm = ref.get();
    MmapReadGuard rg(mm);
    bytes += count_pgtables(mm) * kPageSize;
    bytes += mm->vmas_.size() * (sizeof(Vma) + 48 /* tree node */);
  }
  return bytes;
}

uint64_t System::reclaim(uint64_t nr_pages) {
  ScanControl sc;
  sc.who = ScanControl::Who::kProactive;
  sc.nr_to_reclaim = nr_pages;
  return nr_pages ? do_try_to_free_pages(this, sc) : 0;
}

void System::debug_pause_reclaim() {
  reclaim_->pause();
  flusher_->pause();
}
void System::debug_resume_reclaim() {
  flusher_->resume();
  reclaim_->resume();
}
uint64_t System::debug_oom_reap_retries() { return reclaim_->oom().reap_retries(); }
uint64_t System::debug_kswapd_runs() { return reclaim_->kswapd().runs(); }

}  // namespace mirrormm
