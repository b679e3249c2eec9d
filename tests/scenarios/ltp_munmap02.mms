# Ports LTP munmap02.c, which is now munmap01.c's variant "partially unmapped region not
# accessible".
# Checks: of a 3-page MAP_SHARED RW mapping of a file (3 pages and 1 byte long), the last
# 2 pages are unmapped; munmap returns 0, a write to the first unmapped byte from a forked
# child gets SIGSEGV, and (beyond upstream) the remaining first page is still accessible.
memfd f 12289
mmap 0x200000000000 12K rw- shared+fixed f 0
munmap 0x200000001000 8K
maps
fork
@2 write 0x200000001000 1 2  # SIGSEGV
@2 write 0x200000000000 1 2  # the first page is still mapped
@2 exit
read 0x200000000000 4K
munmap 0x200000000000 4K     # upstream's cleanup of the first page
maps
