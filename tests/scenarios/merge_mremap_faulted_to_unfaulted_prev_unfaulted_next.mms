# Ports tools/testing/selftests/mm/merge.c
# TEST_F(merge, mremap_faulted_to_unfaulted_prev_unfaulted_next).
# Checks: a faulted 3-page VMA B, moved with mremap(MAYMOVE|FIXED|DONTUNMAP) into the gap
# between two unfaulted 3-page VMAs A and C, merges with both: upstream asserts one 9-page
# VMA at A.
#
# This is one of the four tests added with the fix "mm/vma: fix anon_vma UAF on mremap()
# faulted, unfaulted merge" (upstream 61f67c230a5e, Jan 2026, backported to 6.18.y).
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace             # the fixture's 30-page PROT_NONE carveout
mmap 0x200000004000 12K rw- private+anon+fixed                  # B
write 0x200000004000 1 1                                        # B[0]: faulted
mremap 0x200000004000 12K 12K maymove+fixed 0x200000014000      # B out of the way
mmap 0x200000001000 12K rw- private+anon+fixed                  # A, unfaulted
mmap 0x200000007000 12K rw- private+anon+fixed                  # C, unfaulted
maps
mremap 0x200000014000 12K 12K maymove+fixed+dontunmap 0x200000004000  # B between A and C
maps                                                            # A, B and C merged: 9 pages at A
read 0x200000001000 36K
