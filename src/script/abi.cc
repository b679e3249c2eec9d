// Script words to Linux ABI values.
#include "mirrormm/mman.h"
#include "mirrormm/script.h"

namespace mirrormm::script {

uint64_t linux_map_flags(uint32_t f) {
  uint64_t flags = 0;
  if (f & kMapPrivate) flags |= mirrormm::kMapPrivate;
  if (f & kMapShared) flags |= mirrormm::kMapShared;
  if (f & kMapAnon) flags |= mirrormm::kMapAnonymous;
  if (f & kMapFixed) flags |= mirrormm::kMapFixed;
  if (f & kMapNoreplace) flags |= mirrormm::kMapFixedNoReplace;
  if (f & kMapPopulate) flags |= mirrormm::kMapPopulate;
  if (f & kMapNoreserve) flags |= mirrormm::kMapNoReserve;
  if (f & kMapGrowsdown) flags |= mirrormm::kMapGrowsDown;
  if (f & kMapLocked) flags |= mirrormm::kMapLocked;
  if (f & kMapStack) flags |= mirrormm::kMapStack;
  if (f & kMapSharedValidate) flags |= mirrormm::kMapSharedValidate;
  if (f & kMapDroppable) flags |= mirrormm::kMapDroppable;
  return flags;
}

uint64_t linux_madvise(Advice a) {
  switch (a) {
    case Advice::kDontneed: return kMadvDontneed;
    case Advice::kDontfork: return kMadvDontfork;
    case Advice::kDofork: return kMadvDofork;
    case Advice::kWipeonfork: return kMadvWipeonfork;
    case Advice::kKeeponfork: return kMadvKeeponfork;
    case Advice::kPopulateRead: return kMadvPopulateRead;
    case Advice::kPopulateWrite: return kMadvPopulateWrite;
    case Advice::kWillneed: return kMadvWillneed;
    case Advice::kCold: return kMadvCold;
    case Advice::kPageout: return kMadvPageout;
    case Advice::kFree: return kMadvFree;
    case Advice::kRemove: return kMadvRemove;
    case Advice::kGuardInstall: return kMadvGuardInstall;
    case Advice::kGuardRemove: return kMadvGuardRemove;
    case Advice::kDontneedLocked: return kMadvDontneedLocked;
    case Advice::kHugepage: return kMadvHugepage;
    case Advice::kNohugepage: return kMadvNohugepage;
  }
  return ~0ull;
}

uint64_t linux_mremap_flags(uint32_t f) {
  uint64_t flags = 0;
  if (f & kRemapMaymove) flags |= 1;    // MREMAP_MAYMOVE
  if (f & kRemapFixed) flags |= 2;      // MREMAP_FIXED
  if (f & kRemapDontunmap) flags |= 4;  // MREMAP_DONTUNMAP
  return flags;
}

uint64_t linux_msync_flags(uint32_t f) {
  uint64_t flags = 0;
  if (f & kMsyncAsync) flags |= 1;       // MS_ASYNC
  if (f & kMsyncInvalidate) flags |= 2;  // MS_INVALIDATE
  if (f & kMsyncSync) flags |= 4;        // MS_SYNC
  return flags;
}

uint64_t linux_mlockall_flags(uint32_t f) {
  uint64_t flags = 0;
  if (f & kMclCurrent) flags |= mirrormm::kMclCurrent;
  if (f & kMclFuture) flags |= mirrormm::kMclFuture;
  if (f & kMclOnfault) flags |= mirrormm::kMclOnfault;
  return flags;
}

unsigned linux_rlimit(Rlimit r) {
  switch (r) {
    case Rlimit::kAs: return mirrormm::kRlimitAs;
    case Rlimit::kData: return mirrormm::kRlimitData;
    case Rlimit::kStack: return mirrormm::kRlimitStack;
    case Rlimit::kMemlock: return mirrormm::kRlimitMemlock;
  }
  return ~0u;
}

}  // namespace mirrormm::script
