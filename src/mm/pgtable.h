// Page-table entries and their atomic discipline (arch/x86's pgtable.h role).
//
// Four levels (PGD, PUD, PMD, PTE) of 512 64-bit entries, each table a frame from PhysMem.
// Entry bits follow x86-64: present, writable, user, accessed, dirty, no-exec, with the pfn in
// bits 12..51. A non-present entry is one of:
//   - none (0);
//   - PROT_NONE: _PAGE_PROTNONE set, present clear. Hardware faults on it; software still
//     treats it as present (pte_present), as Linux does;
//   - a swap-type entry: neither present nor PROTNONE, nonzero; type in bits 58..62 and offset
//     in bits 12..57. Later mechanisms use types for swap, migration, device-private and
//     PTE markers (guard regions).
//
// Memory ordering: entries are std::atomic<uint64_t>. The software CPU's page walk and its
// accessed/dirty updates run without the PTE lock (as hardware does): it reads entries with
// acquire loads and sets A/D with a CAS that fails if the entry changed. Every other writer
// holds the PTE lock, and any writer that could lose a concurrently set A/D bit uses an
// atomic read-modify-write (ptep_get_and_clear, ptep_set_wrprotect, the
// ptep_modify_prot_start/commit pair), never a plain load followed by a store.
#pragma once

#include <atomic>
#include <cstdint>

#include "mm/physmem.h"

namespace mirrormm {

using pteval_t = uint64_t;
using pte_t = std::atomic<pteval_t>;

inline constexpr pteval_t _PAGE_PRESENT = 1ull << 0;
inline constexpr pteval_t _PAGE_RW = 1ull << 1;
inline constexpr pteval_t _PAGE_USER = 1ull << 2;
inline constexpr pteval_t _PAGE_ACCESSED = 1ull << 5;
inline constexpr pteval_t _PAGE_DIRTY = 1ull << 6;
inline constexpr pteval_t _PAGE_PROTNONE = 1ull << 8;  // x86 reuses the global bit
inline constexpr pteval_t _PAGE_SPECIAL = 1ull << 9;   // no struct page refcounting (zero page)
inline constexpr pteval_t _PAGE_NX = 1ull << 63;
inline constexpr pteval_t kPfnMask = ((1ull << 52) - 1) & kPageMask;
// Bits pte_modify() keeps: pfn, A, D, special (x86 _PAGE_CHG_MASK).
inline constexpr pteval_t kPageChgMask = kPfnMask | _PAGE_ACCESSED | _PAGE_DIRTY | _PAGE_SPECIAL;
inline constexpr pteval_t kTableEntry = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED;

inline constexpr int kPtrsPerTable = 512;
inline constexpr int kPteShift = 12, kPmdShift = 21, kPudShift = 30, kPgdShift = 39;
inline constexpr uint64_t kPmdSize = 1ull << kPmdShift;
inline constexpr uint64_t kPmdMask = ~(kPmdSize - 1);
inline constexpr uint64_t kPudSize = 1ull << kPudShift;
inline constexpr uint64_t kPgdSize = 1ull << kPgdShift;

inline constexpr int index_at(uint64_t addr, int shift) { return (addr >> shift) & (kPtrsPerTable - 1); }

// Protection bits for a VMA (vm_page_prot), x86's protection_map.
using pgprot_t = pteval_t;
inline constexpr pgprot_t PAGE_NONE = _PAGE_PROTNONE | _PAGE_ACCESSED;
inline constexpr pgprot_t PAGE_READONLY = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX;
inline constexpr pgprot_t PAGE_COPY = PAGE_READONLY;
inline constexpr pgprot_t PAGE_READONLY_EXEC = _PAGE_PRESENT | _PAGE_USER | _PAGE_ACCESSED;
inline constexpr pgprot_t PAGE_COPY_EXEC = PAGE_READONLY_EXEC;
inline constexpr pgprot_t PAGE_SHARED = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED | _PAGE_NX;
inline constexpr pgprot_t PAGE_SHARED_EXEC = _PAGE_PRESENT | _PAGE_RW | _PAGE_USER | _PAGE_ACCESSED;

inline constexpr bool pte_none(pteval_t v) { return v == 0; }
// Present to software: hardware-present or PROT_NONE (Linux's pte_present()).
inline constexpr bool pte_present(pteval_t v) { return v & (_PAGE_PRESENT | _PAGE_PROTNONE); }
inline constexpr bool pte_hw_present(pteval_t v) { return v & _PAGE_PRESENT; }
inline constexpr bool pte_protnone(pteval_t v) { return (v & (_PAGE_PRESENT | _PAGE_PROTNONE)) == _PAGE_PROTNONE; }
inline constexpr bool pte_write(pteval_t v) { return v & _PAGE_RW; }
inline constexpr bool pte_dirty(pteval_t v) { return v & _PAGE_DIRTY; }
inline constexpr bool pte_young(pteval_t v) { return v & _PAGE_ACCESSED; }
inline constexpr bool pte_special(pteval_t v) { return v & _PAGE_SPECIAL; }
inline constexpr pfn_t pte_pfn(pteval_t v) { return static_cast<pfn_t>((v & kPfnMask) >> kPageShift); }
inline constexpr pteval_t pfn_pte(pfn_t pfn, pgprot_t prot) { return (static_cast<pteval_t>(pfn) << kPageShift) | prot; }
inline constexpr pteval_t pte_mkwrite(pteval_t v) { return v | _PAGE_RW; }
inline constexpr pteval_t pte_wrprotect(pteval_t v) { return v & ~_PAGE_RW; }
inline constexpr pteval_t pte_mkdirty(pteval_t v) { return v | _PAGE_DIRTY; }
inline constexpr pteval_t pte_mkclean(pteval_t v) { return v & ~_PAGE_DIRTY; }
inline constexpr pteval_t pte_mkyoung(pteval_t v) { return v | _PAGE_ACCESSED; }
inline constexpr pteval_t pte_mkold(pteval_t v) { return v & ~_PAGE_ACCESSED; }
inline constexpr pteval_t pte_mkspecial(pteval_t v) { return v | _PAGE_SPECIAL; }
// Changes the protection of a present entry, keeping pfn, accessed, dirty and special.
inline constexpr pteval_t pte_modify(pteval_t v, pgprot_t prot) { return (v & kPageChgMask) | (prot & ~kPageChgMask); }

// Swap-type (non-present) entries. Types 0 .. kMaxSwapFiles-1 name swap devices; higher
// types are reserved for the other non-present kinds (Linux's SWP_MIGRATION_*, SWP_DEVICE_*,
// SWP_PTE_MARKER sit above MAX_SWAPFILES the same way). _PAGE_SWP_EXCLUSIVE (x86 reuses bit 7,
// _PAGE_PSE) records in a swap PTE that the page was exclusive to this mapping when it went out
// (pte_swp_mkexclusive), so swap-in may map it writable without a copy. Slot 0 of a swap device
// is never used (Linux keeps the swap header there), so no swap entry is the none entry.
inline constexpr int kSwpTypeShift = 58;
inline constexpr unsigned kMaxSwapFiles = 8;
inline constexpr pteval_t _PAGE_SWP_EXCLUSIVE = 1ull << 7;
inline constexpr bool is_swap_pte(pteval_t v) { return v != 0 && !pte_present(v); }
inline constexpr unsigned swp_type(pteval_t v) { return (v >> kSwpTypeShift) & 0x1f; }
inline constexpr uint64_t swp_offset(pteval_t v) { return (v >> kPageShift) & ((1ull << (kSwpTypeShift - kPageShift)) - 1); }
inline constexpr pteval_t swp_entry(unsigned type, uint64_t offset) {
  return (static_cast<pteval_t>(type) << kSwpTypeShift) | (offset << kPageShift);
}
// A swap entry as stored in a page's swap field and in the swap cache: the PTE without its
// flag bits (Linux's swp_entry_t, pte_to_swp_entry / swp_entry_to_pte).
inline constexpr pteval_t pte_to_swp_entry(pteval_t v) { return v & ~_PAGE_SWP_EXCLUSIVE; }
// non_swap_entry: a swap-type entry that is not a swap device's slot (migration, device, marker).
inline constexpr bool non_swap_entry(pteval_t v) { return swp_type(v) >= kMaxSwapFiles; }
inline constexpr bool pte_swp_exclusive(pteval_t v) { return v & _PAGE_SWP_EXCLUSIVE; }
inline constexpr pteval_t pte_swp_mkexclusive(pteval_t v) { return v | _PAGE_SWP_EXCLUSIVE; }

// Migration entries (include/linux/swapops.h): while a page migrates, each PTE that mapped it
// holds a swap-type entry naming the page's pfn, so that a fault on it waits for the migration
// (migration_entry_wait) and remove_migration_ptes can find and restore it. The type records
// what the restored PTE may be: WRITE (the PTE was writable; it comes back writable), READ_EXCLUSIVE
// (read-only, the anon page was PG_anon_exclusive; it comes back exclusive) or READ. Like
// x86-64 (migration_entry_supports_ad), the entry also keeps the PTE's young and dirty bits, in
// the offset bits above the pfn (SWP_MIG_YOUNG_BIT, SWP_MIG_DIRTY_BIT).
inline constexpr unsigned kSwpMigrationRead = 29;
inline constexpr unsigned kSwpMigrationReadExclusive = 30;
inline constexpr unsigned kSwpMigrationWrite = 31;
static_assert(kSwpMigrationRead >= kMaxSwapFiles);
inline constexpr int kSwpPfnBits = 40;
inline constexpr uint64_t kSwpPfnMask = (1ull << kSwpPfnBits) - 1;
inline constexpr uint64_t kSwpMigYoung = 1ull << kSwpPfnBits;
inline constexpr uint64_t kSwpMigDirty = 1ull << (kSwpPfnBits + 1);
inline constexpr bool is_migration_entry(pteval_t v) {
  return is_swap_pte(v) && swp_type(v) >= kSwpMigrationRead && swp_type(v) <= kSwpMigrationWrite;
}
inline constexpr bool is_writable_migration_entry(pteval_t v) { return swp_type(v) == kSwpMigrationWrite; }
inline constexpr bool is_readable_exclusive_migration_entry(pteval_t v) {
  return swp_type(v) == kSwpMigrationReadExclusive;
}
inline constexpr pfn_t migration_entry_pfn(pteval_t v) { return static_cast<pfn_t>(swp_offset(v) & kSwpPfnMask); }
inline constexpr bool is_migration_entry_young(pteval_t v) { return swp_offset(v) & kSwpMigYoung; }
inline constexpr bool is_migration_entry_dirty(pteval_t v) { return swp_offset(v) & kSwpMigDirty; }
inline constexpr pteval_t make_migration_entry(unsigned type, pfn_t pfn, bool young, bool dirty) {
  return swp_entry(type, pfn | (young ? kSwpMigYoung : 0) | (dirty ? kSwpMigDirty : 0));
}
// The same entry with another type, keeping the pfn and the young/dirty bits (mprotect's and
// fork's make_readable_migration_entry(swp_offset(entry))).
inline constexpr pteval_t migration_entry_retype(pteval_t v, unsigned type) { return swp_entry(type, swp_offset(v)); }

// Device-private entries (SWP_DEVICE_READ / SWP_DEVICE_WRITE): a page of device-private
// memory (mirrormm/memremap.h) is never mapped by a present PTE; the PTE that stands for it
// names its pfn with one of these types, and a CPU access faults into the pgmap's
// migrate_to_ram. The entry counts as the page in rss, mapcount and refcount, as a present
// PTE would. _PAGE_SWP_EXCLUSIVE carries PG_anon_exclusive (pte_swp_mkexclusive), as in a
// swap PTE.
inline constexpr unsigned kSwpDeviceExclusive = 26;
inline constexpr unsigned kSwpDeviceRead = 27;
inline constexpr unsigned kSwpDeviceWrite = 28;
static_assert(kSwpDeviceExclusive >= kMaxSwapFiles && kSwpDeviceWrite < kSwpMigrationRead);
inline constexpr bool is_device_private_entry(pteval_t v) {
  return is_swap_pte(v) && (swp_type(v) == kSwpDeviceRead || swp_type(v) == kSwpDeviceWrite);
}
inline constexpr bool is_writable_device_private_entry(pteval_t v) { return swp_type(v) == kSwpDeviceWrite; }
inline constexpr pteval_t make_device_private_entry(pfn_t pfn, bool write) {
  return swp_entry(write ? kSwpDeviceWrite : kSwpDeviceRead, pfn);
}
// The entry with the write permission taken away (make_readable_device_private_entry).
inline constexpr pteval_t make_readable_device_private_entry(pteval_t v) { return swp_entry(kSwpDeviceRead, swp_offset(v)); }
inline constexpr pfn_t device_private_entry_pfn(pteval_t v) { return static_cast<pfn_t>(swp_offset(v) & kSwpPfnMask); }

// Device-exclusive entries (SWP_DEVICE_EXCLUSIVE, mirrormm/migrate_device.h's
// make_device_exclusive): an anonymous system page that a device accesses atomically is
// unmapped from the CPU, and its PTE names the page's pfn with this type until the next CPU
// access restores the PTE (remove_device_exclusive_entry). Since Linux 6.15 there is one type,
// always writable, and the entry keeps everything the PTE held: the page's reference, its
// mapcount and its rss (and the page its PG_anon_exclusive).
inline constexpr bool is_device_exclusive_entry(pteval_t v) {
  return is_swap_pte(v) && swp_type(v) == kSwpDeviceExclusive;
}
inline constexpr pteval_t make_device_exclusive_entry(pfn_t pfn) { return swp_entry(kSwpDeviceExclusive, pfn); }
inline constexpr pfn_t device_exclusive_entry_pfn(pteval_t v) { return static_cast<pfn_t>(swp_offset(v) & kSwpPfnMask); }
// is_pfn_swap_entry's device kinds: a non-present entry that maps a page (device-private or
// device-exclusive) and counts as that page's mapping.
inline constexpr bool is_device_page_entry(pteval_t v) { return is_device_private_entry(v) || is_device_exclusive_entry(v); }

// PTE markers (SWP_PTE_MARKER): an entry that maps nothing and names no page but keeps its
// slot from being none. The only marker is the guard marker of MADV_GUARD_INSTALL
// (PTE_MARKER_GUARD): an access to it faults with SIGSEGV, population refuses it (-EFAULT),
// MADV_DONTNEED and MADV_FREE leave it, munmap and MADV_GUARD_REMOVE clear it, fork copies it
// and mremap moves it. Type 25 is the first one below the device-exclusive type; the offset
// holds the marker's kind bits.
inline constexpr unsigned kSwpPteMarker = 25;
inline constexpr uint64_t kPteMarkerGuard = 1ull << 1;
static_assert(kSwpPteMarker >= kMaxSwapFiles && kSwpPteMarker < kSwpDeviceExclusive);
inline constexpr pteval_t make_guard_marker() { return swp_entry(kSwpPteMarker, kPteMarkerGuard); }
inline constexpr bool is_pte_marker(pteval_t v) { return is_swap_pte(v) && swp_type(v) == kSwpPteMarker; }
inline constexpr bool is_guard_pte_marker(pteval_t v) { return is_pte_marker(v) && (swp_offset(v) & kPteMarkerGuard); }

// Entry accessors. Readers outside the PTE lock use ptep_get (acquire).
inline pteval_t ptep_get(const pte_t* p) { return p->load(std::memory_order_acquire); }
inline void set_pte(pte_t* p, pteval_t v) { p->store(v, std::memory_order_release); }
inline void pte_clear(pte_t* p) { p->store(0, std::memory_order_release); }
inline pteval_t ptep_get_and_clear(pte_t* p) { return p->exchange(0, std::memory_order_acq_rel); }
inline void ptep_set_wrprotect(pte_t* p) { p->fetch_and(~_PAGE_RW, std::memory_order_acq_rel); }
inline bool ptep_test_and_clear_young(pte_t* p) {
  return p->fetch_and(~_PAGE_ACCESSED, std::memory_order_acq_rel) & _PAGE_ACCESSED;
}
// ptep_modify_prot_start/commit: the entry is cleared for the duration so that no CPU can set
// accessed/dirty on the old value behind our back; commit installs the new value, which the
// caller derived from the value start returned (so bits set before start are kept).
inline pteval_t ptep_modify_prot_start(pte_t* p) { return ptep_get_and_clear(p); }
inline void ptep_modify_prot_commit(pte_t* p, pteval_t newval) { set_pte(p, newval); }

}  // namespace mirrormm
