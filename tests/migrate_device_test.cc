// Device memory and migrate_vma (src/mm/memremap.cc, src/mm/migrate_device.cc): dev_pagemap
// set-up, migration of private anonymous memory to device-private memory and back (by the
// driver and by CPU faults), what every path that meets a device-private entry does with it
// (zap, fork, mprotect, mincore, smaps, hmm_range_fault, the consistency checker), eviction by
// pfn, device-coherent memory, and the races with munmap, fork, mprotect and CPU faults.
#include "mirrormm/migrate_device.h"

#include <atomic>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "mirrormm/hmm.h"
#include "mirrormm/memremap.h"
#include "mm/memremap.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

static_assert(MIGRATE_PFN_VALID == 1 && MIGRATE_PFN_MIGRATE == 2 && MIGRATE_PFN_WRITE == 8 && MIGRATE_PFN_SHIFT == 6);

// A small driver in the shape of Linux's dmirror: a pgmap whose free pages sit on a list, an
// interval notifier over the test window that counts the invalidations it must act on (not
// its own migrations), migrate_to_ram for CPU faults, and helpers that move a range to the
// device and back.
class TestDevice {
 public:
  TestDevice(System* sys, MemoryType type, uint64_t pages) : sys_(sys) {
    pgmap_.type = type;
    pgmap_.nr_pages = pages;
    pgmap_.ops = &kOps;
    pgmap_.owner = this;
    pgmap_.driver_data = this;
  }
  Errno init() {
    Errno e = memremap_pages(sys_, &pgmap_);
    if (e == Errno::kOk) {
      std::lock_guard<std::mutex> g(lock_);
      free_ = pgmap_.pfns;
    }
    return e;
  }

  // Device page allocation: locked, one reference (zone_device_page_init); 0 when full.
  uint64_t alloc() {
    uint64_t pfn;
    {
      std::lock_guard<std::mutex> g(lock_);
      if (free_.empty()) return 0;
      pfn = free_.back();
      free_.pop_back();
    }
    zone_device_page_init(&pgmap_, pfn);
    return pfn;
  }
  size_t nr_free() {
    std::lock_guard<std::mutex> g(lock_);
    return free_.size();
  }
  int freed() { return freed_.load(); }
  int to_ram_faults() { return to_ram_.load(); }

  // Moves [start, start + n pages) of mm to the device (or, with kRam, this device's pages of
  // the range back to system RAM); returns the entries that moved.
  enum class To { kDevice, kRam };
  uint64_t to_ram(Mm* mm, uint64_t start, uint64_t n) {
    return to_device(mm, start, n, MIGRATE_VMA_SELECT_DEVICE_PRIVATE, To::kRam);
  }
  uint64_t to_device(Mm* mm, uint64_t start, uint64_t n, unsigned select = MIGRATE_VMA_SELECT_SYSTEM,
                     To to = To::kDevice) {
    std::vector<uint64_t> src(n), dst(n);
    MigrateVma a;
    a.mm = mm;
    a.start = start;
    a.end = start + n * P;
    a.src = src.data();
    a.dst = dst.data();
    a.pgmap_owner = this;
    a.flags = select;
    mmap_read_lock(mm);
    last_setup_ = migrate_vma_setup(&a);
    if (last_setup_ != Errno::kOk) {
      mmap_read_unlock(mm);
      return 0;
    }
    for (uint64_t i = 0; i < n; i++) {
      if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
      const uint64_t d = to == To::kRam ? alloc_migrate_page(sys_) : alloc();
      if (!d) continue;
      if (const uint64_t s = migrate_pfn_to_pfn(src[i])) copy_highpage(sys_, d, s);
      else std::memset(page_address(sys_, d), 0, P);
      dst[i] = migrate_pfn(d) | (src[i] & MIGRATE_PFN_WRITE);
    }
    migrate_vma_pages(&a);
    uint64_t moved = 0;
    for (uint64_t i = 0; i < n; i++) moved += (src[i] & MIGRATE_PFN_MIGRATE) ? 1 : 0;
    migrate_vma_finalize(&a);
    mmap_read_unlock(mm);
    return moved;
  }

  // Everything of this device's back to system RAM (the driver's release path).
  void evict_all() {
    std::vector<uint64_t> src = pgmap_.pfns, dst(src.size());
    ASSERT_EQ(migrate_device_pfns(sys_, src.data(), src.size()), Errno::kOk);
    for (size_t i = 0; i < src.size(); i++) {
      if (!(src[i] & MIGRATE_PFN_MIGRATE)) continue;
      const uint64_t np = alloc_migrate_page(sys_);
      ASSERT_NE(np, 0u);
      copy_highpage(sys_, np, migrate_pfn_to_pfn(src[i]));
      dst[i] = migrate_pfn(np);
    }
    migrate_device_pages(sys_, src.data(), dst.data(), src.size());
    migrate_device_finalize(sys_, src.data(), dst.data(), src.size());
  }

  DevPagemap& pgmap() { return pgmap_; }
  Errno last_setup() const { return last_setup_; }

 private:
  static TestDevice* of(DevPagemap* pgmap) { return static_cast<TestDevice*>(pgmap->driver_data); }
  static void folio_free(DevPagemap* pgmap, uint64_t pfn) {
    TestDevice* d = of(pgmap);
    std::lock_guard<std::mutex> g(d->lock_);
    d->free_.push_back(pfn);
    d->freed_++;
  }
  // dmirror_devmem_fault: the faulting page alone goes back to system RAM.
  static Errno migrate_to_ram(DevPagemap* pgmap, const DeviceFault& vmf) {
    TestDevice* d = of(pgmap);
    d->to_ram_++;
    uint64_t src = 0, dst = 0;
    MigrateVma a;
    a.mm = vmf.mm;
    a.vma = vmf.vma;
    a.start = vmf.address;
    a.end = vmf.address + P;
    a.src = &src;
    a.dst = &dst;
    a.pgmap_owner = d;
    a.flags = MIGRATE_VMA_SELECT_DEVICE_PRIVATE;
    a.fault_page = vmf.pfn;
    if (Errno e = migrate_vma_setup(&a); e != Errno::kOk) return e;
    if (src & MIGRATE_PFN_MIGRATE) {
      const uint64_t np = alloc_migrate_page(d->sys_);
      if (!np) {
        migrate_vma_finalize(&a);
        return Errno::kNoMem;
      }
      copy_highpage(d->sys_, np, migrate_pfn_to_pfn(src));
      dst = migrate_pfn(np);
    }
    migrate_vma_pages(&a);
    migrate_vma_finalize(&a);
    return Errno::kOk;
  }
  static constexpr DevPagemapOps kOps = {&TestDevice::folio_free, &TestDevice::migrate_to_ram};

  System* sys_;
  DevPagemap pgmap_;
  std::mutex lock_;
  std::vector<uint64_t> free_;
  std::atomic<int> freed_{0};
  std::atomic<int> to_ram_{0};
  Errno last_setup_ = Errno::kOk;
};

// An interval notifier over the window that records what it was told.
struct Watcher {
  struct Sub : MmuIntervalNotifier {
    Watcher* w = nullptr;
  } sub;
  std::atomic<int> own{0}, others{0}, migrate{0};
  const void* owner = nullptr;
  static bool invalidate(MmuIntervalNotifier* s, const MmuNotifierRange* range, uint64_t cur_seq) {
    Watcher* w = static_cast<Sub*>(s)->w;
    mmu_interval_set_seq(s, cur_seq);
    if (range->owner == w->owner && range->event == MmuNotifyEvent::kMigrate) w->own++;
    else w->others++;
    if (range->event == MmuNotifyEvent::kMigrate) w->migrate++;
    return true;
  }
};
const MmuIntervalNotifierOps kWatchOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &Watcher::invalidate;
  return o;
}();

class MigrateDeviceTest : public ModelTest {
 protected:
  void SetUp() override {
    mm_ = get_task_mm(p1());
    ASSERT_NE(mm_, nullptr);
    ASSERT_EQ(dev_.init(), Errno::kOk);
  }
  void TearDown() override {
    if (watching_) mmu_interval_notifier_remove(&watch_.sub);
    mmput_ref(mm_);
    EXPECT_EQ(sys().debug_check_consistency(), 0u) << testing_violations();
    // The device goes before the machine: every page it holds comes back first.
    EXPECT_TRUE(sys().munmap(p1(), W, 128 * P).ok());
    EXPECT_EQ(dev_.nr_free(), 64u);
    if (dev_.pgmap().sys) {
      EXPECT_EQ(memunmap_pages(&dev_.pgmap()), Errno::kOk);
    }
  }
  std::string testing_violations() {
    std::string s;
    for (const std::string& m : sys().violation_messages()) s += m + "\n";
    return s;
  }
  void watch() {
    watch_.sub.w = &watch_;
    watch_.owner = &dev_;
    ASSERT_EQ(mmu_interval_notifier_insert(&watch_.sub, mm_, W, 64 * P, &kWatchOps), Errno::kOk);
    watching_ = true;
  }
  bool device_private_at(Process* p, uint64_t addr) { return is_device_private_entry(pte_at(p, addr)); }
  Page* device_page_at(Process* p, uint64_t addr) {
    const pteval_t v = pte_at(p, addr);
    return is_device_private_entry(v) ? sys().mem().pfn_to_page(device_private_entry_pfn(v)) : nullptr;
  }

  Mm* mm_ = nullptr;
  TestDevice dev_{&sys(), MEMORY_DEVICE_PRIVATE, 64};
  Watcher watch_;
  bool watching_ = false;
};

TEST_F(MigrateDeviceTest, MemremapPagesChecksItsArgumentsAndGivesTheFramesBack) {
  DevPagemap bad;
  EXPECT_EQ(memremap_pages(&sys(), &bad), Errno::kInval);  // no pages, no ops
  TestDevice no_owner(&sys(), MEMORY_DEVICE_PRIVATE, 4);
  no_owner.pgmap().owner = nullptr;
  EXPECT_EQ(no_owner.init(), Errno::kInval);  // a device-private pgmap needs an owner
  EXPECT_EQ(dev_.init(), Errno::kInval);      // already in use
  const uint64_t used = sys().mem().nr_used();
  TestDevice other(&sys(), MEMORY_DEVICE_PRIVATE, 8);
  ASSERT_EQ(other.init(), Errno::kOk);
  EXPECT_EQ(sys().mem().nr_used(), used + 8);
  for (uint64_t pfn : other.pgmap().pfns) {
    EXPECT_TRUE(is_device_private_pfn(&sys(), pfn));
    EXPECT_FALSE(is_device_coherent_pfn(&sys(), pfn));
    EXPECT_EQ(pfn_pgmap(&sys(), pfn), &other.pgmap());
    EXPECT_EQ(page_ref_count_pfn(&sys(), pfn), 0);  // free device pages
  }
  const uint64_t pfn = other.alloc();
  EXPECT_EQ(memunmap_pages(&other.pgmap()), Errno::kBusy);  // one page is in use
  unlock_page_pfn(&sys(), pfn);
  put_device_page(&sys(), pfn);
  EXPECT_EQ(other.freed(), 1);  // folio_free took it back
  EXPECT_EQ(memunmap_pages(&other.pgmap()), Errno::kOk);
  EXPECT_EQ(sys().mem().nr_used(), used);
  EXPECT_FALSE(is_device_private_pfn(&sys(), pfn));
}

TEST_F(MigrateDeviceTest, AnonymousPagesMoveToTheDeviceAndACpuAccessBringsThemBack) {
  map(p1(), W, 8 * P);
  write_pattern(p1(), W, 8 * P, 3);
  const int64_t rss = p1()->mm()->rss(MM_ANONPAGES);
  watch();
  EXPECT_EQ(dev_.to_device(mm_, W, 8), 8u);
  // One collection invalidation, with the driver as owner (it skips it).
  EXPECT_EQ(watch_.own.load(), 1);
  for (int i = 0; i < 8; i++) {
    const pteval_t v = pte_at(p1(), W + i * P);
    ASSERT_TRUE(is_device_private_entry(v));
    EXPECT_TRUE(is_writable_device_private_entry(v));
    EXPECT_TRUE(is_device_private_pfn(&sys(), device_private_entry_pfn(v)));
    EXPECT_EQ(page_mapcount_pfn(&sys(), device_private_entry_pfn(v)), 1);
  }
  EXPECT_EQ(dev_.nr_free(), 64u - 8);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), rss);  // a device-private page counts as anon
  EXPECT_EQ(mincore(p1(), W, 8 * P), "11111111");
  // The device holds the data.
  const uint64_t d0 = device_private_entry_pfn(pte_at(p1(), W));
  EXPECT_EQ(page_address(&sys(), d0)[5], pattern(W + 5, 3));
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << testing_violations();
  // A CPU read of page 2 faults it back alone.
  EXPECT_TRUE(has_pattern(p1(), W + 2 * P, P, 3));
  EXPECT_EQ(dev_.to_ram_faults(), 1);
  EXPECT_TRUE(pte_present(pte_at(p1(), W + 2 * P)));
  EXPECT_TRUE(device_private_at(p1(), W + 3 * P));
  EXPECT_EQ(dev_.freed(), 1);  // its device page went back to the driver
  // A write works on the page (it came back writable and exclusive) and on another one.
  ASSERT_TRUE(fill(p1(), W + 2 * P, 16, 0xaa).ok());
  ASSERT_TRUE(fill(p1(), W + 5 * P, 16, 0xbb).ok());
  EXPECT_EQ(bytes(p1(), W + 5 * P, 1)[0], 0xbb);
  EXPECT_EQ(bytes(p1(), W + 5 * P + 16, 1)[0], pattern(W + 5 * P + 16, 3));
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 3));
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), rss);
}

TEST_F(MigrateDeviceTest, NoneAndZeroPageEntriesMoveWithoutASourcePage) {
  map(p1(), W, 4 * P);
  ASSERT_TRUE(touch_read(p1(), W + P).ok());  // the zero page
  EXPECT_EQ(dev_.to_device(mm_, W, 4), 4u);
  for (int i = 0; i < 4; i++) EXPECT_TRUE(device_private_at(p1(), W + i * P)) << i;
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 4);
  EXPECT_EQ(bytes(p1(), W + P, 4), std::vector<uint8_t>(4, 0));
}

TEST_F(MigrateDeviceTest, SetupRejectsBadRangesAndSkipsWhatItMustNotMove) {
  map(p1(), W, 4 * P);
  map(p1(), W + 8 * P, 4 * P, RW, SHARED);
  fill(p1(), W, 4 * P, 1);
  fill(p1(), W + 8 * P, 4 * P, 2);
  uint64_t src[4], dst[4];
  MigrateVma a;
  a.mm = mm_;
  a.src = src;
  a.dst = dst;
  a.pgmap_owner = &dev_;
  a.flags = MIGRATE_VMA_SELECT_SYSTEM;
  auto setup = [&](uint64_t start, uint64_t end, unsigned flags = MIGRATE_VMA_SELECT_SYSTEM) {
    a.start = start;
    a.end = end;
    a.flags = flags;
    mmap_read_lock(mm_);
    Errno e = migrate_vma_setup(&a);
    if (e == Errno::kOk) {
      migrate_vma_pages(&a);
      migrate_vma_finalize(&a);
    }
    mmap_read_unlock(mm_);
    return e;
  };
  EXPECT_EQ(setup(W + 1, W + P), Errno::kInval);      // not page aligned
  EXPECT_EQ(setup(W + P, W + P), Errno::kInval);      // empty
  EXPECT_EQ(setup(W + 2 * P, W + 6 * P), Errno::kInval);  // leaves the VMA
  EXPECT_EQ(setup(W + 20 * P, W + 21 * P), Errno::kInval);  // no VMA
  EXPECT_EQ(setup(W, W + P, 0), Errno::kInval);           // nothing selected
  // Shared anonymous memory (shmem) is not moved.
  EXPECT_EQ(dev_.to_device(mm_, W + 8 * P, 4), 0u);
  EXPECT_TRUE(pte_present(pte_at(p1(), W + 8 * P)));
  // Selecting device-private pages only leaves system pages alone.
  EXPECT_EQ(dev_.to_device(mm_, W, 4, MIGRATE_VMA_SELECT_DEVICE_PRIVATE), 0u);
  EXPECT_TRUE(pte_present(pte_at(p1(), W)));
  // Entries without a destination stay where they are.
  EXPECT_EQ(setup(W, W + 4 * P), Errno::kOk);
  EXPECT_EQ(a.cpages, 4u);
  EXPECT_TRUE(pte_present(pte_at(p1(), W)));
  EXPECT_EQ(bytes(p1(), W, 1)[0], 1);
}

TEST_F(MigrateDeviceTest, MunmapExitAndDontneedGiveDevicePagesBack) {
  map(p1(), W, 8 * P);
  fill(p1(), W, 8 * P, 5);
  ASSERT_EQ(dev_.to_device(mm_, W, 8), 8u);
  ASSERT_TRUE(sys().madvise(p1(), W, 2 * P, kMadvDontneed).ok());
  EXPECT_EQ(dev_.freed(), 2);
  EXPECT_EQ(bytes(p1(), W, 1)[0], 0);  // refaults as a new zero page
  ASSERT_TRUE(sys().munmap(p1(), W + 2 * P, 2 * P).ok());
  EXPECT_EQ(dev_.freed(), 4);
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 4);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  sys().exit(child.value());
  EXPECT_EQ(dev_.freed(), 4);  // still the parent's
  EXPECT_EQ(dev_.nr_free(), 64u - 4);
}

TEST_F(MigrateDeviceTest, ForkSharesDevicePagesReadOnlyAndAWriteCopies) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 9);
  ASSERT_EQ(dev_.to_device(mm_, W, 2), 2u);
  Result<Process*> r = sys().fork(p1());
  ASSERT_TRUE(r.ok());
  Process* child = r.value();
  for (Process* p : {p1(), child}) {
    const pteval_t v = pte_at(p, W);
    ASSERT_TRUE(is_device_private_entry(v));
    EXPECT_FALSE(is_writable_device_private_entry(v));  // COW: readable on both sides
  }
  EXPECT_EQ(page_mapcount_pfn(&sys(), device_private_entry_pfn(pte_at(p1(), W))), 2);
  EXPECT_EQ(child->mm()->rss(MM_ANONPAGES), 2);
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << testing_violations();
  // The child writes: the page comes back (from both mappings) and the write copies it.
  ASSERT_TRUE(fill(child, W, 8, 0x77).ok());
  EXPECT_EQ(bytes(child, W, 1)[0], 0x77);
  EXPECT_TRUE(has_pattern(p1(), W, P, 9));
  EXPECT_TRUE(has_pattern(p1(), W + P, P, 9));
  EXPECT_TRUE(has_pattern(child, W + P, P, 9));
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << testing_violations();
  sys().exit(child);
}

TEST_F(MigrateDeviceTest, MprotectDowngradesWritableDeviceEntries) {
  map(p1(), W, 2 * P);
  fill(p1(), W, 2 * P, 4);
  ASSERT_EQ(dev_.to_device(mm_, W, 2), 2u);
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, kProtRead).ok());
  EXPECT_FALSE(is_writable_device_private_entry(pte_at(p1(), W)));
  EXPECT_FALSE(fill(p1(), W, 1, 1).ok());  // SIGSEGV, no fault into the driver
  EXPECT_EQ(dev_.to_ram_faults(), 0);
  ASSERT_TRUE(sys().mprotect(p1(), W, 2 * P, RW).ok());
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());  // faults it back, then writes
  EXPECT_EQ(bytes(p1(), W, 2), (std::vector<uint8_t>{1, 4}));
}

TEST_F(MigrateDeviceTest, MremapMovesDeviceEntries) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 1);
  ASSERT_EQ(dev_.to_device(mm_, W, 2), 2u);
  Result<uint64_t> r = sys().mremap(p1(), W, 2 * P, 2 * P, 1 | 2, W + 64 * P);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(device_private_at(p1(), W + 64 * P));
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << testing_violations();
  EXPECT_TRUE(has_pattern(p1(), W + 64 * P, 2 * P, 1));
}

TEST_F(MigrateDeviceTest, SmapsCountsDevicePagesAsResidentAnonymous) {
  map(p1(), W, 4 * P);
  fill(p1(), W, 4 * P, 1);
  ASSERT_EQ(dev_.to_device(mm_, W, 4), 4u);
  Result<std::vector<SmapsEntry>> r = sys().smaps(p1());
  ASSERT_TRUE(r.ok());
  bool found = false;
  for (const SmapsEntry& e : r.value()) {
    if (e.vma.start != W) continue;
    found = true;
    EXPECT_EQ(e.resident, 4 * P);
    EXPECT_EQ(e.anonymous, 4 * P);
  }
  EXPECT_TRUE(found);
}

TEST_F(MigrateDeviceTest, HmmRangeFaultReportsOwnDevicePagesAndFaultsOthersBack) {
  map(p1(), W, 2 * P);
  fill(p1(), W, 2 * P, 6);
  ASSERT_EQ(dev_.to_device(mm_, W, 2), 2u);
  watch();
  const uint64_t d0 = device_private_entry_pfn(pte_at(p1(), W));
  auto walk = [&](const void* owner, uint64_t flags, std::vector<uint64_t>* pfns) {
    Errno e;
    do {
      HmmRange range;
      range.notifier = &watch_.sub;
      range.notifier_seq = mmu_interval_read_begin(&watch_.sub);
      range.start = W;
      range.end = W + 2 * P;
      pfns->assign(2, 0);
      range.hmm_pfns = pfns->data();
      range.default_flags = flags;
      range.dev_private_owner = owner;
      mmap_read_lock(mm_);
      e = hmm_range_fault(&range);
      mmap_read_unlock(mm_);
    } while (e == Errno::kBusy);
    return e;
  };
  std::vector<uint64_t> pfns;
  ASSERT_EQ(walk(&dev_, HMM_PFN_REQ_FAULT | HMM_PFN_REQ_WRITE, &pfns), Errno::kOk);
  EXPECT_EQ(pfns[0], d0 | HMM_PFN_VALID | HMM_PFN_WRITE);
  EXPECT_EQ(dev_.to_ram_faults(), 0);
  ASSERT_EQ(walk(nullptr, 0, &pfns), Errno::kOk);
  EXPECT_EQ(pfns[0], 0u);  // another owner, nothing asked: not valid
  ASSERT_EQ(walk(nullptr, HMM_PFN_REQ_FAULT, &pfns), Errno::kOk);
  EXPECT_EQ(dev_.to_ram_faults(), 2);  // faulted back to RAM
  EXPECT_TRUE(pte_present(pte_at(p1(), W)));
  EXPECT_EQ(pfns[0], pte_pfn(pte_at(p1(), W)) | HMM_PFN_VALID | HMM_PFN_WRITE);
}

TEST_F(MigrateDeviceTest, TheDriverEvictsEverythingByPfn) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 2);
  ASSERT_EQ(dev_.to_device(mm_, W, 4), 4u);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  dev_.evict_all();
  for (Process* p : {p1(), child.value()})
    for (int i = 0; i < 4; i++) EXPECT_TRUE(pte_present(pte_at(p, W + i * P)));
  EXPECT_EQ(dev_.nr_free(), 64u);
  EXPECT_EQ(dev_.to_ram_faults(), 0);
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 2));
  EXPECT_TRUE(has_pattern(child.value(), W, 4 * P, 2));
  EXPECT_EQ(memunmap_pages(&dev_.pgmap()), Errno::kOk);
  sys().exit(child.value());
}

TEST_F(MigrateDeviceTest, DeviceCoherentPagesAreMappedAndCpuAccessible) {
  TestDevice coherent(&sys(), MEMORY_DEVICE_COHERENT, 8);
  ASSERT_EQ(coherent.init(), Errno::kOk);
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 8);
  ASSERT_EQ(coherent.to_device(mm_, W, 4), 4u);
  for (int i = 0; i < 4; i++) {
    const pteval_t v = pte_at(p1(), W + i * P);
    ASSERT_TRUE(pte_present(v));
    EXPECT_TRUE(is_device_coherent_pfn(&sys(), pte_pfn(v)));
  }
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 8));  // no fault into the driver
  EXPECT_EQ(coherent.to_ram_faults(), 0);
  // The owner's coherent pages are selected with SELECT_DEVICE_COHERENT (here they move to
  // the device's other pages).
  EXPECT_EQ(coherent.to_device(mm_, W, 4, MIGRATE_VMA_SELECT_DEVICE_COHERENT), 4u);
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 8));
  EXPECT_EQ(coherent.nr_free(), 4u);
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
  EXPECT_EQ(coherent.nr_free(), 8u);
  EXPECT_EQ(memunmap_pages(&coherent.pgmap()), Errno::kOk);
}

// ---- races ----

TEST_F(MigrateDeviceTest, MigrationToTheDeviceRacesCpuFaultsBack) {
  constexpr int kPages = 16;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 5);
  std::atomic<bool> stop{false};
  std::thread cpu([&] {
    int i = 0;
    while (!stop.load()) {
      EXPECT_TRUE(has_pattern(p1(), W + (i % kPages) * P, P, 5));  // CPU 0; the migrating thread is no CPU
      i += 7;
    }
  });
  for (int round = 0; round < 200; round++) dev_.to_device(mm_, W, kPages);
  stop = true;
  cpu.join();
  EXPECT_TRUE(has_pattern(p1(), W, kPages * P, 5));
  EXPECT_GT(dev_.to_ram_faults(), 0);
}

TEST_F(MigrateDeviceTest, CpuFaultsRaceTheDriverMovingPagesBack) {
  constexpr int kPages = 16;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 6);
  for (int round = 0; round < 50; round++) {
    ASSERT_EQ(dev_.to_device(mm_, W, kPages), static_cast<uint64_t>(kPages));
    std::thread cpu([&] {
      for (int i = 0; i < kPages; i += 3) EXPECT_TRUE(has_pattern(p1(), W + i * P, P, 6));
    });
    const uint64_t back = dev_.to_ram(mm_, W, kPages);
    cpu.join();
    EXPECT_LE(back, static_cast<uint64_t>(kPages));
    (void)dev_.to_ram(mm_, W, kPages);  // what the faults left behind
    for (int i = 0; i < kPages; i++) EXPECT_TRUE(pte_present(pte_at(p1(), W + i * P))) << i;
  }
  EXPECT_TRUE(has_pattern(p1(), W, kPages * P, 6));
  EXPECT_EQ(dev_.nr_free(), 64u);
}

TEST_F(MigrateDeviceTest, MigrationRacesMunmapForkAndMprotect) {
  constexpr int kPages = 8;
  std::atomic<bool> stop{false};
  std::thread mover([&] {
    while (!stop.load()) dev_.to_device(mm_, W, kPages);
  });
  for (int round = 0; round < 100; round++) {
    map(p1(), W, kPages * P);
    write_pattern(p1(), W, kPages * P, static_cast<uint8_t>(round));
    Result<Process*> child = sys().fork(p1());
    ASSERT_TRUE(child.ok());
    ASSERT_TRUE(sys().mprotect(p1(), W, kPages * P, kProtRead).ok());
    EXPECT_TRUE(has_pattern(child.value(), W, kPages * P, static_cast<uint8_t>(round)));
    ASSERT_TRUE(sys().mprotect(p1(), W, kPages * P, RW).ok());
    ASSERT_TRUE(fill(child.value(), W, 1, 0).ok());
    EXPECT_TRUE(has_pattern(p1(), W, kPages * P, static_cast<uint8_t>(round)));
    sys().exit(child.value());
    ASSERT_TRUE(sys().munmap(p1(), W, kPages * P).ok());
  }
  stop = true;
  mover.join();
  EXPECT_EQ(dev_.nr_free(), 64u);
}

}  // namespace
}  // namespace mirrormm::testing
