# Ports LTP testcases/kernel/syscalls/mremap/mremap04.c.
# Checks: growing the first page of a 2-page shared memory mapping to 2 pages without
# MREMAP_MAYMOVE fails with ENOMEM (the old range does not end at the end of its VMA,
# so it cannot grow in place).
# Differences: upstream attaches a 2-page SysV shared memory segment (shmat); here a
# shared anonymous mapping (shmem as well) and, beyond upstream, a memfd mapping are used.
mmap 0x200000000000 8K rw- shared+anon+fixed
mremap 0x200000000000 4K 8K 0
memfd f 8K
mmap 0x200000010000 8K rw- shared+fixed f 0
mremap 0x200000010000 4K 8K 0
maps
