// An augmented interval tree (include/linux/interval_tree_generic.h's role): an intrusive AVL
// tree of closed intervals [start, last], ordered by start and, among equal starts, by
// insertion (a node goes after those already there, as interval_tree_generic's insert goes
// right on an equal key), where each node also keeps the largest `last` of its subtree.
// Overlap queries cost O(log n + k) for k results. The rmap relies on the order: fork links
// the child's anon_vma_chain after the parent's, at the same offsets, so a walk (say
// remove_migration_ptes) that meets the child's VMA has passed the parent's first, and an
// entry fork copies from the parent after the walk passed it is one the walk already
// restored.
//
// Node requirements: uint64_t start, last, subtree_last, seq; Node* left, right; int height;
// bool in_tree. The tree does no locking: the caller serializes changes, and readers either
// hold the same lock or rely on the tree being frozen (the notifiers' odd invalidate_seq).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>

#include "mirrormm/base/assert.h"

namespace mirrormm {

template <class Node>
class IntervalTree {
 public:
  bool empty() const { return root_ == nullptr; }
  uint64_t size() const { return size_; }

  void insert(Node* n) {
    MM_BUG_ON(n->in_tree);
    n->left = n->right = nullptr;
    n->height = 1;
    n->subtree_last = n->last;
    n->seq = ++inserted_;
    root_ = insert_at(root_, n);
    n->in_tree = true;
    ++size_;
  }

  void erase(Node* n) {
    MM_BUG_ON(!n->in_tree);
    root_ = erase_at(root_, n);
    n->in_tree = false;
    n->left = n->right = nullptr;
    --size_;
  }

  // The first node (in start order) overlapping [start, last], or nullptr.
  Node* iter_first(uint64_t start, uint64_t last) const {
    Node* first = nullptr;
    for_each_overlap(start, last, [&](Node* n) {
      first = n;
      return false;
    });
    return first;
  }

  // Calls fn(node) for every node overlapping [start, last], in start order, until fn returns
  // false. Returns false if fn stopped the walk.
  template <class Fn>
  bool for_each_overlap(uint64_t start, uint64_t last, Fn&& fn) const {
    return visit(root_, start, last, fn);
  }

  // Calls fn(node) for every node in start order.
  template <class Fn>
  void for_each(Fn&& fn) const {
    auto all = [&](Node* n) {
      fn(n);
      return true;
    };
    visit(root_, 0, ~0ull, all);
  }

  // Debug validator: order, balance, heights and augmentation.
  bool validate() const {
    uint64_t count = 0;
    bool ok = check(root_, nullptr, nullptr, &count);
    return ok && count == size_;
  }

 private:
  static int height(const Node* n) { return n ? n->height : 0; }
  static bool less(const Node* a, const Node* b) {
    return a->start != b->start ? a->start < b->start : a->seq < b->seq;
  }
  static void update(Node* n) {
    n->height = 1 + std::max(height(n->left), height(n->right));
    uint64_t m = n->last;
    if (n->left) m = std::max(m, n->left->subtree_last);
    if (n->right) m = std::max(m, n->right->subtree_last);
    n->subtree_last = m;
  }
  static Node* rotate_right(Node* y) {
    Node* x = y->left;
    y->left = x->right;
    x->right = y;
    update(y);
    update(x);
    return x;
  }
  static Node* rotate_left(Node* x) {
    Node* y = x->right;
    x->right = y->left;
    y->left = x;
    update(x);
    update(y);
    return y;
  }
  static Node* balance(Node* n) {
    update(n);
    int bf = height(n->left) - height(n->right);
    if (bf > 1) {
      if (height(n->left->left) < height(n->left->right)) n->left = rotate_left(n->left);
      return rotate_right(n);
    }
    if (bf < -1) {
      if (height(n->right->right) < height(n->right->left)) n->right = rotate_right(n->right);
      return rotate_left(n);
    }
    return n;
  }
  static Node* insert_at(Node* t, Node* n) {
    if (!t) return n;
    if (less(n, t)) {
      t->left = insert_at(t->left, n);
    } else {
      t->right = insert_at(t->right, n);
    }
    return balance(t);
  }
  // Removes the leftmost node of t into *min; returns the new subtree.
  static Node* take_min(Node* t, Node** min) {
    if (!t->left) {
      *min = t;
      return t->right;
    }
    t->left = take_min(t->left, min);
    return balance(t);
  }
  static Node* erase_at(Node* t, Node* n) {
    MM_BUG_ON(!t);  // n is in the tree
    if (t == n) {
      if (!t->left) return t->right;
      if (!t->right) return t->left;
      Node* succ = nullptr;
      Node* right = take_min(t->right, &succ);
      succ->left = t->left;
      succ->right = right;
      return balance(succ);
    }
    if (less(n, t)) {
      t->left = erase_at(t->left, n);
    } else {
      t->right = erase_at(t->right, n);
    }
    return balance(t);
  }
  template <class Fn>
  static bool visit(Node* t, uint64_t start, uint64_t last, Fn& fn) {
    if (!t || t->subtree_last < start) return true;
    if (!visit(t->left, start, last, fn)) return false;
    if (t->start > last) return true;  // t and its right subtree start after the query
    if (t->last >= start && !fn(t)) return false;
    return visit(t->right, start, last, fn);
  }
  static bool check(const Node* t, const Node* lo, const Node* hi, uint64_t* count) {
    if (!t) return true;
    ++*count;
    if (lo && less(t, lo)) return false;
    if (hi && less(hi, t)) return false;
    if (!check(t->left, lo, t, count) || !check(t->right, t, hi, count)) return false;
    int lh = height(t->left), rh = height(t->right);
    if (t->height != 1 + std::max(lh, rh) || lh - rh > 1 || rh - lh > 1) return false;
    uint64_t m = t->last;
    if (t->left) m = std::max(m, t->left->subtree_last);
    if (t->right) m = std::max(m, t->right->subtree_last);
    return t->subtree_last == m;
  }

  Node* root_ = nullptr;
  uint64_t size_ = 0;
  uint64_t inserted_ = 0;  // insertions so far: each node's seq, its place among equal starts
};

}  // namespace mirrormm
