# Ports tools/testing/selftests/mm/merge.c TEST_F(merge, mremap_faulted_to_unfaulted_prev).
# Checks: a faulted 3-page VMA A, moved with mremap(MAYMOVE|FIXED|DONTUNMAP) right after an
# unfaulted 3-page VMA B, merges with it: upstream asserts one 6-page VMA at B. DONTUNMAP
# leaves A's old range mapped (empty, and unfaulted since the whole VMA moved).
#
# This is one of the four tests added with the fix "mm/vma: fix anon_vma UAF on mremap()
# faulted, unfaulted merge" (upstream 61f67c230a5e, Jan 2026, backported to 6.18.y).
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace             # the fixture's 30-page PROT_NONE carveout
mmap 0x200000004000 12K rw- private+anon+fixed                  # A
write 0x200000004000 1 1                                        # A[0]: faulted
mremap 0x200000004000 12K 12K maymove+fixed 0x200000014000      # A out of the way
mmap 0x200000001000 12K rw- private+anon+fixed                  # B, unfaulted
maps
mremap 0x200000014000 12K 12K maymove+fixed+dontunmap 0x200000004000  # A right after B
maps                                                            # B and A merged: 6 pages at B
read 0x200000001000 24K
read 0x200000014000 12K                                         # A's old range is still mapped, and empty
