# /proc/PID/smaps across fork advice, protection changes and populate: MADV_DONTFORK leaves
# the child without the mapping, MADV_WIPEONFORK gives it empty memory, mprotect keeps the
# pages and their dirty bits, MADV_POPULATE_WRITE on a private file mapping copies every
# page into a private dirty anonymous page, MADV_WILLNEED on a file maps nothing, and
# mremap with MREMAP_DONTUNMAP moves the pages and leaves the old range empty.
mmap 0x200000000000 16K rw- private+anon+fixed
mmap 0x200000010000 16K rw- private+anon+fixed
mmap 0x200000020000 16K rw- private+anon+fixed
write 0x200000000000 16K 1
write 0x200000010000 16K 1
write 0x200000020000 16K 1
madvise 0x200000010000 16K dontfork
madvise 0x200000020000 8K wipeonfork
fork
smaps
@2 smaps
mprotect 0x200000000000 8K r--
smaps
mprotect 0x200000000000 16K rw-
@2 read 0x200000020000 16K
@2 smaps
memfd f 32K
mmap 0x200000100000 32K rw- shared+fixed f 0
write 0x200000100000 8K 2
mmap 0x200000200000 32K rw- private+fixed f 0
madvise 0x200000200000 16K willneed
smaps
madvise 0x200000200000 16K populate_write
madvise 0x200000204000 16K populate_read
smaps
@2 smaps
mremap 0x200000000000 16K 16K maymove+fixed+dontunmap 0x200000300000
smaps
write 0x200000000000 4K 3
smaps
mmap 0x200000400000 16K r-- private+fixed f 0
read 0x200000400000 16K
write 0x200000400000 1 4
smaps
