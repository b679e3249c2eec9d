# /proc/PID/smaps across madvise and mremap: MADV_COLD and MADV_PAGEOUT (without swap they
# keep dirty anonymous and shmem pages, and MADV_PAGEOUT drops clean unmapped shmem pages
# only), MADV_DONTNEED, MADV_POPULATE_READ (the zero page) and MADV_POPULATE_WRITE, and
# mremap moving written, shared and zero-page PTEs.
mmap 0x200000000000 32K rw- private+anon+fixed
write 0x200000000000 8K 1
read 0x200000002000 4K
madvise 0x200000000000 32K cold
smaps
madvise 0x200000000000 32K pageout
smaps
madvise 0x200000000000 4K dontneed
smaps
madvise 0x200000004000 8K populate_read
madvise 0x200000006000 8K populate_write
smaps
fork
mremap 0x200000000000 32K 32K maymove+fixed 0x200000100000
smaps
@2 smaps
mremap 0x200000100000 32K 64K maymove+fixed 0x200000200000
smaps
memfd f 16K
mmap 0x200000300000 16K rw- shared+fixed f 0
write 0x200000300000 4K 2
read 0x200000301000 4K
madvise 0x200000300000 16K cold
smaps
madvise 0x200000300000 16K pageout
smaps
mremap 0x200000300000 16K 8K 0
smaps
mremap 0x200000300000 8K 8K maymove+fixed+dontunmap 0x200000400000
smaps
