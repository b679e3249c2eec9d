# Ports LTP testcases/kernel/syscalls/mprotect/mprotect03.c.
# Checks: a file holding 26 bytes is mapped MAP_SHARED with PROT_READ|PROT_WRITE;
# mprotect(PROT_READ) succeeds and a write from a forked child then gets SIGSEGV.
# Here the file is a 26-byte memfd whose contents are written through the mapping itself
# before the mprotect (upstream uses write(2)); beyond upstream the bytes past the end of
# the file in its last page stay readable (no SIGBUS inside the page) and the child's
# failed write changes nothing.
memfd f 26
mmap 0x200000000000 26 rw- shared+fixed f 0
write 0x200000000000 26 1
read 0x200000000000 4K
mprotect 0x200000000000 26 r--
maps
fork
@2 write 0x200000000000 26 2  # SIGSEGV
@2 read 0x200000000000 4K
@2 exit
read 0x200000000000 4K
