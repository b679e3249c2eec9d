# Ports tools/testing/selftests/mm/merge.c TEST_F(merge, mremap_faulted_to_unfaulted_next).
# Checks: a faulted 3-page VMA A, moved with mremap(MAYMOVE|FIXED|DONTUNMAP) right before
# an unfaulted 3-page VMA B, merges with it: upstream asserts one 6-page VMA at A. (Upstream
# then relies on teardown unmapping A to trigger the old use-after-free; here A's pages are
# read back and the merged VMA is unmapped explicitly.)
#
# This is one of the four tests added with the fix "mm/vma: fix anon_vma UAF on mremap()
# faulted, unfaulted merge" (upstream 61f67c230a5e, Jan 2026, backported to 6.18.y).
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace             # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 12K rw- private+anon+fixed                  # A
write 0x200000001000 1 1                                        # A[0]: faulted
mremap 0x200000001000 12K 12K maymove+fixed 0x200000014000      # A out of the way
mmap 0x200000004000 12K rw- private+anon+fixed                  # B, unfaulted
maps
mremap 0x200000014000 12K 12K maymove+fixed+dontunmap 0x200000001000  # A right before B
maps                                                            # A and B merged: 6 pages at A
read 0x200000001000 24K
munmap 0x200000001000 24K
maps
