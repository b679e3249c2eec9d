// Helpers for tests that drive the model through its public API and inspect its internals.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "mirrormm/replay.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/system_internal.h"

namespace mirrormm::testing {

inline constexpr uint64_t W = 0x200000000000ull;  // the window start
inline constexpr uint64_t P = 4096;
inline constexpr uint64_t RW = kProtRead | kProtWrite;
inline constexpr uint64_t PRIV = kMapPrivate | kMapAnonymous | kMapFixed;
inline constexpr uint64_t SHARED = kMapShared | kMapAnonymous | kMapFixed;

class ModelTest : public ::testing::Test {
 protected:
  explicit ModelTest(SystemConfig c = SystemConfig{}) : sys_(std::make_unique<System>(c)) {}

  System& sys() { return *sys_; }
  Process* p1() { return sys_->process(1); }

  uint64_t map(Process* p, uint64_t addr, uint64_t len, uint64_t prot = RW, uint64_t flags = PRIV) {
    Result<uint64_t> r = sys_->mmap(p, addr, len, prot, flags);
    EXPECT_TRUE(r.ok()) << errno_name(r.error());
    return r.ok() ? r.value() : 0;
  }
  // The `maps` line of the script format (the VMAs inside the window), or -ESRCH.
  std::string maps(Process* p) {
    Result<std::vector<MapsEntry>> r = sys_->proc_maps(p);
    return r.ok() ? replay::format_maps(r.value()) : std::string("-") + errno_name(r.error());
  }

  AccessResult fill(Process* p, uint64_t addr, uint64_t len, uint8_t v) {
    return sys_->access(p, 0, addr, len, true, [v](uint8_t* d, uint64_t, uint64_t n) {
      for (uint64_t i = 0; i < n; i++) d[i] = v;
    });
  }
  // The bytes at [addr, addr+len), or an empty vector when the read faults.
  std::vector<uint8_t> bytes(Process* p, uint64_t addr, uint64_t len) {
    std::vector<uint8_t> out;
    AccessResult r = sys_->access(p, 0, addr, len, false, [&](uint8_t* d, uint64_t, uint64_t n) {
      out.insert(out.end(), d, d + n);
    });
    if (!r.ok()) out.clear();
    return out;
  }
  AccessResult touch_read(Process* p, uint64_t addr) {
    return sys_->access(p, 0, addr, 1, false, [](uint8_t*, uint64_t, uint64_t) {});
  }
  std::string mincore(Process* p, uint64_t addr, uint64_t len) {
    std::vector<uint8_t> vec;
    Status s = sys_->mincore(p, addr, len, &vec);
    if (!s.ok()) return std::string("-") + errno_name(s.error());
    std::string out;
    for (uint8_t b : vec) out += (b & 1) ? '1' : '0';
    return out;
  }
  // The byte the pattern puts at addr, varied by page and by `seed`; the same again 64 pages
  // on (so that a range moved by a multiple of 64 pages still holds it).
  static uint8_t pattern(uint64_t addr, uint8_t seed) {
    return static_cast<uint8_t>(((addr >> 12) & 63) * 31 + (addr & 0xfff) * 7 + seed);
  }
  void write_pattern(Process* p, uint64_t addr, uint64_t len, uint8_t seed) {
    AccessResult r = sys().access(p, 0, addr, len, true, [seed](uint8_t* d, uint64_t a, uint64_t n) {
      for (uint64_t i = 0; i < n; i++) d[i] = pattern(a + i, seed);
    });
    ASSERT_TRUE(r.ok());
  }
  // Whether [addr, addr+len) holds the pattern (read through CPU `cpu`).
  bool has_pattern(Process* p, uint64_t addr, uint64_t len, uint8_t seed, int cpu = 0) {
    bool good = true;
    AccessResult r = sys().access(p, cpu, addr, len, false, [&](uint8_t* d, uint64_t a, uint64_t n) {
      for (uint64_t i = 0; i < n; i++)
        if (d[i] != pattern(a + i, seed)) good = false;
    });
    return r.ok() && good;
  }

  // The VMA containing addr (test-only peek; the model is quiescent).
  Vma* vma_at(Process* p, uint64_t addr) NO_THREAD_SAFETY_ANALYSIS { return p->mm()->vma_lookup(addr); }
  pteval_t pte_at(Process* p, uint64_t addr) {
    pte_t* ptep = pte_offset(p->mm(), addr);
    return ptep ? ptep_get(ptep) : 0;
  }
  Page* page_at(Process* p, uint64_t addr) {
    pteval_t v = pte_at(p, addr);
    if (!pte_present(v) || pte_special(v)) return nullptr;
    return sys_->mem().pfn_to_page(pte_pfn(v));
  }

  std::unique_ptr<System> sys_;
};

}  // namespace mirrormm::testing
