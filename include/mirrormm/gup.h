// Page references and pins on behalf of a driver (include/linux/mm.h's get_user_pages_remote /
// pin_user_pages_remote and mm/gup.c, Linux 6.18).
//
// A driver that wants the pages of a process's range for itself (to hand them to its DMA
// engine, or to look at them) resolves them with one of two calls, holding the mm's mmap_lock
// for read (mmap_read_lock, mirrormm/hmm.h):
//
//   long n = get_user_pages_remote(mm, start, nr_pages, FOLL_WRITE, pfns);  // references
//   ... use the pages briefly ...
//   for (i < n) put_page_pfn(sys, pfns[i]);
//
//   long n = pin_user_pages_remote(mm, start, nr_pages, FOLL_WRITE | FOLL_LONGTERM, pfns);
//   ... the device reads and writes the pages for as long as it likes ...
//   unpin_user_pages(sys, pfns, n);
//
// Each page is faulted in as a CPU access would (a write fault for FOLL_WRITE, which breaks
// COW), and gets a reference (FOLL_GET) or a pin (FOLL_PIN). Both return the number of pages
// resolved, from start on: fewer than nr_pages when a later page failed, and a negative errno
// when the first one did: -EFAULT (no VMA, or a VMA that refuses the access: VM_IO, VM_PFNMAP,
// no VM_READ, no VM_WRITE for FOLL_WRITE), -ENOMEM (no memory for the fault), -EINVAL (bad
// flags: FOLL_PIN or FOLL_LONGTERM passed to get_user_pages_remote, FOLL_GET to
// pin_user_pages_remote, an unknown flag, a null pfns).
//
// Pins (Documentation/core-api/pin_user_pages.rst). A pin adds GUP_PIN_COUNTING_BIAS (1024)
// to the page's reference count, so that folio_maybe_dma_pinned (refcount >= 1024) can tell a
// page that a device may be writing right now from one that is merely referenced. The memory
// manager then leaves such a page where it is:
//   - migration (migrate_pages, migrate_vma, reclaim's try_to_unmap) gives up on it;
//   - fork gives the child its own copy of a pinned anonymous page at once
//     (folio_needs_cow_for_dma) instead of sharing it copy-on-write, so that the parent's
//     later writes land in the page the device sees;
//   - a write fault never takes a pinned page away from its mapping: a pinned anonymous page
//     is always exclusive to its mapping (pinning a shared one for reading first unshares it,
//     FAULT_FLAG_UNSHARE), and a write to an exclusive page reuses it.
// FOLL_LONGTERM (a pin without a time limit) first moves pages that must stay movable out of
// the way (check_and_migrate_movable_pages): in this model that is device-coherent memory,
// whose pages are migrated to system RAM before they are pinned. (Device-private pages never
// get that far: the fault that makes them accessible moves them back.)
#pragma once

#include <cstdint>

namespace mirrormm {

class System;
class Mm;

// The FOLL_* flags a driver passes (include/linux/mm_types.h's; the values are the model's).
// The memory manager has internal ones too (mm/internal.h), in the bits between.
inline constexpr unsigned FOLL_WRITE = 1u << 0;     // the pages are written: faults are write faults (COW is broken)
inline constexpr unsigned FOLL_FORCE = 1u << 1;     // reads need only an accessible VMA, not VM_READ
inline constexpr unsigned FOLL_NOFAULT = 1u << 2;   // never fault: stop at the first page not mapped as wanted
inline constexpr unsigned FOLL_GET = 1u << 6;       // take a reference on each page (get_user_pages)
inline constexpr unsigned FOLL_PIN = 1u << 7;       // take a pin on each page (set by pin_user_pages, not by callers)
inline constexpr unsigned FOLL_LONGTERM = 1u << 8;  // the pin lasts indefinitely: movable pages are migrated out first

// GUP_PIN_COUNTING_BIAS: what one pin adds to a page's reference count.
inline constexpr int kGupPinCountingBias = 1024;

// get_user_pages_remote: a reference on each of the nr_pages pages from start (page aligned
// down), in pfns. gup_flags: FOLL_WRITE, FOLL_FORCE, FOLL_NOFAULT (FOLL_GET is implied). The
// caller holds mmap_read_lock(mm) and drops each reference with put_page_pfn.
long get_user_pages_remote(Mm* mm, uint64_t start, unsigned long nr_pages, unsigned gup_flags, uint64_t* pfns);
// pin_user_pages_remote: a pin on each page instead (FOLL_PIN is implied); gup_flags:
// FOLL_WRITE, FOLL_FORCE, FOLL_NOFAULT, FOLL_LONGTERM. The caller holds mmap_read_lock(mm)
// and releases the pins with unpin_user_pages (with or without the lock). With FOLL_LONGTERM
// the call may drop and retake nothing itself, but it migrates device-coherent pages and then
// resolves the range again (up to a few times: -ENOMEM when pages keep coming back).
long pin_user_pages_remote(Mm* mm, uint64_t start, unsigned long nr_pages, unsigned gup_flags, uint64_t* pfns);
// unpin_user_pages / unpin_user_page: releases pins taken by pin_user_pages_remote.
void unpin_user_pages(System* sys, const uint64_t* pfns, unsigned long npages);
void unpin_user_page(System* sys, uint64_t pfn);
// put_page: drops a reference (get_user_pages_remote's, make_device_exclusive's) on any page,
// system or device; the last one frees it.
void put_page_pfn(System* sys, uint64_t pfn);
// folio_maybe_dma_pinned: whether the page may be pinned (its reference count reached the pin
// bias). Racy by nature, as in Linux: a caller that needs it stable holds what keeps pins from
// being taken (the PTE lock of the page's only mapping, for an exclusive anonymous page).
bool folio_maybe_dma_pinned_pfn(System* sys, uint64_t pfn);

}  // namespace mirrormm
