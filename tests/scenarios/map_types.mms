# Map types and flags (Linux 6.18 do_mmap, measured on the host): MAP_SHARED_VALIDATE,
# MAP_DROPPABLE, MAP_STACK (VM_NOHUGEPAGE), and the huge-page advice as VMA flags.
mmap 0x200000000000 8K rw- shared_validate+anon+fixed      # -EINVAL
memfd f0 16K
mmap 0x200000000000 8K rw- shared_validate+fixed f0 0
mmap 0x200000002000 8K rw- shared_validate+noreplace f0 0  # -EOPNOTSUPP
mmap 0x200000004000 8K rw- shared_validate+fixed+growsdown f0 0  # -EINVAL
mmap 0x200000004000 8K rw- shared_validate+fixed+noreserve+stack+populate f0 0
write 0x200000000000 4K 1
read 0x200000004000 4K                       # the same file page
mmap 0x200000010000 8K rw- droppable+anon+fixed
mmap 0x200000012000 8K rw- droppable+anon+fixed   # merges with the first
mmap 0x200000014000 8K rw- private+anon+fixed+noreserve
mmap 0x200000020000 8K rw- droppable+fixed f0 0   # -EINVAL
mmap 0x200000020000 8K rw- droppable+anon+fixed+growsdown   # -EINVAL
mmap 0x200000020000 8K r-- droppable+anon+fixed+populate
maps
write 0x200000010000 16K 2
madvise 0x200000010000 4K keeponfork         # -EINVAL
madvise 0x200000010000 4K wipeonfork
madvise 0x200000010000 4K free
fork
@2 read 0x200000010000 8K                    # wiped
@2 exit
madvise 0x200000010000 16K pageout           # droppable pages go, written or not
read 0x200000010000 16K
smaps
mmap 0x200000030000 8K rw- private+anon+fixed+stack
mmap 0x200000032000 8K rw- private+anon+fixed     # nh vs none: no merge
mmap 0x200000034000 8K rw- private+anon+fixed+stack
mmap 0x200000040000 16K rw- private+anon+fixed
madvise 0x200000041000 4K hugepage
madvise 0x200000042000 4K nohugepage
maps
madvise 0x200000041000 4K nohugepage         # merges with its nh neighbour
maps
madvise 0x200000040000 16K hugepage
maps                                         # one VMA again
madvise 0x200000030000 8K nohugepage         # already: nothing changes
madvise 0x200000032000 8K nohugepage         # merges all three
maps
mmap 0x200000050000 8K rw- shared+anon+fixed
madvise 0x200000050000 4K hugepage
madvise 0x200000050000 8K dontneed_locked
maps
