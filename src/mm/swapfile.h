// Swap devices, their slot maps and the swap cache (mm/swapfile.c and mm/swap_state.c's
// roles; include/linux/swap.h's declarations).
//
// A swap device (SwapInfo, Linux's swap_info_struct) is an array of page-sized slots, in
// memory (reserved with MAP_NORESERVE, so a large device costs nothing until used) or in a
// regular file (pwrite/pread). Slot 0 is never handed out, so no swap entry is the none entry.
// Each slot has a map count (swap_map): the number of swap PTEs and shmem page-cache slots
// (swap entries in a ShmemInode's cache, see shmem.h) that reference it, plus SWAP_HAS_CACHE
// while the swap cache holds a page for it. A slot is free when its map is 0.
//
// The swap cache (swapper_spaces) maps a swap entry to the page that holds its data: a page
// in it carries PG_swapcache, page->swap == entry, and one reference held by the cache. An
// anonymous page keeps PG_anon and its anon_vma there; a shmem page written out by
// shmem_writeout is in no page cache meanwhile (PG_shmem clear, mapping nullptr), so every
// swap-cache page is either PG_anon or neither, and __remove_mapping frees both alike. A
// page enters it under the page lock (add_to_swap, swap-in) and leaves it under the page lock
// (delete_from_swap_cache, __remove_mapping). Lookups (swap_cache_get_folio) take their
// reference under the cache lock, so a page deleted from the cache is never found again.
//
// Locking: SwapInfo::lock_ (lock_class::kSwapInfo, under the PTE lock) guards the slot map
// and the allocator; SwapInfo::cache_lock_ (kSwapCache) guards the cache array. The two are
// never held together: every path that changes both (delete_from_swap_cache) takes them one
// after the other. The ordering rules between them:
//   - HAS_CACHE is set (swapcache_prepare, slot allocation) before the page enters the cache
//     array, and cleared only after it left it. So "HAS_CACHE set and no page in the cache"
//     is a transient state that swap-in waits out (swapcache_prepare answers -EEXIST).
//   - A swap PTE holds a map count, so a slot a swap PTE names is never free.
//
// The protocol of one slot of an anonymous page, as reclaim and faults use it (P: page lock,
// L: PTE lock; shmem.h has the shmem version, where the inode's lock_ plays L's part):
//
//   swap-out (reclaim)                        swap-in (do_swap_page)
//   P  add_to_swap: map = HAS_CACHE,           look up the cache; found: P, recheck that
//      page in the cache                         the page is still the entry's
//   P  try_to_unmap_one per mapping, under L:  not found: swapcache_prepare (HAS_CACHE;
//      PTE -> swap PTE, map count +1             -EEXIST: another swap-in or a cache page
//   P  swap_writepage                            on its way out: wait and look again),
//   P  __remove_mapping: out of the cache,       new page, P, read, into the cache
//      then HAS_CACHE cleared                 under L: PTE still the swap PTE? map it,
//                                                swap_free; else back out
//
// A fault and reclaim exclude each other on a page through its lock; two swap-ins of one
// entry meet at HAS_CACHE, so the entry never gets two pages. zap (swap_free), fork
// (swap_duplicate) and swap-in change map counts under the PTE lock of the swap PTE.
//
// Device lifetime: swapon publishes a SwapInfo in the System's SwapTable; swapoff first stops
// allocation (kDying), brings every page back in (try_to_unuse), then marks it kOff and waits
// until no user (get_swap_device) is left before it releases the storage. The SwapInfo
// object itself lives as long as the System (a later swapon of the same type reuses it), so a
// racing lookup never touches freed memory.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "mirrormm/base/locking.h"
#include "mirrormm/errno.h"
#include "mm/lock_order.h"
#include "mm/pgtable.h"
#include "mm/physmem.h"

namespace mirrormm {

class System;

// A slot's map value: the count of swap PTEs in the low bits, SWAP_HAS_CACHE on top.
using swap_map_t = uint32_t;
inline constexpr swap_map_t SWAP_HAS_CACHE = 1u << 31;
inline constexpr swap_map_t SWAP_MAP_MAX = SWAP_HAS_CACHE - 1;  // the largest count
inline constexpr swap_map_t swap_count(swap_map_t m) { return m & ~SWAP_HAS_CACHE; }

// One swap device. Shared by every thread of the System; see the file comment for locking.
class SwapInfo {
 public:
  enum class State : uint8_t {
    kOff,     // no device: no slot may be used; storage released
    kActive,  // swapon done: slots allocated and read (SWP_WRITEOK)
    kDying,   // swapoff running: no new allocations, existing entries are still read
  };

  explicit SwapInfo(unsigned type);
  ~SwapInfo();
  SwapInfo(const SwapInfo&) = delete;
  SwapInfo& operator=(const SwapInfo&) = delete;

  unsigned type() const { return type_; }
  // Set up storage for nr_slots slots (kOff -> kActive). The caller holds the table's lock.
  Errno activate(uint64_t nr_slots, const std::string& path);
  // Releases storage (kDying -> kOff) once no user holds the device.
  void deactivate();

  State state() const { return state_.load(std::memory_order_seq_cst); }
  void set_state(State s) { state_.store(s, std::memory_order_seq_cst); }
  // Written by activate before the device is published (kActive), cleared after kOff.
  uint64_t max() const { return max_.load(std::memory_order_acquire); }
  const std::string& path() const { return path_; }

  // get_swap_device / put_swap_device: pins the device's storage for a swap-in or lookup.
  // False when the device is off or the offset is out of range.
  // Memory ordering: users_ is incremented before state_ is read (both seq_cst); swapoff
  // stores kOff before it waits for users_ to reach 0, so either the user sees kOff, or
  // swapoff sees the user.
  bool get(uint64_t offset);
  void put() { users_.fetch_sub(1, std::memory_order_seq_cst); }

  // ---- slot map (under lock_) ----
  // Allocates a free slot with map SWAP_HAS_CACHE; 0 when full or not kActive.
  uint64_t alloc_slot() EXCLUDES(lock_);
  // swap_duplicate: +1 map count; -ENOENT for a free slot, -ENOMEM at SWAP_MAP_MAX.
  Errno duplicate(uint64_t offset) EXCLUDES(lock_);
  // swap_free: -1 map count; returns the map left (the slot is free at 0).
  swap_map_t free_one(uint64_t offset) EXCLUDES(lock_);
  // swapcache_prepare: sets HAS_CACHE; -EEXIST if set, -ENOENT if the slot is free.
  Errno cache_prepare(uint64_t offset) EXCLUDES(lock_);
  // Clears HAS_CACHE (the cache page left, or a prepared swap-in backed out).
  void cache_clear(uint64_t offset) EXCLUDES(lock_);
  swap_map_t map(uint64_t offset) EXCLUDES(lock_);
  uint64_t inuse() const { return inuse_pages_.load(std::memory_order_relaxed); }
  // The highest slot ever allocated since swapon (Linux's highest_bit): scans stop there.
  uint64_t highest_bit() const { return highest_bit_.load(std::memory_order_relaxed); }

  // ---- storage (the slot's data; the caller holds the page lock and a HAS_CACHE use) ----
  Errno write_slot(uint64_t offset, const uint8_t* src);
  Errno read_slot(uint64_t offset, uint8_t* dst);

  // ---- the swap cache of this device (under cache_lock_) ----
  Page* cache_lookup_get(uint64_t offset, PhysMem& mem) EXCLUDES(cache_lock_);
  void cache_insert(uint64_t offset, Page* page) EXCLUDES(cache_lock_);
  // Removes page from slot offset if it is there; returns whether it was.
  bool cache_remove(uint64_t offset, Page* page) EXCLUDES(cache_lock_);
  // __remove_mapping's step: removes page from the cache only if its refcount is exactly
  // `expected`, moving the cache's reference away (refcount becomes expected - 1).
  bool cache_remove_frozen(uint64_t offset, Page* page, int32_t expected) EXCLUDES(cache_lock_);
  // Migration's step (folio_migrate_mapping for a swap-cache page): replaces page by newpage
  // in slot offset only if page's refcount is exactly `expected`, frozen meanwhile so that no
  // lookup can take a reference; the cache's reference moves to newpage (page's refcount
  // becomes expected - 1, newpage's grows by one). False, nothing changed, otherwise.
  bool cache_replace(uint64_t offset, Page* page, Page* newpage, int32_t expected) EXCLUDES(cache_lock_);
  uint64_t nr_cached() const { return nr_cached_.load(std::memory_order_relaxed); }
  // Racy peek for swapoff and checkers: the page cached at offset, without a reference.
  Page* debug_cache_peek(uint64_t offset) EXCLUDES(cache_lock_);

 private:
  const unsigned type_;
  std::atomic<State> state_{State::kOff};
  std::atomic<int> users_{0};
  // Written by activate/deactivate only while the device is kOff and has no user.
  std::atomic<uint64_t> max_{0};
  std::string path_;            // written by activate while kOff
  int fd_ = -1;                 // file-backed storage, or -1; written while kOff
  uint8_t* mem_ = nullptr;      // in-memory storage (MAP_NORESERVE), or null; written while kOff

  SpinLock lock_{lock_class::kSwapInfo};
  swap_map_t* swap_map_ PT_GUARDED_BY(lock_) = nullptr;  // max_ entries; the array is set while kOff
  uint64_t cluster_next_ GUARDED_BY(lock_) = 1;          // where the next allocation scan starts
  // Slots whose map is nonzero: changed under lock_, atomic for statistics readers.
  std::atomic<uint64_t> inuse_pages_{0};
  std::atomic<uint64_t> highest_bit_{0};  // written under lock_; read racily by scans

  SpinLock cache_lock_{lock_class::kSwapCache};
  Page** cache_ PT_GUARDED_BY(cache_lock_) = nullptr;  // max_ entries; the array is set while kOff
  std::atomic<uint64_t> nr_cached_{0};  // changed under cache_lock_; read racily
};

// The System's swap devices (swap_info[] and swap_lock). Owned by the System.
class SwapTable {
 public:
  SwapTable();
  ~SwapTable();
  // The device of type t (always an object; check its state), or nullptr past kMaxSwapFiles.
  SwapInfo* info(unsigned t) { return t < kMaxSwapFiles ? infos_[t].get() : nullptr; }
  // swapon/swapoff are serialized by this lock (swapon_mutex); faults never take it.
  Mutex swapon_mutex{lock_class::kSwapon};

 private:
  std::unique_ptr<SwapInfo> infos_[kMaxSwapFiles];
};

// The swap table of mm's machine.
SwapTable& swap_table_of(System* sys);

// ---- entry-level operations (mm/swapfile.c) ----

// get_swap_device: the device of a swap entry, pinned, or nullptr (device off, bad offset).
SwapInfo* get_swap_device(System* sys, pteval_t entry);
inline void put_swap_device(SwapInfo* si) { si->put(); }
// +1 map count (fork's copy of a swap PTE, try_to_unmap_one). Errno as SwapInfo::duplicate.
Errno swap_duplicate(System* sys, pteval_t entry);
// -1 map count (zap, swap-in). Returns true when only the swap cache still uses the slot
// (the caller may then try to free the cached page: free_swap_and_cache).
bool swap_free(System* sys, pteval_t entry);
// swap_free, then, when only the cache is left, drops the cached page if its lock is free
// (zap's free_swap_and_cache). Call without the PTE lock.
void free_swap_and_cache(System* sys, pteval_t entry);
// The cached page's lock could not be taken by the zap: retry with the page-lock trylock.
bool try_to_reclaim_swap(System* sys, pteval_t entry);
// Sets HAS_CACHE: 0, -EEXIST (a swap-in or a cache page is there), -ENOENT (slot free).
Errno swapcache_prepare(System* sys, pteval_t entry);
void swapcache_clear(System* sys, pteval_t entry);
// The map count (PTE references, without HAS_CACHE) of the entry's slot.
swap_map_t __swap_count(System* sys, pteval_t entry);

// add_to_swap (folio_alloc_swap + add_to_swap_cache): page is locked, anonymous, not in the
// swap cache. Allocates a slot, adds the page to the swap cache (a reference, PG_swapcache,
// PG_swapbacked, page->swap) and marks it dirty. False when every device is full or off.
bool add_to_swap(System* sys, Page* page);
// Synchronous write of the page's data to its slot (PSWPOUT); clears PG_dirty. Page locked,
// in the swap cache.
Errno swap_writepage(System* sys, Page* page);
// Reads the slot's data into page (PSWPIN). Page locked, in the swap cache.
Errno swap_read_folio(System* sys, Page* page);
// folio_free_swap: page locked and in the swap cache; when no swap PTE references its slot,
// removes it from the cache (dropping the cache's reference). Returns whether it did.
bool folio_free_swap(System* sys, Page* page);
// Removes a locked page from the swap cache and drops the cache's reference, whatever the
// slot's map count (the slot stays for its swap PTEs).
void delete_from_swap_cache(System* sys, Page* page);
// free_swap_cache: a zap removed a page's last mapping; a page that no PTE maps any more and
// whose slot no swap PTE references leaves the swap cache, if its lock can be taken without
// waiting. The caller holds a reference, and no lock ranked at or above the page lock.
void free_swap_cache(System* sys, Page* page);
// __remove_mapping for a swap-cache page (anonymous, or shmem after shmem_writeout): page
// locked, clean, unmapped (mapcount 0), and referenced only by the cache and the caller. Removes it from the cache; the caller's
// reference is then the last one. False (nothing changed) when another reference exists or
// the page is dirty or mapped.
bool __remove_mapping(System* sys, Page* page);
// The swap cache lookup: the page cached for entry with a reference, or nullptr.
Page* swap_cache_get_folio(System* sys, pteval_t entry);

// __read_swap_cache_async: the swap-cache page of entry, locked and with a reference for the
// caller, in *pagep: the page already cached, or a new page (allocated with gfp) read from the
// slot and added to the swap cache and the LRU (then *read is set). Exactly one page exists per
// entry: a reader first claims the entry's SWAP_HAS_CACHE, and one that finds it claimed
// answers kBusy (the caller rechecks what led it to the entry, and retries or gives up). kGone:
// the slot no longer holds the entry. The caller has pinned the device (get_swap_device) and
// rechecks, once it holds the page, that its own reference to the entry is still there.
enum class SwapinStatus { kOk, kBusy, kGone, kNoMem, kIoError };
SwapinStatus read_swap_cache_locked(System* sys, SwapInfo* si, pteval_t entry, Gfp gfp, Page** pagep, bool* read);

// Checkers (quiescent points): the page the swap cache holds for entry, without a reference.
Page* swap_cache_peek(System* sys, pteval_t entry);

// should_try_to_free_swap's "swap is more than half full" (mem_cgroup_swap_full).
bool vm_swap_full(System* sys);

}  // namespace mirrormm
