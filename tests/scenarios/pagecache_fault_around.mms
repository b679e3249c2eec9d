# Read fault-around on shared-memory files (Linux 6.18 do_read_fault -> do_fault_around ->
# filemap_map_pages, shmem's vm_ops->map_pages; fault_around_bytes 64 KiB).
# Checks: a read fault maps, besides the faulting page, every page of its 16-page window that
# the page cache already holds, clipped to the VMA, to the PTE table (the 2 MiB PMD block) and
# to the file's size, and only into entries that are none. The mapped pages count as mapped
# by this VMA, so `madvise pageout` unmaps them and drops the clean ones from the cache, which
# `mincore` (page-cache residency for a file mapping) shows. Write faults map no neighbours.
# Setup pattern: a shared mapping reads the whole file (clean cached pages), then goes away.

# The window starts at the 16-page-aligned table index at or below the fault, or at the VMA's
# start if that is later, and spans 16 pages, clipped to the VMA's end. A 20-page mapping of
# file pages 5..24 starts at table index 4: a fault at its page 2 (index 6) maps indices 4..19
# (VMA pages 0..15); one at its page 14 (index 18) maps indices 16..23 (VMA pages 12..19).
memfd f 256K
mmap 0x200000000000 256K rw- shared+fixed f 0
read 0x200000000000 256K
munmap 0x200000000000 256K
mmap 0x200000204000 80K r-- shared+fixed f 20K
read 0x200000206000 1
madvise 0x200000204000 80K pageout
mincore 0x200000204000 80K
mmap 0x200000000000 256K rw- shared+fixed f 0
read 0x200000000000 256K
munmap 0x200000000000 256K
read 0x200000212000 1
madvise 0x200000204000 80K pageout
mincore 0x200000204000 80K
munmap 0x200000204000 80K

# Clipped to the PTE table: the VMA straddles a 2 MiB boundary; a fault just above it maps
# only the pages above it (index 0..7), and a fault just below maps only the ones below
# (indices 504..511: the window starts at the VMA's start).
mmap 0x200000000000 256K rw- shared+fixed f 0
read 0x200000000000 256K
munmap 0x200000000000 256K
mmap 0x2000003f8000 64K r-- private+fixed f 0
read 0x200000400000 1
madvise 0x2000003f8000 64K pageout
mincore 0x2000003f8000 64K
read 0x2000003ff000 1
madvise 0x2000003f8000 64K pageout
mincore 0x2000003f8000 64K
munmap 0x2000003f8000 64K

# Clipped to the file's size: a read fault beyond the end maps the cached pages below it
# (pageout then drops them) and still gets SIGBUS.
memfd g 10000
mmap 0x200000600000 64K rw- shared+fixed g 0
write 0x200000600000 10000 3
madvise 0x200000600000 64K pageout
munmap 0x200000600000 64K
truncate g 0
truncate g 10000
mmap 0x200000600000 64K rw- shared+fixed g 0
read 0x200000600000 10000
munmap 0x200000600000 64K
mmap 0x200000600000 64K r-- shared+fixed g 0
read 0x200000605000 1
madvise 0x200000600000 64K pageout
mincore 0x200000600000 64K
munmap 0x200000600000 64K

# A private mapping gets the neighbours read-only, as any read fault: a later write copies,
# and pageout drops the clean cached pages it mapped but not its private copy.
mmap 0x200000000000 64K rw- shared+fixed f 0
read 0x200000000000 64K
munmap 0x200000000000 64K
mmap 0x200000000000 64K rw- private+fixed f 0
read 0x200000002000 1
write 0x200000003000 10 5
madvise 0x200000000000 64K pageout
mincore 0x200000000000 64K
read 0x200000000000 64K
munmap 0x200000000000 64K

# Write faults do no fault-around: only the written page is mapped (and dirty), so pageout
# leaves the others cached.
memfd w 64K
mmap 0x200000000000 64K rw- shared+fixed w 0
read 0x200000000000 64K
munmap 0x200000000000 64K
mmap 0x200000000000 64K rw- shared+fixed w 0
write 0x200000005000 1 7
madvise 0x200000000000 64K pageout
mincore 0x200000000000 64K
munmap 0x200000000000 64K
mmap 0x200000000000 64K rw- private+fixed w 0
write 0x200000006000 1 7
madvise 0x200000000000 64K pageout
mincore 0x200000000000 64K
munmap 0x200000000000 64K

# GUP read faults (MADV_POPULATE_READ) fault around too; MADV_POPULATE_WRITE does not.
memfd p 64K
mmap 0x200000000000 64K rw- shared+fixed p 0
read 0x200000000000 64K
munmap 0x200000000000 64K
mmap 0x200000000000 64K rw- shared+fixed p 0
madvise 0x200000001000 4K populate_write
madvise 0x200000000000 64K pageout
mincore 0x200000000000 64K
madvise 0x200000003000 4K populate_read
madvise 0x200000000000 64K pageout
mincore 0x200000000000 64K
munmap 0x200000000000 64K
