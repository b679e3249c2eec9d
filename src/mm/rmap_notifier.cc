// Rmap notifiers: the subscribers that map pages through a reverse map of their own
// (PageExternalRmap, the XPMEM/GRU-style remote mappers) and want to hear when such a page has
// lost every primary mapping for good (truncation, reclaim), rather than per address range.
//
// Lists are per modeled machine, keyed by its physical memory (what a truncation or a
// pageout knows). Registration changes a list under rmap_lists_lock; notification walks it
// in the notifier SRCU domain, so callbacks may sleep and unregister waits for them.
#include <unordered_map>

#include "mirrormm/base/srcu.h"
#include "mirrormm/system.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/rcu_hlist.h"

namespace mirrormm {

namespace {
// A leaf lock: taken under the page lock and any other lock of a truncation or reclaim.
Mutex rmap_lists_lock{lock_class::kRmapNotifierList};
// Never freed: lists outlive every System (nodes of a destroyed System's list are empty).
// Map nodes are stable, so a head found under the lock may be walked after dropping it.
std::unordered_map<const PhysMem*, std::atomic<MmuRmapNotifier*>>& rmap_lists() REQUIRES(rmap_lists_lock) {
  static auto* lists = new std::unordered_map<const PhysMem*, std::atomic<MmuRmapNotifier*>>;
  return *lists;
}
}  // namespace

void mmu_rmap_notifier_register(System* sys, MmuRmapNotifier* mrn) {
  MutexGuard g(rmap_lists_lock);
  hlist_add_head_rcu(&rmap_lists()[&sys->mem()], mrn);
}

void mmu_rmap_notifier_unregister(System* sys, MmuRmapNotifier* mrn) {
  (void)sys;
  {
    MutexGuard g(rmap_lists_lock);
    hlist_del_init_rcu(mrn);
  }
  srcu_synchronize();
}

void set_page_external_rmap(System* sys, uint64_t pfn) { sys->mem().pfn_to_page(pfn)->set(PG_external_rmap); }
void clear_page_external_rmap(System* sys, uint64_t pfn) { sys->mem().pfn_to_page(pfn)->clear(PG_external_rmap); }

void mmu_rmap_notify_page(PhysMem* mem, Page* page) {
  if (!page->test(PG_external_rmap)) return;
  MM_BUG_ON(!page->test(PG_locked));
  std::atomic<MmuRmapNotifier*>* head;
  {
    MutexGuard g(rmap_lists_lock);
    auto it = rmap_lists().find(mem);
    if (it == rmap_lists().end()) return;
    head = &it->second;
  }
  const uint64_t pfn = mem->page_to_pfn(page);
  SrcuReadGuard r;
  for (MmuRmapNotifier* n = head->load(std::memory_order_acquire); n; n = n->next.load(std::memory_order_acquire))
    if (n->ops->invalidate_page) n->ops->invalidate_page(n, page, pfn);
}

}  // namespace mirrormm
