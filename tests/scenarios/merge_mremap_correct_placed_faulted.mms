# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, mremap_correct_placed_faulted).
# Checks: pieces of one faulted 15-page VMA (one anon_vma, pgoff == address of the original
# mapping) that are moved away by mremap keep their pgoff, so moving them back to exactly
# their original place merges them again, in every order the upstream test tries: after
# each move back upstream asserts the merged extent (10 pages at ptr, 10 at ptr2, then 15
# at ptr three times), which the `maps` lines show.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace         # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 60K rw- private+anon+fixed              # ptr
write 0x200000001000 1 1                                    # ptr[0]: faulted
write 0x200000007000 1 2                                    # extra data in the ptr2 and ptr3 parts, to follow the moves
write 0x20000000c000 1 3
mremap 0x20000000b000 20K 20K maymove+fixed 0x2000007db000  # ptr3 = ptr+10 pages, 2000 pages away
mremap 0x200000006000 20K 20K maymove+fixed 0x2000003ee000  # ptr2 = ptr+5 pages, 1000 pages away
maps
mremap 0x2000003ee000 20K 20K maymove+fixed 0x200000006000  # ptr2 back into place
maps                                                        # merged: 10 pages at ptr
mremap 0x200000001000 20K 20K maymove+fixed 0x2000003e9000  # ptr out of place
maps
mremap 0x2000003e9000 20K 20K maymove+fixed 0x200000001000  # ptr back into place
maps                                                        # merged: 10 pages at ptr
mremap 0x200000001000 20K 20K maymove+fixed 0x2000003e9000  # ptr out of place again
mremap 0x2000007db000 20K 20K maymove+fixed 0x20000000b000  # ptr3 back into place
maps                                                        # merged: 10 pages at ptr2
mremap 0x2000003e9000 20K 20K maymove+fixed 0x200000001000  # ptr back into place
maps                                                        # merged: 15 pages at ptr
mremap 0x200000006000 20K 20K maymove+fixed 0x2000003ee000  # ptr2 out of the way
maps
mremap 0x2000003ee000 20K 20K maymove+fixed 0x200000006000  # ptr2 back
maps                                                        # merged: 15 pages at ptr
mremap 0x20000000b000 20K 20K maymove+fixed 0x2000003f3000  # ptr3 out of place
maps
mremap 0x2000003f3000 20K 20K maymove+fixed 0x20000000b000  # ptr3 back
maps                                                        # merged: 15 pages at ptr
read 0x200000001000 60K
