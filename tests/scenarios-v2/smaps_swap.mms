# /proc/PID/smaps with swap (model only: the host runner has no swap device to use). Pages
# that MADV_PAGEOUT or reclaim wrote out count in Swap: through the swap entries in the PTEs
# for anonymous memory (a page shared after fork is skipped by MADV_PAGEOUT, which takes only
# pages mapped once, but not by reclaim), through the file for shmem (shmem_swap_usage), and
# in a private writable mapping of a file only where the walk finds no PTE, so that a
# private copy hides the file's page in swap behind it.
swapon 16M
mmap 0x200000000000 16K rw- private+anon+fixed
write 0x200000000000 16K 1
fork
madvise 0x200000000000 8K pageout
smaps
@2 smaps
memfd f 16K
mmap 0x200000100000 16K rw- shared+fixed f 0
write 0x200000100000 16K 3
mmap 0x200000200000 16K rw- private+fixed f 0
write 0x200000200000 4K 3
read 0x200000201000 4K
madvise 0x200000100000 16K pageout
smaps
madvise 0x200000200000 16K pageout
smaps
reclaim 100
smaps
@2 smaps
@2 read 0x200000000000 4K
@2 smaps
