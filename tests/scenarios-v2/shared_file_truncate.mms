# A device mirroring a shared memfd mapping: another process's writes are visible to the
# device, truncate and the other process's munmap invalidate only what they must.
memfd data 16K
mmap 0x200000000000 16K rw- shared data 0
fork
@2 mmap 0x200000100000 16K rw- shared data 0
dev attach nic interval 0x200000000000 16K
dev fault nic 0x200000000000 16K write
dev show nic 0x200000000000 16K
@2 write 0x200000100000 16K 11            # the same pages through process 2
dev read nic 0x200000000000 16K
read 0x200000000000 16K
dev log nic                               # nothing of process 1 changed
@2 munmap 0x200000100000 16K              # another address space: no notification here
dev log nic
truncate data 8K                          # the pages beyond 8K leave every mapping:
dev log nic                               # two zaps, before and after the page cache goes
dev show nic 0x200000000000 16K
read 0x200000000000 4K                    # within the file
read 0x200000002000 4K                    # beyond its end
read 0x200000003000 4K
dev fault nic 0x200000002000 8K read      # beyond the end of the file
dev show nic 0x200000000000 16K
dev write nic 0x200000000000 4K 12
read 0x200000000000 4K
dev read nic 0x200000000000 4K
stats
check
