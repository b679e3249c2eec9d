# An HMM-style device mirror (interval notifier) over private anonymous memory: faults,
# device DMA, and the invalidations of CPU faults, mprotect, madvise and munmap.
mmap 0x200000000000 32K rw- private+anon+fixed
dev attach gpu interval 0x200000000000 32K
dev fault gpu 0x200000000000 16K read     # untouched: the shared zero page, read-only
dev show gpu 0x200000000000 32K
dev read gpu 0x200000000000 16K
write 0x200000000000 8K 1                 # CPU faults replace the zero page: one clear per page
dev log gpu
dev show gpu 0x200000000000 32K
dev fault gpu 0x200000000000 32K write
dev show gpu 0x200000000000 32K
dev log gpu                               # the device's own write faults on zero-page PTEs
dev write gpu 0x200000004000 8K 7         # device DMA ...
read 0x200000004000 8K                    # ... seen by the CPU
dev read gpu 0x200000004000 8K
mprotect 0x200000000000 8K r--
dev log gpu
dev show gpu 0x200000000000 32K
dev fault gpu 0x200000000000 8K write     # no VM_WRITE any more
dev fault gpu 0x200000000000 8K read
dev show gpu 0x200000000000 32K
madvise 0x200000006000 8K dontneed
dev log gpu
dev show gpu 0x200000000000 32K
munmap 0x200000002000 4K
dev log gpu
dev show gpu 0x200000000000 32K
dev read gpu 0x200000000000 8K            # a page not mirrored
dev fault gpu 0x200000000000 16K read     # no VMA at 0x200000002000
maps
stats
check
dev detach gpu
stats
