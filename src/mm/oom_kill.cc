// The OOM killer and the OOM reaper (mm/oom_kill.c).
//
// When an allocation that may reclaim finds no frame and reclaim makes no progress, the
// allocator calls out_of_memory, which asks the machine's OOM reaper thread for a victim: the
// live process whose memory is largest (oom_badness: resident pages and swap entries) is
// killed. A killed process
// answers -ESRCH to every later system call and kNoProcess to every later access, as a task
// with SIGKILL pending never returns to user space; its memory goes when it exits.
//
// Exit may have to wait (a secondary MMU's release callback, a system call of the victim in
// flight that holds a user reference on its address space), so, as in Linux, the OOM reaper
// frees the victim's private memory first, at once: a thread of the machine that takes the
// victim's mmap_lock for read with a trylock and unmaps every private VMA under a
// *non-blockable* invalidation (mmu_notifier_invalidate_range_start_nonblock). A subscriber
// that would have to sleep answers -EAGAIN; that VMA is skipped and the reap is retried
// (MAX_OOM_REAP_RETRIES times, HZ/10 apart), so the subscriber's -EAGAIN path is really
// taken. The reaper then exits the victim.
//
// Locking: out_of_memory runs in the allocator's slow path, with at most an mmap_lock (read)
// or a VMA read lock held, so it only records the request under the killer's leaf lock; the
// reaper thread, which holds nothing, chooses and kills the victim and takes the locks that
// needs (the process table, the victim's mmap_lock, rmap and PTE locks through zap). The
// allocating thread retries meanwhile; if its own process is the victim, its allocation fails
// and its access ends as the kill does.
#include "mm/oom_kill.h"

#include <chrono>
#include <thread>

#include "mm/internal.h"
#include "mm/mm.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/system_internal.h"
#include "mm/tlb.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

constexpr int kMaxOomReapRetries = 10;  // MAX_OOM_REAP_RETRIES
constexpr auto kOomReapInterval = std::chrono::milliseconds(100);  // HZ/10

// oom_badness: the pages the victim would give back (its page tables aside).
int64_t oom_badness(Mm* mm) {
  return mm->rss(MM_ANONPAGES) + mm->rss(MM_SHMEMPAGES) + mm->rss(MM_SWAPENTS);
}

}  // namespace

bool oom_reap_task_mm(Mm* mm) {
  if (!mmap_read_trylock(mm)) return false;
  bool ret = true;
  for (auto& entry : mm->vmas_) {
    Vma* vma = entry.second;
    if (vma->vm_flags & (VM_HUGETLB | VM_PFNMAP)) continue;
    // Only private memory: shared pages outlive the victim in their file.
    if (!vma->is_anonymous() && (vma->vm_flags & VM_SHARED)) continue;
    if (vma->is_anonymous() && (vma->vm_flags & VM_SHARED)) continue;
    MmuNotifierRange range;
    mmu_notifier_range_init(&range, MmuNotifyEvent::kUnmap, 0, mm, vma->vm_start, vma->vm_end);
    if (mmu_notifier_invalidate_range_start_nonblock(&range) != Errno::kOk) {
      ret = false;  // a subscriber would sleep: this VMA waits for the next try
      continue;
    }
    {
      MmuGather tlb(mm);
      zap_page_range(tlb, vma, vma->vm_start, vma->vm_end, ZapCows::kYes, ZapMarkers::kDrop);
    }
    mmu_notifier_invalidate_range_end(&range);
  }
  mmap_read_unlock(mm);
  return ret;
}

OomKiller::OomKiller(System* sys) : sys_(sys) {}

OomKiller::~OomKiller() { stop(); }

void OomKiller::stop() {
  {
    MutexGuard g(lock_);
    stopping_ = true;
  }
  wq_.notify_all();
  if (reaper_.joinable()) reaper_.join();
}

bool OomKiller::out_of_memory() {
  MutexGuard g(lock_);
  if (stopping_) return false;
  // A victim is being chosen or reaped: its memory is on its way back (Linux does not kill
  // a second task while the first one's memory is pending, oom_reaper's MMF_OOM_SKIP).
  if (kill_requested_ || reaping_) return true;
  // The choice takes the process table's lock, which ranks outside the mmap_lock the
  // allocating path may hold: the reaper thread makes it.
  kill_requested_ = true;
  if (!reaper_.joinable()) reaper_ = std::thread([this] { reaper(); });
  wq_.notify_all();
  return true;
}

Process* OomKiller::select_bad_process() {
  Process* victim = nullptr;
  int64_t worst = -1;
  for (uint64_t pid = 1, n = sys_->nr_processes_created(); pid <= n; pid++) {
    Process* p = sys_->process(pid);
    if (!p || p->oom_killed()) continue;
    Mm* mm = get_task_mm(p);
    if (!mm) continue;
    const int64_t points = oom_badness(mm);
    mmput(mm);
    if (points > worst) {
      worst = points;
      victim = p;
    }
  }
  return victim;
}

void OomKiller::reaper() {
  for (;;) {
    Process* victim = nullptr;
    {
      MutexGuard g(lock_);
      while ((!kill_requested_ || paused_) && !stopping_) wq_.wait(lock_);
      if (stopping_) return;
      reaping_ = true;
      kill_requested_ = false;
    }
    // oom_kill_process: the victim is killed at once (it answers -ESRCH from now on), then
    // its private memory is reaped and it exits.
    victim = select_bad_process();
    if (victim) {
      victim->oom_kill();
      sys_->mem().events().count(OOM_KILL);
      reap_and_exit(victim);
    }
    MutexGuard g(lock_);
    reaping_ = false;
    wq_.notify_all();
  }
}

void OomKiller::pause() {
  MutexGuard g(lock_);
  paused_++;
  while (reaping_) wq_.wait(lock_);
}

void OomKiller::resume() {
  {
    MutexGuard g(lock_);
    paused_--;
  }
  wq_.notify_all();
}

void OomKiller::reap_and_exit(Process* victim) {
  for (int attempt = 0; attempt < kMaxOomReapRetries; attempt++) {
    Mm* mm = get_task_mm(victim);
    if (!mm) break;  // already gone
    const bool done = oom_reap_task_mm(mm);
    mmput(mm);
    if (done) break;
    reap_retries_.fetch_add(1, std::memory_order_relaxed);
    std::this_thread::sleep_for(kOomReapInterval);
  }
  sys_->exit(victim);
}

}  // namespace mirrormm
