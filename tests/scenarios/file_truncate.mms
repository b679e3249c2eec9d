# Truncation of a mapped regular file (ext4 in Linux 6.18): access beyond the new end gives
# SIGBUS; the rest of the new last page reads as zeros; a write a shared mapping makes
# beyond the end of file in the last page is zeroed when the file grows again (and by a
# resize to the same size); truncating to a size inside a page does not bring that page into
# the cache; private copies beyond the end go too.

file f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0
mmap 0x200000010000 16K rw- private+fixed f 0
write 0x200000000000 16K 1
write 0x200000012000 4K 2
truncate f 6000
read 0x200000000000 6000
read 0x200000001770 100
read 0x200000002000 1
read 0x200000012000 1
mincore 0x200000000000 16K
pread f 0 16K
write 0x200000001800 10 3
truncate f 7000
read 0x200000001800 10
write 0x200000001c00 10 3
truncate f 7000
read 0x200000001c00 10
truncate f 16K
read 0x200000000000 16K
pread f 0 16K
munmap 0x200000000000 0x20000

# A truncate to a size inside a page that is not cached leaves it uncached; its tail still
# reads as zeros from the disk.
file g 16K
mmap 0x200000000000 16K rw- shared+fixed g 0
write 0x200000000000 16K 4
fsync g
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
truncate g 9000
mincore 0x200000000000 16K
truncate g 16K
read 0x200000002000 8K
mincore 0x200000000000 16K
