// The MMU notifiers' sleepable RCU domain (Linux's static `srcu` in mm/mmu_notifier.c),
// built on liburcu's bulletproof flavour: a grace-period domain of its own, separate from the
// memb flavour of base/rcu.h, so that a notifier callback sleeping inside its read-side
// section never delays the VMA and address-space frees of the other domain, and a grace
// period here never waits for VM readers.
//
// Readers: SrcuReadGuard (nestable; no registration needed). Inside it a reader may block.
// Writers: srcu_synchronize() waits for every reader that began before it (never call it
// inside a read-side section of this domain); srcu_call() runs a function after a grace
// period on liburcu's callback thread; srcu_barrier() waits for queued srcu_call()s.
#pragma once

#include <functional>

namespace mirrormm {

namespace srcu_internal {
void read_lock();
void read_unlock();
}  // namespace srcu_internal

class SrcuReadGuard {
 public:
  SrcuReadGuard() { srcu_internal::read_lock(); }
  ~SrcuReadGuard() { srcu_internal::read_unlock(); }
  SrcuReadGuard(const SrcuReadGuard&) = delete;
  SrcuReadGuard& operator=(const SrcuReadGuard&) = delete;
};

void srcu_synchronize();
void srcu_call(std::function<void()> fn);
void srcu_barrier();

}  // namespace mirrormm
