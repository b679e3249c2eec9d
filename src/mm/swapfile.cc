// Swap devices: swapon, swapoff (try_to_unuse), the slot allocator and the per-slot map
// counts (mm/swapfile.c). The swap cache is in swap_state.cc; the contracts are in
// swapfile.h.
#include "mm/swapfile.h"
#include "mm/vmscan.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/mm.h"
#include "mm/pgtable_walk.h"
#include "mm/shmem.h"
#include "mm/system_internal.h"

namespace mirrormm {

namespace {

// Anonymous MAP_NORESERVE memory, zero-filled on first touch; nullptr on failure.
void* reserve(uint64_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

Errno errno_from_host(int e) { return static_cast<Errno>(e); }

}  // namespace

SwapInfo::SwapInfo(unsigned type) : type_(type) {}

SwapInfo::~SwapInfo() {
  if (state() != State::kOff) {
    set_state(State::kDying);
    deactivate();
  }
}

Errno SwapInfo::activate(uint64_t nr_slots, const std::string& path) {
  MM_BUG_ON(state() != State::kOff || users_.load() != 0);
  void* map = reserve(nr_slots * sizeof(swap_map_t));
  void* cache = reserve(nr_slots * sizeof(Page*));
  if (!map || !cache) {
    if (map) ::munmap(map, nr_slots * sizeof(swap_map_t));
    if (cache) ::munmap(cache, nr_slots * sizeof(Page*));
    return Errno::kNoMem;
  }
  if (path.empty()) {
    mem_ = static_cast<uint8_t*>(reserve(nr_slots * kPageSize));
    if (!mem_) {
      ::munmap(map, nr_slots * sizeof(swap_map_t));
      ::munmap(cache, nr_slots * sizeof(Page*));
      return Errno::kNoMem;
    }
  } else {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(nr_slots * kPageSize)) != 0) {
      const Errno e = errno_from_host(errno);
      if (fd >= 0) ::close(fd);
      ::munmap(map, nr_slots * sizeof(swap_map_t));
      ::munmap(cache, nr_slots * sizeof(Page*));
      return e;
    }
    fd_ = fd;
  }
  path_ = path;
  {
    SpinGuard g(lock_);
    swap_map_ = static_cast<swap_map_t*>(map);
    cluster_next_ = 1;
  }
  {
    SpinGuard g(cache_lock_);
    cache_ = static_cast<Page**>(cache);
  }
  inuse_pages_.store(0, std::memory_order_relaxed);
  highest_bit_.store(0, std::memory_order_relaxed);
  nr_cached_.store(0, std::memory_order_relaxed);
  max_.store(nr_slots, std::memory_order_release);
  set_state(State::kActive);
  return Errno::kOk;
}

void SwapInfo::deactivate() {
  set_state(State::kOff);
  // Wait for the lookups that pinned the device before it went off (put_swap_device).
  while (users_.load(std::memory_order_seq_cst) != 0) explore_hook::wait_yield();
  const uint64_t n = max_.exchange(0, std::memory_order_acq_rel);
  {
    SpinGuard g(lock_);
    if (swap_map_) ::munmap(swap_map_, n * sizeof(swap_map_t));
    swap_map_ = nullptr;
  }
  {
    SpinGuard g(cache_lock_);
    if (cache_) ::munmap(static_cast<void*>(cache_), n * sizeof(Page*));
    cache_ = nullptr;
  }
  if (mem_) ::munmap(mem_, n * kPageSize);
  mem_ = nullptr;
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  path_.clear();
}

bool SwapInfo::get(uint64_t offset) {
  users_.fetch_add(1, std::memory_order_seq_cst);
  if (state() == State::kOff || offset == 0 || offset >= max()) {
    users_.fetch_sub(1, std::memory_order_seq_cst);
    return false;
  }
  return true;
}

uint64_t SwapInfo::alloc_slot() {
  if (state() != State::kActive) return 0;
  SpinGuard g(lock_);
  const uint64_t n = max();
  if (!swap_map_ || inuse_pages_.load(std::memory_order_relaxed) >= n - 1) return 0;
  // A next-fit scan from where the last allocation stopped (the cluster allocator's
  // sequential habit, without clusters).
  uint64_t off = cluster_next_;
  for (uint64_t i = 0; i < n; i++, off++) {
    if (off >= n) off = 1;
    if (swap_map_[off] == 0) {
      swap_map_[off] = SWAP_HAS_CACHE;
      inuse_pages_.fetch_add(1, std::memory_order_relaxed);
      if (off > highest_bit_.load(std::memory_order_relaxed)) highest_bit_.store(off, std::memory_order_relaxed);
      cluster_next_ = off + 1;
      return off;
    }
  }
  return 0;
}

Errno SwapInfo::duplicate(uint64_t offset) {
  SpinGuard g(lock_);
  swap_map_t& m = swap_map_[offset];
  if (m == 0) return Errno::kNoEnt;
  if (swap_count(m) == SWAP_MAP_MAX) return Errno::kNoMem;
  m++;
  return Errno::kOk;
}

swap_map_t SwapInfo::free_one(uint64_t offset) {
  SpinGuard g(lock_);
  swap_map_t& m = swap_map_[offset];
  MM_BUG_ON(swap_count(m) == 0);
  m--;
  if (m == 0) inuse_pages_.fetch_sub(1, std::memory_order_relaxed);
  return m;
}

Errno SwapInfo::cache_prepare(uint64_t offset) {
  SpinGuard g(lock_);
  swap_map_t& m = swap_map_[offset];
  if (m == 0) return Errno::kNoEnt;
  if (m & SWAP_HAS_CACHE) return Errno::kExist;
  m |= SWAP_HAS_CACHE;
  return Errno::kOk;
}

void SwapInfo::cache_clear(uint64_t offset) {
  SpinGuard g(lock_);
  swap_map_t& m = swap_map_[offset];
  MM_BUG_ON(!(m & SWAP_HAS_CACHE));
  m &= ~SWAP_HAS_CACHE;
  if (m == 0) inuse_pages_.fetch_sub(1, std::memory_order_relaxed);
}

swap_map_t SwapInfo::map(uint64_t offset) {
  SpinGuard g(lock_);
  return swap_map_ ? swap_map_[offset] : 0;
}

Errno SwapInfo::write_slot(uint64_t offset, const uint8_t* src) {
  if (mem_) {
    std::memcpy(mem_ + offset * kPageSize, src, kPageSize);
    return Errno::kOk;
  }
  const ssize_t n = ::pwrite(fd_, src, kPageSize, static_cast<off_t>(offset * kPageSize));
  if (n != static_cast<ssize_t>(kPageSize)) return n < 0 ? errno_from_host(errno) : Errno::kNoMem;
  return Errno::kOk;
}

Errno SwapInfo::read_slot(uint64_t offset, uint8_t* dst) {
  if (mem_) {
    std::memcpy(dst, mem_ + offset * kPageSize, kPageSize);
    return Errno::kOk;
  }
  const ssize_t n = ::pread(fd_, dst, kPageSize, static_cast<off_t>(offset * kPageSize));
  if (n != static_cast<ssize_t>(kPageSize)) return n < 0 ? errno_from_host(errno) : Errno::kFault;
  return Errno::kOk;
}

SwapTable::SwapTable() {
  for (unsigned t = 0; t < kMaxSwapFiles; t++) infos_[t] = std::make_unique<SwapInfo>(t);
}

SwapTable::~SwapTable() = default;

SwapInfo* get_swap_device(System* sys, pteval_t entry) {
  SwapInfo* si = swap_table_of(sys).info(swp_type(entry));
  if (!si || !si->get(swp_offset(entry))) return nullptr;
  return si;
}

namespace {
// The device of an entry that the caller keeps from going away: a pin (get_swap_device), a
// swap PTE under its lock, a HAS_CACHE use, or a locked swap-cache page. A pinned device may
// already be kOff (swapoff waits for its pins before it releases the storage), so what is
// checked is that the storage is still there.
SwapInfo* si_of(System* sys, pteval_t entry) {
  SwapInfo* si = swap_table_of(sys).info(swp_type(entry));
  MM_BUG_ON(!si || swp_offset(entry) >= si->max());
  return si;
}
}  // namespace

Errno swap_duplicate(System* sys, pteval_t entry) { return si_of(sys, entry)->duplicate(swp_offset(entry)); }

bool swap_free(System* sys, pteval_t entry) {
  return si_of(sys, entry)->free_one(swp_offset(entry)) == SWAP_HAS_CACHE;
}

Errno swapcache_prepare(System* sys, pteval_t entry) { return si_of(sys, entry)->cache_prepare(swp_offset(entry)); }

void swapcache_clear(System* sys, pteval_t entry) { si_of(sys, entry)->cache_clear(swp_offset(entry)); }

swap_map_t __swap_count(System* sys, pteval_t entry) {
  return swap_count(si_of(sys, entry)->map(swp_offset(entry)));
}

bool try_to_reclaim_swap(System* sys, pteval_t entry) {
  Page* page = swap_cache_get_folio(sys, entry);
  if (!page) return false;
  bool freed = false;
  if (trylock_page(page)) {
    // Still the cache page of this entry? (It may have left the cache before we locked it.)
    if (page->test(PG_swapcache) && page->swap == pte_to_swp_entry(entry)) freed = folio_free_swap(sys, page);
    unlock_page(page);
  }
  sys->mem().put_page(page);
  return freed;
}

void free_swap_and_cache(System* sys, pteval_t entry) {
  if (swap_free(sys, entry)) try_to_reclaim_swap(sys, entry);
}

bool vm_swap_full(System* sys) {
  uint64_t total = 0, used = 0;
  SwapTable& t = swap_table_of(sys);
  for (unsigned i = 0; i < kMaxSwapFiles; i++) {
    SwapInfo* si = t.info(i);
    if (si->state() == SwapInfo::State::kOff) continue;
    const uint64_t m = si->max();
    total += m ? m - 1 : 0;
    used += si->inuse();
  }
  return used * 2 > total;
}

// ---- swapon / swapoff ----

Status System::swapon(uint64_t bytes, const std::string& path) {
  // Slot 0 is the header's: a device needs at least one more. Like Linux's swapon, a device
  // larger than a swap entry's offset can address is cut to what it can.
  constexpr uint64_t kMaxSlots = 1ull << (kSwpTypeShift - kPageShift);
  const uint64_t nr_slots = std::min(bytes >> kPageShift, kMaxSlots);
  if (nr_slots < 2) return Errno::kInval;
  SwapTable& t = *swap_;
  MutexGuard g(t.swapon_mutex);
  for (unsigned type = 0; type < kMaxSwapFiles; type++) {
    SwapInfo* si = t.info(type);
    if (si->state() != SwapInfo::State::kOff) continue;
    const Errno e = si->activate(nr_slots, path);
    if (e != Errno::kOk) return e;
    return static_cast<int>(type);
  }
  return Errno::kBusy;
}

namespace {

// unuse_mm: faults in every swap entry of device `type` that mm's anonymous VMAs hold, as a
// read fault would (Linux's unuse_pte maps the swap-cache page the same way). Returns
// false when a fault ran out of memory.
bool unuse_mm(Mm* mm, unsigned type) {
  MmapReadGuard g(mm);
  if (mm->state() != Mm::State::kAlive) return true;
  for (auto& [start, vma] : mm->vmas_) {
    if (!vma->anon_vma.load(std::memory_order_acquire)) continue;  // no swap entries without one
    std::vector<uint64_t> addrs;
    walk_pte_tables(mm, vma->vm_start, vma->vm_end, [&](pte_t* ptep, uint64_t a, uint64_t stop, Page*) {
      for (; a < stop; a += kPageSize, ptep++) {
        const pteval_t v = ptep_get(ptep);
        if (is_swap_pte(v) && !non_swap_entry(v) && swp_type(v) == type) addrs.push_back(a);
      }
    });
    for (uint64_t a : addrs)
      if (handle_mm_fault(vma, a, 0) & VM_FAULT_OOM) return false;
  }
  return true;
}

}  // namespace

Status System::swapoff(unsigned type) {
  ScopedOomOrigin oom_origin;  // its allocations fail rather than kill a process
  SwapTable& t = *swap_;
  MutexGuard g(t.swapon_mutex);
  SwapInfo* si = t.info(type);
  if (!si || si->state() != SwapInfo::State::kActive) return Errno::kInval;
  si->set_state(SwapInfo::State::kDying);  // del_from_avail_list: no new slots from here on
  // try_to_unuse: every process's entries of this device come back in; a fork or a racing
  // swap-in may add or keep uses meanwhile, so repeat until the device is empty. Uses held
  // by an address space that no process owns any more (an exit under way, a reference held
  // elsewhere) go when it is torn down; a device that stays busy that long is left on.
  constexpr auto kMaxStall = std::chrono::seconds(5);
  auto progress = std::chrono::steady_clock::now();
  while (si->inuse() != 0) {
    const uint64_t before = si->inuse();
    std::vector<uint64_t> pids;
    {
      MutexGuard pg(procs_lock_);
      for (auto& p : procs_)
        if (p->alive()) pids.push_back(p->pid());
    }
    for (uint64_t pid : pids) {
      Mm* mm = get_task_mm(process(pid));
      if (!mm) continue;
      const bool ok = unuse_mm(mm, type);
      mmput(mm);
      if (!ok) {
        si->set_state(SwapInfo::State::kActive);
        return Errno::kNoMem;
      }
    }
    // shmem_unuse: the entries that shmem inodes (named files and shared anonymous
    // mappings alike, from the swaplist) hold come back into their page caches.
    if (!shmem_unuse(this, type)) {
      si->set_state(SwapInfo::State::kActive);
      return Errno::kNoMem;
    }
    // Cache pages whose slot no PTE or inode references any more leave the cache (they stay
    // mapped as ordinary anonymous pages, or are freed when nothing else holds them).
    const uint64_t n = si->highest_bit() + 1;
    for (uint64_t off = 1; off < n; off++) {
      const swap_map_t m = si->map(off);
      if (!(m & SWAP_HAS_CACHE) || swap_count(m)) continue;
      Page* page = swap_cache_get_folio(this, swp_entry(type, off));
      if (!page) continue;
      lock_page(page);
      if (page->test(PG_swapcache) && page->swap == swp_entry(type, off)) folio_free_swap(this, page);
      unlock_page(page);
      mem_->put_page(page);
    }
    if (si->inuse() == 0) break;
    if (si->inuse() < before) progress = std::chrono::steady_clock::now();
    if (std::chrono::steady_clock::now() - progress > kMaxStall) {
      si->set_state(SwapInfo::State::kActive);
      return Errno::kBusy;
    }
    explore_hook::wait_yield();  // a swap-in backing out, an exit under way
  }
  si->deactivate();
  return kSuccess;
}

SwapStats System::swap_stats() {
  SwapStats s;
  for (unsigned i = 0; i < kMaxSwapFiles; i++) {
    SwapInfo* si = swap_->info(i);
    if (si->state() == SwapInfo::State::kOff) continue;
    s.devices++;
    const uint64_t m = si->max();
    s.total += m ? m - 1 : 0;
    s.used += si->inuse();
    s.cached += si->nr_cached();
  }
  return s;
}

void System::swapoff_all() {
  for (unsigned i = 0; i < kMaxSwapFiles; i++)
    if (swap_->info(i)->state() == SwapInfo::State::kActive) (void)swapoff(i);
}

SwapTable& swap_table_of(System* sys) { return sys->swap_table(); }

}  // namespace mirrormm
