// The driver lock dependency checker (see mirrormm/base/driver_lock.h): a graph of lock
// classes whose edges are the orders seen, and a cycle search before every new edge.
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "mirrormm/base/driver_lock.h"
#include "mm/lock_order.h"

namespace mirrormm::driver_lockdep {

LockClassKey mmu_notifier_invalidate_range_start_map{"mmu_notifier_invalidate_range_start"};
LockClassKey fs_reclaim_map{"fs_reclaim"};

namespace {

// "file.cc:123" (the directory left out).
std::string site(SourceLoc loc) {
  const char* file = loc.file;
  if (const char* slash = std::strrchr(file, '/')) file = slash + 1;
  return std::string(file) + ":" + std::to_string(loc.line);
}

// An order seen: `to` was taken while the recording thread held what `held` lists (outermost
// first, each with where it was taken), the edge's source among them.
struct Edge {
  int to;
  std::string taken;  // "NAME at FILE:LINE"
  std::string held;
};

// The graph. Classes are never removed: a class, once seen, keeps its orders for the life of
// the program (as lockdep's do until a report turns it off).
struct Graph {
  Mutex lock{lock_class::kDriverLockGraph};
  std::vector<const char*> names GUARDED_BY(lock);
  std::map<std::string, int> by_name GUARDED_BY(lock);
  std::vector<std::vector<Edge>> out GUARDED_BY(lock);

  const Edge* edge(int from, int to) REQUIRES(lock) {
    for (const Edge& e : out[static_cast<size_t>(from)])
      if (e.to == to) return &e;
    return nullptr;
  }
  // A path from `from` to `to` (depth first), as its edges in order; false if none.
  bool path(int from, int to, std::vector<bool>* seen, std::vector<std::pair<int, const Edge*>>* chain)
      REQUIRES(lock) {
    if (from == to) return true;
    (*seen)[static_cast<size_t>(from)] = true;
    for (const Edge& e : out[static_cast<size_t>(from)]) {
      if ((*seen)[static_cast<size_t>(e.to)]) continue;
      chain->push_back({from, &e});
      if (path(e.to, to, seen, chain)) return true;
      chain->pop_back();
    }
    return false;
  }
};

// Never destroyed: driver locks may be taken while the program exits.
Graph& graph() {
  static Graph* g = new Graph;
  return *g;
}

// What the calling thread holds, innermost last.
struct Held {
  int node;
  const void* lock;
  SourceLoc loc;
};
thread_local std::vector<Held> held;

std::string describe_held(Graph& g) REQUIRES(g.lock) {
  std::string s;
  for (const Held& h : held) {
    if (!s.empty()) s += ", ";
    s += std::string(g.names[static_cast<size_t>(h.node)]) + " at " + site(h.loc);
  }
  return s.empty() ? "nothing" : s;
}

[[noreturn]] void report_cycle(Graph& g, const Held& holding, int node, SourceLoc loc,
                               const std::vector<std::pair<int, const Edge*>>& chain) REQUIRES(g.lock) {
  std::string text = "possible circular locking dependency: taking ";
  text += std::string(g.names[static_cast<size_t>(node)]) + " at " + site(loc) + " while holding " +
          g.names[static_cast<size_t>(holding.node)] + " (taken at " + site(holding.loc) + ")";
  text += "\n  this thread holds: " + describe_held(g);
  text += "\n  the opposite order was seen before:";
  for (const auto& [from, e] : chain) {
    text += "\n    ";
    text += std::string(g.names[static_cast<size_t>(from)]) + " -> " + e->taken + ", while holding " + e->held;
  }
  lockdep::report(text.c_str());
}

}  // namespace

int LockClassKey::node() {
  int n = node_.load(std::memory_order_acquire);
  if (n >= 0) return n;
  Graph& g = graph();
  MutexGuard l(g.lock);
  auto [it, inserted] = g.by_name.try_emplace(name_, static_cast<int>(g.names.size()));
  if (inserted) {
    g.names.push_back(name_);
    g.out.emplace_back();
  }
  node_.store(it->second, std::memory_order_release);
  return it->second;
}

void acquire_slow(LockClassKey* key, const void* lock, bool trylock, SourceLoc loc) {
  const int node = key->node();
  if (!trylock && !held.empty()) {
    Graph& g = graph();
    MutexGuard l(g.lock);
    for (const Held& h : held) {
      if (h.lock == lock || h.node == node) {
        std::string text = std::string("possible recursive locking: taking ") + key->name() + " at " + site(loc) +
                           " while holding " + g.names[static_cast<size_t>(h.node)] + " (taken at " + site(h.loc) +
                           ")\n  this thread holds: " + describe_held(g);
        lockdep::report(text.c_str());
      }
    }
    for (const Held& h : held) {
      if (g.edge(h.node, node)) continue;
      // The new order h -> node closes a cycle if node already reaches h.
      std::vector<bool> seen(g.names.size(), false);
      std::vector<std::pair<int, const Edge*>> chain;
      if (g.path(node, h.node, &seen, &chain)) report_cycle(g, h, node, loc, chain);
      g.out[static_cast<size_t>(h.node)].push_back(
          Edge{node, std::string(key->name()) + " at " + site(loc), describe_held(g)});
    }
  }
  held.push_back({node, lock, loc});
}

void release_slow(const void* lock) {
  for (size_t i = held.size(); i-- > 0;) {
    if (held[i].lock == lock) {
      held.erase(held.begin() + static_cast<long>(i));
      return;
    }
  }
  // Taken while checking was off: nothing to forget.
}

}  // namespace mirrormm::driver_lockdep
