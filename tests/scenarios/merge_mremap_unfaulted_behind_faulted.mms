# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, mremap_unfaulted_behind_faulted).
# Checks: an unfaulted 5-page VMA moved by mremap(MAYMOVE|FIXED) right *before* a faulted
# 5-page VMA merges with it: upstream asserts one 10-page VMA at ptr2.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace         # the fixture's 30-page PROT_NONE carveout
mmap 0x200000006000 20K rw- private+anon+fixed              # ptr
mmap 0x20000000e000 20K rw- private+anon+fixed              # ptr2
mremap 0x20000000e000 20K 20K maymove+fixed 0x2000003f6000  # move ptr2 1000 pages away
maps
write 0x200000006000 1 1                                    # ptr[0]: faulted
mremap 0x2000003f6000 20K 20K maymove+fixed 0x200000001000  # ptr2 right before ptr
maps                                                        # should merge: one faulted VMA of 10 pages
read 0x200000001000 40K
