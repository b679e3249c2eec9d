// Object caches (mm/slab.c's role): chunks, per-CPU stacks, RCU release, poisoning.
//
// A chunk is kChunkSize bytes aligned to kChunkSize, so an object finds its chunk by masking
// its address. The chunk opens with its header (struct Chunk), then one state byte per object,
// then the chunk's free list as an array of object indices (kept out of the objects, as
// mm/slab.c's kmem_bufctl_t, so that a free object's bytes are the poison and the kept range
// only), then the objects.
//
//   alloc: CPU stack --(empty: refill kBatch)--> chunks' free lists --(none: grow)--> heap
//   free:  CPU stack --(full: spill the oldest kBatch)--> chunks' free lists
//          a chunk whose objects are all free: kept if it is the only spare, else released
//          (TYPESAFE: through rcu_call, so that readers inside RcuReadGuard still see it)
#include "mm/slab.h"

#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <utility>

#include <fmt/format.h>

#include "mirrormm/base/assert.h"
#include "mirrormm/base/rcu.h"
#include "mm/physmem.h"  // tls_this_cpu, this_cpu_slot

// AddressSanitizer builds: the free objects of a cache whose freed objects hold nothing
// valid (neither TYPESAFE nor constructed) are poisoned in ASan's shadow too, so that a use
// after free is caught at the access although the memory stays in the cache.
#if defined(__SANITIZE_ADDRESS__)
#define MM_SLAB_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MM_SLAB_ASAN 1
#endif
#endif
#ifdef MM_SLAB_ASAN
#include <sanitizer/asan_interface.h>
#define MM_ASAN_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define MM_ASAN_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define MM_ASAN_POISON(p, n) ((void)(p), (void)(n))
#define MM_ASAN_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

namespace mirrormm {

namespace {

// Per-object states (a byte in the chunk header). Atomic because debug_check_live reads it
// from readers that reached the object without owning it; relaxed: it is a debugging aid,
// and the object's owner is the only writer.
enum ObjState : uint8_t {
  kObjFree = 0,          // free, not poisoned (fresh from the constructor, or checks were off)
  kObjFreePoisoned = 1,  // free and filled with kPoisonFree outside the kept range
  kObjAllocated = 2,
};

std::atomic<bool> g_debug_checks{kDebugChecks};
std::atomic<uint64_t> g_reports{0};

struct ReportHook {
  SpinLock lock{lock_class::kSlabReport};
  std::shared_ptr<std::function<void(std::string_view)>> fn GUARDED_BY(lock);
};
ReportHook& report_hook() {
  static ReportHook* hook = new ReportHook();  // never destroyed: caches report until exit
  return *hook;
}

size_t round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

}  // namespace

// The chunk header. Guarded by the cache's node lock, except `cache` (written once, before
// the chunk is shared) and the state bytes (see ObjState).
struct KmemCache::Chunk {
  KmemCache* cache = nullptr;
  Chunk* prev = nullptr;  // on the cache's partial_ list while nfree > 0
  Chunk* next = nullptr;
  uint32_t nfree = 0;     // entries of the free-index stack

  std::atomic<uint8_t>* state() { return reinterpret_cast<std::atomic<uint8_t>*>(this + 1); }
  uint16_t* free_idx(size_t per_chunk) {
    return reinterpret_cast<uint16_t*>(round_up(reinterpret_cast<uintptr_t>(state() + per_chunk), alignof(uint16_t)));
  }
};

KmemCache::KmemCache(std::string name, size_t size, size_t align, SlabFlags flags, Ctor ctor, KeepRange keep)
    : name_(std::move(name)), size_(size), align_(align ? align : alignof(std::max_align_t)), flags_(flags),
      ctor_(ctor), keep_(ctor && keep.size == 0 ? KeepRange{0, size} : keep) {
  MM_BUG_ON(size_ == 0 || (align_ & (align_ - 1)) != 0 || align_ > 4096);
  MM_BUG_ON(keep_.size != 0 && (!ctor_ || keep_.offset + keep_.size > size_));
  stride_ = round_up(size_, align_);
  // The largest object count whose header, state bytes, index stack and objects fit.
  size_t n = (kChunkSize - sizeof(Chunk)) / (stride_ + 3);
  for (; n > 0; n--) {
    size_t idx_end = round_up(sizeof(Chunk) + n, alignof(uint16_t)) + 2 * n;
    size_t first = round_up(idx_end, align_);
    if (first + n * stride_ <= kChunkSize) {
      first_offset_ = first;
      break;
    }
  }
  MM_BUG_ON(n == 0 || n > 0xffff);
  per_chunk_ = n;
  reciprocal_ = (uint64_t{1} << 32) / stride_ + 1;
}

KmemCache::~KmemCache() {
  MM_BUG_ON(debug_in_use() != 0);
  shrink();
  rcu_barrier();  // the RCU releases of TYPESAFE chunks use this cache's counters
  SpinGuard g(node_lock_);
  MM_BUG_ON(chunks_ != 0);
}

KmemCache* KmemCache::debug_cache_of(const void* obj) {
  return reinterpret_cast<const Chunk*>(reinterpret_cast<uintptr_t>(obj) & ~(uintptr_t{kChunkSize} - 1))->cache;
}

KmemCache::Chunk* KmemCache::chunk_of(const void* obj) const {
  auto* c = reinterpret_cast<Chunk*>(reinterpret_cast<uintptr_t>(obj) & ~(uintptr_t{kChunkSize} - 1));
  MM_BUG_ON(c->cache != this);  // an object of another cache, or not a cache object at all
  return c;
}

size_t KmemCache::index_in(const Chunk* c, const void* obj) const {
  // off / stride_ without a division (mm/slab.c's obj_to_index uses reciprocal_divide): with
  // reciprocal_ = floor(2^32 / stride_) + 1, (k * stride_ * reciprocal_) >> 32 is exactly k
  // while k * stride_ < 2^32, which a chunk guarantees.
  const uint64_t off = reinterpret_cast<uintptr_t>(obj) - reinterpret_cast<uintptr_t>(c) - first_offset_;
  const uint64_t i = (off * reciprocal_) >> 32;
  MM_BUG_ON(i >= per_chunk_ || i * stride_ != off);
  return i;
}

void* KmemCache::object_at(Chunk* c, size_t i) const {
  return reinterpret_cast<char*>(c) + first_offset_ + i * stride_;
}

KmemCache::Chunk* KmemCache::grow_locked() {
  // The heap allocation and the constructors run under the node lock: constructors must not
  // take locks or allocate from an object cache.
  void* mem = ::operator new(kChunkSize, std::align_val_t{kChunkSize});
  Chunk* c = new (mem) Chunk();
  c->cache = this;
  std::atomic<uint8_t>* st = c->state();
  uint16_t* idx = c->free_idx(per_chunk_);
  for (size_t i = 0; i < per_chunk_; i++) {
    new (&st[i]) std::atomic<uint8_t>(kObjFree);
    if (ctor_) ctor_(object_at(c, i));
    if (asan_poison()) MM_ASAN_POISON(object_at(c, i), size_);
    idx[i] = static_cast<uint16_t>(per_chunk_ - 1 - i);  // lowest addresses handed out first
  }
  c->nfree = static_cast<uint32_t>(per_chunk_);
  c->next = partial_;
  if (partial_) partial_->prev = c;
  partial_ = c;
  chunks_++;
  empty_chunks_++;
  chunks_allocated_++;
  return c;
}

void KmemCache::release_chunk_locked(Chunk* c) {
  MM_BUG_ON(c->nfree != per_chunk_);
  if (c->prev) c->prev->next = c->next;
  else partial_ = c->next;
  if (c->next) c->next->prev = c->prev;
  chunks_--;
  empty_chunks_--;
  chunks_released_++;
  auto release = [](void* mem) {
    MM_ASAN_UNPOISON(mem, kChunkSize);
    ::operator delete(mem, std::align_val_t{kChunkSize});
  };
  if (flags_ == SlabFlags::kTypesafeByRcu) {
    // Readers inside RcuReadGuard may still lock objects of this chunk: the memory stays a
    // chunk of this type until they are done.
    rcu_pending_.fetch_add(1, std::memory_order_relaxed);
    rcu_call([this, c, release] {
      release(c);
      rcu_pending_.fetch_sub(1, std::memory_order_relaxed);
    });
  } else {
    release(c);
  }
}

void KmemCache::put_object_locked(void* obj) {
  Chunk* c = chunk_of(obj);
  c->free_idx(per_chunk_)[c->nfree++] = static_cast<uint16_t>(index_in(c, obj));
  if (c->nfree == 1) {  // was full: back on the partial list
    c->prev = nullptr;
    c->next = partial_;
    if (partial_) partial_->prev = c;
    partial_ = c;
  }
  if (c->nfree == per_chunk_) {
    empty_chunks_++;
    if (empty_chunks_ > 1) release_chunk_locked(c);  // keep one spare chunk
  }
}

void KmemCache::refill_locked(CpuCache& cpu) {
  SpinGuard g(node_lock_);
  while (cpu.count < kBatch) {
    Chunk* c = partial_ ? partial_ : grow_locked();
    if (c->nfree == per_chunk_) empty_chunks_--;
    uint16_t i = c->free_idx(per_chunk_)[--c->nfree];
    if (c->nfree == 0) {  // full: off the partial list
      partial_ = c->next;
      if (partial_) partial_->prev = nullptr;
      c->next = c->prev = nullptr;
    }
    cpu.objs[cpu.count++] = object_at(c, i);
  }
}

void KmemCache::flush_locked(CpuCache& cpu, int n) {
  if (n == 0) return;
  SpinGuard g(node_lock_);
  // The oldest objects (the bottom of the stack): the recently freed ones stay cache-hot.
  for (int i = 0; i < n; i++) put_object_locked(cpu.objs[i]);
  std::memmove(cpu.objs, cpu.objs + n, (cpu.count - n) * sizeof(void*));
  cpu.count -= n;
}

void* KmemCache::alloc() {
  CpuCache& cpu = cpu_[this_cpu_slot(kCpuSlots)];
  void* obj;
  {
    SpinGuard g(cpu.lock);
    if (cpu.count == 0) refill_locked(cpu);
    obj = cpu.objs[--cpu.count];
    cpu.in_use.store(cpu.in_use.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
  Chunk* c = chunk_of(obj);
  std::atomic<uint8_t>& st = c->state()[index_in(c, obj)];
  uint8_t s = st.load(std::memory_order_relaxed);
  MM_BUG_ON(s == kObjAllocated);
  if (asan_poison()) MM_ASAN_UNPOISON(obj, size_);
  if (s == kObjFreePoisoned) check_poison(obj);
  st.store(kObjAllocated, std::memory_order_relaxed);
  return obj;
}

void KmemCache::free(void* obj) {
  Chunk* c = chunk_of(obj);
  std::atomic<uint8_t>& st = c->state()[index_in(c, obj)];
  if (st.load(std::memory_order_relaxed) != kObjAllocated) {
    report(fmt::format("kmem_cache {}: double free of object {}", name_, obj));
    MM_BUG_ON(st.load(std::memory_order_relaxed) != kObjAllocated);
  }
  if (debug_checks()) {
    poison(obj);
    st.store(kObjFreePoisoned, std::memory_order_relaxed);
  } else {
    st.store(kObjFree, std::memory_order_relaxed);
  }
  if (asan_poison()) MM_ASAN_POISON(obj, size_);
  CpuCache& cpu = cpu_[this_cpu_slot(kCpuSlots)];
  SpinGuard g(cpu.lock);
  cpu.in_use.store(cpu.in_use.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  if (cpu.count == kCpuLimit) flush_locked(cpu, kBatch);
  cpu.objs[cpu.count++] = obj;
}

void KmemCache::shrink() {
  for (CpuCache& cpu : cpu_) {
    SpinGuard g(cpu.lock);
    flush_locked(cpu, cpu.count);
  }
  SpinGuard g(node_lock_);
  for (Chunk* c = partial_; c;) {
    Chunk* next = c->next;
    if (c->nfree == per_chunk_) release_chunk_locked(c);
    c = next;
  }
}

int64_t KmemCache::debug_in_use() const {
  int64_t n = 0;
  for (const CpuCache& cpu : cpu_) n += cpu.in_use.load(std::memory_order_relaxed);
  return n;
}

KmemCacheStats KmemCache::stats() const {
  KmemCacheStats s;
  s.objects_in_use = static_cast<uint64_t>(debug_in_use());
  s.objects_per_chunk = per_chunk_;
  s.chunks_rcu_pending = rcu_pending_.load(std::memory_order_relaxed);
  SpinGuard g(node_lock_);
  s.chunks = chunks_;
  s.chunks_allocated = chunks_allocated_;
  s.chunks_released = chunks_released_;
  return s;
}

// ---- debug checking ----

void KmemCache::debug_set_checks(bool on) { g_debug_checks.store(on, std::memory_order_relaxed); }
bool KmemCache::debug_checks() { return g_debug_checks.load(std::memory_order_relaxed); }
uint64_t KmemCache::debug_reports() { return g_reports.load(std::memory_order_relaxed); }

void KmemCache::debug_set_report_hook(std::function<void(std::string_view)> hook) {
  auto fn = hook ? std::make_shared<std::function<void(std::string_view)>>(std::move(hook)) : nullptr;
  ReportHook& h = report_hook();
  SpinGuard g(h.lock);
  h.fn = std::move(fn);
}

void KmemCache::report(const std::string& text) {
  g_reports.fetch_add(1, std::memory_order_relaxed);
  std::fprintf(stderr, "mirrormm slab: %s\n", text.c_str());
  std::shared_ptr<std::function<void(std::string_view)>> fn;
  {
    ReportHook& h = report_hook();
    SpinGuard g(h.lock);
    fn = h.fn;
  }
  if (fn) (*fn)(text);  // outside the lock: the hook may take its own
}

void KmemCache::poison(void* obj) const {
  auto* p = static_cast<unsigned char*>(obj);
  if (keep_.size == 0) {
    std::memset(p, kPoisonFree, size_);
    return;
  }
  std::memset(p, kPoisonFree, keep_.offset);
  std::memset(p + keep_.offset + keep_.size, kPoisonFree, size_ - keep_.offset - keep_.size);
}

void KmemCache::check_poison(const void* obj) const {
  const auto* p = static_cast<const unsigned char*>(obj);
  for (size_t i = 0; i < size_; i++) {
    if (i == keep_.offset && keep_.size != 0) {
      i += keep_.size - 1;
      continue;
    }
    if (p[i] != kPoisonFree) {
      report(fmt::format("kmem_cache {}: write after free in object {} at offset {} (byte {:#04x}, poison {:#04x})",
                         name_, obj, i, p[i], kPoisonFree));
      return;
    }
  }
}

bool KmemCache::debug_check_live(const void* obj, std::string_view what) const {
  if (!debug_checks()) return true;
  Chunk* c = chunk_of(obj);
  if (c->state()[index_in(c, obj)].load(std::memory_order_relaxed) == kObjAllocated) return true;
  report(fmt::format("kmem_cache {}: {} used in free object {} (a reader that reached it under RCU must "
                     "recheck its identity under its lock first)",
                     name_, what, obj));
  return false;
}

}  // namespace mirrormm
