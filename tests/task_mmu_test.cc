// /proc/PID/maps (System::proc_maps, src/mm/task_mmu.cc) and its line layout, through the
// public API only: what a user of the library sees of the VMA list.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "mirrormm/mman.h"
#include "mirrormm/replay.h"
#include "mirrormm/system.h"

namespace mirrormm {
namespace {

constexpr uint64_t W = 0x200000000000ull;  // the script window: [W, 0x300000000000)
constexpr uint64_t P = 4096;
constexpr uint64_t RW = kProtRead | kProtWrite;

std::vector<MapsEntry> maps_of(System& sys, Process* p) {
  Result<std::vector<MapsEntry>> r = sys.proc_maps(p);
  EXPECT_TRUE(r.ok()) << errno_name(r.error());
  return r.ok() ? r.value() : std::vector<MapsEntry>{};
}

TEST(ProcMaps, ListsEveryVmaInAddressOrderWithItsBacking) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.memfd("f", 8 * P).ok());
  ASSERT_TRUE(sys.mmap(p, W + 16 * P, 2 * P, RW, kMapShared | kMapAnonymous | kMapFixed).ok());
  ASSERT_TRUE(sys.mmap_file(p, W + 8 * P, 4 * P, kProtRead, kMapPrivate | kMapFixed, "f", 2 * P,
                            System::FileMode::kReadWrite)
                  .ok());
  ASSERT_TRUE(sys.mmap(p, W, 2 * P, kProtRead | kProtExec, kMapPrivate | kMapAnonymous | kMapFixed).ok());
  // Splitting the file mapping: the upper piece starts further into the file.
  ASSERT_TRUE(sys.mprotect(p, W + 10 * P, 2 * P, RW).ok());

  std::vector<MapsEntry> m = maps_of(sys, p);
  ASSERT_EQ(m.size(), 4u);
  EXPECT_EQ(m[0].start, W);
  EXPECT_EQ(m[0].end, W + 2 * P);
  EXPECT_TRUE(m[0].read && !m[0].write && m[0].exec && !m[0].shared);
  EXPECT_EQ(m[0].backing, MapsEntry::Backing::kAnon);
  EXPECT_EQ(m[0].offset, 0u);
  EXPECT_EQ(m[1].backing, MapsEntry::Backing::kFile);
  EXPECT_EQ(m[1].file, "f");
  EXPECT_EQ(m[1].offset, 2 * P);
  EXPECT_EQ(m[2].start, W + 10 * P);
  EXPECT_EQ(m[2].offset, 4 * P);
  EXPECT_TRUE(m[2].write);
  EXPECT_FALSE(m[2].shared);
  EXPECT_EQ(m[3].backing, MapsEntry::Backing::kSharedAnon);
  EXPECT_TRUE(m[3].shared);
  EXPECT_TRUE(m[3].file.empty());

  EXPECT_EQ(format_maps_entry(m[0]), "200000000000-200000002000 r-xp");
  EXPECT_EQ(format_maps_entry(m[1]), "200000008000-20000000a000 r--p 2000 f");
  EXPECT_EQ(format_maps_entry(m[2]), "20000000a000-20000000c000 rw-p 4000 f");
  EXPECT_EQ(format_maps_entry(m[3]), "200000010000-200000012000 rw-s 0 shmem");
}

TEST(ProcMaps, ReportsMappingsOutsideTheWindowThatTheMapsLineLeavesOut) {
  System sys;
  Process* p = sys.process(1);
  const uint64_t below = W - 4 * P;
  const uint64_t above = 0x300000000000ull;
  ASSERT_TRUE(sys.mmap(p, below, 8 * P, RW, kMapPrivate | kMapAnonymous | kMapFixed).ok());  // straddles W
  ASSERT_TRUE(sys.mmap(p, below - 16 * P, P, RW, kMapPrivate | kMapAnonymous | kMapFixed).ok());
  ASSERT_TRUE(sys.mmap(p, above, P, kProtRead, kMapPrivate | kMapAnonymous | kMapFixed).ok());
  std::vector<MapsEntry> m = maps_of(sys, p);
  ASSERT_EQ(m.size(), 3u);
  EXPECT_EQ(m[0].start, below - 16 * P);
  EXPECT_EQ(m[2].start, above);
  EXPECT_EQ(replay::format_maps(m), "1fffffffc000-200000004000 rw-p");
  EXPECT_EQ(replay::format_maps({}), "none");
}

TEST(ProcMaps, ExitedOrMissingProcessIsEsrch) {
  System sys;
  Process* p = sys.process(1);
  ASSERT_TRUE(sys.mmap(p, W, P, RW, kMapPrivate | kMapAnonymous | kMapFixed).ok());
  Result<Process*> child = sys.fork(p);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(maps_of(sys, child.value()).size(), 1u);
  sys.exit(child.value());
  EXPECT_EQ(sys.proc_maps(child.value()).error(), Errno::kSrch);
  EXPECT_EQ(sys.proc_maps(nullptr).error(), Errno::kSrch);
  EXPECT_EQ(maps_of(sys, p).size(), 1u);
}

}  // namespace
}  // namespace mirrormm
