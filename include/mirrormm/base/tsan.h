// ThreadSanitizer hooks for the modeled memory's contents.
//
// Frame data is the simulated machine's RAM: software CPUs of different threads may read and
// write the same shared page at the same time, and the kernel copies (COW) or zeroes (truncate)
// pages that other CPUs may be writing through another mapping, exactly as on real hardware.
// Those races belong to the simulated program, not to the model, so accesses to frame
// contents are hidden from TSan with these annotations. The model's own data structures
// (page tables, descriptors, VMAs, locks) stay fully checked; the stale-translation checker
// watches for accesses to frames that were freed.
#pragma once

#if defined(__SANITIZE_THREAD__)
#define MM_TSAN_BUILD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MM_TSAN_BUILD 1
#endif
#endif

#ifdef MM_TSAN_BUILD
extern "C" void AnnotateIgnoreReadsBegin(const char* file, int line);
extern "C" void AnnotateIgnoreReadsEnd(const char* file, int line);
extern "C" void AnnotateIgnoreWritesBegin(const char* file, int line);
extern "C" void AnnotateIgnoreWritesEnd(const char* file, int line);
#define MM_TSAN_IGNORE_BEGIN()                    \
  do {                                            \
    AnnotateIgnoreReadsBegin(__FILE__, __LINE__);  \
    AnnotateIgnoreWritesBegin(__FILE__, __LINE__); \
  } while (0)
#define MM_TSAN_IGNORE_END()                    \
  do {                                          \
    AnnotateIgnoreWritesEnd(__FILE__, __LINE__); \
    AnnotateIgnoreReadsEnd(__FILE__, __LINE__);  \
  } while (0)
#else
#define MM_TSAN_IGNORE_BEGIN() ((void)0)
#define MM_TSAN_IGNORE_END() ((void)0)
#endif

// Happens-before edges that TSan cannot see through liburcu's own atomics (the RCU glue in
// src/base/rcu.cc and src/base/srcu.cc): a release on an address here, an acquire on the same
// address there.
#ifdef MM_TSAN_BUILD
extern "C" void __tsan_acquire(void* addr);
extern "C" void __tsan_release(void* addr);
#define MM_TSAN_ACQUIRE(addr) __tsan_acquire(addr)
#define MM_TSAN_RELEASE(addr) __tsan_release(addr)
#else
#define MM_TSAN_ACQUIRE(addr) ((void)(addr))
#define MM_TSAN_RELEASE(addr) ((void)(addr))
#endif
