// References and pins handed to drivers (src/mm/gup.cc's get_user_pages_remote,
// pin_user_pages_remote, unpin_user_pages): the counting, the flag and VMA checks, what a pin
// changes for COW faults, fork, migration and reclaim, FOLL_LONGTERM's migration of device
// memory, and pins racing fork and migration.
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "mirrormm/gup.h"
#include "mirrormm/hmm.h"
#include "mirrormm/memremap.h"
#include "mirrormm/migrate_device.h"
#include "mirrormm/mmu_notifier.h"
#include "mm/memremap.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr long kEinval = -static_cast<long>(Errno::kInval);
constexpr long kEfault = -static_cast<long>(Errno::kFault);

SystemConfig two_nodes() {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  c.nodes = 2;
  return c;
}

class GupPinTest : public ModelTest {
 protected:
  // Three CPUs: the tests' own accesses (0), a device thread's (1), a forking thread's (2).
  GupPinTest() : ModelTest(two_nodes()) { sys_ = std::make_unique<System>(two_nodes(), 3); }
  void SetUp() override {
    mm_ = get_task_mm(p1());
    ASSERT_NE(mm_, nullptr);
  }
  void TearDown() override {
    mmput_ref(mm_);
    EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();
  }
  std::string violations() {
    std::string s;
    for (const std::string& m : sys().violation_messages()) s += m + "\n";
    return s;
  }
  long pin(uint64_t addr, unsigned long n, unsigned flags, std::vector<uint64_t>* out) {
    out->assign(n, 0);
    mmap_read_lock(mm_);
    const long r = pin_user_pages_remote(mm_, addr, n, flags, out->data());
    mmap_read_unlock(mm_);
    return r;
  }
  long get(uint64_t addr, unsigned long n, unsigned flags, std::vector<uint64_t>* out) {
    out->assign(n, 0);
    mmap_read_lock(mm_);
    const long r = get_user_pages_remote(mm_, addr, n, flags, out->data());
    mmap_read_unlock(mm_);
    return r;
  }
  uint64_t pfn_at(uint64_t addr) { return pte_pfn(pte_at(p1(), addr)); }
  int refs(uint64_t pfn) { return page_ref_count_pfn(&sys(), pfn); }
  // The device's view of a pinned page: its bytes, written and read through the frame.
  uint8_t* dev(uint64_t pfn) { return page_address(&sys(), pfn); }

  Mm* mm_ = nullptr;
};

TEST_F(GupPinTest, ReferencesAndPinsAreCountedAndReleased) {
  map(p1(), W, 3 * P);
  write_pattern(p1(), W, 3 * P, 1);
  const uint64_t pfn = pfn_at(W);
  const int base = refs(pfn);
  std::vector<uint64_t> got;
  ASSERT_EQ(get(W + 5, 3, 0, &got), 3);  // the start is aligned down
  EXPECT_EQ(got[0], pfn);
  EXPECT_EQ(refs(pfn), base + 1);
  EXPECT_FALSE(folio_maybe_dma_pinned_pfn(&sys(), pfn));
  for (uint64_t f : got) put_page_pfn(&sys(), f);
  EXPECT_EQ(refs(pfn), base);
  std::vector<uint64_t> pinned;
  ASSERT_EQ(pin(W, 3, FOLL_WRITE, &pinned), 3);
  EXPECT_EQ(pinned, (std::vector<uint64_t>{pfn_at(W), pfn_at(W + P), pfn_at(W + 2 * P)}));
  EXPECT_EQ(refs(pfn), base + kGupPinCountingBias);
  EXPECT_TRUE(folio_maybe_dma_pinned_pfn(&sys(), pfn));
  std::vector<uint64_t> again;
  ASSERT_EQ(pin(W, 1, 0, &again), 1);
  EXPECT_EQ(refs(pfn), base + 2 * kGupPinCountingBias);
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();  // pins are no leak
  unpin_user_pages(&sys(), pinned.data(), pinned.size());
  unpin_user_page(&sys(), again[0]);
  EXPECT_EQ(refs(pfn), base);
  EXPECT_FALSE(folio_maybe_dma_pinned_pfn(&sys(), pfn));
  // A page whose mapping went meanwhile is freed by the last unpin.
  ASSERT_EQ(pin(W, 1, 0, &pinned), 1);
  ASSERT_TRUE(sys().munmap(p1(), W, P).ok());
  EXPECT_EQ(refs(pinned[0]), kGupPinCountingBias);
  EXPECT_FALSE(sys().mem().debug_is_free(static_cast<pfn_t>(pinned[0])));
  unpin_user_page(&sys(), pinned[0]);
  EXPECT_TRUE(sys().mem().debug_is_free(static_cast<pfn_t>(pinned[0])));
}

TEST_F(GupPinTest, FlagsAndVmasAreChecked) {
  map(p1(), W, P);
  map(p1(), W + P, P, kProtRead);
  std::vector<uint64_t> got;
  EXPECT_EQ(get(W, 1, FOLL_PIN, &got), kEinval);       // pins are pin_user_pages'
  EXPECT_EQ(get(W, 1, FOLL_LONGTERM, &got), kEinval);  // so is FOLL_LONGTERM
  EXPECT_EQ(pin(W, 1, FOLL_GET, &got), kEinval);
  EXPECT_EQ(pin(W, 1, 1u << 20, &got), kEinval);
  mmap_read_lock(mm_);
  EXPECT_EQ(pin_user_pages_remote(mm_, W, 1, 0, nullptr), kEinval);
  EXPECT_EQ(get_user_pages_remote(mm_, W, 1, FOLL_WRITE, nullptr), 1);  // faults only
  mmap_read_unlock(mm_);
  EXPECT_EQ(pin(W + P, 1, FOLL_WRITE, &got), kEfault);  // a read-only VMA
  EXPECT_EQ(pin(W + 2 * P, 1, 0, &got), kEfault);       // no VMA
  // Partial progress is the number of pages done.
  EXPECT_EQ(pin(W, 2, FOLL_WRITE, &got), 1);
  unpin_user_page(&sys(), got[0]);
  EXPECT_EQ(pin(W, 3, 0, &got), 2);
  unpin_user_pages(&sys(), got.data(), 2);
  // FOLL_NOFAULT stops at the first page not mapped as asked.
  map(p1(), W + 4 * P, 2 * P);
  ASSERT_TRUE(fill(p1(), W + 4 * P, 1, 1).ok());
  EXPECT_EQ(pin(W + 4 * P, 2, FOLL_NOFAULT, &got), 1);
  unpin_user_page(&sys(), got[0]);
  EXPECT_EQ(pin(W + 5 * P, 1, FOLL_NOFAULT, &got), kEfault);
  EXPECT_EQ(mincore(p1(), W + 4 * P, 2 * P), "10");
  // A long-term write pin of a shared regular-file mapping is refused (writeback would never
  // see the device's writes); shared memory may be pinned.
  ASSERT_TRUE(sys().file_create("f", P).ok());
  Result<uint64_t> f = sys().mmap_file(p1(), W + 8 * P, P, RW, kMapShared | kMapFixed, "f", 0,
                                       System::FileMode::kReadWrite);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(pin(W + 8 * P, 1, FOLL_WRITE | FOLL_LONGTERM, &got), kEfault);
  ASSERT_EQ(pin(W + 8 * P, 1, FOLL_WRITE, &got), 1);
  unpin_user_page(&sys(), got[0]);
  map(p1(), W + 9 * P, P, RW, SHARED);
  ASSERT_EQ(pin(W + 9 * P, 1, FOLL_WRITE | FOLL_LONGTERM, &got), 1);
  unpin_user_page(&sys(), got[0]);
}

TEST_F(GupPinTest, AReadPinOfASharedPageUnsharesItAndTheZeroPageIsPinnedAsIs) {
  map(p1(), W, 2 * P);
  ASSERT_TRUE(touch_read(p1(), W + P).ok());  // the zero page
  write_pattern(p1(), W, P, 2);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  const uint64_t shared = pfn_at(W);
  ASSERT_EQ(pte_pfn(pte_at(child.value(), W)), shared);
  std::vector<uint64_t> got;
  ASSERT_EQ(pin(W, 2, 0, &got), 2);
  // The parent got its own copy (FAULT_FLAG_UNSHARE), still read-only and clean; the child
  // keeps the old page.
  EXPECT_NE(got[0], shared);
  EXPECT_EQ(got[0], pfn_at(W));
  EXPECT_FALSE(pte_write(pte_at(p1(), W)));
  EXPECT_EQ(pte_pfn(pte_at(child.value(), W)), shared);
  EXPECT_TRUE(has_pattern(p1(), W, P, 2));
  EXPECT_EQ(got[1], sys().mem().zero_pfn());
  // The first write reuses the pinned page: it is exclusive, so the device sees the write.
  ASSERT_TRUE(fill(p1(), W, 1, 0xab).ok());
  EXPECT_EQ(pfn_at(W), got[0]);
  EXPECT_EQ(dev(got[0])[0], 0xab);
  unpin_user_pages(&sys(), got.data(), got.size());
  EXPECT_TRUE(has_pattern(child.value(), W, P, 2));
  sys().exit(child.value());
}

TEST_F(GupPinTest, ForkCopiesAPinnedPageForTheChildAndTheParentKeepsIt) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 3);
  std::vector<uint64_t> got;
  ASSERT_EQ(pin(W, 1, FOLL_WRITE | FOLL_LONGTERM, &got), 1);
  const pteval_t before = pte_at(p1(), W);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  // folio_needs_cow_for_dma: the child has a copy, the parent's PTE did not change (still
  // writable), the unpinned page is shared COW as usual.
  EXPECT_EQ(pte_at(p1(), W), before);
  EXPECT_NE(pte_pfn(pte_at(child.value(), W)), got[0]);
  EXPECT_TRUE(pte_write(pte_at(child.value(), W)));
  EXPECT_TRUE(has_pattern(child.value(), W, P, 3));
  EXPECT_EQ(pte_pfn(pte_at(child.value(), W + P)), pfn_at(W + P));
  EXPECT_FALSE(pte_write(pte_at(p1(), W + P)));
  // The device and the parent still share the page; the child is apart.
  dev(got[0])[1] = 0x11;
  ASSERT_TRUE(fill(p1(), W + 2, 1, 0x22).ok());
  EXPECT_EQ(pfn_at(W), got[0]);
  EXPECT_EQ(bytes(p1(), W + 1, 2), (std::vector<uint8_t>{0x11, 0x22}));
  EXPECT_EQ(dev(got[0])[2], 0x22);
  EXPECT_TRUE(has_pattern(child.value(), W, P, 3));
  EXPECT_EQ(sys().debug_check_consistency(), 0u) << violations();
  unpin_user_page(&sys(), got[0]);
  sys().exit(child.value());
}

TEST_F(GupPinTest, MigrationAndReclaimLeaveAPinnedPageWhereItIs) {
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 4);
  std::vector<uint64_t> got;
  ASSERT_EQ(pin(W, 1, FOLL_WRITE, &got), 1);
  const int node = sys().mem().pfn_to_nid(static_cast<pfn_t>(got[0]));
  Result<uint64_t> moved = sys().migrate_pages(p1(), W, 2 * P, 1 - node);
  ASSERT_TRUE(moved.ok());
  EXPECT_EQ(moved.value(), 1u);  // only the unpinned page
  EXPECT_EQ(pfn_at(W), got[0]);
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  sys().lru_add_drain_all();
  sys().reclaim(1000);
  EXPECT_EQ(pfn_at(W), got[0]);  // still mapped, by the same page
  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 4));
  unpin_user_page(&sys(), got[0]);
}

// A small device whose memory is device-private or device-coherent, enough to move pages to
// it (migrate_vma with SELECT_SYSTEM) and, for private memory, back on a CPU fault.
class Device {
 public:
  Device(System* sys, MemoryType type) : sys_(sys) {
    pgmap_.type = type;
    pgmap_.nr_pages = 16;
    pgmap_.ops = &kOps;
    pgmap_.owner = this;
    pgmap_.driver_data = this;
  }
  ~Device() { (void)memunmap_pages(&pgmap_); }
  Errno init() { return memremap_pages(sys_, &pgmap_); }
  bool owns(uint64_t pfn) { return pfn_pgmap(sys_, pfn) == &pgmap_; }
  // Moves one page at addr of mm to the device; whether it moved.
  bool take(Mm* mm, uint64_t addr) {
    uint64_t src = 0, dst = 0;
    MigrateVma a;
    a.mm = mm;
    a.start = addr;
    a.end = addr + P;
    a.src = &src;
    a.dst = &dst;
    a.pgmap_owner = this;
    a.flags = MIGRATE_VMA_SELECT_SYSTEM;
    mmap_read_lock(mm);
    const bool ok = migrate_vma_setup(&a) == Errno::kOk && (src & MIGRATE_PFN_MIGRATE) && migrate_pfn_to_pfn(src);
    if (ok) {
      const uint64_t d = pgmap_.pfns[next_++ % pgmap_.pfns.size()];
      zone_device_page_init(&pgmap_, d);
      copy_highpage(sys_, d, migrate_pfn_to_pfn(src));
      dst = migrate_pfn(d) | (src & MIGRATE_PFN_WRITE);
      migrate_vma_pages(&a);
    }
    if (a.npages) migrate_vma_finalize(&a);
    mmap_read_unlock(mm);
    return ok;
  }

 private:
  static void folio_free(DevPagemap*, uint64_t) {}
  static Errno migrate_to_ram(DevPagemap* pgmap, const DeviceFault& vmf) {
    auto* d = static_cast<Device*>(pgmap->driver_data);
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
      dst = migrate_pfn(alloc_migrate_page(d->sys_));
      copy_highpage(d->sys_, migrate_pfn_to_pfn(dst), migrate_pfn_to_pfn(src));
    }
    migrate_vma_pages(&a);
    migrate_vma_finalize(&a);
    return Errno::kOk;
  }
  static constexpr DevPagemapOps kOps = {&Device::folio_free, &Device::migrate_to_ram};

  System* sys_;
  DevPagemap pgmap_;
  uint64_t next_ = 0;
};

TEST_F(GupPinTest, LongTermPinsMoveDeviceMemoryOutFirst) {
  Device coherent(&sys(), MEMORY_DEVICE_COHERENT);
  Device priv(&sys(), MEMORY_DEVICE_PRIVATE);
  ASSERT_EQ(coherent.init(), Errno::kOk);
  ASSERT_EQ(priv.init(), Errno::kOk);
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 5);
  for (uint64_t i = 0; i < 2; i++) ASSERT_TRUE(coherent.take(mm_, W + i * P));
  for (uint64_t i = 2; i < 4; i++) ASSERT_TRUE(priv.take(mm_, W + i * P));
  // hmm_gup_test: a short-term reference leaves coherent memory where it is; a long-term pin
  // moves it to system RAM. A device-private page comes back on the fault either way.
  std::vector<uint64_t> got;
  ASSERT_EQ(get(W, 1, FOLL_WRITE, &got), 1);
  EXPECT_TRUE(coherent.owns(got[0]));
  put_page_pfn(&sys(), got[0]);
  ASSERT_EQ(pin(W, 4, FOLL_WRITE | FOLL_LONGTERM, &got), 4);
  for (uint64_t i = 0; i < 4; i++) {
    EXPECT_FALSE(is_zone_device_page(sys().mem().pfn_to_page(static_cast<pfn_t>(got[i])))) << i;
    EXPECT_EQ(got[i], pfn_at(W + i * P)) << i;
  }
  unpin_user_pages(&sys(), got.data(), got.size());
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 5));
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
}

// A device keeps pinning the page, writing a new value through its pin and checking that the
// process reads it (and the reverse), while forks copy or share the rest of the range: a fork
// that shared the pinned page copy-on-write would move the parent away from the device's page
// at its next write.
TEST_F(GupPinTest, PinsRacingForkKeepTheParentOnThePinnedPage) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 6);
  std::atomic<bool> stop{false};
  std::atomic<int> mismatches{0};
  std::atomic<uint32_t> rounds{0};
  std::thread device([&] {
    for (uint32_t round = 1; !stop.load(); round++) {
      std::vector<uint64_t> got;
      if (pin(W, 1, FOLL_WRITE | FOLL_LONGTERM, &got) != 1) {
        mismatches++;
        continue;
      }
      std::memcpy(dev(got[0]), &round, sizeof(round));  // the device writes
      uint32_t seen = 0;
      sys().access(p1(), 1, W, sizeof(seen), false, [&](uint8_t* d, uint64_t, uint64_t n) { std::memcpy(&seen, d, n); });
      const uint32_t cpu = round | 0x80000000u;
      sys().access(p1(), 1, W + 8, sizeof(cpu), true, [&](uint8_t* d, uint64_t, uint64_t n) { std::memcpy(d, &cpu, n); });
      uint32_t dev_seen;
      std::memcpy(&dev_seen, dev(got[0]) + 8, sizeof(dev_seen));
      if (seen != round || dev_seen != cpu) mismatches++;
      unpin_user_page(&sys(), got[0]);
      rounds = round;
    }
  });
  // Both sides make progress before the end (the machine may be busy: a time limit stops a
  // starved run, which then fails the checks below).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (int forks = 0; (forks < 150 || rounds.load() < 100) && std::chrono::steady_clock::now() < deadline; forks++) {
    Result<Process*> child = sys().fork(p1());
    ASSERT_TRUE(child.ok());
    EXPECT_TRUE(has_pattern(child.value(), W + P, 3 * P, 6, 2));
    sys().exit(child.value());
  }
  stop = true;
  device.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(rounds.load(), 0u);
}

// Migration keeps moving the range between the nodes while a device pins, writes and checks:
// a pinned page must never be moved (the process would then see another page than the
// device), and a page being migrated is pinned only once the migration is over.
TEST_F(GupPinTest, PinsRacingMigrationNeverSplitTheDeviceFromTheProcess) {
  map(p1(), W, 8 * P);
  write_pattern(p1(), W, 8 * P, 7);
  std::atomic<bool> stop{false};
  std::atomic<int> mismatches{0}, moved{0};
  std::thread migrator([&] {
    for (int node = 0; !stop.load(); node ^= 1) {
      Result<uint64_t> r = sys().migrate_pages(p1(), W, 8 * P, node);
      if (r.ok()) moved += static_cast<int>(r.value());
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  for (uint32_t round = 1; (round < 400 || moved.load() < 50) && std::chrono::steady_clock::now() < deadline; round++) {
    const uint64_t addr = W + (round % 8) * P;
    std::vector<uint64_t> got;
    ASSERT_EQ(pin(addr, 1, FOLL_WRITE, &got), 1);
    std::memcpy(dev(got[0]) + 16, &round, sizeof(round));
    uint32_t seen = 0;
    sys().access(p1(), 0, addr + 16, sizeof(seen), false, [&](uint8_t* d, uint64_t, uint64_t n) { std::memcpy(&seen, d, n); });
    if (seen != round || pfn_at(addr) != got[0]) mismatches++;
    unpin_user_page(&sys(), got[0]);
  }
  stop = true;
  migrator.join();
  EXPECT_EQ(mismatches.load(), 0);
  EXPECT_GT(moved.load(), 0);
}

}  // namespace
}  // namespace mirrormm::testing
