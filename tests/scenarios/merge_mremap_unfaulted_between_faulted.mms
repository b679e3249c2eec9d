# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, mremap_unfaulted_between_faulted).
# Checks: an unfaulted 5-page VMA moved between two faulted 5-page VMAs whose anon_vmas
# differ (each was faulted on its own) merges with the left one only: upstream asserts a
# 10-page VMA at ptr and a separate 5-page VMA at ptr3.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace         # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 20K rw- private+anon+fixed              # ptr
mmap 0x200000007000 20K rw- private+anon+fixed              # ptr2
mmap 0x20000000e000 20K rw- private+anon+fixed              # ptr3
mremap 0x20000000e000 20K 20K maymove+fixed 0x2000007de000  # ptr3 2000 pages away
mremap 0x200000007000 20K 20K maymove+fixed 0x2000003ef000  # ptr2 1000 pages away
write 0x200000001000 1 1                                    # ptr[0]: faulted
write 0x2000007de000 1 3                                    # ptr3[0]: faulted, with its own anon_vma
mremap 0x2000007de000 20K 20K maymove+fixed 0x20000000b000  # ptr3 back to ptr+10 pages
maps
mremap 0x2000003ef000 20K 20K maymove+fixed 0x200000006000  # ptr2 between ptr and ptr3
maps                                                        # merges with ptr only: 10 pages + 5 pages
read 0x200000001000 60K
