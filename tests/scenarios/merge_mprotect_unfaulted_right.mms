# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, mprotect_unfaulted_right).
# Checks: 10 RW pages (MAP_NORESERVE); the right half is made read-only (unfaulted), the
# left half is faulted by a write and then made read-only: the faulted left VMA merges with
# the unfaulted right one into one 10-page VMA, as upstream asserts.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace       # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 40K rw- private+anon+fixed+noreserve  # ptr, unfaulted
mprotect 0x200000006000 20K r--                           # RW unfaulted | RO unfaulted
maps
write 0x200000001000 1 1                                  # ptr[0]: the RW VMA becomes faulted
mprotect 0x200000001000 20K r--                           # should merge: one RO faulted VMA of 10 pages
maps
read 0x200000001000 40K
