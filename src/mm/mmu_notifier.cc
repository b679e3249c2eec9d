// MMU notifiers (mm/mmu_notifier.c): classic subscriptions, interval notifiers with the
// odd/even invalidate_seq protocol, and the invalidation dispatch that the primary paths call
// through mmu_notifier_internal.h. Rmap notifiers are in rmap_notifier.cc, the lookups that
// secondary MMUs call in hmm.cc, the test switches in mmu_debug.cc.
//
// Locking (mm/lock_order.h): MmuNotifierSubscriptions::lock ranks after the mmap_lock, i_mmap
// and anon_vma locks (invalidations run under any of them; register holds all of them) and is
// never held across a callback. Classic lists are walked under the notifier SRCU domain
// (base/srcu.h), in which callbacks may sleep. The interval tree is walked without a lock only
// while it is frozen (invalidate_seq odd), when inserts and removes are deferred.
//
// Waiting (read_begin, remove): a waiter checks the state under the spinlock while holding
// wq_lock; a waker changes the state under the spinlock, then takes and drops wq_lock before
// notify_all, so no wakeup is lost.
#include <algorithm>
#include <climits>
#include <cstring>
#include <condition_variable>
#include <new>
#include <string>
#include <unordered_map>
#include <vector>

#include "mirrormm/base/driver_lock.h"
#include "mirrormm/base/srcu.h"
#include "mirrormm/base/tsan.h"
#include "mirrormm/system.h"
#include "mirrormm/trace.h"
#include "mm/interval_tree.h"
#include "mm/internal.h"
#include "mm/mm.h"
#include "mm/mmu_notifier_internal.h"
#include "mm/rcu_hlist.h"
#include "mm/system_internal.h"

namespace mirrormm {

// struct mmu_notifier_subscriptions.
struct MmuNotifierSubscriptions {
  SpinLock lock{lock_class::kMmuNotifier};
  std::atomic<MmuNotifier*> list{nullptr};  // the classic hlist (SRCU readers)
  std::atomic<bool> has_itree{false};       // set under mmap_lock + all rmap locks
  uint64_t invalidate_seq GUARDED_BY(lock) = 2;
  uint64_t active_invalidate_ranges GUARDED_BY(lock) = 0;
  // Changed under lock; read under lock, or without it while frozen (invalidate_seq odd, when
  // every change is deferred): the second reader cannot be stated, so it is not GUARDED_BY.
  IntervalTree<MmuIntervalNotifier> itree;
  MmuIntervalNotifier* deferred_head GUARDED_BY(lock) = nullptr;
  MmuIntervalNotifier* deferred_tail GUARDED_BY(lock) = nullptr;
  Mutex wq_lock{lock_class::kNotifierWait};  // see "Waiting" above; taken before `lock`
  std::condition_variable_any wq;
  std::atomic<int> waiters{0};  // threads in wait_until: wakers skip the wakeup when none
};

namespace {

constexpr int kEagain = -static_cast<int>(Errno::kAgain);

void warn(Mm* mm, const std::string& what) {
  mm->sys()->report_violation("mmu_notifier warning", "mmu_notifier: " + what);
}

bool broken(const Mm* mm, System::DebugBreak b) { return mm->sys()->debug_broken(b); }

// Calls sub's release() if this caller claims it (exit and unregister race for the claim,
// and the loser calls nothing). A second call is reported: a driver's release() tears down
// its secondary MMU and may free what a second call would use.
// A subscription its driver freed (mmu_notifier_debug_free) must never be reached again by
// the core: SRCU readers may still be on it only if the driver waited for a grace period
// before freeing it (mmu_notifier_put's free_notifier). Reports the use and tells the caller
// to leave the subscription alone (the memory is poisoned, not gone, so the walk may follow
// its next pointer).
bool used_after_free(const MmuNotifier* sub, Mm* mm, const char* what) {
  if (!sub->debug_freed.load(std::memory_order_acquire)) return false;
  mm->sys()->report_violation(
      "notifier used after free",
      std::string("mmu_notifier: ") + what +
          " reached a subscription its driver freed in release() (a free must wait for an SRCU grace period: "
          "mmu_notifier_put and free_notifier)");
  return true;
}

void call_release(MmuNotifier* sub, Mm* mm) {
  if (sub->released.exchange(true, std::memory_order_acq_rel) && !broken(mm, System::DebugBreak::kReleaseTwice))
    return;
  if (!sub->ops->release) return;
  if (sub->release_calls.fetch_add(1, std::memory_order_relaxed) > 0)
    mm->sys()->report_violation("release called twice",
                                "mmu_notifier: release() of a subscription called a second time (exit and "
                                "unregister both called it)");
  MM_EXPLORE_POINT(kCallback, sub);
  sub->ops->release(sub, mm);
  MM_EXPLORE_POINT(kCallback, sub);
}

MmuNotifierSubscriptions* subs_of(const Mm* mm) {
  return mm->notifier_subscriptions_.load(std::memory_order_acquire);
}

// ---- waiting ----

// A waiter announces itself (waiters++) before it checks the state under the spinlock; a
// waker changes the state under the spinlock and reads `waiters` after: one of them sees the
// other, so skipping the wakeup when nobody waits loses none.
void wake_all(MmuNotifierSubscriptions* subs) {
  if (subs->waiters.load(std::memory_order_seq_cst) == 0) return;
  { MutexGuard g(subs->wq_lock); }
  subs->wq.notify_all();
}

// Sleeps until done(invalidate_seq) holds, the sequence read under the subscriptions lock.
template <class Pred>
void wait_until(MmuNotifierSubscriptions* subs, Pred done) {
  MutexGuard wl(subs->wq_lock);
  subs->waiters.fetch_add(1, std::memory_order_seq_cst);
  for (;;) {
    bool ok;
    {
      SpinGuard g(subs->lock);
      ok = done(subs->invalidate_seq);  // read under the lock, like every other state it needs
    }
    if (ok) break;
    explore_hook::cond_wait(subs->wq, subs->wq_lock);
  }
  subs->waiters.fetch_sub(1, std::memory_order_relaxed);
}

// ---- interval-tree invalidation ----

// The intervals an invalidation hits, collected in the same walk that decides whether the
// tree must freeze (one descent instead of two; the common case is a few hits). When there
// are more than fit, the rest are found by walking the frozen tree again.
struct ItreeHits {
  static constexpr int kInline = 16;
  MmuIntervalNotifier* inl[kInline];
  int n = 0;
  bool more = false;
};

// Opens the range's share of the active count; with hits, the tree is frozen (seq odd).
void mn_itree_inv_start_range(MmuNotifierSubscriptions* subs, const MmuNotifierRange* range, uint64_t* seq,
                              ItreeHits* hits) {
  SpinGuard g(subs->lock);
  subs->active_invalidate_ranges++;
  subs->itree.for_each_overlap(range->start, range->end - 1, [&](MmuIntervalNotifier* n) {
    if (hits->n == ItreeHits::kInline) {
      hits->more = true;
      return false;
    }
    hits->inl[hits->n++] = n;
    return true;
  });
  if (hits->n) subs->invalidate_seq |= 1;
  *seq = subs->invalidate_seq;
}

// Calls fn on every hit in start order until it returns false; the tree is frozen.
template <class Fn>
void for_each_hit(MmuNotifierSubscriptions* subs, const MmuNotifierRange* range, const ItreeHits& hits, Fn fn) {
  for (int i = 0; i < hits.n; ++i)
    if (!fn(hits.inl[i])) return;
  if (!hits.more) return;
  int skip = hits.n;
  subs->itree.for_each_overlap(range->start, range->end - 1, [&](MmuIntervalNotifier* n) {
    if (skip > 0) {
      --skip;
      return true;
    }
    return fn(n);
  });
}

// Every change of the interval tree goes through these two. While the tree is frozen
// (invalidate_seq odd) invalidations walk it without the lock, so a change then could pull a
// node from under a walker: it is reported and refused (the caller defers it instead).
bool itree_frozen_check(MmuNotifierSubscriptions* subs, Mm* mm) REQUIRES(subs->lock) {
  if (!(subs->invalidate_seq & 1)) return true;
  warn(mm, "the interval tree changed while frozen (an invalidation is walking it)");
  return false;
}

void itree_insert(MmuNotifierSubscriptions* subs, MmuIntervalNotifier* n) REQUIRES(subs->lock) {
  MM_BUG_ON(!itree_frozen_check(subs, n->mm));
  subs->itree.insert(n);
  n->state = MmuIntervalState::kInTree;
}

void itree_erase(MmuNotifierSubscriptions* subs, MmuIntervalNotifier* n) REQUIRES(subs->lock) {
  MM_BUG_ON(!itree_frozen_check(subs, n->mm));
  subs->itree.erase(n);
  n->state = MmuIntervalState::kRemoving;
}

void deferred_add(MmuNotifierSubscriptions* subs, MmuIntervalNotifier* n) REQUIRES(subs->lock) {
  n->deferred_next = nullptr;
  if (subs->deferred_tail) {
    subs->deferred_tail->deferred_next = n;
  } else {
    subs->deferred_head = n;
  }
  subs->deferred_tail = n;
}

void mn_itree_inv_end(MmuNotifierSubscriptions* subs) {
  {
    SpinGuard g(subs->lock);
    MM_BUG_ON(subs->active_invalidate_ranges == 0);
    if (--subs->active_invalidate_ranges || !(subs->invalidate_seq & 1)) return;
    // The last end of an odd period: unfreeze, then apply the deferred changes in order.
    subs->invalidate_seq++;
    for (MmuIntervalNotifier* n = subs->deferred_head; n;) {
      MmuIntervalNotifier* next = n->deferred_next;
      n->deferred_next = nullptr;
      if (n->state == MmuIntervalState::kRemovePending) {
        itree_erase(subs, n);
      } else {
        MM_BUG_ON(n->state != MmuIntervalState::kInsertPending);
        itree_insert(subs, n);
      }
      n = next;
    }
    subs->deferred_head = subs->deferred_tail = nullptr;
  }
  wake_all(subs);
}

// Errno::kAgain when a non-blockable range met an interval that would have to sleep (the
// range's share of the active count is already undone).
Errno mn_itree_invalidate(MmuNotifierSubscriptions* subs, const MmuNotifierRange* range) {
  uint64_t cur_seq;
  ItreeHits hits;
  mn_itree_inv_start_range(subs, range, &cur_seq, &hits);
  if (!hits.n) return Errno::kOk;
  // Frozen: the tree cannot change until the last end.
  bool failed = false;
  for_each_hit(subs, range, hits, [&](MmuIntervalNotifier* sub) {
    trace::Span span(trace::Kind::kInvalidate, sub, range->start, range->end, trace::invalidate_arg(range));
    MM_EXPLORE_POINT(kCallback, sub);
    if (sub->ops->invalidate(sub, range, cur_seq)) return true;
    if (mmu_notifier_range_blockable(range)) {
      warn(range->mm, "interval invalidate() failed on a blockable range");
      return true;
    }
    failed = true;
    return false;
  });
  if (failed) {
    mn_itree_inv_end(subs);
    return Errno::kAgain;
  }
  return Errno::kOk;
}

// ---- classic invalidation ----

Errno mn_hlist_invalidate_range_start(MmuNotifierSubscriptions* subs, const MmuNotifierRange* range) {
  int ret = 0;
  int started_with_end = 0;  // subscribers whose start succeeded and that have an end
  SrcuReadGuard r;
  for (MmuNotifier* s = subs->list.load(std::memory_order_acquire); s; s = s->next.load(std::memory_order_acquire)) {
    if (used_after_free(s, range->mm, "invalidate_range_start") || !s->ops->invalidate_range_start) continue;
    trace::Span span(trace::Kind::kInvalidate, s, range->start, range->end, trace::invalidate_arg(range));
    MM_EXPLORE_POINT(kCallback, s);
    int rc = s->ops->invalidate_range_start(s, range);
    MM_EXPLORE_POINT(kCallback, s);
    if (rc == 0) {
      started_with_end += s->ops->invalidate_range_end != nullptr;
      continue;
    }
    if (mmu_notifier_range_blockable(range) || rc != kEagain)
      warn(range->mm, "invalidate_range_start failed with " + std::to_string(rc) +
                          (mmu_notifier_range_blockable(range) ? " on a blockable range" : ""));
    if (s->ops->invalidate_range_end) warn(range->mm, "a subscriber whose start can fail has an end");
    // A blockable range cannot fail: Linux warns and the caller goes on (and calls end). The
    // early ends below would then come twice, so for a blockable range the failure is only
    // warned about.
    if (!mmu_notifier_range_blockable(range)) ret = rc;
  }
  if (ret) {
    // The 2021 rule: every subscriber with an end gets it, since the caller will not call end.
    int ended = 0;
    if (!broken(range->mm, System::DebugBreak::kNonblockStartSkipsEnds)) {
      for (MmuNotifier* s = subs->list.load(std::memory_order_acquire); s; s = s->next.load(std::memory_order_acquire)) {
        if (used_after_free(s, range->mm, "invalidate_range_end") || !s->ops->invalidate_range_end) continue;
        s->ops->invalidate_range_end(s, range);
        ended++;
      }
    }
    // Every start that succeeded is paired with an end (a subscriber left "in progress" would
    // refuse its faults forever).
    if (ended < started_with_end) {
      range->mm->sys()->report_violation(
          "invalidate_range_start without its end",
          "mmu_notifier: a non-blocking invalidate_range_start failed with -EAGAIN and " +
              std::to_string(started_with_end - ended) + " subscriber(s) whose start succeeded get no end");
    }
    return Errno::kAgain;
  }
  return Errno::kOk;
}

// The checker records the range once every start callback has returned (from then on no
// subscriber may use a secondary mapping of it) and forgets it before the first end callback
// (from then on they may map it again): see checker_range_start in mmu_checker.cc.
Errno invalidate_range_start(MmuNotifierRange* range) {
  // The callbacks run inside the pseudo-lock that driver locks are ordered against.
  driver_lockdep::LockMapScope map(&driver_lockdep::mmu_notifier_invalidate_range_start_map);
  MmuNotifierSubscriptions* subs = subs_of(range->mm);
  if (subs) {
    bool itree = subs->has_itree.load(std::memory_order_acquire);
    if (itree) {
      Errno e = mn_itree_invalidate(subs, range);
      if (e != Errno::kOk) return e;
    }
    if (subs->list.load(std::memory_order_acquire)) {
      Errno e = mn_hlist_invalidate_range_start(subs, range);
      if (e != Errno::kOk) {
        // Linux returns here with the interval share still active; the caller calls no end,
        // so undo it (else the tree would stay frozen and read_begin wait forever).
        if (itree) mn_itree_inv_end(subs);
        return e;
      }
    }
  }
  checker_range_start(range);
  if (mmu_notifier_range_blockable(range)) range->mm->sys()->debug_race_pause();
  return Errno::kOk;
}

}  // namespace

// ---- the primary paths' entry points ----

void __mmu_notifier_invalidate_range_start_checked(MmuNotifierRange* range) {
  Errno e = invalidate_range_start(range);
  MM_BUG_ON(e != Errno::kOk);  // blockable: failures were warned about and ignored
}

Errno __mmu_notifier_invalidate_range_start_nonblock(MmuNotifierRange* range) { return invalidate_range_start(range); }

void __mmu_notifier_invalidate_range_end_checked(MmuNotifierRange* range) {
  driver_lockdep::LockMapScope map(&driver_lockdep::mmu_notifier_invalidate_range_start_map);
  checker_range_end(range);
  if (MmuNotifierSubscriptions* subs = subs_of(range->mm)) {
    if (subs->has_itree.load(std::memory_order_acquire)) mn_itree_inv_end(subs);
    if (subs->list.load(std::memory_order_acquire)) {
      SrcuReadGuard r;
      for (MmuNotifier* s = subs->list.load(std::memory_order_acquire); s; s = s->next.load(std::memory_order_acquire))
        if (!used_after_free(s, range->mm, "invalidate_range_end") && s->ops->invalidate_range_end) {
          MM_EXPLORE_POINT(kCallback, s);
          s->ops->invalidate_range_end(s, range);
        }
    }
  }
}

void __mmu_notifier_release(Mm* mm) {
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (subs->has_itree.load(std::memory_order_acquire)) {
    // Interval notifiers: one RELEASE invalidation of everything; they stay registered.
    MmuNotifierRange range;
    mmu_notifier_range_init(&range, MmuNotifyEvent::kRelease, MMU_NOTIFIER_RANGE_BLOCKABLE, mm, 0, ~0ull);
    uint64_t cur_seq;
    ItreeHits hits;
    mn_itree_inv_start_range(subs, &range, &cur_seq, &hits);
    for_each_hit(subs, &range, hits, [&](MmuIntervalNotifier* sub) {
      if (!sub->ops->invalidate(sub, &range, cur_seq)) warn(mm, "interval invalidate() failed on release");
      return true;
    });
    mn_itree_inv_end(subs);
  }
  if (subs->list.load(std::memory_order_acquire)) {
    {
      // The read section begins before the unhash, so an unregister that finds its
      // subscription unhashed waits (synchronize) until the release below has run.
      SrcuReadGuard r;
      std::vector<MmuNotifier*> subscribers;
      {
        // Unhash first (readers already on a node keep following its next pointer), so that
        // the core never touches a subscription after its release() returned: release may
        // hand it to mmu_notifier_put, whose free_notifier runs after a grace period (a
        // release() that frees its own subscription is what drivers do).
        SpinGuard g(subs->lock);
        while (MmuNotifier* s = subs->list.load(std::memory_order_relaxed)) {
          subscribers.push_back(s);
          hlist_del_init_rcu(s);
        }
      }
      for (MmuNotifier* s : subscribers) call_release(s, mm);
    }
    // A release begun by a racing unregister finishes before exit frees any page.
    srcu_synchronize();
  }
}

void __mmu_notifier_arch_invalidate_secondary_tlbs(Mm* mm, uint64_t start, uint64_t end) {
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (!subs->list.load(std::memory_order_acquire)) return;
  const uint64_t begun = checker_tlb_flush_begin(mm);
  {
    SrcuReadGuard r;
    for (MmuNotifier* s = subs->list.load(std::memory_order_acquire); s; s = s->next.load(std::memory_order_acquire))
      if (!used_after_free(s, mm, "arch_invalidate_secondary_tlbs") && s->ops->arch_invalidate_secondary_tlbs) {
        MM_EXPLORE_POINT(kCallback, s);
        s->ops->arch_invalidate_secondary_tlbs(s, mm, start, end);
      }
  }
  checker_tlb_flush_end(mm, start, end, begun);
}

void mmu_notifier_pte_upgrade(Mm* mm, uint64_t addr) {
  if (!mm_has_notifiers(mm) || mm->sys()->debug_broken(System::DebugBreak::kNoSecondaryTlbUpgrade)) return;
  __mmu_notifier_arch_invalidate_secondary_tlbs(mm, addr & kPageMask, (addr & kPageMask) + kPageSize);
}

namespace {
template <class Fn>
int young_walk(Mm* mm, Fn fn) {
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (!subs || !subs->list.load(std::memory_order_acquire)) return 0;
  SrcuReadGuard r;
  int young = 0;
  for (MmuNotifier* s = subs->list.load(std::memory_order_acquire); s; s = s->next.load(std::memory_order_acquire))
    if (!used_after_free(s, mm, "clear_young") && fn(s, &young)) break;
  return young;
}
}  // namespace

int mmu_notifier_clear_flush_young(Mm* mm, uint64_t start, uint64_t end) {
  return young_walk(mm, [&](MmuNotifier* s, int* young) {
    if (s->ops->clear_flush_young) *young |= s->ops->clear_flush_young(s, mm, start, end);
    return false;
  });
}

int mmu_notifier_clear_young(Mm* mm, uint64_t start, uint64_t end) {
  return young_walk(mm, [&](MmuNotifier* s, int* young) {
    if (s->ops->clear_young) *young |= s->ops->clear_young(s, mm, start, end);
    return false;
  });
}

int mmu_notifier_test_young(Mm* mm, uint64_t addr) {
  return young_walk(mm, [&](MmuNotifier* s, int* young) {
    if (s->ops->test_young && s->ops->test_young(s, mm, addr)) {
      *young = 1;
      return true;
    }
    return false;
  });
}

void mmu_notifier_subscriptions_destroy(Mm* mm) {
  MmuNotifierSubscriptions* subs = mm->notifier_subscriptions_.exchange(nullptr, std::memory_order_acq_rel);
  if (!subs) return;
  MM_BUG_ON(subs->list.load(std::memory_order_relaxed) != nullptr);
  MM_BUG_ON(!subs->itree.empty());
  delete subs;
}

const char* mmu_notify_event_name(MmuNotifyEvent e) {
  switch (e) {
    case MmuNotifyEvent::kUnmap: return "unmap";
    case MmuNotifyEvent::kClear: return "clear";
    case MmuNotifyEvent::kProtectionVma: return "protection_vma";
    case MmuNotifyEvent::kProtectionPage: return "protection_page";
    case MmuNotifyEvent::kSoftDirty: return "soft_dirty";
    case MmuNotifyEvent::kRelease: return "release";
    case MmuNotifyEvent::kMigrate: return "migrate";
    case MmuNotifyEvent::kExclusive: return "exclusive";
  }
  return "?";
}

// ---- classic registration ----

Errno __mmu_notifier_register(MmuNotifier* sub, Mm* mm) {
  mmap_assert_write_locked(mm);
  // Invalidations may come from reclaim: record fs_reclaim -> invalidate callbacks, so that a
  // driver lock taken in a callback and held across an allocation is reported at once.
  driver_lockdep::prime_notifier_dependencies();
  MM_BUG_ON(mm->mm_users_.load(std::memory_order_relaxed) <= 0);
  if (sub && (!sub->ops || sub->pprev || sub->mm)) {
    warn(mm, "registering a subscription without ops, or one that is already registered");
    return Errno::kInval;
  }
  if (sub && sub->ops && sub->ops->arch_invalidate_secondary_tlbs &&
      (sub->ops->invalidate_range_start || sub->ops->invalidate_range_end)) {
    warn(mm, "a subscriber with both start/end and arch_invalidate_secondary_tlbs");
    return Errno::kInval;
  }
  MmuNotifierSubscriptions* subs = subs_of(mm);
  std::unique_ptr<MmuNotifierSubscriptions> fresh;
  if (!subs) {
    fresh.reset(new (std::nothrow) MmuNotifierSubscriptions);
    if (!fresh) return Errno::kNoMem;
  }
  if (notifier_internal::fail_take_all_locks.load(std::memory_order_relaxed)) return Errno::kIntr;
  mm_take_all_locks(mm);
  if (fresh) {
    subs = fresh.release();
    mm->notifier_subscriptions_.store(subs, std::memory_order_release);
  }
  if (sub) {
    mmgrab(mm);
    sub->mm = mm;
    sub->users = 1;
    sub->released.store(false, std::memory_order_relaxed);
    SpinGuard g(subs->lock);
    hlist_add_head_rcu(&subs->list, sub);
  } else {
    subs->has_itree.store(true, std::memory_order_release);
  }
  mm_drop_all_locks(mm);
  return Errno::kOk;
}

Errno mmu_notifier_register(MmuNotifier* sub, Mm* mm) {
  MmapWriteGuard g(mm);
  return __mmu_notifier_register(sub, mm);
}

void mmu_notifier_unregister(MmuNotifier* sub, Mm* mm) {
  // A release() that exit called may have freed it: then every line below is a use after
  // free. Reported, and carried out (the model's memory is still the driver's).
  (void)used_after_free(sub, mm, "mmu_notifier_unregister");
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (!subs || sub->mm != mm) {
    warn(mm, "mmu_notifier_unregister of a subscription not registered on this mm");
    return;
  }
  bool hashed;
  {
    SpinGuard g(subs->lock);
    hashed = sub->pprev != nullptr;
  }
  if (hashed) {
    if (!broken(mm, System::DebugBreak::kUnregisterSkipsRelease)) {
      SrcuReadGuard r;
      call_release(sub, mm);
    }
    // Unhashing touches the subscription: a release() that freed it makes this a use after
    // free (which is why a driver frees through mmu_notifier_put instead).
    (void)used_after_free(sub, mm, "mmu_notifier_unregister's unhash");
    SpinGuard g(subs->lock);
    hlist_del_init_rcu(sub);
  }
  // Waits for every callback of sub, including a release that exit began.
  srcu_synchronize();
  sub->mm = nullptr;  // may be registered again; a second unregister is refused
  mmdrop(mm);
}

Result<MmuNotifier*> mmu_notifier_get_locked(const MmuNotifierOps* ops, Mm* mm) {
  mmap_assert_write_locked(mm);
  if (MmuNotifierSubscriptions* subs = subs_of(mm)) {
    SpinGuard g(subs->lock);
    for (MmuNotifier* s = subs->list.load(std::memory_order_relaxed); s; s = s->next.load(std::memory_order_relaxed)) {
      if (s->ops != ops) continue;
      if (s->users == UINT_MAX) return Errno::kOverflow;
      s->users++;
      return s;
    }
  }
  if (!ops->alloc_notifier) return Errno::kInval;
  MmuNotifier* sub = ops->alloc_notifier(mm);
  if (!sub) return Errno::kNoMem;
  sub->ops = ops;
  Errno e = __mmu_notifier_register(sub, mm);
  if (e != Errno::kOk) {
    if (ops->free_notifier) ops->free_notifier(sub);
    return e;
  }
  return sub;
}

Result<MmuNotifier*> mmu_notifier_get(const MmuNotifierOps* ops, Mm* mm) {
  MmapWriteGuard g(mm);
  return mmu_notifier_get_locked(ops, mm);
}

void mmu_notifier_put(MmuNotifier* sub) {
  Mm* mm = sub->mm;
  MmuNotifierSubscriptions* subs = subs_of(mm);
  {
    SpinGuard g(subs->lock);
    if (sub->users == 0) {
      warn(mm, "mmu_notifier_put without a reference");
      return;
    }
    if (--sub->users) return;
    hlist_del_init_rcu(sub);
  }
  srcu_call([sub, mm] {
    if (sub->ops->free_notifier) sub->ops->free_notifier(sub);
    mmdrop(mm);
  });
}

void mmu_notifier_synchronize() { srcu_barrier(); }

void mmu_notifier_debug_free(MmuNotifier* sub) { sub->debug_freed.store(true, std::memory_order_release); }

// ---- interval notifiers ----

namespace {
Errno interval_insert(MmuIntervalNotifier* sub, Mm* mm, uint64_t start, uint64_t length,
                      const MmuIntervalNotifierOps* ops) {
  MmuNotifierSubscriptions* subs = subs_of(mm);
  MM_BUG_ON(!subs || !subs->has_itree.load(std::memory_order_acquire));
  MM_BUG_ON(sub->state != MmuIntervalState::kIdle);
  sub->mm = mm;
  sub->ops = ops;
  sub->start = start;
  sub->last = start + length - 1;
  sub->deferred_next = nullptr;
  sub->refs.store(0, std::memory_order_relaxed);
  mmgrab(mm);
  SpinGuard g(subs->lock);
  if (subs->active_invalidate_ranges) {
    // Some invalidation is running whose range is unknown here: assume it hits the new
    // interval, so the first read_begin waits for the current window to close.
    const bool frozen = subs->invalidate_seq & 1;
    if (frozen && !(mm->sys()->debug_broken(System::DebugBreak::kInsertWhileFrozen) &&
                    itree_frozen_check(subs, mm))) {
      sub->state = MmuIntervalState::kInsertPending;
      deferred_add(subs, sub);
    } else {
      // Not frozen yet: no walker is on the tree, so the insert goes in before the freeze.
      itree_insert(subs, sub);
      subs->invalidate_seq |= 1;
    }
    sub->invalidate_seq.store(subs->invalidate_seq, std::memory_order_relaxed);
  } else {
    MM_BUG_ON(subs->invalidate_seq & 1);
    sub->invalidate_seq.store(subs->invalidate_seq - 1, std::memory_order_relaxed);
    itree_insert(subs, sub);
  }
  return Errno::kOk;
}

bool bad_interval(uint64_t start, uint64_t length) { return length == 0 || start + (length - 1) < start; }
}  // namespace

Errno mmu_interval_notifier_insert(MmuIntervalNotifier* sub, Mm* mm, uint64_t start, uint64_t length,
                                   const MmuIntervalNotifierOps* ops) {
  if (bad_interval(start, length)) return Errno::kOverflow;
  // Inserted already (any state but idle), or no callback.
  if (sub->state != MmuIntervalState::kIdle || sub->mm || !ops || !ops->invalidate) return Errno::kInval;
  if (mm->mm_users_.load(std::memory_order_acquire) <= 0) return Errno::kInval;
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (!subs || !subs->has_itree.load(std::memory_order_acquire)) {
    Errno e = mmu_notifier_register(nullptr, mm);
    if (e != Errno::kOk) return e;
  }
  return interval_insert(sub, mm, start, length, ops);
}

Errno mmu_interval_notifier_insert_locked(MmuIntervalNotifier* sub, Mm* mm, uint64_t start, uint64_t length,
                                          const MmuIntervalNotifierOps* ops) {
  mmap_assert_write_locked(mm);
  if (bad_interval(start, length)) return Errno::kOverflow;
  if (sub->state != MmuIntervalState::kIdle || sub->mm || !ops || !ops->invalidate) return Errno::kInval;
  if (mm->mm_users_.load(std::memory_order_acquire) <= 0) return Errno::kInval;
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (!subs || !subs->has_itree.load(std::memory_order_acquire)) {
    Errno e = __mmu_notifier_register(nullptr, mm);
    if (e != Errno::kOk) return e;
  }
  return interval_insert(sub, mm, start, length, ops);
}

void mmu_interval_notifier_remove(MmuIntervalNotifier* sub) {
  Mm* mm = sub->mm;
  if (!mm) return;  // never inserted, or removed already
  MmuNotifierSubscriptions* subs = subs_of(mm);
  uint64_t seq = 0;
  bool wait_seq = false;
  {
    SpinGuard g(subs->lock);
    switch (sub->state) {
      case MmuIntervalState::kInsertPending: {
        // A pending insert never reached the tree: just drop it from the deferred list.
        MmuIntervalNotifier* prev = nullptr;
        for (MmuIntervalNotifier* n = subs->deferred_head; n; prev = n, n = n->deferred_next) {
          if (n != sub) continue;
          (prev ? prev->deferred_next : subs->deferred_head) = n->deferred_next;
          if (subs->deferred_tail == n) subs->deferred_tail = prev;
          break;
        }
        sub->deferred_next = nullptr;
        sub->state = MmuIntervalState::kRemoving;
        break;
      }
      case MmuIntervalState::kInTree:
        if (subs->invalidate_seq & 1) {
          // Frozen: the last invalidate_range_end erases it.
          sub->state = MmuIntervalState::kRemovePending;
          deferred_add(subs, sub);
          seq = subs->invalidate_seq;
          wait_seq = true;
        } else {
          itree_erase(subs, sub);
        }
        break;
      case MmuIntervalState::kRemovePending:
      case MmuIntervalState::kRemoving:
        warn(mm, "mmu_interval_notifier_remove of an interval already being removed");
        return;
      case MmuIntervalState::kIdle:
        MM_BUG_ON(true);  // mm is set only while not idle
    }
  }
  // The sequence is compared under the lock, so the deferred removal has been applied when
  // this returns (Linux's "mm/mmu_notifier: fix race in mmu_interval_notifier_remove").
  if (wait_seq && !broken(mm, System::DebugBreak::kIntervalRemoveNoWait))
    wait_until(subs, [&](uint64_t invalidate_seq) { return invalidate_seq != seq; });
  // find() references.
  wait_until(subs, [&](uint64_t) { return sub->refs.load(std::memory_order_acquire) == 0; });
  // The contract: once remove returns, the core holds no pointer to sub (the caller frees it).
  bool queued;
  {
    SpinGuard g(subs->lock);
    queued = sub->state != MmuIntervalState::kRemoving;
  }
  if (queued) {
    // Returning now would let the last invalidate_range_end erase freed memory from the tree.
    // Reported, then waited for, so that the model itself stays memory-safe.
    mm->sys()->report_violation("interval notifier freed while queued",
                                "mmu_notifier: mmu_interval_notifier_remove would return while its interval is "
                                "still on the deferred list of an active invalidation");
    wait_until(subs, [&](uint64_t invalidate_seq) { return invalidate_seq != seq; });
  }
  MM_BUG_ON(sub->state != MmuIntervalState::kRemoving);
  sub->state = MmuIntervalState::kIdle;
  sub->mm = nullptr;
  mmdrop(mm);
}

uint64_t mmu_interval_read_begin(MmuIntervalNotifier* sub) {
  MM_EXPLORE_POINT(kNotifier, sub);
  // It may wait for invalidate() callbacks: no lock they take may be held here.
  driver_lockdep::lock_map_acquire(&driver_lockdep::mmu_notifier_invalidate_range_start_map);
  driver_lockdep::lock_map_release(&driver_lockdep::mmu_notifier_invalidate_range_start_map);
  if (!sub->mm) return sub->invalidate_seq.load(std::memory_order_acquire);  // not inserted
  MmuNotifierSubscriptions* subs = subs_of(sub->mm);
  uint64_t seq;
  bool is_invalidating;
  {
    SpinGuard g(subs->lock);
    seq = sub->invalidate_seq.load(std::memory_order_relaxed);
    is_invalidating = seq == subs->invalidate_seq;
  }
  // One wait, no loop: read_retry may already be true when this returns.
  if (is_invalidating) wait_until(subs, [&](uint64_t invalidate_seq) { return invalidate_seq != seq; });
  return seq;
}

MmuIntervalNotifier* mmu_interval_notifier_find(Mm* mm, const MmuIntervalNotifierOps* ops, uint64_t start,
                                                uint64_t last) {
  MmuNotifierSubscriptions* subs = subs_of(mm);
  if (!subs || last < start) return nullptr;
  SpinGuard g(subs->lock);
  MmuIntervalNotifier* best = nullptr;
  // Program order: the tree minus pending removals, plus pending inserts.
  subs->itree.for_each_overlap(start, last, [&](MmuIntervalNotifier* n) {
    if (n->ops != ops || n->state != MmuIntervalState::kInTree) return true;
    best = n;
    return false;
  });
  for (MmuIntervalNotifier* n = subs->deferred_head; n; n = n->deferred_next) {
    if (n->state != MmuIntervalState::kInsertPending || n->ops != ops || n->start > last || n->last < start) continue;
    if (!best || n->start < best->start) best = n;
  }
  if (best) best->refs.fetch_add(1, std::memory_order_relaxed);
  return best;
}

void mmu_interval_notifier_put_ref(MmuIntervalNotifier* sub) {
  MmuNotifierSubscriptions* subs = subs_of(sub->mm);
  // Decrement and wake under wq_lock: remove() checks refs holding wq_lock, so it cannot see
  // zero, return and drop what may be the last mm reference (freeing subs) while this still
  // uses subs->wq.
  MutexGuard g(subs->wq_lock);
  int old = sub->refs.fetch_sub(1, std::memory_order_acq_rel);
  MM_BUG_ON(old <= 0);
  if (old == 1) subs->wq.notify_all();
}

}  // namespace mirrormm
