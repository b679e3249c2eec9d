# Ports LTP testcases/kernel/syscalls/mprotect/mprotect05.c (bugzilla 217061, the maple
# tree split/merge regression of 6.2/6.3; kernel fix 2fcd07b7ccd5).
# Checks: a 5-page MAP_SHARED PROT_READ mapping of a read-write file; mprotect page 1 to
# PROT_EXEC, page 3 to PROT_WRITE, then pages 1-4 to PROT_READ: every call succeeds, and
# (beyond upstream, which only checks the return values) maps shows the splits and that
# the last call merges everything back into one VMA; munmap of the whole range succeeds.
memfd f 20K
mmap 0x200000000000 20K r-- shared+fixed f 0
maps
mprotect 0x200000001000 4K --x
maps
mprotect 0x200000003000 4K -w-
maps
mprotect 0x200000001000 16K r--
maps
munmap 0x200000000000 20K
maps
