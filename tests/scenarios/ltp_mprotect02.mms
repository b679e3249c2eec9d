# Ports LTP testcases/kernel/syscalls/mprotect/mprotect02.c.
# Checks: a file (one page of data) is mapped MAP_SHARED with PROT_READ; a write from a
# forked child gets SIGSEGV; after mprotect(PROT_WRITE) a write from a new child succeeds.
# Here the file is a memfd whose page is filled through a separate mapping first (upstream
# fills it with write(2)); beyond upstream the parent reads the page back through its
# write-only mapping (x86 cannot make a page writable but not readable) and sees the second
# child's data, because the mapping is shared.
memfd f 4K
mmap 0x200000010000 4K rw- shared+fixed f 0  # fill the file, like upstream's write(2)
write 0x200000010000 4K 1
munmap 0x200000010000 4K
mmap 0x200000000000 27 r-- shared+fixed f 0  # sizeof(buf) bytes: one page
read 0x200000000000 4K
fork
@2 write 0x200000000000 26 2                 # child #1: SIGSEGV
@2 exit
mprotect 0x200000000000 27 -w-
maps
fork
@3 write 0x200000000000 26 3                 # child #2: no SIGSEGV
@3 exit
read 0x200000000000 4K                       # the parent sees child #2's bytes
