# Regular files on a disk file system (ext4 in Linux 6.18, mapped with MADV_RANDOM and read
# with POSIX_FADV_RANDOM by the host runner, docs/mms-format.md).
# Checks: a read fault reads exactly its page into the page cache (no readahead); fault-around
# maps cached neighbours only; a write through a shared mapping is seen by pread and by a
# private mapping until that one makes its copy; pread brings exactly the pages it reads into
# the cache and returns fewer bytes at the end of the file; holes read as zeros.

file f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0
mincore 0x200000000000 16K
read 0x200000001000 1
mincore 0x200000000000 16K
write 0x200000001000 100 5
read 0x200000001000 200
pread f 0x1000 200
pread f 0x0 16K
mincore 0x200000000000 16K
mmap 0x200000010000 16K rw- private+fixed f 0
read 0x200000010000 16K
write 0x200000011000 10 9
read 0x200000011000 200
read 0x200000001000 200
pread f 0x3ff0 0x100
pread f 0x4000 1
pread f 0x5000 1
munmap 0x200000000000 0x20000

# A file written, synced, and dropped from the cache (its mapping gone, then pageout of a
# fresh mapping's clean pages) reads back from the disk.
file g 8K
mmap 0x200000000000 8K rw- shared+fixed g 0
write 0x200000000000 8K 3
fsync g
madvise 0x200000000000 8K pageout
mincore 0x200000000000 8K
read 0x200000000000 8K
mincore 0x200000000000 8K
pread g 0 8K
munmap 0x200000000000 8K
maps
