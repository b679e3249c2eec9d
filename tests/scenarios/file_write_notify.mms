# Shared writable mappings of a regular file are write-notify (Linux 6.18
# vma_wants_writenotify): clean pages are mapped read-only, the first write faults into
# page_mkwrite, which marks the page dirty. Reclaim (madvise pageout) drops clean file pages
# but keeps dirty ones (6.18's reclaim writes back no file page): msync writes back only its
# range, so the page it cleaned goes and the other dirty page stays; the data written reads
# back from the disk. mprotect keeps the rule (the dirty page stays writable, the clean ones
# read-only), and a write after writeback dirties the page again.
# (A dirty page that pageout met is not paged out again right after its writeback: the host
# rotates it through a per-CPU batch that another CPU may hold, so its state there depends on
# scheduling; the script does not do that.)

file f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0
read 0x200000000000 16K
write 0x200000001000 1 1
write 0x200000003000 4K 2
msync 0x200000000000 8K sync
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
read 0x200000000000 16K
mincore 0x200000000000 16K
fsync f
mprotect 0x200000000000 16K r--
mprotect 0x200000000000 16K rw-
write 0x200000002000 1 7
read 0x200000000000 16K
pread f 0 16K
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
