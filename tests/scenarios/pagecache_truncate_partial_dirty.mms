# Truncating a shared-memory file to a size inside a page (Linux 6.18 shmem_setattr ->
# shmem_truncate_range -> shmem_undo_range, which marks the partial folio dirty before
# truncate_inode_partial_folio zeroes its tail).
# Checks: the page that holds the new end of the file is dirty afterwards, so `madvise
# pageout` keeps it in the page cache while it drops the clean page before it; this holds
# for a shrink and for a "resize" to the current size (shmem truncates whenever the size
# does not grow), but not for a size on a page boundary or for growth.
# Setup pattern: a shared mapping reads the file (clean cached pages), then goes away; the
# re-mapping reads one page (fault-around maps the other), and pageout reports what stays.

memfd f 8K
mmap 0x200000000000 8K rw- shared+fixed f 0
read 0x200000000000 8K
munmap 0x200000000000 8K
truncate f 6000
mmap 0x200000000000 8K rw- shared+fixed f 0
read 0x200000001000 1
madvise 0x200000000000 8K pageout
mincore 0x200000000000 8K
read 0x200000000000 6000
munmap 0x200000000000 8K

# The same size again: still truncated, the partial page dirtied.
memfd g 6000
mmap 0x200000000000 8K rw- shared+fixed g 0
read 0x200000000000 6000
munmap 0x200000000000 8K
memfd g 6000
mmap 0x200000000000 8K rw- shared+fixed g 0
read 0x200000001000 1
madvise 0x200000000000 8K pageout
mincore 0x200000000000 8K
munmap 0x200000000000 8K

# On a page boundary there is no partial page: both clean pages go.
memfd h 12K
mmap 0x200000000000 12K rw- shared+fixed h 0
read 0x200000000000 12K
munmap 0x200000000000 12K
truncate h 8K
mmap 0x200000000000 12K rw- shared+fixed h 0
read 0x200000000000 1
madvise 0x200000000000 12K pageout
mincore 0x200000000000 12K
munmap 0x200000000000 12K

# Growing dirties nothing.
memfd i 6000
mmap 0x200000000000 8K rw- shared+fixed i 0
read 0x200000000000 6000
munmap 0x200000000000 8K
truncate i 8K
mmap 0x200000000000 8K rw- shared+fixed i 0
read 0x200000000000 1
madvise 0x200000000000 8K pageout
mincore 0x200000000000 8K
munmap 0x200000000000 8K
