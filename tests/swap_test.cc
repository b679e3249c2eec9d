// Swap devices, the swap cache, swap entries in page tables and swap-in (src/mm/swapfile.cc,
// swap_state.cc, memory.cc's do_swap_page, rmap_unmap.cc's try_to_unmap_one).
//
// Until the reclaim scanner and the reverse-map walk exist, tests swap pages out themselves
// (swap_out below): they know every (process, address) that maps the page, and run reclaim's
// steps for it: add_to_swap, try_to_unmap_one for each mapping, swap_writepage, and
// __remove_mapping to drop the clean, unmapped cache page.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "mm/pgtable_walk.h"
#include "mm/rmap.h"
#include "mm/swapfile.h"
#include "mm/vmstat.h"
#include "mm_test_util.h"
#include "support/watchdog.h"

namespace mirrormm::testing {
namespace {

using namespace std::chrono_literals;

const bool kWatchdog = install_test_watchdog(scaled(120s));

SystemConfig small_config() {
  SystemConfig c;
  c.memory_bytes = 64ull << 20;
  return c;
}

// The VMA of p at addr. Looked up before the page lock is taken (the page lock ranks below the
// mmap_lock); the quiescent test then stands in for the rmap lock that keeps the VMA and its
// page tables alive during try_to_unmap_one.
Vma* vma_of(Process* p, uint64_t addr) {
  Mm* mm = p->mm();
  MmapReadGuard g(mm);
  return mm->vma_lookup(addr);
}

class SwapTest : public ModelTest {
 protected:
  SwapTest() : ModelTest(small_config()) {}
  explicit SwapTest(int cpus) : ModelTest(small_config()) {
    sys_ = std::make_unique<System>(small_config(), cpus);
  }


  // Reclaim of one anonymous page, which `maps` lists every mapping of: into the swap cache,
  // unmapped everywhere, written, and dropped from the cache. Returns the swap entry.
  pteval_t swap_out(const std::vector<std::pair<Process*, uint64_t>>& maps) {
    Page* page = page_at(maps[0].first, maps[0].second);
    EXPECT_NE(page, nullptr);
    if (!page) return 0;
    PhysMem& mem = sys().mem();
    std::vector<Vma*> vmas;
    for (auto [p, addr] : maps) vmas.push_back(vma_of(p, addr));
    sys().lru_add_drain_all();  // shrink_inactive_list's lru_add_drain: no add batch holds it
    mem.get_page(page);  // reclaim's isolation reference
    lock_page(page);
    if (!page->test(PG_swapcache)) {
      EXPECT_TRUE(add_to_swap(&sys(), page));
    }
    const pteval_t entry = page->swap;
    for (size_t i = 0; i < maps.size(); i++) EXPECT_TRUE(try_to_unmap_one(page, vmas[i], maps[i].second, 0));
    EXPECT_EQ(page->mapcount.load(), 0);
    if (page->test(PG_dirty)) {
      EXPECT_EQ(swap_writepage(&sys(), page), Errno::kOk);
    }
    EXPECT_TRUE(__remove_mapping(&sys(), page));
    unlock_page(page);
    mem.put_page(page);  // the last reference: the frame is freed
    return entry;
  }
  void swap_out_range(Process* p, uint64_t addr, uint64_t len) {
    for (uint64_t a = addr; a < addr + len; a += P) swap_out({{p, a}});
  }

  // Swap accounting against the page tables of every live process: each slot's map count is
  // the number of swap PTEs naming it, SWAP_HAS_CACHE is set exactly for slots with a cache
  // page, the slots in use are those two sets together, and each mm's MM_SWAPENTS is its
  // number of swap PTEs. Returns the number of swap PTEs found.
  uint64_t check_swap_accounting() {
    std::map<pteval_t, uint64_t> refs;  // entry -> swap PTEs
    uint64_t total = 0;
    for (uint64_t pid = 1; pid <= sys().nr_processes_created(); pid++) {
      Process* p = sys().process(pid);
      if (!p) continue;
      Mm* mm = p->mm();
      MmapReadGuard g(mm);
      int64_t n = 0;
      walk_pte_tables(mm, 0, kTaskSize, [&](pte_t* ptep, uint64_t a, uint64_t stop, Page*) {
        for (; a < stop; a += kPageSize, ptep++) {
          const pteval_t v = ptep_get(ptep);
          if (is_swap_pte(v) && !non_swap_entry(v)) {
            refs[pte_to_swp_entry(v)]++;
            n++;
          }
        }
      });
      EXPECT_EQ(mm->rss(MM_SWAPENTS), n) << "pid " << pid;
      total += static_cast<uint64_t>(n);
    }
    std::set<pteval_t> used;
    uint64_t cached = 0;
    SwapTable& t = sys().swap_table();
    for (unsigned type = 0; type < kMaxSwapFiles; type++) {
      SwapInfo* si = t.info(type);
      if (si->state() == SwapInfo::State::kOff) continue;
      for (uint64_t off = 1; off <= si->highest_bit(); off++) {
        const pteval_t e = swp_entry(type, off);
        const swap_map_t m = si->map(off);
        Page* page = si->debug_cache_peek(off);
        auto it = refs.find(e);
        const uint64_t want = it == refs.end() ? 0 : it->second;
        EXPECT_EQ(swap_count(m), want) << "slot " << type << ":" << off;
        EXPECT_EQ((m & SWAP_HAS_CACHE) != 0, page != nullptr) << "slot " << type << ":" << off;
        if (page) {
          cached++;
          EXPECT_TRUE(page->test(PG_swapcache));
          EXPECT_EQ(page->swap, e);
        }
        if (m) used.insert(e);
      }
    }
    const SwapStats s = sys().swap_stats();
    EXPECT_EQ(s.used, used.size());
    EXPECT_EQ(s.cached, cached);
    EXPECT_EQ(sys().debug_check_consistency(), 0u);
    return total;
  }

  int64_t event(VmEvent e) { return sys().mem().events().sum(e); }
};


TEST_F(SwapTest, SwaponAndSwapoffErrors) {
  EXPECT_EQ(sys().swapon(0).error(), Errno::kInval);
  EXPECT_EQ(sys().swapon(P).error(), Errno::kInval);
  EXPECT_EQ(sys().swapon(2 * P - 1).error(), Errno::kInval);
  EXPECT_EQ(sys().swapoff(0).error(), Errno::kInval);
  EXPECT_EQ(sys().swapon(64 * P, "/nonexistent-dir/swapfile").error(), Errno::kNoEnt);
  for (unsigned i = 0; i < kMaxSwapFiles; i++) {
    Status s = sys().swapon(2 * P);
    ASSERT_TRUE(s.ok());
    EXPECT_EQ(s.value(), static_cast<int>(i));  // the lowest free type
  }
  EXPECT_EQ(sys().swapon(16 * P).error(), Errno::kBusy);
  SwapStats st = sys().swap_stats();
  EXPECT_EQ(st.devices, kMaxSwapFiles);
  EXPECT_EQ(st.total, kMaxSwapFiles);  // one usable slot each
  EXPECT_EQ(st.used, 0u);
  EXPECT_TRUE(sys().swapoff(3).ok());
  EXPECT_EQ(sys().swapoff(3).error(), Errno::kInval);
  EXPECT_EQ(sys().swapoff(kMaxSwapFiles).error(), Errno::kInval);
  Status again = sys().swapon(1ull << 34);  // a large device costs nothing until used
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), 3);
  EXPECT_EQ(sys().swap_stats().total, kMaxSwapFiles - 1 + (1ull << 22) - 1);
}

TEST_F(SwapTest, AddToSwapFailsWithoutSwapOrWhenFull) {
  map(p1(), W, 4 * P);
  write_pattern(p1(), W, 4 * P, 1);
  Page* page = page_at(p1(), W);
  lock_page(page);
  EXPECT_FALSE(add_to_swap(&sys(), page));  // no device
  unlock_page(page);
  ASSERT_TRUE(sys().swapon(3 * P).ok());  // two usable slots
  swap_out_range(p1(), W, 2 * P);
  page = page_at(p1(), W + 2 * P);
  lock_page(page);
  EXPECT_FALSE(add_to_swap(&sys(), page));  // full
  unlock_page(page);
  EXPECT_EQ(sys().swap_stats().used, 2u);
  EXPECT_TRUE(has_pattern(p1(), W, 4 * P, 1));
  EXPECT_EQ(check_swap_accounting(), 0u);
}

// Out and back in, through a device of either kind: the bytes survive, the counters move.
class SwapRoundTrip : public SwapTest, public ::testing::WithParamInterface<bool> {};

TEST_P(SwapRoundTrip, SameBytesBack) {
  std::string path;
  if (GetParam()) path = ::testing::TempDir() + "mirrormm-swap-" + std::to_string(::getpid());
  ASSERT_TRUE(sys().swapon(64 * P, path).ok());
  constexpr uint64_t kPages = 8;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 7);
  const int64_t out0 = event(PSWPOUT), in0 = event(PSWPIN), maj0 = event(PGMAJFAULT);
  swap_out_range(p1(), W, kPages * P);
  EXPECT_EQ(event(PSWPOUT) - out0, static_cast<int64_t>(kPages));
  for (uint64_t a = W; a < W + kPages * P; a += P) {
    const pteval_t v = pte_at(p1(), a);
    EXPECT_TRUE(is_swap_pte(v) && !non_swap_entry(v));
    EXPECT_TRUE(pte_swp_exclusive(v));  // a private page that was never shared
  }
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), 0);
  EXPECT_EQ(mincore(p1(), W, kPages * P), std::string(kPages, '0'));
  EXPECT_EQ(sys().swap_stats().used, kPages);
  EXPECT_EQ(sys().swap_stats().cached, 0u);
  EXPECT_EQ(check_swap_accounting(), kPages);

  EXPECT_TRUE(has_pattern(p1(), W, kPages * P, 7));
  EXPECT_EQ(event(PSWPIN) - in0, static_cast<int64_t>(kPages));
  EXPECT_EQ(event(PGMAJFAULT) - maj0, static_cast<int64_t>(kPages));
  EXPECT_EQ(mincore(p1(), W, kPages * P), std::string(kPages, '1'));
  // An exclusive swap PTE maps the page back writable (clean until written), and a read
  // fault of an exclusive page keeps the cache copy only while swap is not half full.
  for (uint64_t a = W; a < W + kPages * P; a += P) {
    EXPECT_TRUE(pte_write(pte_at(p1(), a)));
    EXPECT_FALSE(pte_dirty(pte_at(p1(), a)));
    EXPECT_TRUE(page_at(p1(), a)->test(PG_anon_exclusive));
  }
  EXPECT_EQ(p1()->mm()->rss(MM_ANONPAGES), static_cast<int64_t>(kPages));
  EXPECT_EQ(check_swap_accounting(), 0u);
  // Writing again, out again: the new bytes come back.
  write_pattern(p1(), W, kPages * P, 9);
  swap_out_range(p1(), W, kPages * P);
  EXPECT_TRUE(has_pattern(p1(), W, kPages * P, 9));
  EXPECT_EQ(sys().munmap(p1(), W, kPages * P).error(), Errno::kOk);
  EXPECT_EQ(check_swap_accounting(), 0u);
  EXPECT_EQ(sys().swap_stats().used, 0u);
  if (!path.empty()) ::unlink(path.c_str());
}

INSTANTIATE_TEST_SUITE_P(Devices, SwapRoundTrip, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& i) { return i.param ? "File" : "Memory"; });

TEST_F(SwapTest, WriteFaultOnExclusiveEntryFreesTheSlot) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, P);
  write_pattern(p1(), W, P, 3);
  swap_out({{p1(), W}});
  write_pattern(p1(), W, P, 4);  // a write fault on an exclusive swap PTE
  const pteval_t v = pte_at(p1(), W);
  EXPECT_TRUE(pte_write(v) && pte_dirty(v));
  EXPECT_FALSE(page_at(p1(), W)->test(PG_swapcache));
  EXPECT_EQ(sys().swap_stats().used, 0u);
  EXPECT_TRUE(has_pattern(p1(), W, P, 4));
  check_swap_accounting();
}

TEST_F(SwapTest, ForkedSwapEntriesComeBackSharedAndWriteProtected) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, 2 * P);
  write_pattern(p1(), W, 2 * P, 5);
  swap_out_range(p1(), W, 2 * P);
  Result<Process*> child = sys().fork(p1());
  ASSERT_TRUE(child.ok());
  Process* c = child.value();
  // fork took a second reference on each slot and cleared the exclusive bit on both sides.
  for (uint64_t a : {W, W + P}) {
    EXPECT_FALSE(pte_swp_exclusive(pte_at(p1(), a)));
    EXPECT_EQ(pte_at(p1(), a), pte_at(c, a));
    EXPECT_EQ(__swap_count(&sys(), pte_at(p1(), a)), 2u);
  }
  EXPECT_EQ(c->mm()->rss(MM_SWAPENTS), 2);
  EXPECT_EQ(check_swap_accounting(), 4u);

  EXPECT_TRUE(has_pattern(p1(), W, 2 * P, 5));
  EXPECT_EQ(check_swap_accounting(), 2u);  // the parent's references went; the cache holds the pages
  EXPECT_EQ(sys().swap_stats().cached, 2u);
  EXPECT_EQ(mincore(c, W, 2 * P), "11");  // the child's swap PTEs: their pages are cached
  EXPECT_TRUE(has_pattern(c, W, 2 * P, 5));
  for (uint64_t a : {W, W + P}) {
    const pteval_t pv = pte_at(p1(), a), cv = pte_at(c, a);
    ASSERT_TRUE(pte_present(pv) && pte_present(cv));
    EXPECT_EQ(pte_pfn(pv), pte_pfn(cv));  // one page for the entry
    EXPECT_FALSE(pte_write(pv));
    EXPECT_FALSE(pte_write(cv));
    Page* page = page_at(p1(), a);
    EXPECT_EQ(page->mapcount.load(), 2);
    EXPECT_FALSE(page->test(PG_anon_exclusive));
  }
  EXPECT_EQ(check_swap_accounting(), 0u);
  // A write in the child copies; the parent keeps the shared original.
  const pfn_t shared = pte_pfn(pte_at(p1(), W));
  write_pattern(c, W, P, 6);
  EXPECT_NE(pte_pfn(pte_at(c, W)), shared);
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), shared);
  EXPECT_TRUE(has_pattern(c, W, P, 6));
  EXPECT_TRUE(has_pattern(p1(), W, P, 5));
  // The parent is now the page's only user besides the swap cache, whose copy no swap PTE
  // needs: a write drops the cache copy and reuses the page (wp_can_reuse_anon_folio).
  EXPECT_TRUE(page_at(p1(), W)->test(PG_swapcache));
  write_pattern(p1(), W, P, 7);
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), shared);
  EXPECT_FALSE(page_at(p1(), W)->test(PG_swapcache));
  EXPECT_TRUE(has_pattern(p1(), W, P, 7));
  check_swap_accounting();
  sys().exit(c);
  sys().exit(p1());
  EXPECT_EQ(sys().swap_stats().used, 0u);
  EXPECT_EQ(sys().swap_stats().cached, 0u);
}

TEST_F(SwapTest, SwapCountsThroughForkExitMunmapMremapAndDontneed) {
  ASSERT_TRUE(sys().swapon(256 * P).ok());
  constexpr uint64_t kPages = 16;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 11);
  swap_out_range(p1(), W, kPages * P);
  EXPECT_EQ(check_swap_accounting(), kPages);

  Result<Process*> r1 = sys().fork(p1());
  ASSERT_TRUE(r1.ok());
  Process* c1 = r1.value();
  EXPECT_EQ(check_swap_accounting(), 2 * kPages);
  EXPECT_EQ(sys().swap_stats().used, kPages);

  // munmap in the child: its references go, the slots stay for the parent.
  ASSERT_TRUE(sys().munmap(c1, W, 4 * P).ok());
  EXPECT_EQ(check_swap_accounting(), 2 * kPages - 4);
  // madvise(DONTNEED) in the child.
  ASSERT_TRUE(sys().madvise(c1, W + 4 * P, 2 * P, kMadvDontneed).ok());
  EXPECT_EQ(check_swap_accounting(), 2 * kPages - 6);
  // mremap shrink in the parent zaps the tail.
  ASSERT_TRUE(sys().mremap(p1(), W, kPages * P, 12 * P, 0, 0).ok());
  EXPECT_EQ(check_swap_accounting(), 2 * kPages - 10);
  // mremap move in the parent: the swap entries move with their PTEs.
  const uint64_t to = W + 64 * P;
  Result<uint64_t> moved = sys().mremap(p1(), W, 12 * P, 12 * P, 1 | 2 /* MREMAP_MAYMOVE | MREMAP_FIXED */, to);
  ASSERT_TRUE(moved.ok());
  for (uint64_t i = 0; i < 12; i++) EXPECT_TRUE(is_swap_pte(pte_at(p1(), to + i * P)));
  EXPECT_EQ(check_swap_accounting(), 2 * kPages - 10);
  // mprotect leaves swap entries alone.
  ASSERT_TRUE(sys().mprotect(p1(), to, 12 * P, kProtRead).ok());
  EXPECT_TRUE(is_swap_pte(pte_at(p1(), to)));
  EXPECT_TRUE(has_pattern(p1(), to, 12 * P, 11));
  ASSERT_TRUE(sys().mprotect(p1(), to, 12 * P, RW).ok());
  EXPECT_EQ(check_swap_accounting(), kPages - 6);  // the child's 10: the parent's came back in
  // A second fork of the parent (pages present now) and exit of both children.
  Result<Process*> r2 = sys().fork(c1);
  ASSERT_TRUE(r2.ok());
  check_swap_accounting();
  sys().exit(c1);
  check_swap_accounting();
  sys().exit(r2.value());
  EXPECT_EQ(check_swap_accounting(), 0u);
  sys().exit(p1());
  EXPECT_EQ(sys().swap_stats().used, 0u);  // exit leaks no slot
  EXPECT_EQ(sys().swap_stats().cached, 0u);
}

// Truncation removes private copies in file mappings too (unmap_mapping_range, under the
// file's i_mmap lock): their swap entries and swap-cache pages go with them.
TEST_F(SwapTest, TruncateFreesSwappedPrivateCopies) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  Result<uint64_t> r = sys().mmap_file(p1(), W, 2 * P, RW, kMapPrivate | kMapFixed, "f", 0, System::FileMode::kReadWrite);
  ASSERT_TRUE(r.ok());
  write_pattern(p1(), W, 2 * P, 12);  // private anonymous copies of both file pages
  swap_out_range(p1(), W, 2 * P);
  EXPECT_TRUE(has_pattern(p1(), W + P, P, 12));  // back in; its swap-cache copy stays
  EXPECT_TRUE(page_at(p1(), W + P)->test(PG_swapcache));
  EXPECT_EQ(sys().swap_stats().used, 2u);
  EXPECT_EQ(sys().swap_stats().cached, 1u);
  check_swap_accounting();
  ASSERT_TRUE(sys().truncate("f", 0).ok());
  EXPECT_EQ(pte_at(p1(), W), 0u);
  EXPECT_EQ(pte_at(p1(), W + P), 0u);
  EXPECT_EQ(sys().swap_stats().used, 0u);
  EXPECT_EQ(sys().swap_stats().cached, 0u);
  EXPECT_EQ(check_swap_accounting(), 0u);
}

// try_to_unmap_one as the reverse-map walk calls it (try_to_unmap's rmap_one, under the page
// lock and the anon_vma lock): a page shared by a parent and two children leaves all three
// mappings for one swap slot, and comes back as one page.
TEST_F(SwapTest, RmapWalkUnmapsEveryMappingToOneSlot) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  map(p1(), W, P);
  write_pattern(p1(), W, P, 70);
  Result<Process*> c1 = sys().fork(p1());
  Result<Process*> c2 = sys().fork(p1());
  ASSERT_TRUE(c1.ok() && c2.ok());
  Page* page = page_at(p1(), W);
  ASSERT_EQ(page->mapcount.load(), 3);
  PhysMem& mem = sys().mem();
  sys().lru_add_drain_all();  // an add batch's reference would keep the page
  mem.get_page(page);
  lock_page(page);
  ASSERT_TRUE(add_to_swap(&sys(), page));
  const pteval_t entry = page->swap;
  int calls = 0;
  RmapWalkControl rwc;
  rwc.sys = &sys();
  rwc.rmap_one = [&](Page* p, Vma* vma, uint64_t address) {
    calls++;
    return try_to_unmap_one(p, vma, address, 0);
  };
  rwc.done = [](Page* p) { return !folio_mapped(p); };
  rmap_walk(page, rwc);
  EXPECT_GE(calls, 3);
  EXPECT_EQ(page->mapcount.load(), 0);
  EXPECT_EQ(__swap_count(&sys(), entry), 3u);
  ASSERT_EQ(swap_writepage(&sys(), page), Errno::kOk);
  EXPECT_TRUE(__remove_mapping(&sys(), page));
  unlock_page(page);
  mem.put_page(page);
  EXPECT_EQ(check_swap_accounting(), 3u);
  for (Process* p : {p1(), c1.value(), c2.value()}) {
    EXPECT_EQ(pte_to_swp_entry(pte_at(p, W)), entry);
    EXPECT_TRUE(has_pattern(p, W, P, 70));
  }
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), pte_pfn(pte_at(c1.value(), W)));
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), pte_pfn(pte_at(c2.value(), W)));
  EXPECT_EQ(check_swap_accounting(), 0u);
}

TEST_F(SwapTest, ShmemPageJustLosesItsMapping) {
  ASSERT_TRUE(sys().memfd("f", 2 * P).ok());
  Result<uint64_t> r = sys().mmap_file(p1(), W, 2 * P, RW, kMapShared | kMapFixed, "f", 0, System::FileMode::kReadWrite);
  ASSERT_TRUE(r.ok());
  write_pattern(p1(), W, P, 2);
  Page* page = page_at(p1(), W);
  ASSERT_NE(page, nullptr);
  const int ref = page->refcount.load();
  Vma* vma = vma_of(p1(), W);
  lock_page(page);
  EXPECT_TRUE(try_to_unmap_one(page, vma, W, 0));
  EXPECT_TRUE(try_to_unmap_one(page, vma, W, 0));  // nothing left to do
  unlock_page(page);
  EXPECT_EQ(pte_at(p1(), W), 0u);
  EXPECT_EQ(page->mapcount.load(), 0);
  EXPECT_EQ(page->refcount.load(), ref - 1);
  EXPECT_TRUE(page->test(PG_dirty));
  EXPECT_EQ(p1()->mm()->rss(MM_SHMEMPAGES), 0);
  EXPECT_TRUE(has_pattern(p1(), W, P, 2));
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(SwapTest, RemoveMappingRefusesAnExtraReference) {
  ASSERT_TRUE(sys().swapon(16 * P).ok());
  map(p1(), W, P);
  write_pattern(p1(), W, P, 8);
  Page* page = page_at(p1(), W);
  PhysMem& mem = sys().mem();
  Vma* vma = vma_of(p1(), W);
  sys().lru_add_drain_all();  // no add batch holds it
  mem.get_page(page);
  lock_page(page);
  ASSERT_TRUE(add_to_swap(&sys(), page));
  EXPECT_FALSE(__remove_mapping(&sys(), page));  // still mapped (and dirty)
  ASSERT_TRUE(try_to_unmap_one(page, vma, W, 0));
  EXPECT_FALSE(__remove_mapping(&sys(), page));  // dirty
  ASSERT_EQ(swap_writepage(&sys(), page), Errno::kOk);
  Page* extra = swap_cache_get_folio(&sys(), page->swap);  // a lookup's reference
  EXPECT_EQ(extra, page);
  EXPECT_FALSE(__remove_mapping(&sys(), page));
  mem.put_page(extra);
  EXPECT_TRUE(__remove_mapping(&sys(), page));
  unlock_page(page);
  mem.put_page(page);
  EXPECT_EQ(mincore(p1(), W, P), "0");
  EXPECT_TRUE(has_pattern(p1(), W, P, 8));
  check_swap_accounting();
}

// Two CPUs fault the same swap entry at once: through one PTE (two threads of a process) and
// through two PTEs that share the slot (parent and child). Either way one page serves the
// entry and both see its bytes.
class SwapConcurrentTest : public SwapTest {
 protected:
  SwapConcurrentTest() : SwapTest(2) {}
  // Swaps out every page of [W, W + pages) that p1 or c maps, a shared page once for both.
  void swap_out_both(Process* c, uint64_t pages) {
    for (uint64_t a = W; a < W + pages * P; a += P) {
      Page* pp = page_at(p1(), a);
      Page* cp = page_at(c, a);
      if (pp && pp == cp) {
        swap_out({{p1(), a}, {c, a}});
        continue;
      }
      if (pp) swap_out({{p1(), a}});
      if (cp) swap_out({{c, a}});
    }
  }
};

TEST_F(SwapConcurrentTest, TwoFaultsOnOneEntryGetOnePage) {
  ASSERT_TRUE(sys().swapon(256 * P).ok());
  constexpr uint64_t kPages = 32;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 21);
  Result<Process*> r = sys().fork(p1());
  ASSERT_TRUE(r.ok());
  Process* c = r.value();
  for (int round = 0; round < 20; round++) {
    kick_test_watchdog();
    swap_out_both(c, kPages);
    check_swap_accounting();
    // Odd rounds: both threads in the parent; even rounds: parent against child.
    Process* second = (round % 2) ? p1() : c;
    std::atomic<int> ready{0};
    std::atomic<bool> bad0{false}, bad1{false};
    auto reader = [&](Process* p, int cpu, std::atomic<bool>& bad) {
      return [&, p, cpu] {
        ready.fetch_add(1);
        while (ready.load() < 2) {
        }
        for (uint64_t a = W; a < W + kPages * P; a += P)
          if (!has_pattern(p, a, P, 21, cpu)) bad = true;
      };
    };
    {
      BoundedThread t0(reader(p1(), 0, bad0));
      BoundedThread t1(reader(second, 1, bad1));
      t0.join("reader on CPU 0");
      t1.join("reader on CPU 1");
    }
    EXPECT_FALSE(bad0.load());
    EXPECT_FALSE(bad1.load());
    if (second == c) {
      for (uint64_t a = W; a < W + kPages * P; a += P) {
        ASSERT_TRUE(pte_present(pte_at(p1(), a)) && pte_present(pte_at(c, a)));
        EXPECT_EQ(pte_pfn(pte_at(p1(), a)), pte_pfn(pte_at(c, a))) << "round " << round;
        EXPECT_EQ(page_at(p1(), a)->mapcount.load(), 2);
      }
    }
    check_swap_accounting();
  }
  // Concurrent writers from both processes: each ends with its own copy of its bytes.
  swap_out_both(c, kPages);
  {
    BoundedThread t0([&] { write_pattern(p1(), W, kPages * P, 30); });
    BoundedThread t1([&] {
      AccessResult ar = sys().access(c, 1, W, kPages * P, true, [](uint8_t* d, uint64_t a, uint64_t n) {
        for (uint64_t i = 0; i < n; i++) d[i] = pattern(a + i, 31);
      });
      EXPECT_TRUE(ar.ok());
    });
    t0.join("writer on CPU 0");
    t1.join("writer on CPU 1");
  }
  EXPECT_TRUE(has_pattern(p1(), W, kPages * P, 30));
  EXPECT_TRUE(has_pattern(c, W, kPages * P, 31));
  EXPECT_EQ(check_swap_accounting(), 0u);
}

// The same race made certain: the fault gate holds each fault after its unlocked read of the
// PTE until the other process's fault of that address has made its read too, so both enter
// do_swap_page with the entry. The swap cache must give both the one page, read once.
TEST_F(SwapConcurrentTest, FaultsPastTheUnlockedReadShareOnePageReadOnce) {
  ASSERT_TRUE(sys().swapon(256 * P).ok());
  constexpr uint64_t kPages = 16;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 50);
  Result<Process*> r = sys().fork(p1());
  ASSERT_TRUE(r.ok());
  Process* c = r.value();
  swap_out_both(c, kPages);
  ASSERT_EQ(check_swap_accounting(), 2 * kPages);
  const int64_t in0 = event(PSWPIN), maj0 = event(PGMAJFAULT);
  std::mutex m;
  std::condition_variable cv;
  std::map<uint64_t, int> arrivals;  // guarded by m
  sys().debug_set_fault_gate([&](uint64_t addr) {
    std::unique_lock<std::mutex> l(m);
    const int n = ++arrivals[addr];
    cv.notify_all();
    if (n < 2) cv.wait_for(l, std::chrono::milliseconds(500), [&] { return arrivals[addr] >= 2; });
  });
  std::atomic<bool> bad0{false}, bad1{false};
  {
    BoundedThread t0([&] {
      for (uint64_t a = W; a < W + kPages * P; a += P)
        if (!has_pattern(p1(), a, P, 50, 0)) bad0 = true;
    });
    BoundedThread t1([&] {
      for (uint64_t a = W; a < W + kPages * P; a += P)
        if (!has_pattern(c, a, P, 50, 1)) bad1 = true;
    });
    t0.join("reader on CPU 0");
    t1.join("reader on CPU 1");
  }
  sys().debug_set_fault_gate(nullptr);
  EXPECT_FALSE(bad0.load());
  EXPECT_FALSE(bad1.load());
  {
    std::lock_guard<std::mutex> l(m);
    for (uint64_t a = W; a < W + kPages * P; a += P) EXPECT_GE(arrivals[a], 2) << std::hex << a;
  }
  EXPECT_EQ(event(PSWPIN) - in0, static_cast<int64_t>(kPages));  // one read per entry
  EXPECT_EQ(event(PGMAJFAULT) - maj0, static_cast<int64_t>(kPages));
  for (uint64_t a = W; a < W + kPages * P; a += P) {
    ASSERT_TRUE(pte_present(pte_at(p1(), a)) && pte_present(pte_at(c, a)));
    EXPECT_EQ(pte_pfn(pte_at(p1(), a)), pte_pfn(pte_at(c, a)));
    EXPECT_EQ(page_at(p1(), a)->mapcount.load(), 2);
  }
  EXPECT_EQ(check_swap_accounting(), 0u);
}

// Reclaim (this thread) swaps pages out while CPU 1 writes and reads them back: no write may
// be lost (the dirty bit moves from the PTE to the page, and a page written after its last
// writeback is written again), and the accounting holds afterwards.
TEST_F(SwapConcurrentTest, SwapOutWhileAnotherCpuWritesLosesNoWrite) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  constexpr uint64_t kPages = 8;
  constexpr int kRounds = 300;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 0);
  std::vector<Vma*> vmas;
  for (uint64_t i = 0; i < kPages; i++) vmas.push_back(vma_of(p1(), W + i * P));
  std::atomic<bool> done{false}, bad{false};
  BoundedThread writer([&] {
    for (int k = 1; k <= kRounds && !bad; k++) {
      const uint8_t seed = static_cast<uint8_t>(k);
      AccessResult w = sys().access(p1(), 1, W, kPages * P, true, [seed](uint8_t* d, uint64_t a, uint64_t n) {
        for (uint64_t i = 0; i < n; i++) d[i] = pattern(a + i, seed);
      });
      if (!w.ok() || !has_pattern(p1(), W, kPages * P, seed, 1)) bad = true;
    }
    done = true;
  });
  PhysMem& mem = sys().mem();
  Process* proc = p1();  // looked up once: the process table's lock ranks above the page lock
  uint64_t swapped = 0;
  for (uint64_t n = 0; !done; n++) {
    const uint64_t i = n % kPages, a = W + i * P;
    const pteval_t v = pte_at(proc, a);
    if (!pte_present(v)) continue;
    Page* page = mem.pfn_to_page(pte_pfn(v));
    if (n % kPages == 0) sys().lru_add_drain_all();  // as reclaim drains before it scans
    if (!PhysMem::get_page_unless_zero(page)) continue;
    lock_page(page);
    const pteval_t now = pte_at(proc, a);
    if (pte_present(now) && pte_pfn(now) == pte_pfn(v) && (page->test(PG_swapcache) || add_to_swap(&sys(), page))) {
      EXPECT_TRUE(try_to_unmap_one(page, vmas[i], a, 0));
      if (page->test(PG_dirty)) {
        EXPECT_EQ(swap_writepage(&sys(), page), Errno::kOk);
      }
      if (__remove_mapping(&sys(), page)) swapped++;
    }
    unlock_page(page);
    mem.put_page(page);
  }
  writer.join("writer on CPU 1");
  EXPECT_FALSE(bad.load());
  EXPECT_GT(swapped, 0u);
  EXPECT_TRUE(has_pattern(p1(), W, kPages * P, static_cast<uint8_t>(kRounds)));
  check_swap_accounting();
}

// swapoff brings the pages in while CPU 1 faults the same entries (parent and child share
// them): every entry ends as one page, mapped by both, with its bytes.
TEST_F(SwapConcurrentTest, SwapoffRacesWithFaults) {
  constexpr uint64_t kPages = 32;
  map(p1(), W, kPages * P);
  write_pattern(p1(), W, kPages * P, 60);
  Result<Process*> r = sys().fork(p1());
  ASSERT_TRUE(r.ok());
  Process* c = r.value();
  for (int round = 0; round < 10; round++) {
    kick_test_watchdog();
    Status type = sys().swapon(256 * P);
    ASSERT_TRUE(type.ok());
    swap_out_both(c, kPages);
    check_swap_accounting();
    std::atomic<bool> bad{false};
    Process* reader_proc = (round % 2) ? p1() : c;
    {
      BoundedThread reader([&] {
        // Backwards, so that it meets swapoff (which goes forwards) half way.
        for (uint64_t a = W + kPages * P; a > W; a -= P)
          if (!has_pattern(reader_proc, a - P, P, 60, 1)) bad = true;
      });
      EXPECT_TRUE(sys().swapoff(static_cast<unsigned>(type.value())).ok());
      reader.join("reader on CPU 1");
    }
    EXPECT_FALSE(bad.load());
    EXPECT_EQ(sys().swap_stats().devices, 0u);
    for (uint64_t a = W; a < W + kPages * P; a += P) {
      ASSERT_TRUE(pte_present(pte_at(p1(), a)) && pte_present(pte_at(c, a)));
      EXPECT_EQ(pte_pfn(pte_at(p1(), a)), pte_pfn(pte_at(c, a)));
    }
    EXPECT_EQ(sys().debug_check_consistency(), 0u);
  }
}

TEST_F(SwapTest, SwapoffBringsEverythingBack) {
  ASSERT_TRUE(sys().swapon(64 * P).ok());
  Status second = sys().swapon(64 * P);
  ASSERT_TRUE(second.ok());
  map(p1(), W, 8 * P);
  write_pattern(p1(), W, 8 * P, 40);
  swap_out_range(p1(), W, 4 * P);  // device 0
  Result<Process*> r = sys().fork(p1());
  ASSERT_TRUE(r.ok());
  Process* c = r.value();
  write_pattern(c, W + 4 * P, 4 * P, 41);  // the child's own copies
  swap_out_range(c, W + 4 * P, 4 * P);
  EXPECT_EQ(check_swap_accounting(), 12u);
  ASSERT_TRUE(sys().swapoff(0).ok());
  EXPECT_EQ(sys().swap_stats().devices, 1u);
  EXPECT_EQ(sys().swap_stats().used, 0u);
  for (uint64_t a = W; a < W + 8 * P; a += P) {
    EXPECT_TRUE(pte_present(pte_at(p1(), a)));
    EXPECT_TRUE(pte_present(pte_at(c, a)));
  }
  EXPECT_EQ(p1()->mm()->rss(MM_SWAPENTS), 0);
  EXPECT_EQ(c->mm()->rss(MM_SWAPENTS), 0);
  EXPECT_EQ(pte_pfn(pte_at(p1(), W)), pte_pfn(pte_at(c, W)));  // still shared
  EXPECT_TRUE(has_pattern(p1(), W, 8 * P, 40));
  EXPECT_TRUE(has_pattern(c, W, 4 * P, 40));
  EXPECT_TRUE(has_pattern(c, W + 4 * P, 4 * P, 41));
  check_swap_accounting();
  // Swapping out again uses the remaining device.
  const pteval_t e = swap_out({{c, W + 4 * P}});
  EXPECT_EQ(swp_type(e), static_cast<unsigned>(second.value()));
  ASSERT_TRUE(sys().swapoff(static_cast<unsigned>(second.value())).ok());
  EXPECT_TRUE(has_pattern(c, W + 4 * P, P, 41));
  EXPECT_EQ(sys().swap_stats().devices, 0u);
}

TEST(SwapoffTest, OutOfMemoryLeavesTheDeviceOn) {
  SystemConfig cfg;
  cfg.memory_bytes = 64 * P;  // a small machine
  System sys(cfg);
  // kswapd would reclaim beside the hand-made swap-out below (its isolation references make
  // __remove_mapping refuse): it waits until the end.
  sys.debug_pause_reclaim();
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.swapon(256 * P).ok());
  constexpr uint64_t kPages = 96;  // more than memory holds
  ASSERT_TRUE(sys.mmap(p, W, kPages * P, RW, PRIV).ok());
  // Fill and swap out page by page so that memory never runs out.
  uint64_t out = 0;
  for (uint64_t a = W; a < W + kPages * P; a += P) {
    ASSERT_TRUE(sys.access(p, 0, a, P, true, [](uint8_t* d, uint64_t, uint64_t n) {
                  for (uint64_t i = 0; i < n; i++) d[i] = 0x5a;
                }).ok());
    pte_t* ptep = pte_offset(p->mm(), a);
    Page* page = sys.mem().pfn_to_page(pte_pfn(ptep_get(ptep)));
    Vma* vma = vma_of(p, a);
    sys.lru_add_drain_all();  // no add batch holds it
    sys.mem().get_page(page);
    lock_page(page);
    ASSERT_TRUE(add_to_swap(&sys, page));
    ASSERT_TRUE(try_to_unmap_one(page, vma, a, 0));
    ASSERT_EQ(swap_writepage(&sys, page), Errno::kOk);
    ASSERT_TRUE(__remove_mapping(&sys, page));
    unlock_page(page);
    sys.mem().put_page(page);
    out++;
  }
  EXPECT_EQ(sys.swapoff(0).error(), Errno::kNoMem);
  const SwapStats s = sys.swap_stats();
  EXPECT_EQ(s.devices, 1u);  // still on
  EXPECT_GT(s.used, 0u);
  // Freeing memory lets it finish.
  ASSERT_TRUE(sys.munmap(p, W, (kPages / 2) * P).ok());
  EXPECT_TRUE(sys.swapoff(0).ok());
  EXPECT_EQ(sys.swap_stats().devices, 0u);
  bool good = true;
  EXPECT_TRUE(sys.access(p, 0, W + (kPages / 2) * P, (kPages / 2) * P, false, [&](uint8_t* d, uint64_t, uint64_t n) {
                  for (uint64_t i = 0; i < n; i++) good &= d[i] == 0x5a;
                }).ok());
  EXPECT_TRUE(good);
  EXPECT_EQ(sys.debug_check_consistency(), 0u);
  sys.debug_resume_reclaim();
}

}  // namespace
}  // namespace mirrormm::testing
