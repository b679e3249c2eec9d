# Ports tools/testing/selftests/mm/merge.c (Linux 6.18)
# TEST_F(merge, mprotect_unfaulted_left_faulted_right).
# Checks: 9 RW pages (MAP_NORESERVE); the first 3 are made read-only (unfaulted), the last
# 6 are faulted and their last 3 made read-only, giving RO unfaulted | RW faulted | RO
# faulted; mprotecting the middle read-only merges all three into one 9-page VMA, as
# upstream asserts.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace       # the fixture's 30-page PROT_NONE carveout
mmap 0x200000002000 36K rw- private+anon+fixed+noreserve  # ptr, unfaulted
mprotect 0x200000002000 12K r--                           # RO unfaulted | RW unfaulted (6 pages)
write 0x200000005000 1 1                                  # ptr[3]: the RW VMA becomes faulted
mprotect 0x200000008000 12K r--                           # RO unfaulted | RW faulted | RO faulted
maps
mprotect 0x200000005000 12K r--                           # should merge all three: one RO faulted VMA of 9 pages
maps
read 0x200000002000 36K
