// VMA flags (include/linux/mm.h's VM_* bits, x86-64 values): what vma->vm_flags holds, in the
// library and in what drivers read of a VMA (vma_lookup / find_vma in mirrormm/hmm.h).
#pragma once

#include <cstdint>

namespace mirrormm {

using vm_flags_t = uint64_t;
inline constexpr vm_flags_t VM_NONE = 0;
inline constexpr vm_flags_t VM_READ = 0x1;
inline constexpr vm_flags_t VM_WRITE = 0x2;
inline constexpr vm_flags_t VM_EXEC = 0x4;
inline constexpr vm_flags_t VM_SHARED = 0x8;
inline constexpr vm_flags_t VM_MAYREAD = 0x10;
inline constexpr vm_flags_t VM_MAYWRITE = 0x20;
inline constexpr vm_flags_t VM_MAYEXEC = 0x40;
inline constexpr vm_flags_t VM_MAYSHARE = 0x80;
inline constexpr vm_flags_t VM_GROWSDOWN = 0x100;
inline constexpr vm_flags_t VM_PFNMAP = 0x400;
// VM_MAYBE_GUARD (Linux 6.18.y, smaps `gu`): MADV_GUARD_INSTALL ran on the VMA, so its page
// tables may hold guard markers. A sticky flag: it never keeps VMAs from merging, a merge ORs
// it into the result, and it stays after MADV_GUARD_REMOVE. It also makes fork copy the
// VMA's page tables (VM_COPY_ON_FORK), so that the child gets the markers.
inline constexpr vm_flags_t VM_MAYBE_GUARD = 0x800;
inline constexpr vm_flags_t VM_LOCKED = 0x2000;
inline constexpr vm_flags_t VM_IO = 0x4000;
inline constexpr vm_flags_t VM_SEQ_READ = 0x8000;
inline constexpr vm_flags_t VM_RAND_READ = 0x10000;
inline constexpr vm_flags_t VM_DONTCOPY = 0x20000;
inline constexpr vm_flags_t VM_DONTEXPAND = 0x40000;
inline constexpr vm_flags_t VM_LOCKONFAULT = 0x80000;
inline constexpr vm_flags_t VM_ACCOUNT = 0x100000;
inline constexpr vm_flags_t VM_NORESERVE = 0x200000;
inline constexpr vm_flags_t VM_HUGETLB = 0x400000;
inline constexpr vm_flags_t VM_WIPEONFORK = 0x2000000;
inline constexpr vm_flags_t VM_DONTDUMP = 0x4000000;
inline constexpr vm_flags_t VM_MIXEDMAP = 0x10000000;
inline constexpr vm_flags_t VM_HUGEPAGE = 0x20000000;
inline constexpr vm_flags_t VM_NOHUGEPAGE = 0x40000000;
inline constexpr vm_flags_t VM_MERGEABLE = 0x80000000;
inline constexpr int kVmPkeyShift = 32;
inline constexpr vm_flags_t VM_PKEY_MASK = 0xfull << kVmPkeyShift;
// MAP_DROPPABLE (smaps `dp`): anonymous memory whose pages reclaim may drop, dirty or not.
inline constexpr vm_flags_t VM_DROPPABLE = 1ull << 40;
// mseal (smaps `sl`): the VMA may no longer be unmapped, moved, reprotected or discarded.
inline constexpr vm_flags_t VM_SEALED = 1ull << 42;
inline constexpr vm_flags_t VM_GROWSUP = VM_NONE;     // x86 has no upward-growing stacks
inline constexpr vm_flags_t VM_SOFTDIRTY = VM_NONE;   // CONFIG_MEM_SOFT_DIRTY is off on the host
inline constexpr vm_flags_t VM_STACK = VM_GROWSDOWN;
inline constexpr vm_flags_t VM_ACCESS_FLAGS = VM_READ | VM_WRITE | VM_EXEC;
inline constexpr vm_flags_t VM_SPECIAL = VM_IO | VM_DONTEXPAND | VM_PFNMAP | VM_MIXEDMAP;
inline constexpr vm_flags_t VM_STICKY = VM_SOFTDIRTY | VM_MAYBE_GUARD;
inline constexpr vm_flags_t VM_COPY_ON_FORK = VM_MAYBE_GUARD;
inline constexpr vm_flags_t VM_IGNORE_MERGE = VM_SOFTDIRTY | VM_STICKY;
inline constexpr vm_flags_t VM_FLAGS_CLEAR = VM_PKEY_MASK;
// The bits mlock(2) and its relatives set and clear together.
inline constexpr vm_flags_t VM_LOCKED_MASK = VM_LOCKED | VM_LOCKONFAULT;

inline int vma_pkey_of(vm_flags_t f) { return static_cast<int>((f & VM_PKEY_MASK) >> kVmPkeyShift); }

}  // namespace mirrormm
