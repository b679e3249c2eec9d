// Faulting user pages in on behalf of the kernel (mm/gup.c): the one loop that populate
// (mm_populate, MAP_POPULATE), madvise(MADV_POPULATE_READ/WRITE) and driver lookups (the
// primary side of hmm_range_fault) share.
//
// The loop is __get_user_pages': for each page, find the VMA (a new one only when the address
// leaves the previous one), check that the VMA allows the access (check_vma_flags), follow
// the PTE under its lock (follow_page_pte) and, when it does not map a page the way the
// caller wants it (present; writable for FOLL_WRITE), fault (faultin_page) and follow again.
// The caller holds the mmap_lock for read throughout, so VMAs and page tables stay put; the
// fault path may still see concurrent faults, zaps (MADV_DONTNEED) and truncation, which is
// why a fault that succeeded is followed by another look at the PTE rather than trusted.
#include <algorithm>
#include <optional>

#include "mirrormm/gup.h"
#include "mirrormm/migrate_device.h"
#include "mirrormm/system.h"
#include "mm/filemap.h"
#include "mm/internal.h"
#include "mm/lru.h"
#include "mm/memremap.h"
#include "mm/pgtable.h"
#include "mm/physmem.h"
#include "mm/vmstat.h"

namespace mirrormm {

namespace {

// check_vma_flags: whether the VMA can be accessed as gup_flags asks. FOLL_FORCE (populate)
// overrides VM_READ for a VMA that is accessible at all; a forced write still needs VM_WRITE
// here, as nothing in the model writes through a read-only VMA.
//
// A long-term write pin of a mapping whose pages writeback cleans (a shared mapping of a
// regular file, vma_needs_dirty_tracking) is refused (writable_file_mapping_allowed): the
// device's writes would never make the page dirty again.
bool check_vma_flags(const Vma* vma, unsigned gup_flags) {
  if (vma->vm_flags & (VM_IO | VM_PFNMAP)) return false;
  if ((gup_flags & (FOLL_LONGTERM | FOLL_WRITE)) == (FOLL_LONGTERM | FOLL_WRITE) && vma_wants_writenotify(vma))
    return false;
  if (gup_flags & FOLL_WRITE) return vma->vm_flags & VM_WRITE;
  if (gup_flags & FOLL_FORCE) return vma->is_accessible();
  return vma->vm_flags & VM_READ;
}

// What follow_page_pte found: the page, or the fault that would make it followable (an
// ordinary fault, or an unshare fault for a pin of a shared anonymous page).
enum class Follow { kPage, kFault, kUnshare };

// gup_must_unshare: a read pin (FOLL_PIN without FOLL_WRITE) of an anonymous page that is not
// exclusive to this mapping would pin a page a later COW fault replaces in the mapping; it
// must be unshared first. (A write pin maps the page writable, hence exclusive; other pages
// are not replaced by COW.)
bool gup_must_unshare(const Page* page, unsigned gup_flags) {
  if ((gup_flags & (FOLL_WRITE | FOLL_PIN)) != FOLL_PIN) return false;
  return page->test(PG_anon) && !page->test(PG_anon_exclusive);
}

// try_grab_folio: the reference (FOLL_GET) or pin (FOLL_PIN) GUP hands out, taken under the
// PTE lock of a PTE that maps the page, so the page cannot be freed meanwhile. The zero page
// is handed out without one (it is never freed).
void try_grab_page(PhysMem& mem, Page* page, unsigned gup_flags) {
  if (page->test(PG_reserved)) return;
  if (gup_flags & FOLL_PIN) {
    const int old = page->refcount.fetch_add(kGupPinCountingBias, std::memory_order_relaxed);
    MM_BUG_ON(old <= 0);
  } else if (gup_flags & FOLL_GET) {
    mem.get_page(page);
  }
}

// follow_page_pte: the pfn addr maps when its entry allows the access, or nullopt. With
// FOLL_TOUCH the access counts as one the VM saw: a write marks the page dirty unless its PTE
// already is (the caller is about to write it without the MMU noticing: so
// MADV_POPULATE_WRITE through a writable, clean shared entry dirties the page-cache page, and
// pageout keeps it), and any access marks a normal page accessed (folio_mark_accessed, under
// the PTE lock, whose entry's reference keeps the page alive).
// With FOLL_GET or FOLL_PIN the page comes with a reference or a pin.
Follow follow_page_pte(Mm* mm, uint64_t addr, unsigned gup_flags, GupPfn* out) {
  pte_t* ptep = pte_offset(mm, addr);
  if (!ptep) return Follow::kFault;
  PhysMem& mem = mm->mem();
  SpinGuard g(pte_lockptr(mm, ptep));
  const pteval_t v = ptep_get(ptep);
  if (!pte_hw_present(v) || ((gup_flags & FOLL_WRITE) && !pte_write(v))) return Follow::kFault;
  Page* page = mem.pfn_to_page(pte_pfn(v));  // the zero page for a special entry
  if (!pte_special(v) && gup_must_unshare(page, gup_flags)) return Follow::kUnshare;
  if (gup_flags & (FOLL_GET | FOLL_PIN)) try_grab_page(mem, page, gup_flags);
  if ((gup_flags & FOLL_TOUCH) && !pte_special(v)) {
    if ((gup_flags & FOLL_WRITE) && !pte_dirty(v)) page->set(PG_dirty);
    folio_mark_accessed(mem, page);
  }
  *out = GupPfn{pte_pfn(v), pte_write(v), true};
  return Follow::kPage;
}

// faultin_page: the fault that makes the next follow succeed, as an errno. It counts as a
// fault in /proc/vmstat (mm_account_fault counts GUP's faults too).
Errno faultin_page(Vma* vma, uint64_t addr, unsigned gup_flags, Follow why) {
  unsigned fault_flags = 0;
  if (gup_flags & FOLL_WRITE) fault_flags |= FAULT_FLAG_WRITE;
  if (why == Follow::kUnshare) fault_flags |= FAULT_FLAG_UNSHARE;
  if (gup_flags & FOLL_REMOTE) fault_flags |= FAULT_FLAG_REMOTE;
  const unsigned r = handle_mm_fault(vma, addr, fault_flags);
  if (!(r & VM_FAULT_RETRY)) vma->vm_mm->mem().events().count(PGFAULT);
  if (r & VM_FAULT_OOM) return Errno::kNoMem;
  if (r & (VM_FAULT_SIGBUS | VM_FAULT_SIGSEGV)) return Errno::kFault;
  return Errno::kOk;
}

}  // namespace

GupResult get_user_pages(Mm* mm, uint64_t start, uint64_t nr_pages, unsigned gup_flags, GupPfn* pfns) {
  mmap_assert_locked(mm);
  GupResult res;
  Vma* vma = nullptr;
  for (uint64_t addr = start & kPageMask; res.nr_done < nr_pages; addr += kPageSize) {
    if (!vma || addr >= vma->vm_end) {
      vma = mm->vma_lookup(addr);
      if (!vma) {
        res.error = (gup_flags & FOLL_MADV_POPULATE) ? Errno::kNoMem : Errno::kFault;
        return res;
      }
      if (!check_vma_flags(vma, gup_flags)) {
        res.error = (gup_flags & FOLL_MADV_POPULATE) ? Errno::kInval : Errno::kFault;
        return res;
      }
    }
    GupPfn pfn;
    for (Follow f; (f = follow_page_pte(mm, addr, gup_flags, &pfn)) != Follow::kPage;) {
      if (gup_flags & FOLL_NOFAULT) {
        // Pages handed out with a reference or a pin stop at the first one that is missing
        // (the caller gets what came before); lookups report it invalid and go on.
        if (gup_flags & (FOLL_GET | FOLL_PIN)) {
          if (!res.nr_done) res.error = Errno::kFault;
          return res;
        }
        break;
      }
      res.error = faultin_page(vma, addr, gup_flags, f);
      if (res.error != Errno::kOk) return res;
    }
    if (pfns) pfns[res.nr_done] = pfn;
    res.nr_done++;
  }
  return res;
}

Errno populate_vma_page_range(Vma* vma, uint64_t start, uint64_t end) {
  // Linux has never broken COW for a lock-on-fault VMA here: its pages come with its faults.
  if (vma->vm_flags & VM_LOCKONFAULT) return Errno::kOk;
  // Writable private mappings get write faults (breaking COW), everything else forced read
  // faults, which cover write-only and exec-only mappings but not PROT_NONE ones.
  unsigned gup_flags = FOLL_TOUCH;
  if ((vma->vm_flags & (VM_WRITE | VM_SHARED)) == VM_WRITE) gup_flags |= FOLL_WRITE;
  else gup_flags |= FOLL_FORCE;
  return get_user_pages(vma->vm_mm, start, (page_align(end) - start) >> kPageShift, gup_flags, nullptr).error;
}

Errno faultin_page_range(Mm* mm, uint64_t start, uint64_t end, ForWrite write) {
  unsigned gup_flags = FOLL_TOUCH | FOLL_MADV_POPULATE;
  if (write == ForWrite::kYes) gup_flags |= FOLL_WRITE;
  return get_user_pages(mm, start, (page_align(end) - start) >> kPageShift, gup_flags, nullptr).error;
}

Errno get_user_pfns(Mm* mm, uint64_t start, uint64_t nr_pages, ForWrite write, FaultIn fault, GupPfn* pfns) {
  mmap_assert_locked(mm);
  unsigned gup_flags = FOLL_REMOTE;
  if (write == ForWrite::kYes) gup_flags |= FOLL_WRITE;
  if (fault == FaultIn::kNo) gup_flags |= FOLL_NOFAULT;
  // hmm_vma_walk_test's answers: a VMA that cannot be read is -EFAULT, a write to one without
  // VM_WRITE -EPERM (check_vma_flags would call both -EFAULT).
  for (uint64_t addr = start & kPageMask, left = nr_pages; left;) {
    const Vma* vma = mm->vma_lookup(addr);
    if (!vma || !(vma->vm_flags & VM_READ) || (vma->vm_flags & (VM_IO | VM_PFNMAP))) return Errno::kFault;
    if (write == ForWrite::kYes && !(vma->vm_flags & VM_WRITE)) return Errno::kPerm;
    const uint64_t n = std::min(left, (vma->vm_end - addr) >> kPageShift);
    addr += n << kPageShift;
    left -= n;
  }
  return get_user_pages(mm, start, nr_pages, gup_flags, pfns).error;
}

namespace {

// The flags a driver may pass to both remote calls.
constexpr unsigned kRemoteFlags = FOLL_WRITE | FOLL_FORCE | FOLL_NOFAULT;

long errno_long(Errno e) { return -static_cast<long>(static_cast<int>(e)); }

// __get_user_pages_remote: the walk with the remote flags, pfns filled (when given) for the
// pages resolved. The number of pages, or the errno when the first one failed.
long gup_remote(Mm* mm, uint64_t start, unsigned long nr_pages, unsigned gup_flags, uint64_t* pfns) {
  mmap_assert_locked(mm);  // the remote calls' contract
  std::vector<GupPfn> got(pfns ? nr_pages : 0);
  const GupResult r =
      get_user_pages(mm, start, nr_pages, gup_flags | FOLL_TOUCH | FOLL_REMOTE, pfns ? got.data() : nullptr);
  for (uint64_t i = 0; pfns && i < r.nr_done; i++) pfns[i] = got[i].pfn;
  if (r.nr_done) return static_cast<long>(r.nr_done);
  return r.error == Errno::kOk ? 0 : errno_long(r.error);
}

// folio_is_longterm_pinnable: the model has no ZONE_MOVABLE nor CMA, so only device-coherent
// memory must not be pinned indefinitely (its driver must be able to evict it).
bool longterm_pinnable(const Page* page) { return !is_device_coherent_page(page); }

// check_and_migrate_movable_pages (migrate_longterm_unpinnable_folios): kOk when every page of
// pfns[0, n) may stay pinned. Otherwise every pin is released, the unpinnable pages are
// migrated to system RAM (migrate_device_coherent_folio, after turning the pin into a
// reference that the migration takes over), and kAgain asks the caller to pin the range again;
// kBusy when a page could not be moved.
Errno check_and_migrate_movable_pages(System* sys, uint64_t* pfns, long n) {
  PhysMem& mem = sys->mem();
  bool any = false;
  for (long i = 0; i < n && !any; i++) any = !longterm_pinnable(mem.pfn_to_page(static_cast<pfn_t>(pfns[i])));
  if (!any) return Errno::kOk;
  Errno err = Errno::kAgain;
  for (long i = 0; i < n; i++) {
    Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfns[i]));
    if (longterm_pinnable(page) || err != Errno::kAgain) {
      unpin_user_page(sys, pfns[i]);
      continue;
    }
    mem.get_page(page);
    unpin_user_page(sys, pfns[i]);
    if (migrate_device_coherent_page(sys, pfns[i]) != Errno::kOk) err = Errno::kBusy;
  }
  return err;
}

}  // namespace

long get_user_pages_remote(Mm* mm, uint64_t start, unsigned long nr_pages, unsigned gup_flags, uint64_t* pfns) {
  if (gup_flags & ~(kRemoteFlags | FOLL_GET)) return errno_long(Errno::kInval);
  if ((gup_flags & FOLL_GET) && !pfns) return errno_long(Errno::kInval);
  mmap_assert_locked(mm);
  if (pfns) gup_flags |= FOLL_GET;
  return gup_remote(mm, start, nr_pages, gup_flags, pfns);
}

long pin_user_pages_remote(Mm* mm, uint64_t start, unsigned long nr_pages, unsigned gup_flags, uint64_t* pfns) {
  if ((gup_flags & ~(kRemoteFlags | FOLL_LONGTERM)) || !pfns) return errno_long(Errno::kInval);
  mmap_assert_locked(mm);
  gup_flags |= FOLL_PIN;
  // __gup_longterm_locked: pin, and start over after moving what may not stay pinned.
  for (;;) {
    const long n = gup_remote(mm, start, nr_pages, gup_flags, pfns);
    if (n <= 0 || !(gup_flags & FOLL_LONGTERM)) return n;
    const Errno e = check_and_migrate_movable_pages(mm->sys(), pfns, n);
    if (e == Errno::kOk) return n;
    if (e != Errno::kAgain) return errno_long(e);
  }
}

void unpin_user_page(System* sys, uint64_t pfn) {
  PhysMem& mem = sys->mem();
  Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfn));
  if (page->test(PG_reserved)) return;  // the zero page is pinned without a count
  // gup_put_folio: all of the bias but one reference, then a put that frees the page if the
  // pin was the last thing holding it.
  const int old = page->refcount.fetch_sub(kGupPinCountingBias - 1, std::memory_order_acq_rel);
  MM_BUG_ON(old < kGupPinCountingBias);
  mem.put_page(page);
}

void unpin_user_pages(System* sys, const uint64_t* pfns, unsigned long npages) {
  for (unsigned long i = 0; i < npages; i++) unpin_user_page(sys, pfns[i]);
}

void put_page_pfn(System* sys, uint64_t pfn) {
  PhysMem& mem = sys->mem();
  Page* page = mem.pfn_to_page(static_cast<pfn_t>(pfn));
  if (page->test(PG_reserved)) return;  // GUP hands the zero page out without a reference
  mem.put_page(page);
}

bool folio_maybe_dma_pinned_pfn(System* sys, uint64_t pfn) {
  return folio_maybe_dma_pinned(sys->mem().pfn_to_page(static_cast<pfn_t>(pfn)));
}

}  // namespace mirrormm
