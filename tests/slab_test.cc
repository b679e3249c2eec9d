// Object caches (src/mm/slab.cc): allocation and reuse, constructors, per-CPU stacks under
// concurrency, SLAB_TYPESAFE_BY_RCU lifetimes, poisoning and the identity-recheck check.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "mirrormm/base/rcu.h"
#include "mirrormm/system.h"
#include "mm/slab.h"
#include "mm_test_util.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#endif

namespace mirrormm {
namespace {

// Lets a test look at, and write, a free object's bytes in AddressSanitizer builds (where a
// free object of a cache without kept state is poisoned in the shadow).
void expose_free_object(void* p, size_t n) {
#if defined(__SANITIZE_ADDRESS__)
  ASAN_UNPOISON_MEMORY_REGION(p, n);
#else
  (void)p;
  (void)n;
#endif
}

struct Plain {
  uint64_t words[6];
};

// A type reached obliquely by its readers: its lock is the kept, constructor-initialised
// part; `key` is its identity (0: none), `value` is stable under the lock.
struct Toy {
  std::atomic<uint64_t> key{0};
  SpinLock lock;
  uint64_t value GUARDED_BY(lock) = 0;
};

void toy_ctor(void* p) { new (p) Toy(); }

KmemCache::KeepRange toy_keep() { return {offsetof(Toy, lock), sizeof(SpinLock)}; }

// Switches the debug checks for one test and collects the reports made meanwhile.
class SlabDebug {
 public:
  explicit SlabDebug(bool on) : saved_(KmemCache::debug_checks()) {
    KmemCache::debug_set_checks(on);
    KmemCache::debug_set_report_hook([this](std::string_view text) {
      std::lock_guard<std::mutex> g(mu_);
      reports_.emplace_back(text);
    });
  }
  ~SlabDebug() {
    KmemCache::debug_set_report_hook(nullptr);
    KmemCache::debug_set_checks(saved_);
  }
  std::vector<std::string> reports() {
    std::lock_guard<std::mutex> g(mu_);
    return reports_;
  }

 private:
  bool saved_;
  std::mutex mu_;
  std::vector<std::string> reports_;
};

TEST(Slab, AllocFreeReuse) {
  KmemCache cache("plain", sizeof(Plain), alignof(Plain), SlabFlags::kNone);
  std::set<void*> seen;
  std::vector<void*> objs;
  for (int i = 0; i < 100; i++) {
    void* p = cache.alloc();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % alignof(Plain), 0u);
    EXPECT_TRUE(seen.insert(p).second);
    std::memset(p, i, sizeof(Plain));
    objs.push_back(p);
  }
  EXPECT_EQ(cache.stats().objects_in_use, 100u);
  EXPECT_EQ(cache.stats().chunks, 1u);
  // The most recently freed object is the next one handed out (cache-hot reuse).
  void* last = objs.back();
  cache.free(last);
  objs.pop_back();
  EXPECT_EQ(cache.alloc(), last);
  objs.push_back(last);
  for (void* p : objs) cache.free(p);
  EXPECT_EQ(cache.stats().objects_in_use, 0u);
}

TEST(Slab, ConstructorRunsOncePerObjectMemory) {
  static std::atomic<int> ctor_calls{0};
  ctor_calls = 0;
  struct Obj {
    uint64_t magic;
    uint64_t uses;
  };
  auto ctor = [](void* p) {
    ctor_calls++;
    new (p) Obj{0xc0ffee, 0};
  };
  SlabDebug debug(true);  // a cache with a constructor and no kept range is not poisoned
  KmemCache cache("ctor", sizeof(Obj), alignof(Obj), SlabFlags::kNone, ctor);
  const uint64_t per_chunk = cache.stats().objects_per_chunk;
  auto* o = static_cast<Obj*>(cache.alloc());
  EXPECT_EQ(ctor_calls, static_cast<int>(per_chunk));  // the chunk was set up
  EXPECT_EQ(o->magic, 0xc0ffeeu);
  for (int i = 0; i < 1000; i++) {
    o->uses++;
    cache.free(o);  // back in its constructed state
    o = static_cast<Obj*>(cache.alloc());
    EXPECT_EQ(o->magic, 0xc0ffeeu);
  }
  EXPECT_EQ(ctor_calls, static_cast<int>(per_chunk));
  // A second chunk's memory is set up when it is carved.
  std::vector<void*> more;
  for (uint64_t i = 0; i < per_chunk; i++) more.push_back(cache.alloc());
  EXPECT_EQ(ctor_calls, static_cast<int>(2 * per_chunk));
  EXPECT_EQ(cache.stats().chunks, 2u);
  for (void* p : more) cache.free(p);
  cache.free(o);
}

// Threads as CPUs: every object is handed to one owner at a time.
TEST(Slab, PerCpuStacksUnderConcurrency) {
  SlabDebug debug(true);
  KmemCache cache("percpu", sizeof(Plain), alignof(Plain), SlabFlags::kNone);
  constexpr int kThreads = 4;
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; t++) {
    threads.emplace_back([&, t] {
      // Two threads per CPU: the per-CPU stacks are locked, not owned.
      System::bind_thread_to_cpu(t % 2);
      std::vector<Plain*> held;
      uint64_t seed = 0x9e3779b97f4a7c15ull * (t + 1);
      for (int i = 0; i < 20000; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        if (held.size() < 200 && (held.empty() || seed % 3 != 0)) {
          auto* p = static_cast<Plain*>(cache.alloc());
          for (uint64_t& w : p->words) w = static_cast<uint64_t>(t) << 32 | i;
          held.push_back(p);
        } else {
          size_t k = seed % held.size();
          Plain* p = held[k];
          const uint64_t tag = p->words[0];
          for (uint64_t w : p->words)
            if (w != tag || (w >> 32) != static_cast<uint64_t>(t)) errors++;
          held[k] = held.back();
          held.pop_back();
          cache.free(p);
        }
      }
      for (Plain* p : held) cache.free(p);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors, 0);
  EXPECT_TRUE(debug.reports().empty());
  KmemCacheStats s = cache.stats();
  EXPECT_EQ(s.objects_in_use, 0u);
  cache.shrink();
  EXPECT_EQ(cache.stats().chunks, 0u);
}

TEST(Slab, TypesafeChunksReleasedAfterGracePeriod) {
  SlabDebug debug(true);
  KmemCache cache("typesafe", sizeof(Toy), alignof(Toy), SlabFlags::kTypesafeByRcu, toy_ctor, toy_keep());
  const uint64_t per_chunk = cache.stats().objects_per_chunk;
  std::vector<void*> objs;
  for (uint64_t i = 0; i < 3 * per_chunk; i++) objs.push_back(cache.alloc());
  // Three chunks' worth, and the objects that the last refill left on this CPU's stack.
  const uint64_t chunks = cache.stats().chunks;
  EXPECT_GE(chunks, 3u);
  EXPECT_LE(chunks, 4u);
  {
    RcuReadGuard rcu;
    for (void* p : objs) cache.free(p);
    cache.shrink();
    KmemCacheStats s = cache.stats();
    EXPECT_EQ(s.chunks, 0u);
    // Released, but not returned to the heap while this reader may still look at them.
    EXPECT_EQ(s.chunks_rcu_pending, chunks);
    auto* t = static_cast<Toy*>(objs.front());
    SpinGuard g(t->lock);  // the kept lock is still a lock
    EXPECT_EQ(t->key.load(), 0x6b6b6b6b6b6b6b6bull);  // the rest is poison
  }
  rcu_barrier();
  KmemCacheStats s = cache.stats();
  EXPECT_EQ(s.chunks_rcu_pending, 0u);
  EXPECT_EQ(s.chunks_released, s.chunks_allocated);
  EXPECT_TRUE(debug.reports().empty());
}

TEST(Slab, NonTypesafeChunksReleasedAtOnce) {
  KmemCache cache("plain", sizeof(Plain), alignof(Plain), SlabFlags::kNone);
  std::vector<void*> objs;
  for (uint64_t i = 0; i < 2 * cache.stats().objects_per_chunk; i++) objs.push_back(cache.alloc());
  for (void* p : objs) cache.free(p);
  cache.shrink();
  KmemCacheStats s = cache.stats();
  EXPECT_EQ(s.chunks, 0u);
  EXPECT_EQ(s.chunks_rcu_pending, 0u);
  EXPECT_EQ(s.chunks_released, s.chunks_allocated);
}

// A reader inside RcuReadGuard keeps reaching the published object obliquely while a writer
// frees it, reuses its memory and releases chunks: the kept lock stays valid throughout (ASan
// would see a released chunk), and under it the identity recheck gives stable fields.
TEST(Slab, TypesafeLockValidAcrossFreeAndReuse) {
  SlabDebug debug(false);  // the poison would race with the readers' unlocked identity loads
  KmemCache cache("typesafe", sizeof(Toy), alignof(Toy), SlabFlags::kTypesafeByRcu, toy_ctor, toy_keep());
  std::atomic<Toy*> published{nullptr};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> locked_after_free{0}, errors{0};
  std::thread reader([&] {
    while (!stop.load()) {
      RcuReadGuard rcu;
      Toy* t = published.load(std::memory_order_acquire);
      if (!t) continue;
      SpinGuard g(t->lock);
      const uint64_t key = t->key.load(std::memory_order_relaxed);
      if (key == 0) {  // freed (or not yet set up): the recheck turns us away
        locked_after_free++;
        continue;
      }
      if (t->value != key) errors++;
    }
  });
  std::vector<Toy*> extra;
  const uint64_t per_chunk = cache.stats().objects_per_chunk;
  for (uint64_t gen = 1; gen <= 30000; gen++) {
    auto* t = static_cast<Toy*>(cache.alloc());
    {
      SpinGuard g(t->lock);
      t->key.store(gen, std::memory_order_relaxed);
      t->value = gen;
    }
    published.store(t, std::memory_order_release);
    // Some churn so that chunks fill, empty and are released.
    if (gen % 7 != 0) extra.push_back(static_cast<Toy*>(cache.alloc()));
    if (extra.size() > 2 * per_chunk || gen % 5000 == 0) {
      for (Toy* e : extra) cache.free(e);
      extra.clear();
      cache.shrink();
    }
    {
      SpinGuard g(t->lock);
      t->key.store(0, std::memory_order_relaxed);
      t->value = 0;
    }
    cache.free(t);  // published still points at it: type-stable, not gone
  }
  stop = true;
  reader.join();
  for (Toy* e : extra) cache.free(e);
  EXPECT_EQ(errors, 0u);
  EXPECT_GT(cache.stats().chunks_released, 0u);
  published = nullptr;
}

TEST(Slab, PoisonAndWriteAfterFree) {
  SlabDebug debug(true);
  const uint64_t before = KmemCache::debug_reports();
  KmemCache cache("poisoned", sizeof(Plain), alignof(Plain), SlabFlags::kNone);
  auto* p = static_cast<Plain*>(cache.alloc());
  std::memset(p, 0x11, sizeof(Plain));
  cache.free(p);
  expose_free_object(p, sizeof(Plain));
  for (size_t i = 0; i < sizeof(Plain); i++) ASSERT_EQ(reinterpret_cast<unsigned char*>(p)[i], 0x6b) << i;
  // Intact poison: reallocation is silent.
  EXPECT_EQ(cache.alloc(), p);
  EXPECT_TRUE(debug.reports().empty());
  cache.free(p);
  expose_free_object(p, sizeof(Plain));
  reinterpret_cast<unsigned char*>(p)[13] = 0x42;  // a write after free
  EXPECT_EQ(cache.alloc(), p);
  std::vector<std::string> reports = debug.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("poisoned"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("write after free"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("offset 13"), std::string::npos) << reports[0];
  EXPECT_EQ(KmemCache::debug_reports(), before + 1);
  cache.free(p);
}

TEST(Slab, PoisonSkipsTheKeptRange) {
  SlabDebug debug(true);
  KmemCache cache("typesafe", sizeof(Toy), alignof(Toy), SlabFlags::kTypesafeByRcu, toy_ctor, toy_keep());
  auto* t = static_cast<Toy*>(cache.alloc());
  {
    SpinGuard g(t->lock);
    t->key = 5;
    t->value = 5;
  }
  cache.free(t);
  const auto* bytes = reinterpret_cast<const unsigned char*>(t);
  for (size_t i = 0; i < sizeof(Toy); i++) {
    if (i >= offsetof(Toy, lock) && i < offsetof(Toy, lock) + sizeof(SpinLock)) continue;
    ASSERT_EQ(bytes[i], 0x6b) << i;
  }
  EXPECT_FALSE(t->lock.debug_is_locked());
  // Taking the kept lock of a free object is the protocol, not a write after free.
  { SpinGuard g(t->lock); }
  EXPECT_EQ(cache.alloc(), t);
  EXPECT_TRUE(debug.reports().empty());
  cache.free(t);
}

#if defined(__SANITIZE_ADDRESS__)
// AddressSanitizer builds: a free object of a cache without a kept state is poisoned in
// ASan's shadow, so a use after free is caught although the memory stays in the cache.
TEST(SlabDeathTest, AsanCatchesUseAfterFreeInTheCache) {
  KmemCache cache("asan", sizeof(Plain), alignof(Plain), SlabFlags::kNone);
  auto* p = static_cast<Plain*>(cache.alloc());
  p->words[0] = 1;
  cache.free(p);
  EXPECT_DEATH(
      {
        volatile uint64_t w = p->words[0];
        (void)w;
      },
      "use-after-poison");
  EXPECT_EQ(cache.alloc(), p);  // reallocated: accessible again
  p->words[0] = 2;
  cache.free(p);
}
#endif

// The identity recheck. A reader that reached an object under RCU and locked it uses a field
// past the recheck; debug_check_live (what rmap walks call) reports a use without one.
std::optional<uint64_t> read_value_unchecked(KmemCache& cache, Toy* t) {
  SpinGuard g(t->lock);
  cache.debug_check_live(t, "toy->value");
  return t->value;
}
std::optional<uint64_t> read_value_rechecked(KmemCache& cache, Toy* t, uint64_t key) {
  SpinGuard g(t->lock);
  if (t->key.load(std::memory_order_relaxed) != key) return std::nullopt;  // freed or reused
  cache.debug_check_live(t, "toy->value");
  return t->value;
}

TEST(Slab, UseWithoutIdentityRecheckIsReported) {
  SlabDebug debug(true);
  KmemCache cache("toy", sizeof(Toy), alignof(Toy), SlabFlags::kTypesafeByRcu, toy_ctor, toy_keep());
  auto* t = static_cast<Toy*>(cache.alloc());
  {
    SpinGuard g(t->lock);
    t->key = 7;
    t->value = 70;
  }
  EXPECT_EQ(read_value_rechecked(cache, t, 7), 70u);
  EXPECT_EQ(read_value_unchecked(cache, t), 70u);
  EXPECT_TRUE(debug.reports().empty());

  RcuReadGuard rcu;  // the reader's section: t is reached obliquely from here on
  cache.free(t);     // the writer frees it meanwhile (poisoned, lock kept)
  EXPECT_EQ(read_value_rechecked(cache, t, 7), std::nullopt);
  EXPECT_TRUE(debug.reports().empty());
  read_value_unchecked(cache, t);
  std::vector<std::string> reports = debug.reports();
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_NE(reports[0].find("toy->value"), std::string::npos) << reports[0];
  EXPECT_NE(reports[0].find("kmem_cache toy"), std::string::npos) << reports[0];

  // Reused for another object of the type: the recheck still turns the reader away.
  auto* u = static_cast<Toy*>(cache.alloc());
  ASSERT_EQ(u, t);
  {
    SpinGuard g(u->lock);
    u->key = 8;
    u->value = 80;
  }
  EXPECT_EQ(read_value_rechecked(cache, t, 7), std::nullopt);
  EXPECT_EQ(debug.reports().size(), 1u);
  cache.free(u);
}

// The model's own caches: anon_vmas and VMAs come from them and go back to them, anon_vmas
// at once, VMAs after their grace period.
class SlabModelTest : public testing::ModelTest {};

TEST_F(SlabModelTest, AnonVmasAndVmasComeFromTheirCaches) {
  using testing::P;
  using testing::W;
  rcu_barrier();
  const uint64_t anon_vmas = anon_vma_cachep().stats().objects_in_use;
  const uint64_t vmas = vm_area_cachep().stats().objects_in_use;
  EXPECT_TRUE(anon_vma_cachep().typesafe_by_rcu());
  EXPECT_FALSE(vm_area_cachep().typesafe_by_rcu());
  map(p1(), W, 4 * P);
  ASSERT_TRUE(fill(p1(), W, 4 * P, 1).ok());
  EXPECT_EQ(anon_vma_cachep().stats().objects_in_use, anon_vmas + 1);
  EXPECT_EQ(vm_area_cachep().stats().objects_in_use, vmas + 1);
  Process* child = sys().fork(p1()).value();
  ASSERT_TRUE(fill(child, W, P, 2).ok());
  EXPECT_EQ(anon_vma_cachep().stats().objects_in_use, anon_vmas + 2);  // the child's own
  EXPECT_GE(vm_area_cachep().stats().objects_in_use, vmas + 2);
  sys().exit(child);
  ASSERT_TRUE(sys().munmap(p1(), W, 4 * P).ok());
  EXPECT_EQ(anon_vma_cachep().stats().objects_in_use, anon_vmas);
  rcu_barrier();
  EXPECT_EQ(vm_area_cachep().stats().objects_in_use, vmas);
}

}  // namespace
}  // namespace mirrormm
