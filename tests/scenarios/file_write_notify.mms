# Shared writable mappings of a regular file are write-notify (Linux 6.18
# vma_wants_writenotify): clean pages are mapped read-only, the first write faults into
# page_mkwrite, which marks the page dirty. Reclaim (madvise pageout) drops clean file pages
# but keeps dirty ones (6.18's reclaim writes back no file page): a dirty page stays in the
# cache until msync or fsync writes it back; then pageout drops it and the data reads back.

file f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0
read 0x200000000000 16K
write 0x200000001000 1 1
write 0x200000003000 4K 2
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
msync 0x200000000000 8K sync
read 0x200000000000 16K
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
fsync f
read 0x200000000000 16K
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
read 0x200000000000 16K
mprotect 0x200000000000 16K r--
mprotect 0x200000000000 16K rw-
write 0x200000002000 1 7
read 0x200000000000 16K
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
munmap 0x200000000000 16K

# Shared memory is not write-notify and has no writeback: fsync and msync are no-ops, and a
# dirty memfd page stays without swap.
memfd m 8K
mmap 0x200000000000 8K rw- shared+fixed m 0
write 0x200000000000 8K 4
msync 0x200000000000 8K sync
fsync m
madvise 0x200000000000 8K pageout
mincore 0x200000000000 8K
read 0x200000000000 8K
munmap 0x200000000000 8K
