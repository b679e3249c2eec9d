// /proc/vmstat of the modeled machine (mm/vmstat.c's role): the state counters the model
// keeps (free frames, LRU list sizes) followed by the event counters of mm/vmstat.h, under
// Linux's names and in Linux's order.
#include <string>
#include <utility>
#include <vector>

#include "mirrormm/system.h"
#include "mm/lru.h"
#include "mm/physmem.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

// The state counters, in /proc/vmstat's order (its per-zone nr_zone_* copies are left out).
enum VmStateItem : int {
  NR_FREE_PAGES,
  NR_INACTIVE_ANON,
  NR_ACTIVE_ANON,
  NR_INACTIVE_FILE,
  NR_ACTIVE_FILE,
  NR_UNEVICTABLE,
  NR_VM_STATE_ITEMS
};
constexpr const char* kVmStateNames[NR_VM_STATE_ITEMS] = {
    "nr_free_pages", "nr_inactive_anon", "nr_active_anon", "nr_inactive_file", "nr_active_file", "nr_unevictable",
};
// The LRU list each NR_* list counter reports (NR_LRU_BASE + lru in Linux).
static_assert(NR_UNEVICTABLE - NR_INACTIVE_ANON == LRU_UNEVICTABLE && NR_VM_STATE_ITEMS - NR_INACTIVE_ANON == NR_LRU_LISTS);

}  // namespace

const std::vector<std::string>& vmstat_item_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> v;
    for (const char* n : kVmStateNames) v.emplace_back(n);
    for (std::string_view n : kVmEventNames) v.emplace_back(n);
    return v;
  }();
  return names;
}

std::vector<std::pair<std::string, uint64_t>> System::vmstat() {
  const std::vector<std::string>& names = vmstat_item_names();
  std::vector<std::pair<std::string, uint64_t>> out;
  out.reserve(names.size());
  out.emplace_back(names[NR_FREE_PAGES], mem_->nr_free_global());
  const std::array<uint64_t, NR_LRU_LISTS> lru = mem_->lruvec().sizes();
  for (int i = 0; i < NR_LRU_LISTS; i++) out.emplace_back(names[NR_INACTIVE_ANON + i], lru[i]);
  for (int e = 0; e < NR_VM_EVENT_ITEMS; e++) {
    const int64_t v = mem_->events().sum(static_cast<VmEvent>(e));
    out.emplace_back(names[NR_VM_STATE_ITEMS + e], static_cast<uint64_t>(v < 0 ? 0 : v));
  }
  return out;
}

void System::lru_add_drain_all() { mirrormm::lru_add_drain_all(*mem_); }

VmEvents::~VmEvents() {
  for (Block* b = head_.load(std::memory_order_acquire); b;) {
    Block* next = b->next;
    delete b;
    b = next;
  }
}

VmEvents::Block* VmEvents::this_thread_block_slow() {
  ThreadCache& c = tls_cache_;
  Block* mine = nullptr;
  // A thread that counted here before (and then on another machine) finds its block again;
  // so does a thread whose thread-local storage a thread that exited had (that thread will
  // never write its block again).
  for (Block* b = head_.load(std::memory_order_acquire); b; b = b->next) {
    if (b->owner == &c) {
      mine = b;
      break;
    }
  }
  if (!mine) {
    mine = new Block;
    mine->owner = &c;
    Block* head = head_.load(std::memory_order_relaxed);
    do {
      mine->next = head;
    } while (!head_.compare_exchange_weak(head, mine, std::memory_order_release, std::memory_order_relaxed));
  }
  c.id = id_;
  c.block = mine;
  return mine;
}

}  // namespace mirrormm
