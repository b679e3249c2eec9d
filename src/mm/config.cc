#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <sstream>
#include <string>

#include "mirrormm/config.h"

#include "mirrormm/base/assert.h"

namespace mirrormm {

namespace {
std::atomic<bool> default_checker{kDebugChecks};

bool read_u64(const char* path, uint64_t* out) {
  std::ifstream f(path);
  uint64_t v;
  if (!(f >> v)) return false;
  *out = v;
  return true;
}
}  // namespace

bool SystemConfig::default_mmu_checker() { return default_checker.load(std::memory_order_relaxed); }
void SystemConfig::set_default_mmu_checker(bool on) { default_checker.store(on, std::memory_order_relaxed); }

SystemConfig SystemConfig::from_host() {
  SystemConfig c;
  std::ifstream mi("/proc/meminfo");
  std::string key;
  uint64_t kb;
  std::string unit;
  while (mi >> key >> kb) {
    std::getline(mi, unit);
    if (key == "MemTotal:") c.totalram_pages = kb / 4;
    if (key == "SwapTotal:") c.total_swap_pages = kb / 4;
  }
  uint64_t v;
  if (read_u64("/proc/sys/vm/overcommit_memory", &v)) c.overcommit_memory = static_cast<int>(v);
  if (read_u64("/proc/sys/vm/overcommit_ratio", &v)) c.overcommit_ratio = static_cast<int>(v);
  if (read_u64("/proc/sys/vm/max_map_count", &v)) c.max_map_count = v;
  std::ifstream ci("/proc/cpuinfo");
  std::string line;
  while (std::getline(ci, line)) {
    if (line.rfind("flags", 0) == 0) {
      std::istringstream ss(line);
      std::string w;
      bool pku = false;
      while (ss >> w) pku |= w == "ospke";
      c.exec_only_pkey = pku;
      break;
    }
  }
  return c;
}

}  // namespace mirrormm
