# setrlimit and the limits that mapping calls obey: RLIMIT_AS and RLIMIT_DATA relative to
# the process's sizes (mmap net of what it replaces, mremap growth, mprotect into data,
# ignore_rlimit_data's soft-limit-0 rule), RLIMIT_STACK for stack growth, RLIMIT_MEMLOCK
# (root locks regardless); soft above hard is -EINVAL, raising a hard limit -EPERM.
setrlimit as +16K inf
mmap 0x200000000000 16K rw- private+anon+fixed
mmap 0x200000008000 4K r-- private+anon+fixed
mmap 0x200000000000 16K r-- private+anon+fixed    # replaces as much as it maps
mremap 0x200000000000 16K 20K 0
mremap 0x200000000000 16K 8K 0
mmap 0x200000008000 8K r-- private+anon+fixed
setrlimit as inf inf
setrlimit data +8K inf
mmap 0x200000010000 12K rw- private+anon+fixed
mmap 0x200000010000 12K r-- private+anon+fixed
mprotect 0x200000010000 12K rw-
mprotect 0x200000010000 8K rw-
mmap 0x200000020000 12K rw- shared+anon+fixed     # shared: not data
fork
@2 mmap 0x200000030000 4K rw- private+anon+fixed  # the child has the parent's limits
@2 exit
setrlimit data 0 inf
mmap 0x200000040000 4K rw- private+anon+fixed     # soft 0: up to the hard limit
setrlimit data inf inf
setrlimit stack 2M inf
mmap 0x200010000000 4K rw- private+anon+fixed+growsdown
write 0x20000ff00000 1 1                          # grows to 1 MiB + 4K: under 2 MiB
write 0x20000fdff000 1 1                          # would make it 2 MiB + 8K: SEGV
setrlimit stack 4M 3M
setrlimit stack 4M inf
write 0x20000fdff000 1 1
setrlimit stack 8M 8M
setrlimit stack 8M inf
setrlimit memlock 0 0
mlock 0x200000040000 4K
mlocked
setrlimit memlock 4096 4096
setrlimit memlock 0 0
