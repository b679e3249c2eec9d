// A secondary MMU outside the mirrormm tree, using only the installed public API: a device
// page table kept coherent with one process's CPU page tables by an interval notifier and the
// read_begin/read_retry protocol (the shape of examples/secondary_mmu.cc). The device mirrors
// four pages, the CPU then changes and unmaps some of them, and the coherence checker, which
// reports a device mapping that outlives or outranks its CPU PTE, must stay silent. Prints
// each step and exits 0 when every expectation held, 1 otherwise.
#include <cstdio>
#include <map>
#include <mutex>

#include "mirrormm/config.h"
#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mirrormm/version.h"

using namespace mirrormm;

namespace {

constexpr uint64_t kPage = 4096;

// The driver: its page table (address -> frame, writable) and the lock that invalidate()
// and the fault path share.
struct Driver : MmuIntervalNotifier {
  std::mutex update;
  std::map<uint64_t, std::pair<uint64_t, bool>> ptes;
  int invalidations = 0;

  static bool invalidate(MmuIntervalNotifier* sub, const MmuNotifierRange* range, uint64_t cur_seq) {
    auto* drv = static_cast<Driver*>(sub);
    std::unique_lock<std::mutex> g(drv->update, std::defer_lock);
    if (mmu_notifier_range_blockable(range)) {
      g.lock();
    } else if (!g.try_lock()) {
      return false;
    }
    mmu_interval_set_seq(sub, cur_seq);
    for (auto it = drv->ptes.lower_bound(range->start); it != drv->ptes.end() && it->first < range->end;) {
      mmu_checker_unmap(drv, range->mm, it->first);
      it = drv->ptes.erase(it);
    }
    drv->invalidations++;
    std::printf("  invalidate %s [%#llx, %#llx)\n", mmu_notify_event_name(range->event),
                static_cast<unsigned long long>(range->start), static_cast<unsigned long long>(range->end));
    return true;
  }

  // Mirrors [addr, addr+len): look the pages up (faulting them in), then install them unless
  // an invalidation ran meanwhile, in which case start again.
  Errno fault(uint64_t addr, uint64_t len) {
    for (;;) {
      uint64_t seq = mmu_interval_read_begin(this);
      std::map<uint64_t, std::pair<uint64_t, bool>> found;
      for (uint64_t a = addr; a < addr + len; a += kPage) {
        bool writable = false;
        Result<uint64_t> pfn = mm_get_pfn(mm, a, /*fault=*/true, /*write=*/false, &writable);
        if (!pfn.ok()) return pfn.error();
        found[a] = {pfn.value(), writable};
      }
      std::lock_guard<std::mutex> g(update);
      if (mmu_interval_read_retry(this, seq)) continue;
      for (auto& [a, e] : found) {
        mmu_checker_map(this, mm, a, e.first, e.second);
        ptes[a] = e;
      }
      return Errno::kOk;
    }
  }

  // Device DMA: reads one byte through the device page table (checked by the coherence
  // checker as it happens); false if the page is not mirrored.
  bool read_byte(uint64_t addr, uint8_t* out) {
    std::lock_guard<std::mutex> g(update);
    auto it = ptes.find(addr & ~(kPage - 1));
    return it != ptes.end() && device_access_pfn(this, mm, addr, it->second.first, out, 1, /*write=*/false);
  }

  size_t mirrored() {
    std::lock_guard<std::mutex> g(update);
    return ptes.size();
  }
};

const MmuIntervalNotifierOps kOps = [] {
  MmuIntervalNotifierOps o;
  o.invalidate = &Driver::invalidate;
  return o;
}();

int failures = 0;
void expect(bool ok, const char* what) {
  std::printf("  %s %s\n", ok ? "ok:  " : "FAIL:", what);
  if (!ok) failures++;
}

}  // namespace

int main() {
  std::printf("mirrormm %s: a driver mirroring 4 pages of process 1\n", MIRRORMM_VERSION);
  SystemConfig config;
  config.mmu_checker = true;  // judge every device mapping and access
  System sys(config);
  Process* p = sys.process(1);
  const uint64_t base = 0x200000000000;
  if (!sys.mmap(p, base, 4 * kPage, kProtRead | kProtWrite, kMapPrivate | kMapAnonymous | kMapFixed).ok()) return 1;
  const bool wrote =
      sys.access(p, 0, base + kPage, 1, /*write=*/true, [](uint8_t* d, uint64_t, uint64_t) { *d = 0x5a; }).ok();

  Driver drv;
  mmu_checker_name(&drv, "driver");  // how the checker's messages call it
  Mm* mm = get_task_mm(p);
  if (mmu_interval_notifier_insert(&drv, mm, base, 4 * kPage, &kOps) != Errno::kOk) return 1;
  mmput_ref(mm);

  std::printf("mirror pages 0-3\n");
  expect(drv.fault(base, 4 * kPage) == Errno::kOk && drv.mirrored() == 4, "4 pages mirrored");
  uint8_t b = 0;
  expect(wrote && drv.read_byte(base + kPage, &b) && b == 0x5a, "the device reads what the CPU wrote");
  std::printf("mprotect page 0 read-only\n");
  (void)sys.mprotect(p, base, kPage, kProtRead);
  expect(drv.mirrored() == 3, "page 0 left the device");
  std::printf("munmap pages 2-3\n");
  (void)sys.munmap(p, base + 2 * kPage, 2 * kPage);
  expect(drv.mirrored() == 1, "pages 2-3 left the device");
  expect(drv.fault(base + 2 * kPage, kPage) == Errno::kFault, "an unmapped page cannot be mirrored (-EFAULT)");
  std::printf("exit\n");
  sys.exit(p);
  expect(drv.mirrored() == 0, "exit emptied the device page table");
  mmu_interval_notifier_remove(&drv);
  mmu_checker_name(&drv, "");

  expect(sys.violations() == 0, "the coherence checker saw no violation");
  for (const std::string& m : sys.violation_messages()) std::printf("  checker: %s\n", m.c_str());
  std::printf("%d invalidations, %s\n", drv.invalidations, failures ? "FAILED" : "all good");
  return failures ? 1 : 0;
}
