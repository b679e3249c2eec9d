// Linux's mmap/mprotect/madvise ABI values (x86-64), as the model's system calls take them.
#pragma once

#include <cstdint>

namespace mirrormm {

inline constexpr uint64_t kProtNone = 0x0;
inline constexpr uint64_t kProtRead = 0x1;
inline constexpr uint64_t kProtWrite = 0x2;
inline constexpr uint64_t kProtExec = 0x4;
inline constexpr uint64_t kProtSem = 0x8;
inline constexpr uint64_t kProtGrowsDown = 0x01000000;
inline constexpr uint64_t kProtGrowsUp = 0x02000000;

inline constexpr uint64_t kMapShared = 0x01;
inline constexpr uint64_t kMapPrivate = 0x02;
inline constexpr uint64_t kMapSharedValidate = 0x03;
inline constexpr uint64_t kMapDroppable = 0x08;
inline constexpr uint64_t kMapType = 0x0f;
inline constexpr uint64_t kMapFixed = 0x10;
inline constexpr uint64_t kMapAnonymous = 0x20;
inline constexpr uint64_t kMapGrowsDown = 0x0100;
inline constexpr uint64_t kMapLocked = 0x2000;
inline constexpr uint64_t kMapNoReserve = 0x4000;
inline constexpr uint64_t kMapPopulate = 0x8000;
inline constexpr uint64_t kMapNonBlock = 0x10000;
inline constexpr uint64_t kMapStack = 0x20000;
inline constexpr uint64_t kMapFixedNoReplace = 0x100000;
// LEGACY_MAP_MASK: the flags MAP_SHARED accepts silently and MAP_SHARED_VALIDATE accepts at
// all (with those the file's mmap_supported_flags adds, none here). MAP_FIXED_NOREPLACE is
// not one of them: MAP_SHARED_VALIDATE|MAP_FIXED_NOREPLACE on a file is -EOPNOTSUPP.
inline constexpr uint64_t kLegacyMapMask = kMapShared | kMapPrivate | kMapFixed | kMapAnonymous | 0x0800 /*DENYWRITE*/ |
                                           0x1000 /*EXECUTABLE*/ | 0x4000000 /*UNINITIALIZED*/ | kMapGrowsDown |
                                           kMapLocked | kMapNoReserve | kMapPopulate | kMapNonBlock | kMapStack |
                                           0x40000 /*HUGETLB*/;

inline constexpr uint64_t kMadvWillneed = 3;
inline constexpr uint64_t kMadvDontneed = 4;
inline constexpr uint64_t kMadvFree = 8;
inline constexpr uint64_t kMadvRemove = 9;
inline constexpr uint64_t kMadvDontfork = 10;
inline constexpr uint64_t kMadvDofork = 11;
inline constexpr uint64_t kMadvWipeonfork = 18;
inline constexpr uint64_t kMadvHugepage = 14;
inline constexpr uint64_t kMadvNohugepage = 15;
inline constexpr uint64_t kMadvKeeponfork = 19;
inline constexpr uint64_t kMadvCold = 20;
inline constexpr uint64_t kMadvPageout = 21;
inline constexpr uint64_t kMadvPopulateRead = 22;
inline constexpr uint64_t kMadvPopulateWrite = 23;
inline constexpr uint64_t kMadvDontneedLocked = 24;
inline constexpr uint64_t kMadvCollapse = 25;
inline constexpr uint64_t kMadvGuardInstall = 102;
inline constexpr uint64_t kMadvGuardRemove = 103;

// mlock2(2)'s flag and mlockall(2)'s.
inline constexpr uint64_t kMlockOnfault = 0x01;
inline constexpr uint64_t kMclCurrent = 1;
inline constexpr uint64_t kMclFuture = 2;
inline constexpr uint64_t kMclOnfault = 4;

// The resource limits the model applies (getrlimit(2)'s RLIMIT_* numbers on x86-64), and
// RLIM_INFINITY.
inline constexpr unsigned kRlimitData = 2;
inline constexpr unsigned kRlimitStack = 3;
inline constexpr unsigned kRlimitMemlock = 8;
inline constexpr unsigned kRlimitAs = 9;
inline constexpr uint64_t kRlimInfinity = ~0ull;

// The sizes of an address space that /proc/PID/status reports (VmSize, VmData, VmLck), in
// pages: every VMA, the private writable non-stack ones, the locked ones.
struct VmCounts {
  uint64_t total = 0, data = 0, locked = 0;
};

// The user address space: [0, kTaskSize), 47 bits as on x86-64 with 4-level paging.
inline constexpr uint64_t kTaskSize = 0x7ffffffff000ull;
inline constexpr uint64_t kMmapMinAddr = 4096;

}  // namespace mirrormm
