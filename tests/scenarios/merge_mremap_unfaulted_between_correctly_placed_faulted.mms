# Ports tools/testing/selftests/mm/merge.c (Linux 6.18)
# TEST_F(merge, mremap_unfaulted_between_correctly_placed_faulted).
# Checks: a faulted 15-page VMA has its middle 5 pages unmapped, leaving two faulted VMAs
# that share an anon_vma and have pgoffs matching their addresses; an unfaulted 5-page VMA
# moved into the hole merges with both: upstream asserts one 15-page VMA at ptr.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace         # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 60K rw- private+anon+fixed              # ptr
write 0x200000001000 1 1                                    # ptr[0]: faulted
munmap 0x200000006000 20K                                   # unmap the middle
maps
mmap 0x200000014000 20K rw- private+anon+fixed              # ptr2, unfaulted
maps
mremap 0x200000014000 20K 20K maymove+fixed 0x200000006000  # ptr2 into the hole
maps                                                        # should merge all three: one 15-page VMA
read 0x200000001000 60K
