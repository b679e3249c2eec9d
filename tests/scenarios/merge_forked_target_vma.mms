# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, forked_target_vma).
# Checks: a faulted 5-page RW VMA inherited through fork is a "fork child" in the child
# (its anon_vma chain is not singular), so a new unfaulted RW VMA mapped right after it in
# the child must NOT merge with it, even after the child has un-COWed every page. Upstream
# asserts the child's VMA at ptr still spans exactly 5 pages.
# Beyond upstream: the parent (whose chain stays singular) then does the same mmap and
# does merge, to show the rule is about the fork child only.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace  # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 20K rw- private+anon+fixed       # ptr
write 0x200000001000 1 1                             # ptr[0]: faulted
fork
@2 write 0x200000001000 1 2                          # the child un-COWs every page (one byte each)
@2 write 0x200000002000 1 2
@2 write 0x200000003000 1 2
@2 write 0x200000004000 1 2
@2 write 0x200000005000 1 2
@2 mmap 0x200000006000 20K rw- private+anon+fixed    # ptr2, unfaulted, adjacent
@2 maps                                              # must not merge: 5-page VMA at ptr, 5-page VMA at ptr2
@2 read 0x200000001000 20K
read 0x200000001000 20K                              # the parent still sees its own data
@2 exit
mmap 0x200000006000 20K rw- private+anon+fixed       # same mmap in the parent
maps                                                 # merges: one 10-page VMA
