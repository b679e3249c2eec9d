# /proc/PID/smaps of private mappings of a shmem file: read faults map the file's pages
# (fault-around maps the cached neighbours too), shared with every other mapping of them;
# a write copies the page into an anonymous page (Anonymous, Private_Dirty); the file's
# pages written through a shared mapping are dirty pages (PG_dirty) in the private mapping
# as well.
memfd f 64K
mmap 0x200000000000 64K rw- shared+fixed f 0
write 0x200000000000 16K 1
mmap 0x200000100000 64K rw- private+fixed f 0
read 0x200000100000 4K
smaps
read 0x200000108000 4K
smaps
write 0x200000101000 4K 2
smaps
madvise 0x200000000000 64K dontneed
smaps
fork
@2 write 0x200000102000 4K 3
smaps
@2 smaps
mmap 0x200000200000 16K r-- private+fixed+populate f 0
smaps
mmap 0x200000300000 16K rw- private+fixed+populate f 0
smaps
mmap 0x200000400000 16K rw- shared+fixed+populate f 16K
smaps
