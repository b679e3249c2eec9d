// A tiny secondary MMU written against mirrormm's notifier API, the way a driver would write
// it in the kernel: a device page table (one entry per page: frame and writability) kept
// coherent with the CPU page tables by an interval notifier and the read_begin/read_retry
// protocol. Build: part of the project (target secondary_mmu_example); run it with no
// arguments. It prints what the device sees around munmap, mprotect and fork+COW, and exits
// non-zero if the device ever reads data the CPU did not write or the coherence checker
// objects.
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>

#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"

using namespace mirrormm;

namespace {

constexpr uint64_t kPage = 4096;

// The "driver": a device page table and the lock that invalidate() and the fault path share
// (the "update" lock of Documentation/mm/hmm.rst).
struct TinyDevice : MmuIntervalNotifier {
  System* sys = nullptr;
  std::mutex update;
  std::map<uint64_t, std::pair<uint64_t, bool>> ptes;  // addr -> (pfn, writable)
  int invalidations = 0;

  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
    auto* dev = static_cast<TinyDevice*>(sub);
    std::unique_lock<std::mutex> g(dev->update, std::defer_lock);
    if (mmu_notifier_range_blockable(range)) {
      g.lock();
    } else if (!g.try_lock()) {
      return false;  // non-blocking context and we would have to wait
    }
    mmu_interval_set_seq(sub, cur_seq);  // unconditionally, under the update lock
    for (auto it = dev->ptes.lower_bound(range->start); it != dev->ptes.end() && it->first < range->end;) {
      mmu_checker_unmap(dev, range->mm, it->first);
      it = dev->ptes.erase(it);
    }
    dev->invalidations++;
    std::printf("  device: invalidate %-14s [%#llx, %#llx)\n", mmu_notify_event_name(range->event),
                static_cast<unsigned long long>(range->start), static_cast<unsigned long long>(range->end));
    return true;
  }

  // The device faults [addr, addr+len) in: the hmm_range_fault loop.
  Errno fault(uint64_t addr, uint64_t len, bool write) {
    for (;;) {
      uint64_t seq = mmu_interval_read_begin(this);
      std::map<uint64_t, std::pair<uint64_t, bool>> found;
      for (uint64_t a = addr; a < addr + len; a += kPage) {
        bool writable = false;
        Result<uint64_t> pfn = mm_get_pfn(mm, a, /*fault=*/true, write, &writable);
        if (!pfn.ok()) return pfn.error();
        found[a] = {pfn.value(), writable};
      }
      std::lock_guard<std::mutex> g(update);
      if (mmu_interval_read_retry(this, seq)) continue;  // an invalidation ran meanwhile
      for (auto& [a, e] : found) {
        mmu_checker_map(this, mm, a, e.first, e.second);
        ptes[a] = e;
      }
      return Errno::kOk;
    }
  }

  // Device DMA: reads one byte through the device page table; false if not mapped.
  bool read_byte(uint64_t addr, uint8_t* out) {
    std::lock_guard<std::mutex> g(update);
    auto it = ptes.find(addr & ~(kPage - 1));
    if (it == ptes.end()) return false;
    // The DMA itself: checked against the CPU page tables as it happens.
    return device_access_pfn(this, mm, addr, it->second.first, out, 1, false);
  }
};

const MmuIntervalNotifierOps kOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &TinyDevice::invalidate;
  return o;
}();

int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("%s %s\n", ok ? "  ok:  " : "  FAIL:", what);
  if (!ok) failures++;
}

}  // namespace

int main() {
  SystemConfig config;
  config.mmu_checker = true;  // judge every device mapping and access
  System sys(config);
  Process* p = sys.process(1);
  const uint64_t base = 0x200000000000;
  Result<uint64_t> r = sys.mmap(p, base, 8 * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed);
  if (!r.ok()) return 1;
  auto cpu_write = [&](Process* proc, uint64_t a, uint8_t v) {
    return sys.access(proc, 0, a, 1, true, [v](uint8_t* d, uint64_t, uint64_t) { *d = v; }).ok();
  };
  cpu_write(p, base, 0x11);

  TinyDevice dev;
  dev.sys = &sys;
  mmu_checker_name(&dev, "TinyDevice");  // how the checker's messages call it
  Mm* mm = get_task_mm(p);
  if (mmu_interval_notifier_insert(&dev, mm, base, 8 * kPage, &kOps) != Errno::kOk) return 1;
  mmput_ref(mm);

  std::printf("fault 8 pages for reading\n");
  expect(dev.fault(base, 8 * kPage, false) == Errno::kOk, "device fault");
  uint8_t b = 0;
  expect(dev.read_byte(base, &b) && b == 0x11, "device reads what the CPU wrote");

  std::printf("mprotect the first two pages read-only\n");
  (void)sys.mprotect(p, base, 2 * kPage, kProtRead);
  expect(!dev.read_byte(base, &b), "the device mapping of page 0 is gone");

  std::printf("fork, then the parent writes page 4 (copy-on-write)\n");
  expect(dev.fault(base + 4 * kPage, kPage, false) == Errno::kOk, "device fault page 4");
  Result<Process*> child = sys.fork(p);
  cpu_write(p, base + 4 * kPage, 0x44);
  expect(dev.fault(base + 4 * kPage, kPage, false) == Errno::kOk, "device refaults page 4");
  expect(dev.read_byte(base + 4 * kPage, &b) && b == 0x44, "the device sees the parent's new copy");

  std::printf("munmap pages 6-7\n");
  (void)sys.munmap(p, base + 6 * kPage, 2 * kPage);
  expect(!dev.read_byte(base + 6 * kPage, &b), "unmapped pages are gone from the device");
  expect(dev.fault(base + 6 * kPage, kPage, false) == Errno::kFault, "and cannot be faulted again (-EFAULT)");

  std::printf("exit\n");
  if (child.ok()) sys.exit(child.value());
  sys.exit(p);
  expect(dev.ptes.empty(), "exit (RELEASE, then UNMAP) emptied the device page table");
  mmu_interval_notifier_remove(&dev);
  mmu_checker_name(&dev, "");

  expect(sys.violations() == 0, "the coherence checker saw no violation");
  for (const std::string& m : sys.violation_messages()) std::printf("  checker: %s\n", m.c_str());
  std::printf("%d invalidations, %s\n", dev.invalidations, failures ? "FAILED" : "all good");
  return failures ? 1 : 0;
}
