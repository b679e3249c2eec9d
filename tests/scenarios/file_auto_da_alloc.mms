# ext4's auto_da_alloc (Linux 6.18): a truncate that leaves a regular file empty marks it, and
# the next release of one of its open file descriptions (here the munmap that drops the last
# reference of the second mmap's description) starts writeback of its dirty pages when some
# of them have no disk block yet, so the first mapping's pages read as clean afterwards. A
# file that was never emptied keeps its dirty pages through the same munmap.

file r 32K
truncate r 0
truncate r 32K
mmap 0x200000000000 32K rw- shared+fixed r 0
mmap 0x200000010000 8K r-- shared+fixed r 0
write 0x200000000000 16K 1
smaps
munmap 0x200000010000 8K
smaps
file s 32K
mmap 0x200000020000 32K rw- shared+fixed s 0
mmap 0x200000030000 8K r-- shared+fixed s 0
write 0x200000020000 16K 2
munmap 0x200000030000 8K
smaps
