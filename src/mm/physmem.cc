#include "mm/physmem.h"

#include <sys/mman.h>

#include <cstring>
#include <new>

namespace mirrormm {

namespace {
void* reserve(uint64_t bytes) {
  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  return p;
}
}  // namespace

PhysMem::PhysMem(uint64_t bytes) {
  nr_frames_ = bytes >> kPageShift;
  if (nr_frames_ < 16) nr_frames_ = 16;
  if (nr_frames_ > (1ull << 31)) nr_frames_ = 1ull << 31;
  base_ = static_cast<uint8_t*>(reserve(nr_frames_ << kPageShift));
  // Descriptors are constructed lazily as frames come into use: a fresh anonymous mapping is
  // zero-filled, which is exactly a default-constructed Page (all fields 0/false).
  pages_ = static_cast<Page*>(reserve(nr_frames_ * sizeof(Page)));
  Page* zero = new (&pages_[kZeroPfn]) Page();
  zero->flags.store(PG_reserved, std::memory_order_relaxed);
  zero->refcount.store(1, std::memory_order_relaxed);
  nr_free_.store(nr_frames_ - 2, std::memory_order_relaxed);
}

PhysMem::~PhysMem() {
  ::munmap(base_, nr_frames_ << kPageShift);
  ::munmap(pages_, nr_frames_ * sizeof(Page));
}

Page* PhysMem::alloc_page(Zero zero) {
  pfn_t pfn;
  {
    SpinGuard g(lock_);
    if (free_head_ != 0) {
      pfn = free_head_;
      free_head_ = pages_[pfn].next_free;
    } else if (next_fresh_ < nr_frames_) {
      pfn = next_fresh_++;
      new (&pages_[pfn]) Page();
    } else {
      return nullptr;
    }
    nr_free_.store(nr_free_.load(std::memory_order_relaxed) - 1, std::memory_order_relaxed);
  }
  Page* page = &pages_[pfn];
  page->flags.store(0, std::memory_order_relaxed);
  page->mapcount.store(0, std::memory_order_relaxed);
  page->mapping = nullptr;
  page->index = 0;
  page->next_free = 0;
  page->refcount.store(1, std::memory_order_release);
  if (zero == Zero::kYes) std::memset(pfn_to_virt(pfn), 0, kPageSize);
  return page;
}

void PhysMem::prep_free(Page* page) {
  MM_BUG_ON(page->mapcount.load(std::memory_order_relaxed) != 0);
  MM_BUG_ON(page->test(PG_free));
  page->flags.store(PG_free, std::memory_order_relaxed);
  page->mapping = nullptr;
  page->gen++;
  if constexpr (kDebugChecks) std::memset(page_address(page), 0x6b, kPageSize);  // poison
}

void PhysMem::free_page(Page* page) {
  prep_free(page);
  pfn_t pfn = page_to_pfn(page);
  SpinGuard g(lock_);
  page->next_free = free_head_;
  free_head_ = pfn;
  nr_free_.store(nr_free_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

void PhysMem::put_pages(Page* const* pages, size_t n) {
  // Unlink the frames whose last reference goes into a private chain first, then splice the
  // chain onto the free list under one lock hold.
  pfn_t head = 0, tail = 0;
  uint64_t count = 0;
  for (size_t i = 0; i < n; i++) {
    Page* page = pages[i];
    MM_BUG_ON(page->test(PG_reserved));
    int32_t old = page->refcount.fetch_sub(1, std::memory_order_acq_rel);
    MM_BUG_ON(old <= 0);
    if (old != 1) continue;
    prep_free(page);
    pfn_t pfn = page_to_pfn(page);
    page->next_free = head;
    head = pfn;
    if (!tail) tail = pfn;
    count++;
  }
  if (!count) return;
  SpinGuard g(lock_);
  pages_[tail].next_free = free_head_;
  free_head_ = head;
  nr_free_.store(nr_free_.load(std::memory_order_relaxed) + count, std::memory_order_relaxed);
}

}  // namespace mirrormm
