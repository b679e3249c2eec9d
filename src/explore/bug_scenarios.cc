// The catalog scenarios (explore::bug_scenario): each bug of mirrormm/bugs.h whose race fits
// two or three threads, written as the smallest setup and threads that meet its window. Every
// scenario is clean for every schedule within the default bound without its bug, and some
// schedule shows the bug with it.
#include <fmt/format.h>

#include <map>

#include "mirrormm/bugs.h"
#include "mirrormm/explore.h"
#include "mirrormm/mman.h"
#include "mirrormm/mmu_notifier.h"
#include "mirrormm/secondary_mmu.h"
#include "mirrormm/system.h"
#include "mm/lru.h"
#include "mm/migrate.h"
#include "mm/lock_order.h"
#include "mm/oom_kill.h"
#include "mm/physmem.h"
#include "mm/rmap.h"
#include "mm/slab.h"
#include "mm/vmscan.h"

namespace mirrormm::explore {

namespace {

constexpr uint64_t kPage = 4096;
constexpr uint64_t kAddr = 0x200000000000;
constexpr uint64_t kScenarioMemory = 16ull << 20;

// What a scenario's setup gives its threads: the process and the devices it attached, kept
// alive by the threads' and the check's captures.
struct Stage {
  System* sys = nullptr;
  Process* p = nullptr;
  std::unique_ptr<SecondaryMmu> dev;
  bool detached = false;
};

// The driver kind `base` under the scenario's bug (its broken variant when the bug is one).
std::string kind_for(const std::string& bug, bool injected, const std::string& base) {
  return injected ? bugs::driver_kind(*bugs::find_bug(bug), base) : base;
}

// pages anonymous pages at kAddr, written (so present and writable), and a driver of kind
// attached over them when kind is not empty.
std::shared_ptr<Stage> stage(System& sys, uint64_t pages, const std::string& kind, uint64_t prot = kProtRead | kProtWrite) {
  auto st = std::make_shared<Stage>();
  st->sys = &sys;
  st->p = sys.process(1);
  MM_BUG_ON(!sys.mmap(st->p, kAddr, pages * kPage, prot, kMapPrivate | kMapAnonymous | kMapFixed).ok());
  if (prot & kProtWrite)
    MM_BUG_ON(!sys.access(st->p, 0, kAddr, pages * kPage, true, [](uint8_t* d, uint64_t, uint64_t n) {
                    for (uint64_t i = 0; i < n; i++) d[i] = static_cast<uint8_t>(i + 1);
                  }).ok());
  if (!kind.empty()) {
    auto dev = attach_secondary_mmu(kind, st->p, kAddr, pages * kPage);
    MM_BUG_ON(!dev.ok());
    st->dev = std::move(dev.value());
  }
  return st;
}

void detach(Stage& st) {
  if (st.dev && !st.detached) st.dev->detach();
  st.detached = true;
}

Instance with_teardown(std::shared_ptr<Stage> st, std::vector<std::function<void()>> threads) {
  Instance in;
  in.threads = std::move(threads);
  in.teardown = [st] { detach(*st); };
  return in;
}

// A device fault racing a zap of the page it maps: the shadow MMU must honour the
// invalidation's in-progress count (kvm), the mirror its read_retry (xpmem).
Instance fault_racing_zap(System& sys, const std::string& kind, bool write) {
  auto st = stage(sys, 1, kind);
  return with_teardown(st, {[st] { (void)st->sys->madvise(st->p, kAddr, kPage, kMadvDontneed); },
                            [st, write] { (void)st->dev->fault(kAddr, kPage, write); }});
}

// A migration of the page at kAddr to node 1, as compaction or NUMA balancing migrates: the
// page isolated in the setup, then migrate_folio without the mmap_lock (which the
// migrate_pages system call would hold across the whole migration), so that another thread's
// system call may meet the page's migration entries.
std::function<void()> migrate_thread(const std::shared_ptr<Stage>& st) {
  PhysMem& mem = st->sys->mem();
  mirrormm::Result<PageInfo> info = st->sys->pageinfo(st->p, kAddr);
  MM_BUG_ON(!info.ok());
  Page* page = mem.pfn_to_page(info.value().pfn);
  lru_add_drain_all(mem);
  MM_BUG_ON(!folio_isolate_lru(mem, page));
  return [st, page] {
    PhysMem& m = st->sys->mem();
    if (migrate_folio(st->sys, page, 1, st->sys) == Errno::kOk) m.put_page(page);
    else folio_putback_lru(m, page);
  };
}

// A device that shares the CPU page tables (an SVA IOTLB) with a read of the page done, so
// that its IOTLB caches the translation when the threads start.
std::shared_ptr<Stage> iotlb_stage(System& sys, const std::string& kind) {
  auto st = stage(sys, 1, kind);
  std::vector<uint8_t> buf;
  MM_BUG_ON(!st->dev->read(kAddr, 8, &buf));
  return st;
}

// The slab allocator's debug reports (a use of a freed object) become violations of the run's
// System while a scenario runs: its check sees them like the coherence checker's. The hook and
// the checks are process-wide; runs are sequential, and the teardown puts both back.
void report_slab_uses(const std::shared_ptr<Stage>& st, Instance& in) {
  const bool was_checking = KmemCache::debug_checks();
  KmemCache::debug_set_checks(true);
  System* sys = st->sys;
  KmemCache::debug_set_report_hook([sys](std::string_view what) {
    // Without the object's address, which differs between runs: a replay reports the same.
    std::string text(what);
    if (const size_t at = text.find(" object 0x"); at != std::string::npos) {
      const size_t end = text.find(' ', at + 8);
      text.erase(at + 7, end == std::string::npos ? std::string::npos : end - (at + 7));
    }
    sys->report_violation("slab debug report: a freed anon_vma used", text);
  });
  std::function<void()> teardown = std::move(in.teardown);
  in.teardown = [teardown, was_checking] {
    KmemCache::debug_set_report_hook(nullptr);
    KmemCache::debug_set_checks(was_checking);
    if (teardown) teardown();
  };
}

// A driver whose invalidate_range_start takes its lock and has no end (Linux refuses a
// subscriber with both a failing start and an end): blocking, it waits for the device; non-
// blocking (the OOM reaper), it only tries the lock and answers -EAGAIN while the device
// holds it.
struct BusyDriver : MmuNotifier {
  Mutex lock{lock_class::kShadowMmuLock};  // a driver lock, ordered as the shadow MMU's
  BusyDriver() { ops = &busy_ops(); }
  static int start(MmuNotifier* sub, const MmuNotifierRange* range) {
    auto* d = static_cast<BusyDriver*>(sub);
    if (mmu_notifier_range_blockable(range)) {
      d->lock.lock();
    } else if (!d->lock.try_lock()) {
      return -11;  // -EAGAIN: it would sleep
    }
    d->lock.unlock();
    return 0;
  }
  static const MmuNotifierOps& busy_ops() {
    static const MmuNotifierOps o = [] {
      MmuNotifierOps ops;
      ops.invalidate_range_start = &BusyDriver::start;
      return ops;
    }();
    return o;
  }
};

using Builder = std::function<Instance(System&, bool injected)>;

struct Entry {
  SystemConfig config;
  Builder build;
  int bound = 2;  // the preemption bound within which the scenario is clean without its bug
};

// A small machine: every run builds a fresh one, and the frames' descriptors are most of
// what that costs.
SystemConfig small(int nodes = 1) {
  SystemConfig c;
  c.memory_bytes = kScenarioMemory;
  c.nodes = nodes;
  return c;
}

const std::map<std::string, Entry>& entries() {
  static const std::map<std::string, Entry> m = [] {
    std::map<std::string, Entry> e;
    e["kvm-ignores-in-progress"] = {small(), [](System& sys, bool injected) {
                                      return fault_racing_zap(
                                          sys, kind_for("kvm-ignores-in-progress", injected, "shadow"), false);
                                    }};
    e["skip-read-retry"] = {small(), [](System& sys, bool injected) {
                              return fault_racing_zap(sys, kind_for("skip-read-retry", injected, "xpmem"), true);
                            }};
    // mmu_notifier_unregister racing exit's __mmu_notifier_release.
    e["release-twice"] = {small(), [](System& sys, bool) {
                            auto st = stage(sys, 1, "shadow");
                            return with_teardown(st, {[st] { st->sys->exit(st->p); }, [st] { detach(*st); }});
                          }};
    // A device mapping made, then the driver unregisters while the process unmaps the page:
    // unregister must call release() so that the mapping goes before the frame does.
    e["unregister-skips-release"] = {small(), [](System& sys, bool) {
                                       auto st = stage(sys, 1, "shadow");
                                       MM_BUG_ON(!st->dev->fault(kAddr, kPage, true).ok());
                                       return with_teardown(
                                           st, {[st] { detach(*st); },
                                                [st] { (void)st->sys->munmap(st->p, kAddr, kPage); }});
                                     }};
    // mmu_interval_notifier_remove racing an invalidation that defers the removal.
    e["interval-remove-race"] = {small(), [](System& sys, bool) {
                                   auto st = stage(sys, 1, "interval");
                                   return with_teardown(
                                       st, {[st] { (void)st->sys->madvise(st->p, kAddr, kPage, kMadvDontneed); },
                                            [st] { detach(*st); }});
                                 }};
    // A write migration entry met by mprotect(PROT_READ) or fork.
    e["mprotect-write-migration"] = {small(2), [](System& sys, bool) {
                                       auto st = stage(sys, 1, "");
                                       return with_teardown(
                                           st, {migrate_thread(st),
                                                [st] { (void)st->sys->mprotect(st->p, kAddr, kPage, kProtRead); }});
                                     }};
    e["fork-write-migration"] = {small(2), [](System& sys, bool) {
                                   auto st = stage(sys, 1, "");
                                   return with_teardown(st, {migrate_thread(st), [st] { (void)st->sys->fork(st->p); }});
                                 }};
    // Exit racing a driver's unregister, with a driver whose release() frees its subscription
    // when the bug is injected (the core reaches it afterwards: an SRCU walk, the unhash).
    e["release-frees-notifier"] = {small(), [](System& sys, bool injected) {
                                     auto st = stage(sys, 1, kind_for("release-frees-notifier", injected, "shadow"));
                                     return with_teardown(st, {[st] { st->sys->exit(st->p); }, [st] { detach(*st); }});
                                   }};
    // madvise(MADV_DONTNEED) of a page an IOTLB caches, racing the device's read of it: the
    // zap's TLB flush (which reaches the IOTLB) must come before the page is freed.
    e["invalidate-after-free"] = {small(), [](System& sys, bool) {
                                    auto st = iotlb_stage(sys, "iotlb");
                                    return with_teardown(
                                        st, {[st] { (void)st->sys->madvise(st->p, kAddr, kPage, kMadvDontneed); },
                                             [st] {
                                               std::vector<uint8_t> buf;
                                               (void)st->dev->read(kAddr, 8, &buf);
                                             }});
                                  }};
    // A read-only page an IOTLB caches read-only; mprotect makes it writable while the device
    // writes it (its page request's write fault may do the upgrade itself): the upgrade must
    // reach the IOTLB, or the write faults forever on the read-only entry.
    e["secondary-tlb-upgrade"] = {small(), [](System& sys, bool injected) {
                                    auto st = stage(sys, 1, kind_for("secondary-tlb-upgrade", injected, "iotlb"));
                                    MM_BUG_ON(!sys.mprotect(st->p, kAddr, kPage, kProtRead).ok());
                                    std::vector<uint8_t> buf;
                                    MM_BUG_ON(!st->dev->read(kAddr, 8, &buf));
                                    return with_teardown(
                                        st, {[st] { (void)st->sys->mprotect(st->p, kAddr, kPage, kProtRead | kProtWrite); },
                                             [st] {
                                               const uint8_t data[8] = {9, 9, 9, 9, 9, 9, 9, 9};
                                               (void)st->dev->write(kAddr, 8, data);
                                             }});
                                  }};
    // An rmap walk of a page (holding the page, as reclaim does) racing the munmap of its
    // only mapping, which frees the anon_vma: the walk's lookup through page->mapping must
    // meet either the live anon_vma or, after the free, a type-stable one that its recheck
    // turns away.
    e["anon-vma-not-typesafe"] = {small(), [](System& sys, bool) {
                                    auto st = stage(sys, 1, "");
                                    mirrormm::Result<PageInfo> info = sys.pageinfo(st->p, kAddr);
                                    MM_BUG_ON(!info.ok());
                                    Page* page = sys.mem().pfn_to_page(info.value().pfn);
                                    sys.mem().get_page(page);
                                    Instance in = with_teardown(
                                        st, {[st, page] {
                                               RmapWalkControl rwc;
                                               rwc.sys = st->sys;
                                               rwc.rmap_one = [](Page*, Vma*, uint64_t) { return true; };
                                               lock_page(page);
                                               rmap_walk(page, rwc);
                                               unlock_page(page);
                                               st->sys->mem().put_page(page);
                                             },
                                             [st] { (void)st->sys->munmap(st->p, kAddr, kPage); }});
                                    report_slab_uses(st, in);
                                    return in;
                                  }};
    // Reclaim of a lazily freed (MADV_FREE) page that an IOTLB caches, racing the device's
    // read of it: the page must not be freed before the unmap's secondary-TLB invalidation.
    e["unmap-put-before-end"] = {small(), [](System& sys, bool) {
                                   auto st = stage(sys, 1, "");
                                   MM_BUG_ON(!sys.madvise(st->p, kAddr, kPage, kMadvFree).ok());
                                   auto dev = attach_secondary_mmu("iotlb", st->p, kAddr, kPage);
                                   MM_BUG_ON(!dev.ok());
                                   st->dev = std::move(dev.value());
                                   std::vector<uint8_t> buf;
                                   MM_BUG_ON(!st->dev->read(kAddr, 8, &buf));
                                   PhysMem& mem = sys.mem();
                                   mirrormm::Result<PageInfo> info = sys.pageinfo(st->p, kAddr);
                                   MM_BUG_ON(!info.ok());
                                   Page* page = mem.pfn_to_page(info.value().pfn);
                                   lru_add_drain_all(mem);
                                   MM_BUG_ON(!folio_isolate_lru(mem, page));
                                   return with_teardown(st, {[st, page] {
                                                               std::vector<Page*> isolated{page};
                                                               (void)reclaim_pages(st->sys, isolated);
                                                             },
                                                             [st] {
                                                               std::vector<uint8_t> out;
                                                               (void)st->dev->read(kAddr, 8, &out);
                                                             }});
                                 }};
    // The OOM reaper's non-blocking invalidation of a victim mirrored by two drivers on the
    // notifier list: a shadow MMU (a start that cannot fail, paired with an end) and a driver
    // whose start takes its lock, which a non-blocking start only tries, answering -EAGAIN
    // while the device holds it. Every start that succeeded must get its end.
    e["nonblock-start-no-end"] = {small(), [](System& sys, bool) {
                                    auto st = stage(sys, 1, "");
                                    auto busy = std::make_shared<BusyDriver>();
                                    MM_BUG_ON(mmu_notifier_register(busy.get(), st->p->mm()) != Errno::kOk);
                                    // Registered after it, the shadow MMU is called first.
                                    auto shadow = attach_secondary_mmu("shadow", st->p, kAddr, kPage);
                                    MM_BUG_ON(!shadow.ok());
                                    st->dev = std::move(shadow.value());
                                    MM_BUG_ON(!st->dev->fault(kAddr, kPage, false).ok());
                                    Instance in = with_teardown(st, {[st] { (void)oom_reap_task_mm(st->p->mm()); },
                                                                     [busy] {
                                                                       busy->lock.lock();
                                                                       point();  // the device works with the lock held
                                                                       busy->lock.unlock();
                                                                     }});
                                    std::function<void()> detach_dev = std::move(in.teardown);
                                    in.teardown = [detach_dev, st, busy] {
                                      detach_dev();
                                      mmu_notifier_unregister(busy.get(), st->p->mm());
                                    };
                                    return in;
                                  }};
    return e;
  }();
  return m;
}

}  // namespace

std::unique_ptr<Scenario> bug_scenario(const std::string& bug, bool injected) {
  auto it = entries().find(bug);
  if (it == entries().end() || !bugs::find_bug(bug)) return nullptr;
  auto s = std::make_unique<Scenario>();
  s->name = bug;
  s->config = it->second.config;
  s->preemption_bound = it->second.bound;
  if (injected) s->inject = bug;
  Builder build = it->second.build;
  s->setup = [build, injected](System& sys) { return build(sys, injected); };
  return s;
}

std::vector<std::string> bug_scenarios() {
  std::vector<std::string> names;
  for (const bugs::Bug& b : bugs::catalog())
    if (entries().count(b.name)) names.push_back(b.name);
  return names;
}

}  // namespace mirrormm::explore
