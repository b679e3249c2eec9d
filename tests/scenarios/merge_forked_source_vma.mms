# Ports tools/testing/selftests/mm/merge.c (Linux 6.18) TEST_F(merge, forked_source_vma).
# Checks: in a fork child, a faulted VMA inherited through fork cannot be the *source* of a
# merge into an unfaulted neighbour: after the child maps 5 RWX pages (unfaulted) right
# after the forked 5-page RW VMA and mprotects the forked one to RWX, the two stay separate.
# Upstream asserts the VMA at ptr2 spans exactly 5 pages after both steps.
#
# Layout: the fixture maps a 30-page PROT_NONE carveout and maps over it with MAP_FIXED;
# here the carveout sits at 0x200000000000, so carveout page n is 0x200000000000 + n*4K.
# A one-byte `write` is the test's `ptr[i] = 'x'` (it gives the VMA an anon_vma: "faulted").

mmap 0x200000000000 120K --- private+anon+noreplace          # the fixture's 30-page PROT_NONE carveout
mmap 0x200000001000 20K rw- private+anon+fixed+noreserve     # ptr
write 0x200000001000 1 1                                     # ptr[0]: faulted
fork
@2 write 0x200000001000 1 2                                  # the child un-COWs every page (one byte each)
@2 write 0x200000002000 1 2
@2 write 0x200000003000 1 2
@2 write 0x200000004000 1 2
@2 write 0x200000005000 1 2
@2 mmap 0x200000006000 20K rwx private+anon+fixed+noreserve  # ptr2, unfaulted, incompatible
@2 maps                                                      # not merged (different protection)
@2 mprotect 0x200000001000 20K rwx                           # ptr is now compatible but forked: still no merge
@2 maps
@2 exit
maps                                                         # the parent's layout is untouched
