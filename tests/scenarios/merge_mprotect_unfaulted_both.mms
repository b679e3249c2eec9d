# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, mprotect_unfaulted_both).
# Checks: 9 RW pages (MAP_NORESERVE) become RO | RW | RO (3 pages each, all unfaulted); the
# middle one is faulted by a write and made read-only: all three merge into one 9-page VMA
# (prev and next unfaulted, middle faulted), as upstream asserts.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace       # the fixture's 30-page PROT_NONE carveout
mmap 0x200000002000 36K rw- private+anon+fixed+noreserve  # ptr, unfaulted
mprotect 0x200000002000 12K r--
mprotect 0x200000008000 12K r--                           # RO unfaulted | RW unfaulted | RO unfaulted
maps
write 0x200000005000 1 1                                  # ptr[3]: the middle VMA becomes faulted
mprotect 0x200000005000 12K r--                           # should merge all three: one RO faulted VMA of 9 pages
maps
read 0x200000002000 36K
