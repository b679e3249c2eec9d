# Guard regions in file, shared and PROT_NONE mappings, their refusal on locked-free
# paths, and the anon_vma that installing gives an anonymous VMA (Linux 6.18 host):
# a guarded VMA moved next to a neighbour keeps its offset and does not merge, and a fork
# child does not merge it with a new neighbour.
mmap 0x200000000000 8K rw- shared+anon+fixed
write 0x200000000000 8K 1
madvise 0x200000000000 4K guard_install
read 0x200000000000 1                        # SEGV
read 0x200000001000 4K
madvise 0x200000000000 4K guard_remove
read 0x200000000000 4K                       # the shared page is still there
memfd f0 16K
mmap 0x200000010000 8K rw- private+fixed f0 0
madvise 0x200000010000 4K guard_install
read 0x200000010000 1                        # SEGV
mmap 0x200000020000 8K rw- shared+fixed f0 0
madvise 0x200000021000 4K guard_install
write 0x200000021000 1 2                     # SEGV
fork
@2 read 0x200000021000 1                     # SEGV: a file VMA with guards is copied too
@2 read 0x200000010000 1                     # SEGV
@2 exit
mmap 0x200000030000 8K --- private+anon+fixed
madvise 0x200000030000 4K guard_install
mprotect 0x200000030000 8K rw-
read 0x200000030000 1                        # SEGV
read 0x200000031000 1
# merge consequences of the anon_vma
mmap 0x200000040000 8K rw- private+anon+fixed
madvise 0x200000040000 4K guard_install
mmap 0x200000050000 8K rw- private+anon+fixed
mremap 0x200000040000 8K 8K maymove+fixed 0x200000052000
maps                                         # 50000-52000 and 52000-54000 stay apart
mmap 0x200000060000 8K rw- private+anon+fixed
mmap 0x200000070000 8K rw- private+anon+fixed
mremap 0x200000060000 8K 8K maymove+fixed 0x200000072000
maps                                         # unfaulted: merged
mmap 0x200000080000 8K rw- private+anon+fixed
madvise 0x200000080000 4K guard_install
fork
@3 mmap 0x200000082000 8K rw- private+anon+fixed
@3 maps                                      # the forked guarded VMA does not merge
