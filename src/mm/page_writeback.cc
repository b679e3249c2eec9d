// The flusher thread; see page_writeback.h.
#include "mm/page_writeback.h"

#include <vector>

#include "mirrormm/system.h"
#include "mm/filemap.h"
#include "mm/physmem.h"
#include "mm/shmem.h"

namespace mirrormm {

Flusher::Flusher(System* sys) : sys_(sys) {}

Flusher::~Flusher() { stop(); }

void Flusher::start_locked() {
  if (!thread_.joinable() && !stopping_) thread_ = std::thread([this] { run(); });
}

void Flusher::note_dirtied() {
  const uint64_t n = dirtied_.fetch_add(1, std::memory_order_relaxed);
  if (n == 0) {
    MutexGuard g(lock_);
    start_locked();
  }
  if ((n + 1) % kDirtyRatelimit == 0) wakeup();
}

void Flusher::wakeup() {
  if (woken_.exchange(true, std::memory_order_acq_rel)) return;
  {
    MutexGuard g(lock_);
    start_locked();
  }
  wq_.notify_all();
}

void Flusher::pause() {
  MutexGuard g(lock_);
  paused_++;
  while (running_) wq_.wait(lock_);
}

void Flusher::resume() {
  {
    MutexGuard g(lock_);
    paused_--;
  }
  wq_.notify_all();
}

void Flusher::stop() {
  {
    MutexGuard g(lock_);
    stopping_ = true;
  }
  wq_.notify_all();
  if (thread_.joinable()) thread_.join();
  MutexGuard g(pass_lock_);
  for (auto& [inode, when] : dirtied_when_) inode->put();
  dirtied_when_.clear();
}

void Flusher::run() {
  const auto interval = std::chrono::milliseconds(sys_->config().dirty_writeback_ms);
  for (;;) {
    {
      MutexGuard g(lock_);
      running_ = false;
      wq_.notify_all();
      // wb_wait_for_work: the next periodic pass, or a wakeup, whichever comes first.
      const auto deadline = Clock::now() + interval;
      while (!stopping_ && (paused_ || (!woken_.load(std::memory_order_acquire) && Clock::now() < deadline)))
        wq_.wait_until(lock_, deadline);
      if (stopping_) return;
      running_ = true;
    }
    woken_.store(false, std::memory_order_release);
    (void)writeback_pass();
  }
}

void balance_dirty_pages_ratelimited(System* sys) { sys->flusher().note_dirtied(); }

uint64_t Flusher::writeback_pass() {
  std::vector<ShmemInode*> files = sys_->get_regular_files();  // references, put below
  const auto now = Clock::now();
  const auto expire = std::chrono::milliseconds(sys_->config().dirty_expire_ms);
  std::vector<uint64_t> dirty(files.size());
  uint64_t total = 0;
  for (size_t i = 0; i < files.size(); i++) total += dirty[i] = count_dirty_pages(files[i]);
  // wb_over_bg_thresh: the dirty pages against the background ratio of memory.
  const bool over_bg = total * 100 > sys_->mem().nr_frames() * sys_->config().dirty_background_ratio;
  uint64_t written = 0;
  {
    MutexGuard g(pass_lock_);
    for (size_t i = 0; i < files.size(); i++) {
      ShmemInode* inode = files[i];
      auto it = dirtied_when_.find(inode);
      if (dirty[i] == 0) {
        if (it != dirtied_when_.end()) {
          inode->put();
          dirtied_when_.erase(it);
        }
        continue;
      }
      if (it == dirtied_when_.end()) {
        inode->get();  // the map's reference
        it = dirtied_when_.emplace(inode, now).first;
      }
      if (!over_bg && now - it->second < expire) continue;
      written += filemap_write_and_wait_range(inode, 0, ~0ull);
      inode->put();
      dirtied_when_.erase(it);
    }
    // A file that lost its name is no longer looked at; its pages stay with its mappings.
    for (auto it = dirtied_when_.begin(); it != dirtied_when_.end();) {
      bool named = false;
      for (ShmemInode* f : files) named = named || f == it->first;
      if (named) {
        ++it;
      } else {
        it->first->put();
        it = dirtied_when_.erase(it);
      }
    }
  }
  for (ShmemInode* f : files) f->put();
  passes_.fetch_add(1, std::memory_order_relaxed);
  written_.fetch_add(written, std::memory_order_relaxed);
  return written;
}

}  // namespace mirrormm
