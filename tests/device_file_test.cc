// Mappings of a character device filled by its driver (mirrormm/device_file.h), through the
// dmirror driver's mmap of /dev/hmm_dmirrorN: what the VMA looks like, and how munmap, fork,
// mprotect, mremap, madvise, msync, faults, reclaim, hmm_range_fault and migration treat
// driver pages inserted with vm_insert_page.
#include "mirrormm/device_file.h"

#include <vector>

#include "mirrormm/dmirror.h"
#include "mirrormm/gup.h"
#include "mirrormm/hmm.h"
#include "mm_test_util.h"

namespace mirrormm::testing {
namespace {

constexpr uint64_t kMsSync = 4;
constexpr uint64_t kMremapMaymove = 1, kMremapFixed = 2;

class DeviceFileTest : public ModelTest {
 protected:
  void SetUp() override {
    driver_ = std::make_unique<DmirrorDriver>(&sys());
    Result<std::unique_ptr<Dmirror>> r = driver_->open(0, p1());
    ASSERT_TRUE(r.ok());
    fd_ = std::move(r.value());
  }
  void TearDown() override {
    fd_.reset();
    driver_.reset();
    EXPECT_EQ(sys().violations(), 0u);
    EXPECT_EQ(sys().debug_check_consistency(), 0u);
  }
  // mmap of the device file at W (MAP_FIXED), npages pages.
  uint64_t map_device(uint64_t npages, uint64_t prot = RW, uint64_t type = kMapPrivate, Process* p = nullptr) {
    Result<uint64_t> r = fd_->mmap(p ? p : p1(), W, npages * P, prot, type | kMapFixed, 0);
    EXPECT_TRUE(r.ok()) << errno_name(r.error());
    return r.ok() ? r.value() : 0;
  }
  SmapsEntry smaps_at(Process* p, uint64_t addr) {
    Result<std::vector<SmapsEntry>> r = sys().smaps(p);
    EXPECT_TRUE(r.ok());
    if (r.ok())
      for (const SmapsEntry& e : r.value())
        if (e.vma.start <= addr && addr < e.vma.end) return e;
    ADD_FAILURE() << "no VMA at " << addr;
    return {};
  }
  PageInfo info(Process* p, uint64_t addr) {
    Result<PageInfo> r = sys().pageinfo(p, addr);
    EXPECT_TRUE(r.ok());
    return r.ok() ? r.value() : PageInfo{};
  }
  std::vector<uint8_t> snapshot(uint64_t addr, uint64_t npages) {
    std::vector<uint8_t> m(npages, 0xaa);
    HmmDmirrorCmd c;
    c.addr = addr;
    c.ptr = m.data();
    c.npages = npages;
    EXPECT_EQ(fd_->ioctl(DmirrorIoctl::kSnapshot, &c), Errno::kOk);
    return m;
  }

  std::unique_ptr<DmirrorDriver> driver_;
  std::unique_ptr<Dmirror> fd_;
};

// The VMA: named after the device, VM_MIXEDMAP (smaps `mm`), accounted as a private writable
// file mapping; its pages are zeroed driver pages, file pages in rss, on no LRU list.
TEST_F(DeviceFileTest, MapsSmapsAndPages) {
  const uint64_t addr = map_device(4);
  EXPECT_EQ(maps(p1()), "200000000000-200000004000 rw-p 0 /dev/hmm_dmirror0");
  SmapsEntry e = smaps_at(p1(), addr);
  EXPECT_EQ(e.vm_flags, "rd wr mr mw me ac mm ");
  EXPECT_EQ(e.resident, 4 * P);
  EXPECT_EQ(e.anonymous, 0u);
  EXPECT_EQ(e.private_clean, 4 * P);
  EXPECT_EQ(bytes(p1(), addr, 4 * P), std::vector<uint8_t>(4 * P, 0));
  PageInfo pi = info(p1(), addr + P);
  EXPECT_EQ(pi.entry, PageInfo::Entry::kPresent);
  EXPECT_FALSE(pi.writable);  // a private mapping's vm_page_prot
  EXPECT_EQ(pi.mapcount, 1);
  EXPECT_EQ(pi.refcount, 1);  // the PTE's: the driver dropped its own
  EXPECT_EQ(pi.lru, "none");
  EXPECT_EQ(pi.owner, "none");
  // A shared writable mapping maps them writable, with no VM_ACCOUNT.
  ASSERT_TRUE(sys().munmap(p1(), addr, 4 * P).ok());
  const uint64_t s = map_device(2, RW, kMapShared);
  EXPECT_EQ(smaps_at(p1(), s).vm_flags, "rd wr sh mr mw me ms mm ");
  EXPECT_TRUE(info(p1(), s).writable);
}

// munmap drops the PTEs' references: the pages go back to the allocator.
TEST_F(DeviceFileTest, MunmapFreesThePages) {
  // The page tables an unmap leaves behind are counted in the baseline.
  map(p1(), W, 16 * P);
  ASSERT_TRUE(fill(p1(), W, 16 * P, 1).ok());
  ASSERT_TRUE(sys().munmap(p1(), W, 16 * P).ok());
  const uint64_t before = sys().mem().nr_used();
  const uint64_t addr = map_device(16);
  EXPECT_GE(sys().mem().nr_used(), before + 16);
  ASSERT_TRUE(sys().munmap(p1(), addr, 16 * P).ok());
  EXPECT_EQ(sys().mem().nr_used(), before);
}

// The VMA has no fault handler: a write to the private mapping copies the page (COW), an
// address whose page was zapped is a bus error, and so is a part mremap grew.
TEST_F(DeviceFileTest, FaultsCowAndSigbus) {
  const uint64_t addr = map_device(2);
  ASSERT_TRUE(fill(p1(), addr, P, 0x5a).ok());
  EXPECT_EQ(bytes(p1(), addr, P), std::vector<uint8_t>(P, 0x5a));
  EXPECT_EQ(info(p1(), addr).owner, "anon");
  EXPECT_EQ(smaps_at(p1(), addr).anonymous, P);
  ASSERT_TRUE(sys().madvise(p1(), addr + P, P, kMadvDontneed).ok());
  AccessResult r = touch_read(p1(), addr + P);
  EXPECT_EQ(r.kind, AccessResult::Kind::kBus);
  EXPECT_EQ(r.fault_addr, addr + P);
  // mremap may grow it (no VM_DONTEXPAND), but not in place: a VM_SPECIAL VMA never takes
  // the vma_merge_extend path (-ENOMEM). Moved and grown, it keeps its pages, and the new
  // page has nothing behind it.
  EXPECT_EQ(sys().mremap(p1(), addr, 2 * P, 3 * P, 0, 0).error(), Errno::kNoMem);
  Result<uint64_t> m = sys().mremap(p1(), addr, 2 * P, 3 * P, kMremapMaymove | kMremapFixed, W + 64 * P);
  ASSERT_TRUE(m.ok()) << errno_name(m.error());
  EXPECT_EQ(bytes(p1(), W + 64 * P, P), std::vector<uint8_t>(P, 0x5a));
  EXPECT_EQ(touch_read(p1(), W + 66 * P).kind, AccessResult::Kind::kBus);
}

// A shared mapping writes the driver page itself; fork copies the PTEs (the child shares the
// page), and a private mapping's pages stay shared read-only until one side writes.
TEST_F(DeviceFileTest, ForkSharesTheDriverPages) {
  const uint64_t addr = map_device(2, RW, kMapShared);
  ASSERT_TRUE(fill(p1(), addr, 2 * P, 7).ok());
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Process* c = child.value();
  EXPECT_EQ(info(c, addr).pfn, info(p1(), addr).pfn);
  EXPECT_EQ(info(p1(), addr).mapcount, 2);
  ASSERT_TRUE(fill(c, addr, P, 9).ok());
  EXPECT_EQ(bytes(p1(), addr, P), std::vector<uint8_t>(P, 9));
  EXPECT_EQ(smaps_at(c, addr).vm_flags, "rd wr sh mr mw me ms mm ");
  sys().exit(c);
  EXPECT_EQ(info(p1(), addr).mapcount, 1);

  ASSERT_TRUE(sys().munmap(p1(), addr, 2 * P).ok());
  const uint64_t priv = map_device(1);
  child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  c = child.value();
  EXPECT_EQ(info(c, priv).pfn, info(p1(), priv).pfn);
  ASSERT_TRUE(fill(c, priv, P, 3).ok());  // the child's own copy
  EXPECT_EQ(bytes(p1(), priv, P), std::vector<uint8_t>(P, 0));
  EXPECT_EQ(bytes(c, priv, P), std::vector<uint8_t>(P, 3));
  sys().exit(c);
}

// mprotect changes the PTEs as for any mapping; a private mapping stays copy-on-write.
TEST_F(DeviceFileTest, Mprotect) {
  const uint64_t addr = map_device(2);
  ASSERT_TRUE(sys().mprotect(p1(), addr, 2 * P, kProtRead).ok());
  EXPECT_EQ(fill(p1(), addr, 1, 1).kind, AccessResult::Kind::kSegv);
  ASSERT_TRUE(sys().mprotect(p1(), addr, P, kProtNone).ok());
  EXPECT_EQ(touch_read(p1(), addr).kind, AccessResult::Kind::kSegv);
  EXPECT_EQ(bytes(p1(), addr + P, P), std::vector<uint8_t>(P, 0));
  ASSERT_TRUE(sys().mprotect(p1(), addr, 2 * P, RW).ok());
  EXPECT_FALSE(info(p1(), addr + P).writable);
  EXPECT_EQ(smaps_at(p1(), addr).vm_flags, "rd wr mr mw me ac mm ");
}

// Reclaim never takes them (not on the LRU), and PAGEOUT skips them; the file has no fsync
// and cannot punch holes.
TEST_F(DeviceFileTest, ReclaimMsyncAndRemove) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  const uint64_t addr = map_device(8, RW, kMapShared);
  ASSERT_TRUE(fill(p1(), addr, 8 * P, 0x11).ok());
  const uint64_t pfn = info(p1(), addr).pfn;
  ASSERT_TRUE(sys().madvise(p1(), addr, 8 * P, kMadvPageout).ok());
  (void)sys().reclaim(1000);
  EXPECT_EQ(smaps_at(p1(), addr).resident, 8 * P);
  EXPECT_EQ(info(p1(), addr).pfn, pfn);
  EXPECT_EQ(bytes(p1(), addr, 8 * P), std::vector<uint8_t>(8 * P, 0x11));
  EXPECT_EQ(sys().msync(p1(), addr, 8 * P, kMsSync).error(), Errno::kInval);
  EXPECT_TRUE(sys().msync(p1(), addr, 8 * P, 1).ok());  // MS_ASYNC does not call the file
  EXPECT_EQ(sys().madvise(p1(), addr, P, kMadvRemove).error(), Errno::kNoDev);
}

// A device reads and writes the pages through hmm_range_fault (they are normal pages), GUP
// references them, and migration refuses the VMA (VM_SPECIAL).
TEST_F(DeviceFileTest, HmmGupAndMigration) {
  const uint64_t addr = map_device(2, RW, kMapShared);
  EXPECT_EQ(snapshot(addr, 2), std::vector<uint8_t>(2, HMM_DMIRROR_PROT_WRITE));
  std::vector<uint8_t> data(2 * P, 0x42);
  HmmDmirrorCmd c;
  c.addr = addr;
  c.ptr = data.data();
  c.npages = 2;
  ASSERT_EQ(fd_->ioctl(DmirrorIoctl::kWrite, &c), Errno::kOk);
  EXPECT_EQ(bytes(p1(), addr, 2 * P), data);
  c.ptr = data.data();
  EXPECT_EQ(fd_->ioctl(DmirrorIoctl::kMigrateToDev, &c), Errno::kInval);
  Mm* mm = get_task_mm(p1());
  ASSERT_NE(mm, nullptr);
  uint64_t pfn = 0;
  mmap_read_lock(mm);
  EXPECT_EQ(get_user_pages_remote(mm, addr, 1, FOLL_WRITE, &pfn), 1);
  mmap_read_unlock(mm);
  mmput_ref(mm);
  EXPECT_EQ(pfn, info(p1(), addr).pfn);
  put_page_pfn(&sys(), pfn);
  // The snapshot of a private mapping: read-only until the CPU writes (then an anonymous copy).
  ASSERT_TRUE(sys().munmap(p1(), addr, 2 * P).ok());
  const uint64_t priv = map_device(1);
  EXPECT_EQ(snapshot(priv, 1), std::vector<uint8_t>(1, HMM_DMIRROR_PROT_READ));
  ASSERT_TRUE(fill(p1(), priv, 1, 1).ok());
  EXPECT_EQ(snapshot(priv, 1), std::vector<uint8_t>(1, HMM_DMIRROR_PROT_WRITE));
}

// A closed file cannot be mapped.
TEST_F(DeviceFileTest, ClosedFile) {
  fd_->close();
  EXPECT_EQ(fd_->mmap(p1(), W, P, kProtRead, kMapShared, 0).error(), Errno::kBadf);
}

// A driver of the test's own: vm_insert_page's refusals, and a hook that fails after
// inserting pages: the mmap fails with its errno, the inserted pages are zapped and freed,
// and nothing is mapped (the old mapping MAP_FIXED replaced is gone, as in Linux).
struct TestDriver {
  System* sys = nullptr;
  std::vector<Errno> results;  // what each vm_insert_page answered
  std::vector<uint64_t> pfns;  // the pages it allocated
  static Errno mmap(File* file, Vma* vma, uint64_t start, uint64_t end) {
    auto* d = static_cast<TestDriver*>(device_file_private_data(file));
    const uint64_t pfn = alloc_driver_page(d->sys);
    if (!pfn) return Errno::kNoMem;
    d->results.push_back(vm_insert_page(vma, end, pfn));        // outside the VMA
    d->results.push_back(vm_insert_page(vma, start + 1, pfn));  // not page aligned
    d->results.push_back(vm_insert_page(vma, start, pfn));
    d->results.push_back(vm_insert_page(vma, start, pfn));  // already mapped
    const uint64_t second = alloc_driver_page(d->sys);
    d->pfns = {pfn, second};
    d->results.push_back(vm_insert_page(vma, start + P, second));
    put_page_pfn(d->sys, second);
    put_page_pfn(d->sys, pfn);
    d->results.push_back(vm_insert_page(vma, start + 2 * P, pfn));  // mapped: still referenced
    return end - start > 3 * P ? Errno::kNoDev : Errno::kOk;
  }
};

TEST_F(DeviceFileTest, DriverHookErrors) {
  static const DeviceFileOps ops = [] {
    DeviceFileOps o;
    o.mmap = &TestDriver::mmap;
    return o;
  }();
  TestDriver drv;
  drv.sys = &sys();
  File* file = open_device_file(&sys(), "/dev/test", &ops, &drv, /*writable=*/true);
  Result<uint64_t> r = sys().mmap(p1(), W, 3 * P, kProtRead, kMapShared | kMapFixed, file, 0);
  ASSERT_TRUE(r.ok()) << errno_name(r.error());
  EXPECT_EQ(drv.results, (std::vector<Errno>{Errno::kFault, Errno::kFault, Errno::kOk, Errno::kBusy, Errno::kOk,
                                             Errno::kOk}));
  EXPECT_EQ(maps(p1()), "200000000000-200000003000 r--s 0 /dev/test");
  EXPECT_EQ(info(p1(), W).pfn, info(p1(), W + 2 * P).pfn);
  EXPECT_EQ(info(p1(), W).mapcount, 2);
  // An anonymous page may not be inserted.
  map(p1(), W + 16 * P, P);
  ASSERT_TRUE(fill(p1(), W + 16 * P, P, 1).ok());
  const uint64_t anon = info(p1(), W + 16 * P).pfn;
  {
    Mm* mm = get_task_mm(p1());
    ASSERT_NE(mm, nullptr);
    mmap_write_lock(mm);
    EXPECT_EQ(vm_insert_page(mm->find_vma(W), W + P, anon), Errno::kInval);
    mmap_write_unlock(mm);
    mmput_ref(mm);
  }
  ASSERT_TRUE(sys().munmap(p1(), W, 32 * P).ok());
  // A failing hook.
  map(p1(), W, 4 * P);
  drv.results.clear();
  r = sys().mmap(p1(), W, 4 * P, kProtRead, kMapShared | kMapFixed, file, 0);
  EXPECT_EQ(r.error(), Errno::kNoDev);
  EXPECT_EQ(drv.results.size(), 6u);
  EXPECT_EQ(maps(p1()), "none");
  ASSERT_EQ(drv.pfns.size(), 2u);
  for (uint64_t pfn : drv.pfns) EXPECT_TRUE(sys().mem().pfn_to_page(pfn)->test(PG_free)) << pfn;
  put_device_file(file);
}

// A VMA can outlive the open file; its pages stay mapped and readable.
TEST_F(DeviceFileTest, MappingOutlivesClose) {
  const uint64_t addr = map_device(1, RW, kMapShared);
  ASSERT_TRUE(fill(p1(), addr, P, 4).ok());
  fd_.reset();
  EXPECT_EQ(bytes(p1(), addr, P), std::vector<uint8_t>(P, 4));
  EXPECT_EQ(maps(p1()), "200000000000-200000001000 rw-s 0 /dev/hmm_dmirror0");
}

}  // namespace
}  // namespace mirrormm::testing
