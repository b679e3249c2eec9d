// The mmap_lock's out-of-line parts (mm/mmap_lock.c): what a failed lock assertion reports.
#include <cstdio>

#include "mm/mm_types.h"

namespace mirrormm {

void mmap_assert_failed(const Mm* mm, const char* what) {
  std::fprintf(stderr, "mirrormm BUG: mm %llu: mmap_lock not %s by this thread\n",
               static_cast<unsigned long long>(mm->id()), what);
  std::abort();
}

void mmap_read_lock(Mm* mm) { mm->mmap_lock_.down_read(); }
void mmap_read_unlock(Mm* mm) { mm->mmap_lock_.up_read(); }

}  // namespace mirrormm
