// The dmirror test driver (see mirrormm/dmirror.h): its devices and their memory, the
// mirrors and their commands.
#include "mirrormm/dmirror.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <thread>

#include "mirrormm/base/tsan.h"
#include "mirrormm/device_file.h"
#include "mirrormm/gup.h"
#include "mirrormm/hmm.h"
#include "mirrormm/migrate_device.h"
#include "mirrormm/system.h"
#include "mm/lock_order.h"
#include "mm/physmem.h"

namespace mirrormm {

namespace {

constexpr uint64_t kPage = 4096;
// Pages per hmm_range_fault call of READ, WRITE and SNAPSHOT (test_hmm's pfns[32]).
constexpr uint64_t kFaultChunk = 32;
// Pages per migrate_vma call (one PTE table).
constexpr uint64_t kMigrateChunk = 512;
// The largest command: its bounce buffer (kvmalloc fails above it here).
constexpr uint64_t kMaxPages = (1ull << 30) / kPage;
// READ and WRITE give up with -EBUSY after this many fault rounds that left the range
// incomplete (Linux loops for as long as invalidations keep winning).
constexpr int kMaxRounds = 1000;
// How often RELEASE goes over a chunk whose pages are still held elsewhere before giving up
// on it for now (the pages stay usable; a later RELEASE or the driver's teardown retries).
constexpr int kEvictPasses = 100;

using Clock = std::chrono::steady_clock;
constexpr auto kRangeTimeout = std::chrono::milliseconds(kHmmRangeDefaultTimeoutMs);

// The device's memory as its copy engine sees it: the model keeps device-private data in the
// frame itself.
void copy_device_page(System* sys, uint64_t pfn, uint8_t* buf, bool write) {
  uint8_t* frame = page_address(sys, pfn);
  MM_TSAN_IGNORE_BEGIN();  // simulated memory: coherent pages race with the CPU by design
  if (write) {
    std::memcpy(frame, buf, kPage);
  } else {
    std::memcpy(buf, frame, kPage);
  }
  MM_TSAN_IGNORE_END();
}

// The hmm_range of a device fault (default_flags REQ_FAULT, perhaps REQ_WRITE) or of a
// snapshot (0), with the device as the owner of the private pages it may be shown.
HmmRange hmm_range(MmuIntervalNotifier* notifier, uint64_t start, uint64_t end, uint64_t* pfns,
                   uint64_t default_flags, const void* owner) {
  HmmRange range;
  range.notifier = notifier;
  range.start = start;
  range.end = end;
  range.hmm_pfns = pfns;
  range.default_flags = default_flags;
  range.dev_private_owner = owner;
  return range;
}

}  // namespace

// One device (struct dmirror_device): its chunks of memory, the free pages, the open mirrors.
// devmem_lock_ guards the chunk list and the mirrors; lock_ the free list and each chunk's
// removed flag (both read by folio_free, which may run under page-table locks).
class DmirrorDevice {
 public:
  DmirrorDevice(System* sys, int dev, DmirrorConfig config) : sys_(sys), dev_(dev), config_(config) {}
  System* sys() const { return sys_; }
  ~DmirrorDevice() {
    evict_all();
    MutexGuard g(devmem_lock_);
    // Chunks that could not be unmapped (a page still held) stay allocated: the machine
    // outlives them only in a broken run, and their frames are not reused meanwhile.
    for (auto& c : busy_) (void)c.release();
  }

  MemoryType type() const { return DmirrorDriver::device_type(dev_); }
  unsigned select_device() const {
    return type() == MEMORY_DEVICE_PRIVATE ? MIGRATE_VMA_SELECT_DEVICE_PRIVATE : MIGRATE_VMA_SELECT_DEVICE_COHERENT;
  }

  // dmirror_devmem_alloc_page: a free device page, locked with one reference, or 0 when the
  // device is full. Adds a chunk when the free list is empty.
  uint64_t alloc_page() EXCLUDES(lock_, devmem_lock_) {
    for (;;) {
      uint64_t pfn = 0;
      {
        SpinGuard g(lock_);
        if (!free_.empty()) {
          pfn = free_.back();
          free_.pop_back();
          in_use_++;
        }
      }
      if (pfn) {
        zone_device_page_init(pfn_pgmap(sys_, pfn), pfn);
        return pfn;
      }
      if (!add_chunk()) return 0;
    }
  }

  uint64_t pages_in_use() EXCLUDES(lock_) {
    SpinGuard g(lock_);
    return in_use_;
  }

  void add_mirror(Dmirror* m) EXCLUDES(devmem_lock_) {
    MutexGuard g(devmem_lock_);
    mirrors_.push_back(m);
  }
  void remove_mirror(Dmirror* m) EXCLUDES(devmem_lock_) {
    MutexGuard g(devmem_lock_);
    mirrors_.erase(std::remove(mirrors_.begin(), mirrors_.end(), m), mirrors_.end());
  }

  // dmirror_device_remove_chunks: every chunk leaves the device (its free pages with it),
  // its pages in use are migrated to system memory and it is unmapped. New chunks come
  // on demand.
  void evict_all() EXCLUDES(devmem_lock_, lock_) {
    std::vector<std::unique_ptr<Chunk>> chunks;
    {
      MutexGuard g(devmem_lock_);
      chunks.swap(chunks_);
      for (auto& c : busy_) chunks.push_back(std::move(c));
      busy_.clear();
      SpinGuard s(lock_);
      for (auto& c : chunks) c->removed = true;
      free_.clear();
    }
    for (auto& c : chunks) {
      bool unmapped = false;
      for (int pass = 0; pass < kEvictPasses && !unmapped; pass++) {
        evict_chunk(c.get());
        forget(&c->pgmap);
        unmapped = memunmap_pages(&c->pgmap) == Errno::kOk;
        if (!unmapped) explore_hook::wait_yield();
      }
      if (!unmapped) {
        MutexGuard g(devmem_lock_);
        busy_.push_back(std::move(c));
      }
    }
  }

 private:
  struct Chunk {
    DevPagemap pgmap;
    DmirrorDevice* device = nullptr;
    bool removed = false;  // guarded by the device's lock_ (set before eviction)
  };

  static DmirrorDevice* of(DevPagemap* pgmap) { return static_cast<Chunk*>(pgmap->driver_data)->device; }

  // dmirror_allocate_chunk.
  bool add_chunk() EXCLUDES(devmem_lock_, lock_) {
    static const DevPagemapOps ops = {&DmirrorDevice::folio_free, &DmirrorDevice::migrate_to_ram};
    static const DevPagemapOps coherent_ops = {&DmirrorDevice::folio_free, nullptr};
    MutexGuard g(devmem_lock_);
    {
      SpinGuard s(lock_);
      if (!free_.empty()) return true;  // another allocation added one meanwhile
    }
    if (chunks_.size() >= config_.max_chunks) return false;
    auto c = std::make_unique<Chunk>();
    c->device = this;
    c->pgmap.type = type();
    c->pgmap.nr_pages = config_.chunk_pages;
    c->pgmap.ops = type() == MEMORY_DEVICE_PRIVATE ? &ops : &coherent_ops;
    c->pgmap.owner = this;
    c->pgmap.driver_data = c.get();
    if (memremap_pages(sys_, &c->pgmap) != Errno::kOk) return false;
    {
      SpinGuard s(lock_);
      free_.insert(free_.end(), c->pgmap.pfns.rbegin(), c->pgmap.pfns.rend());
    }
    chunks_.push_back(std::move(c));
    return true;
  }

  // dmirror_devmem_free: the page's last reference went.
  static void folio_free(DevPagemap* pgmap, uint64_t pfn) {
    DmirrorDevice* d = of(pgmap);
    SpinGuard g(d->lock_);
    d->in_use_--;
    if (!static_cast<Chunk*>(pgmap->driver_data)->removed) d->free_.push_back(pfn);
  }

  // dmirror_devmem_fault: a CPU access to a device-private page brings that page back. The
  // device's mirrors ignore their own device's migrations, so the ones mirroring the
  // faulting address space drop the page here (test_hmm drops it from the mirror that
  // migrated it; with several mirrors of one device in one process, each may hold it).
  static Errno migrate_to_ram(DevPagemap* pgmap, const DeviceFault& vmf) {
    DmirrorDevice* d = of(pgmap);
    uint64_t src = 0, dst = 0;
    MigrateVma args;
    args.mm = vmf.mm;
    args.vma = vmf.vma;
    args.start = vmf.address;
    args.end = vmf.address + kPage;
    args.src = &src;
    args.dst = &dst;
    args.pgmap_owner = d;
    args.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    args.fault_page = vmf.pfn;
    if (Errno e = migrate_vma_setup(&args); e != Errno::kOk) return e;
    Errno result = Errno::kOk;
    if (src & MIGRATE_PFN_MIGRATE) {
      const uint64_t np = alloc_migrate_page(d->sys_);
      if (np) {
        copy_highpage(d->sys_, np, migrate_pfn_to_pfn(src));
        dst = migrate_pfn(np) | (src & MIGRATE_PFN_WRITE);
        d->forget_address(vmf.mm, vmf.address);
      } else {
        result = Errno::kNoMem;  // VM_FAULT_OOM
      }
    }
    migrate_vma_pages(&args);
    migrate_vma_finalize(&args);
    return result;
  }

  void forget_address(Mm* mm, uint64_t addr) EXCLUDES(devmem_lock_);
  void forget(const DevPagemap* pgmap) EXCLUDES(devmem_lock_);

  // dmirror_device_evict_chunk: every page of the chunk in use goes to system memory.
  void evict_chunk(Chunk* c) {
    const uint64_t n = c->pgmap.pfns.size();
    std::vector<uint64_t> src = c->pgmap.pfns, dst(n, 0);
    if (migrate_device_pfns(sys_, src.data(), n) != Errno::kOk) return;
    for (uint64_t i = 0; i < n; i++) {
      if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
      const uint64_t np = alloc_migrate_page(sys_);
      if (!np) continue;  // stays on the device for the next pass
      copy_highpage(sys_, np, migrate_pfn_to_pfn(src[i]));
      dst[i] = migrate_pfn(np);
    }
    migrate_device_pages(sys_, src.data(), dst.data(), n);
    migrate_device_finalize(sys_, src.data(), dst.data(), n);
  }

  System* const sys_;
  const int dev_;
  const DmirrorConfig config_;
  Mutex devmem_lock_{lock_class::kDmirrorDevmem};
  std::vector<std::unique_ptr<Chunk>> chunks_ GUARDED_BY(devmem_lock_);
  // Removed chunks whose pages could not all be evicted yet.
  std::vector<std::unique_ptr<Chunk>> busy_ GUARDED_BY(devmem_lock_);
  std::vector<Dmirror*> mirrors_ GUARDED_BY(devmem_lock_);
  SpinLock lock_{lock_class::kDmirrorFreeList};
  std::vector<uint64_t> free_ GUARDED_BY(lock_);
  uint64_t in_use_ GUARDED_BY(lock_) = 0;
};

void DmirrorDevice::forget_address(Mm* mm, uint64_t addr) {
  MutexGuard g(devmem_lock_);
  for (Dmirror* m : mirrors_) {
    if (m->mm_ != mm) continue;
    DriverLockGuard mg(m->mutex_);
    m->erase_locked(addr, addr + kPage);
  }
}

void DmirrorDevice::forget(const DevPagemap* pgmap) {
  MutexGuard g(devmem_lock_);
  for (Dmirror* m : mirrors_) m->forget_pgmap(pgmap);
}

// ---- the driver ----

DmirrorDriver::DmirrorDriver(System* sys, DmirrorConfig config) : sys_(sys) {
  for (int i = 0; i < kNDevices; i++) devices_[i] = std::make_unique<DmirrorDevice>(sys, i, config);
}

DmirrorDriver::~DmirrorDriver() = default;

uint64_t DmirrorDriver::debug_pages_in_use(int dev) {
  return dev >= 0 && dev < kNDevices ? devices_[dev]->pages_in_use() : 0;
}

Result<std::unique_ptr<Dmirror>> DmirrorDriver::open(int dev, Process* p) {
  static const MmuIntervalNotifierOps ops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = &Dmirror::invalidate;
    return o;
  }();
  if (dev < 0 || dev >= kNDevices) return Errno::kNoDev;
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  static const DeviceFileOps fops = [] {
    DeviceFileOps o;
    o.mmap = &Dmirror::fops_mmap;
    return o;
  }();
  std::unique_ptr<Dmirror> m(new Dmirror(devices_[dev].get(), dev, mm));
  m->file_ = open_device_file(sys_, "/dev/hmm_dmirror" + std::to_string(dev), &fops, m.get(), /*writable=*/true);
  const Errno e = mmu_interval_notifier_insert(&m->notifier_, mm, 0, SecondaryMmu::kUserSpaceEnd, &ops);
  mmput_ref(mm);
  if (e != Errno::kOk) return e;
  {
    WriteGuard<RwSem> d(m->detach_lock_);
    m->attached_ = true;
  }
  devices_[dev]->add_mirror(m.get());
  m->set_name("dmirror" + std::to_string(dev) + " pid " + std::to_string(p->pid()));
  return m;
}

// ---- a mirror ----

Dmirror::Dmirror(DmirrorDevice* mdevice, int dev, Mm* mm) : mdevice_(mdevice), dev_(dev), mm_(mm) {
  detach_lock_.set_class(lock_class::kDeviceDetach);
  notifier_.owner = this;
}

Dmirror::~Dmirror() {
  close();
  if (file_) put_device_file(file_);
  mmu_checker_name(this, "");  // this address may name another subscriber next
}

void Dmirror::set_name(const std::string& name) { mmu_checker_name(this, name); }

void Dmirror::close() {
  {
    WriteGuard<RwSem> d(detach_lock_);
    if (!attached_) return;
    {
      DriverLockGuard g(mutex_);
      erase_locked(0, ~0ull);
    }
    mmu_interval_notifier_remove(&notifier_);
    attached_ = false;
  }
  mdevice_->remove_mirror(this);
  mdevice_->evict_all();
}

Result<uint64_t> Dmirror::mmap(Process* p, uint64_t addr, uint64_t len, uint64_t prot, uint64_t flags,
                               uint64_t off) {
  {
    ReadGuard<RwSem> d(detach_lock_);
    if (!attached_) return Errno::kBadf;
  }
  // Not under the detach lock: mmap takes the process's lock, which ranks above it. A close()
  // racing this mmap is harmless: the hook uses only the driver (which outlives its mirrors)
  // and this object (which the caller keeps), as Linux's mmap holds its file reference.
  return mdevice_->sys()->mmap(p, addr, len, prot, flags, file_, off);
}

// dmirror_fops_mmap: a zeroed page per page of the VMA. vm_insert_page takes the PTE's
// reference; the allocation's goes right after, so the mapping alone keeps the page.
Errno Dmirror::fops_mmap(File* file, Vma* vma, uint64_t start, uint64_t end) {
  Dmirror* m = static_cast<Dmirror*>(device_file_private_data(file));
  System* sys = m->mdevice_->sys();
  for (uint64_t addr = start; addr < end; addr += kPage) {
    const uint64_t pfn = alloc_driver_page(sys);
    if (!pfn) return Errno::kNoMem;
    const Errno e = vm_insert_page(vma, addr, pfn);
    put_page_pfn(sys, pfn);
    if (e != Errno::kOk) return e;
  }
  return Errno::kOk;
}

// dmirror_interval_invalidate. The range's last page is dropped too, as test_hmm's
// inclusive xa_for_each_range does: one page more than needed, which costs a fault at most.
//
// The device's own migrations (MMU_NOTIFY_MIGRATE with this device as owner) leave its own
// memory alone: the migration updates pt itself. test_hmm ignores them entirely; here the
// entries that name CPU-mapped pages go (their PTEs are becoming migration entries, and the
// coherence checker holds a mapping to a page the CPU no longer maps for stale), and the
// sequence moves so that a fault racing the migration starts again.
bool Dmirror::invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
  Dmirror* m = static_cast<Interval*>(sub)->owner;
  const bool own = range->event == MmuNotifyEvent::kMigrate && range->owner == m->mdevice_;
  if (mmu_notifier_range_blockable(range)) {
    m->mutex_.lock();
  } else if (!m->mutex_.try_lock()) {
    return false;
  }
  mmu_interval_set_seq(sub, cur_seq);
  const uint64_t before = m->pt_.size();
  if (own) {
    m->erase_locked(range->start, range->end, Which::kCpuMapped);
  } else {
    m->log_.record(range);
    m->erase_locked(range->start, range->end == ~0ull ? ~0ull : range->end + 1, Which::kAll);
  }
  m->log_.stats.pages_dropped += before - m->pt_.size();
  m->mutex_.unlock();
  return true;
}

void Dmirror::store_locked(uint64_t addr, const PtEntry& e) {
  auto it = pt_.find(addr);
  if (it != pt_.end() && it->second.declared && !e.declared) mmu_checker_unmap(this, mm_, addr);
  if (e.declared) mmu_checker_map(this, mm_, addr, e.pfn, e.tag == Tag::kWrite);
  pt_[addr] = e;
}

void Dmirror::erase_locked(uint64_t start, uint64_t end, Which which) {
  for (auto it = pt_.lower_bound(start & ~(kPage - 1)); it != pt_.end() && it->first < end;) {
    if (which == Which::kCpuMapped && !it->second.declared) {
      ++it;
      continue;
    }
    if (it->second.declared) mmu_checker_unmap(this, mm_, it->first);
    it = pt_.erase(it);
  }
}

void Dmirror::forget_pgmap(const DevPagemap* pgmap) {
  System* sys = mm_sys(mm_);
  DriverLockGuard g(mutex_);
  for (auto it = pt_.begin(); it != pt_.end();) {
    if (!it->second.declared && pfn_pgmap(sys, it->second.pfn) == pgmap) {
      it = pt_.erase(it);
    } else {
      ++it;
    }
  }
}

bool Dmirror::take_fail_alloc() {
  return flags_.fetch_and(~HMM_DMIRROR_FLAG_FAIL_ALLOC, std::memory_order_acq_rel) & HMM_DMIRROR_FLAG_FAIL_ALLOC;
}

Errno Dmirror::ioctl(DmirrorIoctl op, HmmDmirrorCmd* user) {
  HmmDmirrorCmd cmd = *user;
  // dmirror_fops_unlocked_ioctl's checks, in its order.
  if (cmd.addr & (kPage - 1)) return Errno::kInval;
  if (cmd.npages > (~0ull >> 12) || cmd.addr >= cmd.addr + (cmd.npages << 12)) return Errno::kInval;
  cmd.cpages = 0;
  cmd.faults = 0;
  Errno e = Errno::kOk;
  bool have_mm = false;
  {
    ReadGuard<RwSem> d(detach_lock_);
    if (!attached_) return Errno::kBadf;
    // The commands that walk the address space hold a user reference on it, dropped without
    // the detach lock (the last one tears the address space down).
    const bool needs_mm = op != DmirrorIoctl::kCheckExclusive && op != DmirrorIoctl::kRelease &&
                          op != DmirrorIoctl::kFlags;
    if (needs_mm && !(have_mm = mmget_not_zero(mm_))) return Errno::kInval;
    switch (op) {
      case DmirrorIoctl::kRead: e = do_read_cmd(&cmd, false); break;
      case DmirrorIoctl::kWrite: e = do_read_cmd(&cmd, true); break;
      case DmirrorIoctl::kMigrateToDev: e = migrate_to_device(&cmd); break;
      case DmirrorIoctl::kMigrateToSys: e = migrate_to_system(&cmd); break;
      case DmirrorIoctl::kSnapshot: e = snapshot(&cmd); break;
      case DmirrorIoctl::kExclusive: e = exclusive(&cmd); break;
      case DmirrorIoctl::kCheckExclusive: e = check_exclusive(&cmd); break;
      case DmirrorIoctl::kRelease: mdevice_->evict_all(); break;
      case DmirrorIoctl::kFlags: flags_.store(cmd.npages, std::memory_order_release); break;
      default: e = Errno::kInval; break;
    }
  }
  if (have_mm) mmput(mm_);
  if (e == Errno::kOk) *user = cmd;
  return e;
}

// dmirror_read / dmirror_write: copy what pt has, fault the first missing run in, again.
Errno Dmirror::do_read_cmd(HmmDmirrorCmd* cmd, bool write) {
  if (cmd->npages > kMaxPages) return Errno::kNoMem;
  if (!cmd->ptr) return Errno::kFault;
  const uint64_t start = cmd->addr, end = cmd->addr + cmd->npages * kPage;
  std::vector<uint8_t> bounce(cmd->npages * kPage);
  if (write) std::memcpy(bounce.data(), cmd->ptr, bounce.size());
  uint64_t done = 0;
  for (int round = 0;; round++) {
    Errno e;
    {
      DriverLockGuard g(mutex_);
      e = copy_locked(start + done * kPage, end, bounce.data() + done * kPage, write, &done);
    }
    if (e == Errno::kOk) break;
    if (e != Errno::kNoEnt) return e;
    if (round == kMaxRounds) return Errno::kBusy;
    if (Errno f = fault_range(start + done * kPage, end, write); f != Errno::kOk) return f;
    cmd->faults++;
  }
  cmd->cpages = done;
  if (!write) std::memcpy(cmd->ptr, bounce.data(), bounce.size());
  return Errno::kOk;
}

// The read back of MIGRATE_TO_DEV and EXCLUSIVE: the range from pt, without faulting.
Errno Dmirror::read_back(HmmDmirrorCmd* cmd) {
  std::vector<uint8_t> bounce(cmd->npages * kPage);
  uint64_t done = 0;
  {
    DriverLockGuard g(mutex_);
    if (Errno e = copy_locked(cmd->addr, cmd->addr + cmd->npages * kPage, bounce.data(), false, &done);
        e != Errno::kOk)
      return e;
  }
  if (cmd->ptr) std::memcpy(cmd->ptr, bounce.data(), bounce.size());
  cmd->cpages = done;
  return Errno::kOk;
}

Errno Dmirror::copy_locked(uint64_t start, uint64_t end, uint8_t* buf, bool write, uint64_t* done) {
  System* sys = mm_sys(mm_);
  for (uint64_t a = start; a < end; a += kPage, buf += kPage) {
    auto it = pt_.find(a);
    if (it == pt_.end() || (write && it->second.tag != Tag::kWrite)) return Errno::kNoEnt;
    const PtEntry& e = it->second;
    if (e.declared) {
      if (!device_access_pfn(this, mm_, a, e.pfn, buf, kPage, write)) return Errno::kFault;
    } else {
      copy_device_page(sys, e.pfn, buf, write);
    }
    ++*done;
  }
  return Errno::kOk;
}

Errno Dmirror::fault(uint64_t start, uint64_t end, bool write) {
  Errno e = Errno::kFault;
  {
    ReadGuard<RwSem> d(detach_lock_);
    if (!attached_ || !mmget_not_zero(mm_)) return Errno::kFault;
    e = fault_range(start, end, write);
  }
  mmput(mm_);
  return e;
}

// dmirror_fault: hmm_range_fault over the range, 32 pages at a time.
Errno Dmirror::fault_range(uint64_t start, uint64_t end, bool write) {
  for (uint64_t a = start; a < end;) {
    const uint64_t next = std::min(end, a + kFaultChunk * kPage);
    if (Errno e = range_fault(a, next, write); e != Errno::kOk) return e;
    a = next;
  }
  return Errno::kOk;
}

// dmirror_range_fault: the HMM driver loop (mirrormm/hmm.h), with HMM_RANGE_DEFAULT_TIMEOUT.
Errno Dmirror::range_fault(uint64_t start, uint64_t end, bool write) {
  System* sys = mm_sys(mm_);
  uint64_t pfns[kFaultChunk];
  HmmRange range = hmm_range(&notifier_, start, end, pfns, HMM_PFN_REQ_FAULT | (write ? HMM_PFN_REQ_WRITE : 0),
                             mdevice_);
  const auto deadline = Clock::now() + kRangeTimeout;
  for (;;) {
    if (Clock::now() > deadline) return Errno::kBusy;
    range.notifier_seq = mmu_interval_read_begin(&notifier_);
    mmap_read_lock(mm_);
    const Errno e = hmm_range_fault(&range);
    mmap_read_unlock(mm_);
    if (e == Errno::kBusy) {
      DriverLockGuard g(mutex_);
      log_.stats.retries++;
      continue;
    }
    if (e != Errno::kOk) return e;
    DriverLockGuard g(mutex_);
    if (mmu_interval_read_retry(&notifier_, range.notifier_seq)) {
      log_.stats.retries++;
      continue;
    }
    // dmirror_do_fault: program pt from the pfns.
    const uint64_t* p = pfns;
    for (uint64_t a = start; a < end; a += kPage, ++p) {
      PtEntry entry;
      entry.pfn = hmm_pfn_to_pfn(*p);
      entry.tag = (*p & HMM_PFN_WRITE) ? Tag::kWrite : Tag::kRead;
      // This device's own private pages are its memory; everything else is a CPU mapping.
      entry.declared = !is_device_private_pfn(sys, entry.pfn);
      store_locked(a, entry);
    }
    log_.stats.faults++;
    return Errno::kOk;
  }
}

// The VMA walk both migrations share: [start, end) in pieces of at most kMigrateChunk pages
// inside one VMA, each migrate_vma_setup with the selection and this device as owner, then
// step (which allocates, copies, calls migrate_vma_pages and updates pt); then
// migrate_vma_finalize. -EINVAL for a page without a VMA or without read access; step's
// error ends the walk after its piece is finalized.
Errno Dmirror::migrate_range(uint64_t start, uint64_t end, unsigned select,
                             const std::function<Errno(MigrateVma*)>& step) {
  std::vector<uint64_t> src(kMigrateChunk), dst(kMigrateChunk);
  Errno e = Errno::kOk;
  mmap_read_lock(mm_);
  for (uint64_t a = start; a < end && e == Errno::kOk;) {
    const std::optional<VmaInfo> vma = vma_lookup(mm_, a);
    if (!vma || !(vma->vm_flags & VM_READ)) {
      e = Errno::kInval;
      break;
    }
    const uint64_t next = std::min({end, vma->vm_end, a + kMigrateChunk * kPage});
    MigrateVma args;
    args.mm = mm_;
    args.src = src.data();
    args.dst = dst.data();
    args.start = a;
    args.end = next;
    args.pgmap_owner = mdevice_;
    args.flags = select;
    if ((e = migrate_vma_setup(&args)) != Errno::kOk) break;
    e = step(&args);
    migrate_vma_finalize(&args);
    a = next;
  }
  mmap_read_unlock(mm_);
  return e;
}

// dmirror_migrate_to_device.
Errno Dmirror::migrate_to_device(HmmDmirrorCmd* cmd) {
  if (cmd->npages > kMaxPages) return Errno::kNoMem;
  System* sys = mm_sys(mm_);
  const Errno e = migrate_range(cmd->addr, cmd->addr + cmd->npages * kPage, MIGRATE_VMA_SELECT_SYSTEM,
                                [&](MigrateVma* args) {
    uint64_t* src = args->src;
    uint64_t* dst = args->dst;
    // dmirror_migrate_alloc_and_copy: pages already on a device (any device) stay.
    for (uint64_t i = 0; i < args->npages; i++) {
      if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
      const uint64_t spfn = migrate_pfn_to_pfn(src[i]);
      if (spfn && (is_device_private_pfn(sys, spfn) || is_device_coherent_pfn(sys, spfn))) continue;
      if (take_fail_alloc()) continue;
      const uint64_t dpfn = mdevice_->alloc_page();
      if (!dpfn) continue;
      if (spfn) {
        copy_highpage(sys, dpfn, spfn);
      } else {
        std::memset(page_address(sys, dpfn), 0, kPage);
      }
      dst[i] = migrate_pfn(dpfn) | (src[i] & MIGRATE_PFN_WRITE);
    }
    migrate_vma_pages(args);
    // dmirror_migrate_finalize_and_map: the pages that moved are the device's now.
    DriverLockGuard g(mutex_);
    for (uint64_t i = 0; i < args->npages; i++) {
      if (!(src[i] & MIGRATE_PFN_MIGRATE) || !(dst[i] & MIGRATE_PFN_VALID)) continue;
      PtEntry entry;
      entry.pfn = migrate_pfn_to_pfn(dst[i]);
      entry.tag = (dst[i] & MIGRATE_PFN_WRITE) ? Tag::kWrite : Tag::kRead;
      store_locked(args->start + i * kPage, entry);
    }
    return Errno::kOk;
  });
  if (e != Errno::kOk) return e;
  // Return the data for verification: only pages in device memory are found.
  return read_back(cmd);
}

// dmirror_migrate_to_system.
Errno Dmirror::migrate_to_system(HmmDmirrorCmd* cmd) {
  System* sys = mm_sys(mm_);
  return migrate_range(cmd->addr, cmd->addr + cmd->npages * kPage, mdevice_->select_device(), [&](MigrateVma* args) {
    uint64_t* src = args->src;
    uint64_t* dst = args->dst;
    Errno e = Errno::kOk;
    // dmirror_devmem_fault_alloc_and_copy: a system page for each, the pt entry dropped.
    for (uint64_t i = 0; i < args->npages; i++) {
      if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
      const uint64_t np = take_fail_alloc() ? 0 : alloc_migrate_page(sys);
      if (!np) {
        e = Errno::kNoMem;  // VM_FAULT_OOM: the rest stays on the device
        break;
      }
      copy_highpage(sys, np, migrate_pfn_to_pfn(src[i]));
      dst[i] = migrate_pfn(np) | (src[i] & MIGRATE_PFN_WRITE);
      DriverLockGuard g(mutex_);
      erase_locked(args->start + i * kPage, args->start + (i + 1) * kPage);
    }
    migrate_vma_pages(args);
    for (uint64_t i = 0; i < args->npages; i++)
      if ((src[i] & MIGRATE_PFN_VALID) && (src[i] & MIGRATE_PFN_MIGRATE)) cmd->cpages++;
    return e;
  });
}

namespace {

// The temporary interval notifier of a snapshot (struct dmirror_interval): it only moves the
// sequence, under the mirror's mutex.
struct SnapshotNotifier : MmuIntervalNotifier {
  DriverLock* mutex = nullptr;
  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
    DriverLock* m = static_cast<SnapshotNotifier*>(sub)->mutex;
    if (mmu_notifier_range_blockable(range)) {
      m->lock();
    } else if (!m->try_lock()) {
      return false;
    }
    mmu_interval_set_seq(sub, cur_seq);
    m->unlock();
    return true;
  }
};

}  // namespace

// dmirror_snapshot.
Errno Dmirror::snapshot(HmmDmirrorCmd* cmd) {
  static const MmuIntervalNotifierOps ops = [] {
    MmuIntervalNotifierOps o;
    o.invalidate = &SnapshotNotifier::invalidate;
    return o;
  }();
  if (!cmd->ptr) return Errno::kFault;
  System* sys = mm_sys(mm_);
  const uint64_t start = cmd->addr, end = cmd->addr + cmd->npages * kPage;
  uint8_t* out = cmd->ptr;
  for (uint64_t a = start; a < end;) {
    const uint64_t next = std::min(end, a + kFaultChunk * kPage);
    const uint64_t n = (next - a) / kPage;
    SnapshotNotifier notifier;
    notifier.mutex = &mutex_;
    if (Errno e = mmu_interval_notifier_insert(&notifier, mm_, a, next - a, &ops); e != Errno::kOk) return e;
    uint64_t pfns[kFaultChunk];
    HmmRange range = hmm_range(&notifier, a, next, pfns, 0, mdevice_);
    Errno e = Errno::kOk;
    const auto deadline = Clock::now() + kRangeTimeout;
    for (;;) {
      if (Clock::now() > deadline) {
        e = Errno::kBusy;
        break;
      }
      std::fill(pfns, pfns + n, 0);
      range.notifier_seq = mmu_interval_read_begin(&notifier);
      mmap_read_lock(mm_);
      e = hmm_range_fault(&range);
      mmap_read_unlock(mm_);
      if (e == Errno::kBusy) continue;
      if (e != Errno::kOk) break;
      DriverLockGuard g(mutex_);
      if (mmu_interval_read_retry(&notifier, range.notifier_seq)) continue;
      // dmirror_mkentry, one byte per page.
      for (uint64_t i = 0; i < n; i++) {
        const uint64_t entry = pfns[i];
        uint8_t perm;
        if (entry & HMM_PFN_ERROR) {
          perm = HMM_DMIRROR_PROT_ERROR;
        } else if (!(entry & HMM_PFN_VALID)) {
          perm = HMM_DMIRROR_PROT_NONE;
        } else {
          const uint64_t pfn = hmm_pfn_to_pfn(entry);
          if (is_device_private_pfn(sys, pfn)) {
            perm = pfn_pgmap(sys, pfn)->owner == mdevice_ ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL
                                                          : HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE;
          } else if (is_device_coherent_pfn(sys, pfn)) {
            perm = pfn_pgmap(sys, pfn)->owner == mdevice_ ? HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL
                                                          : HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE;
          } else if (sys->mem().is_zero_pfn(static_cast<pfn_t>(pfn))) {
            perm = HMM_DMIRROR_PROT_ZERO;
          } else {
            perm = HMM_DMIRROR_PROT_NONE;
          }
          perm |= (entry & HMM_PFN_WRITE) ? HMM_DMIRROR_PROT_WRITE : HMM_DMIRROR_PROT_READ;
          const unsigned order = hmm_pfn_to_map_order(entry);
          if (order == 9) perm |= HMM_DMIRROR_PROT_PMD;
          else if (order == 18) perm |= HMM_DMIRROR_PROT_PUD;
        }
        out[i] = perm;
      }
      break;
    }
    mmu_interval_notifier_remove(&notifier);
    if (e != Errno::kOk) return e;
    out += n;
    cmd->cpages += n;
    a = next;
  }
  return Errno::kOk;
}

// dmirror_exclusive: each page made the device's exclusively (an atomic mapping in pt), then
// the range read back from pt.
Errno Dmirror::exclusive(HmmDmirrorCmd* cmd) {
  if (cmd->npages > kMaxPages) return Errno::kNoMem;
  System* sys = mm_sys(mm_);
  const uint64_t start = cmd->addr, end = cmd->addr + cmd->npages * kPage;
  Errno e = Errno::kOk;
  mmap_read_lock(mm_);
  for (uint64_t a = start; a < end; a += kPage) {
    // No owner: the device's invalidate() drops its own mapping of the page first, as with
    // any CPU change.
    Result<uint64_t> page = make_device_exclusive(mm_, a, nullptr);
    if (!page.ok()) {
      e = page.error();
      break;
    }
    {
      // dmirror_atomic_map. The CPU no longer maps the page: the device reaches it directly
      // until the CPU's next access restores the PTE (an invalidation that drops this entry).
      DriverLockGuard g(mutex_);
      PtEntry entry;
      entry.pfn = page.value();
      entry.tag = Tag::kAtomic;
      store_locked(a, entry);
    }
    unlock_page_pfn(sys, page.value());
    put_page_pfn(sys, page.value());
  }
  mmap_read_unlock(mm_);
  if (e != Errno::kOk) return e;
  return read_back(cmd);
}

// dmirror_check_exclusive.
Errno Dmirror::check_exclusive(HmmDmirrorCmd* cmd) {
  const uint64_t start = cmd->addr, end = cmd->addr + cmd->npages * kPage;
  DriverLockGuard g(mutex_);
  for (auto it = pt_.lower_bound(start); it != pt_.end() && it->first < end; ++it)
    if (it->second.tag == Tag::kAtomic) return Errno::kPerm;
  return Errno::kOk;
}

// ---- what the SecondaryMmu adapter and tests see ----

std::string Dmirror::show(uint64_t addr, uint64_t len) {
  std::string s;
  DriverLockGuard g(mutex_);
  for (uint64_t a = addr & ~(kPage - 1); a < addr + len; a += kPage) {
    auto it = pt_.find(a);
    s.push_back(it == pt_.end() ? '-' : it->second.tag == Tag::kRead ? 'r' : 'w');
  }
  return s;
}

uint64_t Dmirror::pages_mapped() {
  DriverLockGuard g(mutex_);
  return pt_.size();
}

bool Dmirror::dma(uint64_t addr, uint64_t len, uint8_t* buf, bool write) {
  System* sys = mm_sys(mm_);
  DriverLockGuard g(mutex_);
  for (const DmaPiece& piece : secondary_mmu_dma_pieces(addr, len)) {
    auto it = pt_.find(piece.page);
    if (it == pt_.end() || (write && it->second.tag == Tag::kRead)) return false;
    const PtEntry& e = it->second;
    uint8_t* b = buf + piece.offset;
    if (e.declared) {
      if (!device_access_pfn(this, mm_, piece.addr, e.pfn, b, piece.len, write)) return false;
      continue;
    }
    uint8_t* frame = page_address(sys, e.pfn) + (piece.addr - piece.page);
    MM_TSAN_IGNORE_BEGIN();
    if (write) {
      std::memcpy(frame, b, piece.len);
    } else {
      std::memcpy(b, frame, piece.len);
    }
    MM_TSAN_IGNORE_END();
  }
  return true;
}

std::vector<SecondaryMmu::Event> Dmirror::take_events() {
  DriverLockGuard g(mutex_);
  return log_.take();
}

SecondaryMmu::Stats Dmirror::stats() {
  DriverLockGuard g(mutex_);
  return log_.stats;
}

namespace {

// The "dmirror" kind of the SecondaryMmu registry: a private device (device 0 of a driver
// of its own) mirroring the whole address space.
class DmirrorMmu : public SecondaryMmu {
 public:
  DmirrorMmu(std::unique_ptr<DmirrorDriver> driver, std::unique_ptr<Dmirror> m)
      : driver_(std::move(driver)), m_(std::move(m)) {}
  ~DmirrorMmu() override {
    m_.reset();  // before the driver
    driver_.reset();
  }
  std::string kind() const override { return "dmirror"; }
  Result<uint64_t> fault(uint64_t addr, uint64_t len, bool write) override {
    if (len == 0) return uint64_t{0};
    const uint64_t first = addr & ~(kPage - 1);
    const uint64_t last = (addr + len - 1) & ~(kPage - 1);
    if (addr + len < addr || last >= kUserSpaceEnd) return Errno::kFault;
    if (Errno e = m_->fault(first, last + kPage, write); e != Errno::kOk) return e;
    return (last - first) / kPage + 1;
  }
  bool read(uint64_t addr, uint64_t len, std::vector<uint8_t>* out) override {
    out->assign(len, 0);
    return m_->dma(addr, len, out->data(), false);
  }
  bool write(uint64_t addr, uint64_t len, const uint8_t* data) override {
    return m_->dma(addr, len, const_cast<uint8_t*>(data), true);
  }
  std::string show(uint64_t addr, uint64_t len) override { return m_->show(addr, len); }
  uint64_t pages_mapped() override { return m_->pages_mapped(); }
  std::vector<Event> take_events() override { return m_->take_events(); }
  Stats stats() override { return m_->stats(); }
  void set_name(const std::string& name) override { m_->set_name(name); }
  void detach() override { m_->close(); }

 private:
  std::unique_ptr<DmirrorDriver> driver_;
  std::unique_ptr<Dmirror> m_;
};

}  // namespace

SecondaryMmuKind dmirror_secondary_mmu_kind() {
  SecondaryMmuKind k;
  k.name = "dmirror";
  k.description = "the dmirror test driver (test_hmm): hmm_range_fault into its own page table, device-private memory";
  k.factory = [](Process* p, uint64_t, uint64_t, const std::string& variant) -> Result<std::unique_ptr<SecondaryMmu>> {
    if (!variant.empty()) return Errno::kInval;
    Mm* mm = get_task_mm(p);
    if (!mm) return Errno::kSrch;
    System* sys = mm_sys(mm);
    mmput_ref(mm);
    auto driver = std::make_unique<DmirrorDriver>(sys);
    Result<std::unique_ptr<Dmirror>> m = driver->open(0, p);
    if (!m.ok()) return m.error();
    return std::unique_ptr<SecondaryMmu>(new DmirrorMmu(std::move(driver), std::move(m.value())));
  };
  return k;
}

}  // namespace mirrormm
