#include "mm/physmem.h"

#include "mirrormm/base/driver_lock.h"
#include "mm/lru.h"
#include "mm/notifier_hooks.h"
#include "mm/vmstat.h"

#include <sys/mman.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <new>
#include <thread>

namespace mirrormm {

namespace {
void* reserve(uint64_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}
}  // namespace

PhysMem::PhysMem(uint64_t bytes)
    : events_(std::make_unique<VmEvents>()),
      lruvec_(std::make_unique<Lruvec>(this)),
      lru_add_batches_(std::make_unique<LruAddBatches>()) {
  nr_frames_ = bytes >> kPageShift;
  if (nr_frames_ < 16) nr_frames_ = 16;
  if (nr_frames_ > (1ull << 31)) nr_frames_ = 1ull << 31;
  base_ = static_cast<uint8_t*>(reserve(nr_frames_ << kPageShift));
  // Descriptors are constructed lazily as frames come into use: a fresh anonymous mapping is
  // zero-filled, which is exactly a default-constructed Page (all fields 0/false).
  pages_ = static_cast<Page*>(reserve(nr_frames_ * sizeof(Page)));
  Page* zero = new (&pages_[kZeroPfn]) Page();
  zero->flags.store(PG_reserved, std::memory_order_relaxed);
  zero->refcount.store(1, std::memory_order_relaxed);
  nr_free_.store(nr_frames_ - 2, std::memory_order_relaxed);
  node_start_[0].store(0, std::memory_order_relaxed);
  node_start_[1].store(static_cast<pfn_t>(nr_frames_), std::memory_order_relaxed);
  node_free_[0].store(nr_frames_ - 2, std::memory_order_relaxed);
  {
    SpinGuard g(lock_);
    node_lists_[0].next_fresh = 2;
  }
  // __setup_per_zone_wmarks: min_free_kbytes = sqrt(16 * KiB), clamped to [128 KiB, 256 MiB];
  // low and high are min plus one and two steps of max(min / 4, 0.1% of memory).
  const uint64_t kib = nr_frames_ * (kPageSize / 1024);
  const uint64_t min_free_kbytes = std::clamp<uint64_t>(static_cast<uint64_t>(std::sqrt(16.0 * static_cast<double>(kib))),
                                                        128, 262144);
  wmark_min_ = std::min<uint64_t>(min_free_kbytes / (kPageSize / 1024), nr_frames_ / 4);
  const uint64_t step = std::max<uint64_t>(wmark_min_ / 4, nr_frames_ * 10 / 10000);
  wmark_low_ = wmark_min_ + step;
  wmark_high_ = wmark_low_ + step;
}

PhysMem::~PhysMem() {
  ::munmap(base_, nr_frames_ << kPageShift);
  ::munmap(pages_, nr_frames_ * sizeof(Page));
}

namespace {
// The page lock's try, for the interleaving explorer's acquire (base/explore_hook.h).
bool try_page_lock_bit(void* p) {
  return !(static_cast<Page*>(p)->flags.fetch_or(PG_locked, std::memory_order_acquire) & PG_locked);
}
}  // namespace

bool trylock_page(Page* page) {
  MM_EXPLORE_TRYLOCK(page, static_cast<uint8_t>(lock_class::kPageLock));
  if (page->flags.fetch_or(PG_locked, std::memory_order_acquire) & PG_locked) return false;
  lockdep::check_acquire(lock_class::kPageLock, page, true);  // a trylock cannot deadlock
  return true;
}

void lock_page(Page* page) {
  lockdep::check_acquire(lock_class::kPageLock, page, false);
  if (explore_hook::exploring()) [[unlikely]]
    return explore_hook::acquire(page, static_cast<uint8_t>(lock_class::kPageLock), &try_page_lock_bit, page);
  while (page->flags.fetch_or(PG_locked, std::memory_order_acquire) & PG_locked) {
    while (page->flags.load(std::memory_order_relaxed) & PG_locked) std::this_thread::yield();
  }
}

void unlock_page(Page* page) {
  lockdep::check_release(lock_class::kPageLock, page);
  MM_BUG_ON(!(page->flags.fetch_and(~static_cast<uint32_t>(PG_locked), std::memory_order_release) & PG_locked));
  if (explore_hook::exploring()) [[unlikely]]
    explore_hook::released(page, static_cast<uint8_t>(lock_class::kPageLock));
}

int PhysMem::take_global(int nid, pfn_t* out, int n) {
  SpinGuard g(lock_);
  NodeFree& node = node_lists_[nid];
  const pfn_t end = node_start_[nid + 1].load(std::memory_order_relaxed);
  int got = 0;
  while (got < n) {
    pfn_t pfn;
    if (node.free_head != 0) {
      pfn = node.free_head;
      node.free_head = pages_[pfn].next_free;
    } else if (node.next_fresh < end) {
      pfn = node.next_fresh++;
      new (&pages_[pfn]) Page();
      pages_[pfn].flags.store(PG_free, std::memory_order_relaxed);
    } else {
      break;
    }
    out[got++] = pfn;
  }
  nr_free_.store(nr_free_.load(std::memory_order_relaxed) - got, std::memory_order_relaxed);
  node_free_[nid].store(node_free_[nid].load(std::memory_order_relaxed) - got, std::memory_order_relaxed);
  return got;
}

void PhysMem::give_global_locked(pfn_t pfn) {
  const int nid = pfn_to_nid(pfn);
  pages_[pfn].next_free = node_lists_[nid].free_head;
  node_lists_[nid].free_head = pfn;
  node_free_[nid].store(node_free_[nid].load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void PhysMem::give_global(const pfn_t* pfns, int n) {
  SpinGuard g(lock_);
  for (int i = 0; i < n; i++) give_global_locked(pfns[i]);
  nr_free_.store(nr_free_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
}

int PhysMem::pfn_to_nid_slow(pfn_t pfn, int n) const {
  int lo = 0, hi = n - 1;  // the last node whose start is at or below pfn
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (node_start_[mid].load(std::memory_order_relaxed) <= pfn) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

std::vector<uint64_t> PhysMem::even_node_split(int n) const {
  std::vector<uint64_t> frames(static_cast<size_t>(n), nr_frames_ / static_cast<uint64_t>(n));
  frames.back() += nr_frames_ % static_cast<uint64_t>(n);
  return frames;
}

Errno PhysMem::set_nodes(const std::vector<uint64_t>& frames, int nr_cpus) {
  const int n = static_cast<int>(frames.size());
  if (n < 1 || n > kMaxNodes) return Errno::kInval;
  uint64_t sum = 0;
  for (uint64_t f : frames) {
    if (f == 0) return Errno::kInval;
    sum += f;
  }
  if (sum != nr_frames_) return Errno::kInval;
  if (nr_cpus < 1) nr_cpus = 1;
  // Every CPU's cached frames go back to the lists first (under the old split).
  for (Pcp& c : pcp_) {
    SpinGuard g(c.lock);
    const int count = c.count.load(std::memory_order_relaxed);
    give_global(c.pfns, count);
    c.count.store(0, std::memory_order_relaxed);
  }
  SpinGuard g(lock_);
  // Which frames were never used under the old split: each old node's tail from next_fresh.
  const int old_n = nr_nodes();
  std::vector<pfn_t> old_start(static_cast<size_t>(old_n) + 1), old_fresh(static_cast<size_t>(old_n));
  for (int i = 0; i <= old_n; i++) old_start[i] = node_start_[i].load(std::memory_order_relaxed);
  for (int i = 0; i < old_n; i++) old_fresh[i] = node_lists_[i].next_fresh;
  auto fresh = [&](pfn_t pfn) {
    const int i = static_cast<int>(std::upper_bound(old_start.begin(), old_start.end(), pfn) - old_start.begin()) - 1;
    return pfn >= old_fresh[i];
  };
  std::vector<pfn_t> freed;  // the old lists' frames
  for (int i = 0; i < old_n; i++)
    for (pfn_t pfn = node_lists_[i].free_head; pfn; pfn = pages_[pfn].next_free) freed.push_back(pfn);
  pfn_t start = 0;
  for (int i = 0; i < n; i++) {
    node_start_[i].store(start, std::memory_order_relaxed);
    start += static_cast<pfn_t>(frames[i]);
  }
  node_start_[n].store(start, std::memory_order_relaxed);
  nr_nodes_.store(n, std::memory_order_relaxed);
  for (int i = 0; i < n; i++) {
    node_lists_[i] = NodeFree{};
    node_free_[i].store(0, std::memory_order_relaxed);
    const pfn_t s = std::max<pfn_t>(node_start_[i].load(std::memory_order_relaxed), 2);
    pfn_t f = node_start_[i + 1].load(std::memory_order_relaxed);
    while (f > s && fresh(f - 1)) f--;
    node_lists_[i].next_fresh = f;
    node_free_[i].store(node_start_[i + 1].load(std::memory_order_relaxed) - f, std::memory_order_relaxed);
    // Frames below the fresh tail that were never used become ordinary free frames.
    for (pfn_t pfn = s; pfn < f; pfn++) {
      if (!fresh(pfn)) continue;
      new (&pages_[pfn]) Page();
      pages_[pfn].flags.store(PG_free, std::memory_order_relaxed);
      give_global_locked(pfn);
    }
  }
  for (pfn_t pfn : freed) give_global_locked(pfn);
  for (int c = 0; c < kPcpSlots; c++)
    pcp_[c].node.store(c < nr_cpus ? c * n / nr_cpus : 0, std::memory_order_relaxed);
  return Errno::kOk;
}

void PhysMem::init_page(Page* page, Zero zero) {
  MM_BUG_ON(!page->test(PG_free));
  page->flags.store(0, std::memory_order_relaxed);
  page->mapcount.store(0, std::memory_order_relaxed);
  page->mapping = nullptr;
  page->index = 0;
  page->next_free = 0;
  page->lru_prev = page->lru_next = 0;
  MM_DEBUG_ON(page->pgmap);  // a device frame never reaches the free lists (memunmap_pages clears it)
  MM_DEBUG_ON(page->lru_state.load(std::memory_order_relaxed) != kLruNone);
  page->refcount.store(1, std::memory_order_release);
  if (zero == Zero::kYes) std::memset(page_address(page), 0, kPageSize);
}

// Inlined into alloc_page_node, whose first call is every allocation's fast path.
[[gnu::always_inline]] inline Page* PhysMem::rmqueue(int nid, NodeFallback fallback, Zero zero) {
  pfn_t pfn = 0;
  if (tls_this_cpu >= 0) {
    // The fast path: a frame of this CPU's node (numa_node_id) from its own list.
    Pcp& c = pcp_[this_cpu_slot(kPcpSlots)];
    const int cpu_nid = c.node.load(std::memory_order_relaxed);
    if (nid == kNumaNoNode) nid = cpu_nid;
    if (cpu_nid == nid) {
      SpinGuard g(c.lock);
      int n = c.count.load(std::memory_order_relaxed);
      if (n == 0) n = take_global(nid, c.pfns, kPcpBatch);
      if (n > 0) {
        pfn = c.pfns[--n];
        c.count.store(n, std::memory_order_relaxed);
      }
    }
  } else if (nid == kNumaNoNode) {
    nid = numa_node_id();
  }
  if (!pfn) {
    // The node's list, then (the zonelist) the next nodes in turn.
    const int nodes = nr_nodes();
    const int tries = fallback == NodeFallback::kYes ? nodes : 1;
    for (int k = 0; k < tries && !pfn; k++)
      if (take_global((nid + k) % nodes, &pfn, 1) == 0) pfn = 0;
  }
  if (!pfn) {
    // The lists are empty; CPUs may still cache frames.
    for (Pcp& c : pcp_) {
      if (c.count.load(std::memory_order_relaxed) == 0) continue;
      if (fallback == NodeFallback::kThisNode && c.node.load(std::memory_order_relaxed) != nid) continue;
      SpinGuard g(c.lock);
      int n = c.count.load(std::memory_order_relaxed);
      if (n > 0) {
        pfn = c.pfns[--n];
        c.count.store(n, std::memory_order_relaxed);
        break;
      }
    }
    if (!pfn) return nullptr;
  }
  Page* page = &pages_[pfn];
  init_page(page, zero);
  return page;
}

Page* PhysMem::alloc_page_node(int nid, NodeFallback fallback, Zero zero, Gfp gfp) {
  if (gfp == Gfp::kUser) driver_lockdep::might_alloc();  // it may reclaim
  Page* page = rmqueue(nid, fallback, zero);
  Pressure* pressure = pressure_.load(std::memory_order_acquire);
  if (pressure && nr_free_global() < wmark_low_) pressure->wakeup_kswapd();
  if (page) return page;
  // Pages whose last user went may still wait in the per-CPU LRU add batches: drain them
  // (reclaim's lru_add_drain_all) and try once more, even when another thread emptied the
  // batches first: its drain may have freed pages since this thread's attempt.
  lru_add_drain_all(*this);
  if ((page = rmqueue(nid, fallback, zero))) return page;
  if (gfp != Gfp::kUser || !pressure) return nullptr;
  for (int attempt = 0; pressure->alloc_slowpath(attempt); attempt++)
    if ((page = rmqueue(nid, fallback, zero))) return page;
  return nullptr;
}

void PhysMem::prep_free(Page* page) {
  MM_BUG_ON(page->mapcount.load(std::memory_order_relaxed) != 0);
  MM_BUG_ON(page->test(PG_free));
  // page_cache_release took it off its list (or left it to its add batch's drain)
  MM_BUG_ON(page->lru_state.load(std::memory_order_relaxed) != kLruNone);
  if (mmu_checker_on()) {
    mmu_checker_frame_freed_slow(this, page_to_pfn(page));
    // No CPU may still translate to the frame: the shootdown comes before the free.
    for (TlbWatcher* tlb : tlbs_) tlb->frame_freed(page_to_pfn(page));
  }
  page->flags.store(PG_free, std::memory_order_relaxed);
  page->mapping = nullptr;
  page->gen.fetch_add(1, std::memory_order_relaxed);
  if constexpr (kDebugChecks) std::memset(page_address(page), 0x6b, kPageSize);  // poison
}

void PhysMem::free_page(Page* page) {
  // Nonzero stays nonzero without the LRU lock: nobody lists or queues a page without
  // holding a reference. A page still queued in an add batch is the batch's to free.
  if (page->lru_state.load(std::memory_order_relaxed) != kLruNone && page_cache_release(*lruvec_, &page, 1) == 0)
    return;
  prep_free(page);
  pfn_t pfn = page_to_pfn(page);
  put_free_pfns(&pfn, 1);
}

void PhysMem::put_free_pfns(const pfn_t* pfns, int n) {
  if (tls_this_cpu < 0) {
    give_global(pfns, n);
    return;
  }
  Pcp& c = pcp_[this_cpu_slot(kPcpSlots)];
  const int nodes = nr_nodes();
  const int node = c.node.load(std::memory_order_relaxed);
  SpinGuard g(c.lock);
  int count = c.count.load(std::memory_order_relaxed);
  for (int i = 0; i < n; i++) {
    // Another node's frame goes straight back to that node's list.
    if (nodes != 1 && pfn_to_nid(pfns[i]) != node) {
      give_global(&pfns[i], 1);
      continue;
    }
    c.pfns[count++] = pfns[i];
    if (count >= kPcpHigh + kPcpBatch) {
      // Drain the oldest batch (the bottom of the stack) to the global list.
      give_global(c.pfns, kPcpBatch);
      std::memmove(c.pfns, c.pfns + kPcpBatch, (count - kPcpBatch) * sizeof(pfn_t));
      count -= kPcpBatch;
    }
  }
  c.count.store(count, std::memory_order_relaxed);
}

void PhysMem::free_dying(Page* const* pages, int n) {
  MM_BUG_ON(n > kPcpBatch);
  Page* left[kPcpBatch];
  std::copy(pages, pages + n, left);
  n = static_cast<int>(page_cache_release(*lruvec_, left, static_cast<size_t>(n)));
  pfn_t pfns[kPcpBatch];
  for (int i = 0; i < n; i++) {
    prep_free(left[i]);
    pfns[i] = page_to_pfn(left[i]);
  }
  if (n) put_free_pfns(pfns, n);
}

void PhysMem::put_pages(Page* const* pages, size_t n) {
  Page* dying[kPcpBatch];
  int k = 0;
  for (size_t i = 0; i < n; i++) {
    Page* page = pages[i];
    MM_BUG_ON(page->test(PG_reserved));
    int32_t old = page->refcount.fetch_sub(1, std::memory_order_acq_rel);
    MM_BUG_ON(old <= 0);
    if (old != 1) continue;
    if (page->test(PG_zone_device)) {  // back to its device, not to the free lists
      free_zone_device_folio(page);
      continue;
    }
    dying[k++] = page;
    if (k == kPcpBatch) {
      free_dying(dying, k);
      k = 0;
    }
  }
  if (k) free_dying(dying, k);
}

void PhysMem::free_unref_pages(Page* const* pages, size_t n) {
  while (n > 0) {
    const int k = static_cast<int>(std::min<size_t>(n, kPcpBatch));
    for (int i = 0; i < k; i++) MM_BUG_ON(pages[i]->refcount.load(std::memory_order_relaxed) != 0);
    free_dying(pages, k);
    pages += k;
    n -= static_cast<size_t>(k);
  }
}

}  // namespace mirrormm
