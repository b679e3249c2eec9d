// /proc/vmstat and pageinfo of the model (src/mm/vmstat.cc, src/mm/page_info.cc) and their
// script commands `vmstat` and `pageinfo` (docs/mms-v2.md): the counters' names and order,
// what they count, pageinfo's answer for each kind of entry, parsing, format() and replay.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

#include "mirrormm/replay.h"
#include "mirrormm/script.h"
#include "mm/lru.h"
#include "mm/swapfile.h"
#include "mm/vmstat.h"
#include "mm_test_util.h"
#include "support/watchdog.h"

namespace mirrormm {
namespace {

using namespace mirrormm::testing;
using ::testing::HasSubstr;

const bool kWatchdog = testing::install_test_watchdog(testing::scaled(std::chrono::seconds(120)));

class VmstatTest : public ModelTest {
 protected:
  uint64_t counter(const std::string& name) {
    for (const auto& [n, v] : sys().vmstat())
      if (n == name) return v;
    ADD_FAILURE() << "no counter " << name;
    return 0;
  }
  std::string info(Process* p, uint64_t addr) {
    Result<PageInfo> r = sys().pageinfo(p, addr);
    return r.ok() ? format_pageinfo(r.value()) : std::string("-") + errno_name(r.error());
  }
};

TEST_F(VmstatTest, CountersComeInProcVmstatOrder) {
  std::vector<std::pair<std::string, uint64_t>> v = sys().vmstat();
  const std::vector<std::string>& names = vmstat_item_names();
  ASSERT_EQ(v.size(), names.size());
  ASSERT_EQ(v.size(), 6u + NR_VM_EVENT_ITEMS);
  const char* state[] = {"nr_free_pages", "nr_inactive_anon", "nr_active_anon", "nr_inactive_file",
                         "nr_active_file", "nr_unevictable"};
  for (size_t i = 0; i < 6; i++) EXPECT_EQ(v[i].first, state[i]);
  for (size_t i = 0; i < NR_VM_EVENT_ITEMS; i++) EXPECT_EQ(v[6 + i].first, kVmEventNames[i]);
  for (size_t i = 0; i < v.size(); i++) EXPECT_EQ(v[i].first, names[i]);
  EXPECT_EQ(counter("nr_free_pages"), sys().mem().nr_free_global());
  EXPECT_EQ(counter("pgfault"), 0u);
}

TEST_F(VmstatTest, FaultsAndListSizesAreCounted) {
  map(p1(), W, 8 * P);
  ASSERT_TRUE(fill(p1(), W, 3 * P, 1).ok());
  ASSERT_TRUE(touch_read(p1(), W + 4 * P).ok());  // the zero page: a fault, no page
  EXPECT_EQ(counter("pgfault"), 4u);
  EXPECT_EQ(counter("nr_inactive_anon"), 0u);  // still in the add batch
  sys().lru_add_drain_all();
  EXPECT_EQ(counter("nr_inactive_anon"), 3u);
  EXPECT_EQ(counter("nr_active_anon"), 0u);
  folio_mark_accessed(sys().mem(), page_at(p1(), W));
  folio_mark_accessed(sys().mem(), page_at(p1(), W));
  EXPECT_EQ(counter("nr_inactive_anon"), 2u);
  EXPECT_EQ(counter("nr_active_anon"), 1u);
  EXPECT_EQ(counter("pgactivate"), 1u);
  ASSERT_TRUE(sys().madvise(p1(), W, 8 * P, kMadvCold).ok());
  EXPECT_EQ(counter("nr_inactive_anon"), 3u);
  EXPECT_EQ(counter("pgdeactivate"), 1u);
  // A fault outside every VMA counts too (it reached the fault entry).
  EXPECT_EQ(touch_read(p1(), W + 64 * P).kind, AccessResult::Kind::kSegv);
  EXPECT_EQ(counter("pgfault"), 5u);
  ASSERT_TRUE(sys().munmap(p1(), W, 8 * P).ok());
  EXPECT_EQ(counter("nr_inactive_anon"), 0u);
  EXPECT_EQ(counter("nr_free_pages"), sys().mem().nr_free_global());
}

TEST_F(VmstatTest, PageinfoDescribesEachKindOfEntry) {
  map(p1(), W, 4 * P);
  EXPECT_EQ(info(p1(), W), "none");
  ASSERT_TRUE(touch_read(p1(), W + P).ok());
  EXPECT_EQ(info(p1(), W + P), "zero");
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  const uint64_t pfn = pte_pfn(pte_at(p1(), W));
  EXPECT_EQ(info(p1(), W + 100),
            fmt::format("pfn={:#x} node=0 pte=wdy map=1 ref=2 flags=anon,anon_exclusive,swapbacked lru=none owner=anon", pfn));
  sys().lru_add_drain_all();
  EXPECT_EQ(info(p1(), W),
            fmt::format("pfn={:#x} node=0 pte=wdy map=1 ref=1 flags=anon,anon_exclusive,lru,swapbacked lru=inactive_anon "
                        "owner=anon",
                        pfn));
  Result<PageInfo> r = sys().pageinfo(p1(), W);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().entry, PageInfo::Entry::kPresent);
  EXPECT_EQ(r.value().pfn, pfn);
  EXPECT_EQ(r.value().mapcount, 1);
  EXPECT_EQ(r.value().lru, "inactive_anon");
  EXPECT_EQ(r.value().owner, "anon");

  // A swap entry (planted by hand: nothing in this model writes one yet).
  pte_t* ptep = pte_offset(p1()->mm(), W + 2 * P);
  ASSERT_NE(ptep, nullptr);
  set_pte(ptep, swp_entry(0, 17));
  EXPECT_EQ(info(p1(), W + 2 * P), "swap=0:17");
  set_pte(ptep, 0);

  EXPECT_EQ(info(p1(), W + 4 * P), "-EFAULT");
  Process* child = sys().fork(p1()).value();
  EXPECT_EQ(info(child, W),
            fmt::format("pfn={:#x} node=0 pte=-d- map=2 ref=2 flags=anon,lru,swapbacked lru=inactive_anon owner=anon", pfn));
  sys().exit(child);
  EXPECT_EQ(info(child, W), "-ESRCH");
  EXPECT_EQ(info(nullptr, W), "-ESRCH");
}

TEST_F(VmstatTest, PageinfoFollowsAPageThroughTheSwapCache) {
  ASSERT_TRUE(sys().swapon(16 * P).ok());
  map(p1(), W, P);
  ASSERT_TRUE(fill(p1(), W, P, 7).ok());
  sys().lru_add_drain_all();
  Page* page = page_at(p1(), W);
  PhysMem& mem = sys().mem();
  Process* p = p1();
  Vma* vma = vma_at(p, W);
  // Reclaim of one page by hand: into the swap cache, unmapped, written, dropped.
  ASSERT_TRUE(folio_isolate_lru(mem, page));
  lock_page(page);
  ASSERT_TRUE(add_to_swap(&sys(), page));
  const pteval_t entry = page->swap;
  unlock_page(page);  // pageinfo takes the mmap_lock, which ranks above the page lock
  Result<PageInfo> r = sys().pageinfo(p, W);
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r.value().in_swapcache);
  EXPECT_EQ(r.value().swapcache_type, swp_type(entry));
  EXPECT_EQ(r.value().swapcache_offset, swp_offset(entry));
  EXPECT_EQ(r.value().lru, "none");  // isolated
  EXPECT_THAT(info(p, W), HasSubstr(fmt::format(
                                 " map=1 ref=3 flags=anon,anon_exclusive,dirty,swapbacked,swapcache lru=none owner=anon "
                                 "swapcache={}:{}",
                                 swp_type(entry), swp_offset(entry))));
  lock_page(page);
  ASSERT_TRUE(try_to_unmap_one(page, vma, W, 0));
  unlock_page(page);
  EXPECT_EQ(info(p, W), fmt::format("swap={}:{}", swp_type(entry), swp_offset(entry)));
  lock_page(page);
  ASSERT_EQ(swap_writepage(&sys(), page), Errno::kOk);
  ASSERT_TRUE(__remove_mapping(&sys(), page));
  unlock_page(page);
  mem.put_page(page);  // the isolation reference: the frame is freed
  EXPECT_EQ(info(p1(), W), fmt::format("swap={}:{}", swp_type(entry), swp_offset(entry)));
  // The swap-in fault reads it back into a new page, which joins the LRU through the batch.
  ASSERT_EQ(bytes(p1(), W, 1), std::vector<uint8_t>{7});
  EXPECT_EQ(counter("pgmajfault"), 1u);
  sys().lru_add_drain_all();
  Result<PageInfo> back = sys().pageinfo(p1(), W);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back.value().entry, PageInfo::Entry::kPresent);
  EXPECT_EQ(back.value().lru, "inactive_anon");
  EXPECT_EQ(back.value().owner, "anon");
  EXPECT_EQ(sys().debug_check_consistency(), 0u);
}

TEST_F(VmstatTest, PageinfoNamesTheFileOfAPageCachePage) {
  ASSERT_TRUE(sys().memfd("data", P).ok());
  ASSERT_TRUE(
      sys().mmap_file(p1(), W, P, RW, kMapShared | kMapFixed, "data", 0, System::FileMode::kReadWrite).ok());
  map(p1(), W + 2 * P, P, RW, SHARED);
  ASSERT_TRUE(fill(p1(), W, 1, 1).ok());
  ASSERT_TRUE(touch_read(p1(), W + 2 * P).ok());
  sys().lru_add_drain_all();
  Result<PageInfo> r = sys().pageinfo(p1(), W);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.value().owner, "file data");
  EXPECT_EQ(r.value().refcount, 2);  // the PTE and the page cache
  EXPECT_THAT(info(p1(), W), HasSubstr(" pte=wdy map=1 ref=2 flags=shmem,dirty,lru,swapbacked lru=inactive_anon "
                                       "owner=file:data"));
  EXPECT_THAT(info(p1(), W + 2 * P), HasSubstr(" pte=w-y map=1 ref=2 flags=shmem,lru,swapbacked lru=inactive_anon "
                                               "owner=file:dev/zero"));
}

// ---- the script commands ----

script::Command parse_one(const std::string& line) {
  std::string error;
  std::optional<script::Script> s = script::parse(line, "t.mms", &error);
  EXPECT_TRUE(s.has_value()) << line << ": " << error;
  if (!s || s->commands.size() != 1) return script::Command{};
  return s->commands[0];
}

std::string parse_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(script::parse(text, "t.mms", &error).has_value()) << text;
  return error;
}

std::vector<std::string> replay(const std::string& text) {
  std::string error;
  std::optional<script::Script> s = script::parse(text, "t.mms", &error);
  EXPECT_TRUE(s.has_value()) << error;
  return s ? replay::run(*s, replay::Options{SystemConfig{}}) : std::vector<std::string>{};
}

TEST(ScriptVmstat, ParsesAndFormats) {
  script::Command all = parse_one("vmstat");
  EXPECT_EQ(all.model, script::ModelOp::kVmstat);
  EXPECT_TRUE(all.names.empty());
  EXPECT_TRUE(script::model_only(all));
  EXPECT_EQ(script::format(all), "vmstat");
  script::Command some = parse_one("@3 vmstat pgfault nr_free_pages pgfault");
  EXPECT_EQ(some.names, (std::vector<std::string>{"pgfault", "nr_free_pages", "pgfault"}));
  EXPECT_EQ(script::format(some), "@3 vmstat pgfault nr_free_pages pgfault");
  script::Command pi = parse_one("@2 pageinfo 0x200000001000");
  EXPECT_EQ(pi.model, script::ModelOp::kPageinfo);
  EXPECT_EQ(pi.pid, 2u);
  EXPECT_EQ(pi.addr, 0x200000001000u);
  EXPECT_TRUE(script::model_only(pi));
  EXPECT_EQ(script::format(pi), "@2 pageinfo 0x200000001000");
  EXPECT_EQ(script::format(parse_one(script::format(pi))), script::format(pi));
}

TEST(ScriptVmstat, UsageErrors) {
  EXPECT_EQ(parse_error("vmstat\nvmstat pgfaults\n"),
            "t.mms:2: vmstat: unknown counter 'pgfaults' (expected a /proc/vmstat name such as nr_free_pages or "
            "pgfault)");
  EXPECT_EQ(parse_error("pageinfo"), "t.mms:1: pageinfo: expected 1 argument (ADDR), got 0");
  EXPECT_EQ(parse_error("pageinfo 1 2"), "t.mms:1: pageinfo: expected 1 argument (ADDR), got 2");
  EXPECT_EQ(parse_error("pageinfo 7f00"),
            "t.mms:1: pageinfo: bad ADDR '7f00': hex digits need the 0x prefix (0x7f00)");
}

TEST(ScriptVmstat, ReplayShowsTheListsAndThePages) {
  const std::vector<std::string> out = replay(
      "mmap 0x200000000000 16K rw- private+anon+fixed\n"
      "vmstat nr_inactive_anon nr_active_anon pgfault\n"
      "write 0x200000000000 8K 1\n"
      "read 0x200000002000 1\n"
      "pageinfo 0x200000000000\n"
      "pageinfo 0x200000002000\n"
      "pageinfo 0x200000003000\n"
      "vmstat pgfault nr_inactive_anon nr_active_anon\n"
      "madvise 0x200000000000 16K populate_read\n"
      "madvise 0x200000000000 16K populate_read\n"
      "vmstat nr_inactive_anon nr_active_anon pgactivate\n"
      "pageinfo 0x200000001000\n"
      "madvise 0x200000000000 8K cold\n"
      "vmstat nr_inactive_anon nr_active_anon pgdeactivate\n"
      "pageinfo 0x200000001000\n"
      "fork\n"
      "@2 pageinfo 0x200000000000\n"
      "@2 exit\n"
      "@2 pageinfo 0x200000000000\n"
      "pageinfo 0x200000010000\n"
      "munmap 0x200000000000 16K\n"
      "vmstat nr_inactive_anon nr_active_anon\n"
      "check\n");
  ASSERT_EQ(out.size(), 23u);
  EXPECT_EQ(out[1], "nr_inactive_anon=0 nr_active_anon=0 pgfault=0");
  EXPECT_EQ(out[4], "pfn=0x3f node=0 pte=wdy map=1 ref=1 flags=anon,anon_exclusive,lru,swapbacked lru=inactive_anon owner=anon");
  EXPECT_EQ(out[5], "zero");
  EXPECT_EQ(out[6], "none");
  EXPECT_EQ(out[7], "pgfault=3 nr_inactive_anon=2 nr_active_anon=0");
  // Two populates touch each page twice: referenced, then active.
  EXPECT_EQ(out[10], "nr_inactive_anon=0 nr_active_anon=2 pgactivate=2");
  EXPECT_EQ(out[11], "pfn=0x3e node=0 pte=wdy map=1 ref=1 flags=anon,anon_exclusive,lru,active,swapbacked lru=active_anon "
                     "owner=anon");
  EXPECT_EQ(out[13], "nr_inactive_anon=2 nr_active_anon=0 pgdeactivate=2");
  EXPECT_EQ(out[14], "pfn=0x3e node=0 pte=wd- map=1 ref=1 flags=anon,anon_exclusive,lru,workingset,swapbacked "
                     "lru=inactive_anon owner=anon");
  EXPECT_EQ(out[16], "pfn=0x3f node=0 pte=-d- map=2 ref=2 flags=anon,lru,workingset,swapbacked lru=inactive_anon owner=anon");
  EXPECT_EQ(out[18], "-ESRCH");
  EXPECT_EQ(out[19], "-EFAULT");
  EXPECT_EQ(out[21], "nr_inactive_anon=0 nr_active_anon=0");
  EXPECT_EQ(out[22], "ok");
}

TEST(ScriptVmstat, BareVmstatPrintsEveryCounterInOrder) {
  const std::vector<std::string> out = replay("vmstat\n");
  ASSERT_EQ(out.size(), 1u);
  std::string expected_prefix;
  const std::vector<std::string>& names = vmstat_item_names();
  EXPECT_THAT(out[0], ::testing::StartsWith("nr_free_pages="));
  size_t pos = 0;
  for (const std::string& n : names) {
    const size_t at = out[0].find(n + "=", pos);
    ASSERT_NE(at, std::string::npos) << n;
    EXPECT_TRUE(at == 0 || out[0][at - 1] == ' ') << n;
    pos = at + n.size();
  }
  EXPECT_EQ(std::count(out[0].begin(), out[0].end(), ' '), static_cast<long>(names.size()) - 1);
  EXPECT_THAT(out[0], HasSubstr(" pgfault=0 "));
}

TEST(ScriptVmstat, HostRunnerSkipsTheNewCommands) {
  EXPECT_TRUE(script::model_only(parse_one("vmstat")));
  EXPECT_TRUE(script::model_only(parse_one("pageinfo 0")));
  std::string error;
  std::optional<script::Script> s = script::parse("pageinfo 0\n", "t.mms", &error);
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(script::uses_model_only(*s));
}

}  // namespace
}  // namespace mirrormm
