#include "mm/shmem.h"

namespace mirrormm {

ShmemInode::ShmemInode(PhysMem* mem, std::string name, uint64_t size)
    : mem_(mem), name_(std::move(name)), size_(size) {}

ShmemInode::~ShmemInode() {
  MutexGuard g(lock_);
  for (auto& [idx, chunk] : chunks_) {
    for (Page* p : chunk->slots) {
      if (!p) continue;
      p->clear(PG_shmem);
      p->mapping = nullptr;
      mem_->put_page(p);
    }
  }
}

Page* ShmemInode::find_get_page(uint64_t pgoff) {
  MutexGuard g(lock_);
  auto it = chunks_.find(pgoff >> kChunkShift);
  if (it == chunks_.end()) return nullptr;
  Page* p = it->second->slots[pgoff & ((1 << kChunkShift) - 1)];
  if (p) mem_->get_page(p);
  return p;
}

Page* ShmemInode::find_or_create_page(uint64_t pgoff) {
  MutexGuard g(lock_);
  auto& chunk = chunks_[pgoff >> kChunkShift];
  if (!chunk) chunk = std::make_unique<Chunk>();
  Page*& slot = chunk->slots[pgoff & ((1 << kChunkShift) - 1)];
  if (!slot) {
    Page* p = mem_->alloc_page(Zero::kYes);
    if (!p) {
      if (chunk->used == 0) chunks_.erase(pgoff >> kChunkShift);
      return nullptr;
    }
    p->set(PG_shmem);
    p->mapping = this;
    p->index = pgoff;
    slot = p;  // the cache's reference
    chunk->used++;
    nr_pages_++;
  }
  mem_->get_page(slot);
  return slot;
}

bool ShmemInode::is_resident(uint64_t pgoff) {
  MutexGuard g(lock_);
  auto it = chunks_.find(pgoff >> kChunkShift);
  return it != chunks_.end() && it->second->slots[pgoff & ((1 << kChunkShift) - 1)] != nullptr;
}

uint64_t ShmemInode::nr_pages() {
  MutexGuard g(lock_);
  return nr_pages_;
}

File* open_file(ShmemInode* inode, bool writable) {
  File* f = new File();
  inode->get();
  f->inode = inode;
  f->writable = writable;
  return f;
}

}  // namespace mirrormm
