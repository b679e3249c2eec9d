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
#include "mm/physmem.h"

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
