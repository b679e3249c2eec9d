# fsync(2) and pread(2) of regular and shared-memory files (Linux 6.18): fsync of either
# kind is 0 (shmem's is a no-op); an unknown name has no descriptor (EBADF). pread returns
# the bytes up to the end of the file, none beyond it, EINVAL for a negative offset or one
# whose end overflows; on a memfd it reads holes as zeros without allocating pages (mincore
# stays 0), on a regular file it brings exactly the pages read into the cache. memfd and
# file share one namespace (EEXIST across kinds).

file f 10000
memfd m 10000
fsync f
fsync m
fsync nosuch
pread nosuch 0 1
mmap 0x200000000000 12K r-- shared+fixed m 0
mmap 0x200000010000 12K r-- shared+fixed f 0
pread m 0 12K
pread f 0 12K
mincore 0x200000000000 12K
mincore 0x200000010000 12K
pread f 9999 2
pread f 10000 2
pread f 20000 2
pread f 0 0
pread f 0x8000000000000000 1
pread f 0x7fffffffffffffff 1
pread m 0x7ffffffffffffff0 0x20
memfd f 4K
file m 4K
file f 8K
memfd m 8K
pread f 4096 8K
pread m 4096 8K
file big 0xffffffff000
file big 0x100000000000
file huge 0x8000000000000000
pread huge 0 1
maps
