// The augmented AVL interval tree (src/mm/interval_tree.h) against a brute-force reference:
// random inserts and erases, overlap queries (iter_first, for_each_overlap and its order and
// early stop, for_each), duplicates of equal start, and the extreme values of the key space.
#include "mm/interval_tree.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <vector>

namespace mirrormm {
namespace {

struct Node {
  uint64_t start = 0;
  uint64_t last = 0;
  uint64_t subtree_last = 0;
  uint64_t seq = 0;
  Node* left = nullptr;
  Node* right = nullptr;
  int height = 0;
  bool in_tree = false;
  int id = 0;
};

using Tree = IntervalTree<Node>;

// The tree's order: start, then insertion (seq).
bool node_less(const Node* a, const Node* b) { return a->start != b->start ? a->start < b->start : a->seq < b->seq; }

bool overlaps(const Node* n, uint64_t start, uint64_t last) { return n->start <= last && n->last >= start; }

// Brute force: every node of `set` overlapping [start, last], in tree order.
std::vector<Node*> expected_overlaps(const std::vector<Node*>& set, uint64_t start, uint64_t last) {
  std::vector<Node*> out;
  for (Node* n : set)
    if (overlaps(n, start, last)) out.push_back(n);
  std::sort(out.begin(), out.end(), node_less);
  return out;
}

std::vector<Node*> tree_overlaps(const Tree& t, uint64_t start, uint64_t last) {
  std::vector<Node*> out;
  bool completed = t.for_each_overlap(start, last, [&](Node* n) {
    out.push_back(n);
    return true;
  });
  EXPECT_TRUE(completed);
  return out;
}

void check_query(const Tree& t, const std::vector<Node*>& set, uint64_t start, uint64_t last) {
  std::vector<Node*> want = expected_overlaps(set, start, last);
  std::vector<Node*> got = tree_overlaps(t, start, last);
  ASSERT_EQ(got, want) << "query [" << start << ", " << last << "]";
  Node* first = t.iter_first(start, last);
  ASSERT_EQ(first, want.empty() ? nullptr : want.front()) << "iter_first [" << start << ", " << last << "]";
}

void check_all(const Tree& t, const std::vector<Node*>& set) {
  ASSERT_TRUE(t.validate());
  ASSERT_EQ(t.size(), set.size());
  ASSERT_EQ(t.empty(), set.empty());
  std::vector<Node*> want = set;
  std::sort(want.begin(), want.end(), node_less);
  std::vector<Node*> got;
  t.for_each([&](Node* n) { got.push_back(n); });
  ASSERT_EQ(got, want);
  for (Node* n : set) ASSERT_TRUE(n->in_tree);
}

TEST(IntervalTree, EmptyTree) {
  Tree t;
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.size(), 0u);
  EXPECT_TRUE(t.validate());
  EXPECT_EQ(t.iter_first(0, ~0ull), nullptr);
  int calls = 0;
  EXPECT_TRUE(t.for_each_overlap(0, ~0ull, [&](Node*) {
    ++calls;
    return true;
  }));
  EXPECT_EQ(calls, 0);
}

TEST(IntervalTree, SingleNodeBoundaries) {
  Tree t;
  Node n;
  n.start = 100;
  n.last = 199;
  t.insert(&n);
  EXPECT_TRUE(n.in_tree);
  EXPECT_TRUE(t.validate());
  EXPECT_EQ(t.iter_first(0, 99), nullptr);    // ends just before
  EXPECT_EQ(t.iter_first(200, 300), nullptr);  // starts just after
  EXPECT_EQ(t.iter_first(0, 100), &n);        // touches the first byte
  EXPECT_EQ(t.iter_first(199, 199), &n);      // touches the last byte
  EXPECT_EQ(t.iter_first(150, 150), &n);
  EXPECT_EQ(t.iter_first(0, ~0ull), &n);
  t.erase(&n);
  EXPECT_FALSE(n.in_tree);
  EXPECT_TRUE(t.empty());
  EXPECT_TRUE(t.validate());
  EXPECT_EQ(t.iter_first(0, ~0ull), nullptr);
}

TEST(IntervalTree, ExtremeValues) {
  Tree t;
  std::vector<Node> pool(4);
  pool[0].start = 0, pool[0].last = 0;
  pool[1].start = 0, pool[1].last = ~0ull;
  pool[2].start = ~0ull, pool[2].last = ~0ull;
  pool[3].start = ~0ull - 10, pool[3].last = ~0ull - 1;
  std::vector<Node*> set;
  for (Node& n : pool) {
    t.insert(&n);
    set.push_back(&n);
  }
  check_all(t, set);
  check_query(t, set, 0, 0);
  check_query(t, set, ~0ull, ~0ull);
  check_query(t, set, 1, ~0ull - 11);
  check_query(t, set, ~0ull - 5, ~0ull - 5);
  check_query(t, set, 0, ~0ull);
}

TEST(IntervalTree, DuplicatesOfEqualStart) {
  Tree t;
  constexpr int kN = 200;
  std::vector<Node> pool(kN);
  std::vector<Node*> set;
  std::mt19937_64 rng(7);
  for (int i = 0; i < kN; ++i) {
    pool[i].id = i;
    pool[i].start = 1000;  // every node starts at the same place
    pool[i].last = 1000 + rng() % 500;
    t.insert(&pool[i]);
    set.push_back(&pool[i]);
    ASSERT_TRUE(t.validate());
  }
  check_all(t, set);
  for (uint64_t q : {0ull, 999ull, 1000ull, 1100ull, 1250ull, 1499ull, 1500ull, 5000ull}) check_query(t, set, q, q);
  check_query(t, set, 0, 999);
  check_query(t, set, 1200, 1300);
  // The equal-start nodes come in insertion order (the rmap's parent-before-child order).
  std::vector<Node*> all = tree_overlaps(t, 1000, 1000);
  ASSERT_EQ(all.size(), static_cast<size_t>(kN));
  for (int i = 0; i < kN; ++i) EXPECT_EQ(all[i]->id, i);
  // A node erased and inserted again goes after its equals.
  t.erase(&pool[0]);
  t.insert(&pool[0]);
  EXPECT_EQ(tree_overlaps(t, 1000, 1000).back(), &pool[0]);
  ASSERT_TRUE(t.validate());
  // Erase every other one (an equal key must erase exactly that node, not a twin).
  for (int i = 0; i < kN; i += 2) {
    t.erase(&pool[i]);
    set.erase(std::find(set.begin(), set.end(), &pool[i]));
    ASSERT_TRUE(t.validate());
    ASSERT_FALSE(pool[i].in_tree);
  }
  check_all(t, set);
  check_query(t, set, 1300, 1400);
  // Also equal (start, last) pairs.
  std::vector<Node> twins(50);
  for (Node& n : twins) {
    n.start = 1000;
    n.last = 1200;
    t.insert(&n);
    set.push_back(&n);
  }
  check_all(t, set);
  check_query(t, set, 1200, 1200);
  check_query(t, set, 1201, 1201);
  for (size_t i = 0; i < twins.size(); i += 3) {
    t.erase(&twins[i]);
    set.erase(std::find(set.begin(), set.end(), &twins[i]));
  }
  check_all(t, set);
  check_query(t, set, 1100, 1100);
}

TEST(IntervalTree, ForEachOverlapStopsEarly) {
  Tree t;
  std::vector<Node> pool(20);
  for (int i = 0; i < 20; ++i) {
    pool[i].start = i * 10;
    pool[i].last = i * 10 + 15;  // overlaps the next one
    t.insert(&pool[i]);
  }
  std::vector<Node*> seen;
  bool completed = t.for_each_overlap(0, 1000, [&](Node* n) {
    seen.push_back(n);
    return seen.size() < 5;
  });
  EXPECT_FALSE(completed);
  ASSERT_EQ(seen.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(seen[i], &pool[i]) << i;
  // The query [25, 35] hits nodes 1 (10..25), 2 (20..35), 3 (30..45) in start order.
  seen.clear();
  EXPECT_TRUE(t.for_each_overlap(25, 35, [&](Node* n) {
    seen.push_back(n);
    return true;
  }));
  EXPECT_EQ(seen, (std::vector<Node*>{&pool[1], &pool[2], &pool[3]}));
  EXPECT_EQ(t.iter_first(25, 35), &pool[1]);
}

// A long interval in the left subtree and short ones to its right: iter_first must find the
// long one even though its start is far below the query.
TEST(IntervalTree, LongIntervalOnTheLeft) {
  Tree t;
  std::vector<Node> pool(64);
  std::vector<Node*> set;
  pool[0].start = 0;
  pool[0].last = 1'000'000;
  for (int i = 1; i < 64; ++i) {
    pool[i].start = 1000 * i;
    pool[i].last = 1000 * i + 10;
  }
  for (Node& n : pool) {
    t.insert(&n);
    set.push_back(&n);
  }
  check_all(t, set);
  for (uint64_t q = 0; q < 70'000; q += 333) check_query(t, set, q, q + 100);
  check_query(t, set, 999'999, 2'000'000);
  check_query(t, set, 1'000'001, 2'000'000);
}

struct RandomParams {
  uint64_t space;      // starts are drawn from [0, space)
  uint64_t max_len;    // lengths from [1, max_len]
  int ops;
  unsigned seed;
};

void random_run(const RandomParams& prm) {
  Tree t;
  constexpr int kPool = 600;
  std::vector<Node> pool(kPool);
  for (int i = 0; i < kPool; ++i) pool[i].id = i;
  std::vector<Node*> set;      // in the tree
  std::vector<Node*> free_list;  // not in the tree
  for (Node& n : pool) free_list.push_back(&n);
  std::mt19937_64 rng(prm.seed);
  auto rand_point = [&] { return rng() % prm.space; };
  for (int op = 0; op < prm.ops; ++op) {
    const unsigned r = rng() % 100;
    // Bias towards growth first, then a steady state, so that both shapes get exercised.
    const bool grow = op < prm.ops / 3 ? r < 75 : r < 50;
    if ((grow && !free_list.empty()) || set.empty()) {
      size_t k = rng() % free_list.size();
      Node* n = free_list[k];
      free_list[k] = free_list.back();
      free_list.pop_back();
      n->start = rand_point();
      uint64_t len = 1 + rng() % prm.max_len;
      n->last = n->start + len - 1 < n->start ? ~0ull : n->start + len - 1;
      t.insert(n);
      set.push_back(n);
    } else {
      size_t k = rng() % set.size();
      Node* n = set[k];
      set[k] = set.back();
      set.pop_back();
      t.erase(n);
      ASSERT_FALSE(n->in_tree);
      free_list.push_back(n);
    }
    // Queries after every operation, the full validation after each batch.
    for (int q = 0; q < 3; ++q) {
      uint64_t a = rand_point(), b = a + rng() % (prm.max_len * 2);
      if (b < a) b = ~0ull;
      ASSERT_NO_FATAL_FAILURE(check_query(t, set, a, b)) << "op " << op;
    }
    if (op % 64 == 63) {
      ASSERT_NO_FATAL_FAILURE(check_all(t, set)) << "op " << op;
    }
  }
  ASSERT_NO_FATAL_FAILURE(check_all(t, set));
  ASSERT_NO_FATAL_FAILURE(check_query(t, set, 0, ~0ull));
  // Drain it.
  std::shuffle(set.begin(), set.end(), rng);
  while (!set.empty()) {
    t.erase(set.back());
    set.pop_back();
    if (set.size() % 50 == 0) {
      ASSERT_NO_FATAL_FAILURE(check_all(t, set));
    }
  }
  EXPECT_TRUE(t.empty());
  EXPECT_TRUE(t.validate());
}

TEST(IntervalTree, RandomDense) { random_run({1000, 50, 6000, 1}); }
TEST(IntervalTree, RandomSparse) { random_run({1ull << 40, 1ull << 20, 6000, 2}); }
TEST(IntervalTree, RandomManyDuplicateStarts) { random_run({20, 30, 6000, 3}); }
TEST(IntervalTree, RandomLongIntervals) { random_run({1ull << 20, 1ull << 19, 4000, 4}); }
TEST(IntervalTree, RandomNearTheTop) {
  // Starts near ~0: lengths that would wrap are clamped to ~0.
  Tree t;
  std::vector<Node> pool(300);
  std::vector<Node*> set;
  std::mt19937_64 rng(5);
  for (Node& n : pool) {
    n.start = ~0ull - rng() % 5000;
    uint64_t len = 1 + rng() % 8000;
    n.last = n.start + (len - 1) < n.start ? ~0ull : n.start + (len - 1);
    t.insert(&n);
    set.push_back(&n);
  }
  check_all(t, set);
  for (int i = 0; i < 500; ++i) {
    uint64_t a = ~0ull - rng() % 6000;
    uint64_t len = rng() % 100;
    uint64_t b = a + len < a ? ~0ull : a + len;
    ASSERT_NO_FATAL_FAILURE(check_query(t, set, a, b));
  }
}

}  // namespace
}  // namespace mirrormm
