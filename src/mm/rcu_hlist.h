// Intrusive singly linked lists with RCU-safe removal (include/linux/rculist.h's hlist_*_rcu):
// a node has `std::atomic<N*> next` and `std::atomic<N*>* pprev`. Writers serialize on the
// list's own lock; readers walk `next` inside a read-side section of the domain that frees the
// nodes (the notifier SRCU domain for notifier lists).
//
// Memory ordering: the release store that publishes a node (or unlinks one) pairs with the
// readers' acquire loads of `next`; a removed node keeps its `next`, so a reader standing on
// it continues into the live list.
#pragma once

#include <atomic>

namespace mirrormm {

template <class N>
void hlist_add_head_rcu(std::atomic<N*>* head, N* n) {
  N* first = head->load(std::memory_order_relaxed);
  n->next.store(first, std::memory_order_relaxed);
  if (first) first->pprev = &n->next;
  n->pprev = head;
  head->store(n, std::memory_order_release);
}

// Unhashes n (a no-op when it is not on a list); pprev is null afterwards.
template <class N>
void hlist_del_init_rcu(N* n) {
  if (!n->pprev) return;
  N* next = n->next.load(std::memory_order_relaxed);
  n->pprev->store(next, std::memory_order_release);
  if (next) next->pprev = n->pprev;
  n->pprev = nullptr;
}

}  // namespace mirrormm
