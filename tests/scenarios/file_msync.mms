# msync(2) in Linux 6.18 (mm/msync.c): EINVAL for unknown flags, an unaligned address and
# MS_SYNC with MS_ASYNC, before anything else; ENOMEM for a range that wraps; 0 for a zero
# length (even where nothing is mapped); then ENOMEM when any part of the range is unmapped
# (after the mapped parts were done), also for anonymous or PROT_NONE neighbours' gaps.

file f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0
mmap 0x200000008000 8K rw- shared+fixed f 0
mmap 0x200000004000 4K rw- private+anon+fixed
write 0x200000000000 16K 1
msync 0x200000000000 16K sync
msync 0x200000000000 16K async
msync 0x200000000000 16K invalidate
msync 0x200000000000 16K sync+invalidate
msync 0x200000000000 16K async+invalidate
msync 0x200000000000 16K 0
msync 0x200000000000 16K sync+async
msync 0x200000000001 16K sync
msync 0x200000000000 0 sync
msync 0x200000100000 0 async
msync 0x200000000000 1 sync
msync 0x200000000000 0xfffffffffffff000 sync
msync 0x200000000000 40K sync
msync 0x200000000000 40K async
msync 0x200000000000 40K invalidate
msync 0x200000100000 4K sync
msync 0x200000100000 4K async
mprotect 0x200000008000 8K ---
msync 0x200000008000 8K sync
msync 0x200000000000 0x10000 sync
mmap 0x200000010000 8K rw- private+fixed f 0
write 0x200000010000 1 3
msync 0x200000010000 8K sync
read 0x200000000000 4K
read 0x200000010000 4K
