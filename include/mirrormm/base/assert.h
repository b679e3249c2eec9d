// Tiered assertions. MM_BUG_ON is always checked (cheap preconditions whose violation means
// memory corruption); MM_DEBUG_ON runs only with MIRRORMM_DEBUG_CHECKS (whole-structure
// validators and other costly checks).
#pragma once

#include <cstdio>
#include <cstdlib>

namespace mirrormm {
[[noreturn]] inline void mm_bug(const char* expr, const char* file, int line) {
  std::fprintf(stderr, "mirrormm BUG: %s at %s:%d\n", expr, file, line);
  std::abort();
}
}  // namespace mirrormm

#define MM_BUG_ON(cond)                                          \
  do {                                                           \
    if (__builtin_expect(!!(cond), 0)) ::mirrormm::mm_bug(#cond, __FILE__, __LINE__); \
  } while (0)

#ifdef MIRRORMM_DEBUG_CHECKS
#define MM_DEBUG_ON(cond) MM_BUG_ON(cond)
inline constexpr bool kDebugChecks = true;
#else
#define MM_DEBUG_ON(cond) ((void)0)
inline constexpr bool kDebugChecks = false;
#endif
