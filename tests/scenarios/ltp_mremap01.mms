# Ports LTP testcases/kernel/syscalls/mremap/mremap01.c.
# Checks: a 1000-page MAP_SHARED PROT_WRITE mapping of a file is expanded by mremap to
# 2000 pages after the file was extended to 2000 pages (+1 byte); every byte of the
# expanded mapping can then be written.
# Differences: upstream passes MREMAP_MAYMOVE and lets the kernel choose; scripts may not
# (a moved mapping would leave the window), so the space after the mapping is left free
# and the mapping grows in place (flags 0). msync(2) cannot be scripted; instead the data
# is read back through the write-only mapping (x86 pages cannot be write-only) and through
# a second, read-only mapping of the file.
memfd f 4096001
mmap 0x200000000000 4000K -w- shared+fixed f 0
truncate f 8192001
mremap 0x200000000000 4000K 8000K 0
maps
write 0x200000000000 8000K 1
read 0x200000000000 8000K
mmap 0x200001000000 8000K r-- shared+fixed f 0
read 0x200001000000 8000K
