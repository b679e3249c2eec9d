# Ports LTP testcases/kernel/syscalls/munmap/munmap01.c, variant "unmapped region not
# accessible".
# Checks: a 3-page MAP_SHARED RW mapping of a file (3 pages and 1 byte long) is unmapped
# whole; munmap returns 0 and a write to its first byte from a forked child gets SIGSEGV.
memfd f 12289
mmap 0x200000000000 12K rw- shared+fixed f 0
write 0x200000000000 12K 1
maps
munmap 0x200000000000 12K
maps
fork
@2 write 0x200000000000 1 2                   # SIGSEGV
@2 exit
mmap 0x200000010000 12K r-- shared+fixed f 0  # beyond upstream: the data is in the file
read 0x200000010000 12K
