# Swap in the model: pages that madvise(MADV_PAGEOUT) and reclaim take away go to a swap
# device and come back with their bytes; fork shares them through the swap cache.
mmap 0x200000000000 32K rw- private+anon+fixed
write 0x200000000000 32K 7
swapon 16M
madvise 0x200000000000 32K pageout
mincore 0x200000000000 32K
vmstat pswpout pswpin
pageinfo 0x200000000000
read 0x200000000000 32K
mincore 0x200000000000 32K
vmstat pswpout pswpin
fork
madvise 0x200000000000 16K pageout
mincore 0x200000000000 32K
reclaim 64
reclaim 64
mincore 0x200000000000 32K
@2 mincore 0x200000000000 32K
@2 read 0x200000000000 32K
pageinfo 0x200000000000
@2 pageinfo 0x200000000000
@2 write 0x200000000000 4K 9
@2 read 0x200000000000 32K
read 0x200000000000 32K
memfd f 16K
mmap 0x200000100000 16K rw- shared+fixed f 0
write 0x200000100000 16K 3
madvise 0x200000100000 16K pageout
mincore 0x200000100000 16K
read 0x200000100000 16K
vmstat pswpout pswpin
check
