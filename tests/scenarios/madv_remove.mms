# MADV_REMOVE (Linux 6.18 mm/madvise.c, madvise_remove): a hole punched into the file
# behind a shared mapping (fallocate PUNCH_HOLE|KEEP_SIZE); every shared mapping reads zeros
# there, private copies stay. Private mappings are -EACCES (file) or -EINVAL (anonymous),
# as measured on the 6.18 host.
mmap 0x200000000000 16K rw- shared+anon+fixed
write 0x200000000000 16K 1
madvise 0x200000004000 4K remove             # -ENOMEM: nothing mapped there
madvise 0x200000001000 8K remove
read 0x200000000000 4K
read 0x200000001000 8K                       # zeros
read 0x200000003000 4K
smaps
fork
@2 read 0x200000001000 4K
memfd f0 32K
mmap 0x200000010000 16K rw- shared+fixed f0 0
mmap 0x200000020000 16K rw- shared+fixed f0 0
mmap 0x200000030000 16K rw- private+fixed f0 0
write 0x200000010000 16K 2
write 0x200000030000 4K 3                    # a private copy of page 0
read 0x200000034000 1                        # beyond the private mapping: SEGV
madvise 0x200000010000 8K remove             # pages 0 and 1 of f0
read 0x200000020000 8K                       # zeros through the other shared mapping
read 0x200000030000 4K                       # the private copy stays
read 0x200000031000 4K                       # the private mapping now sees the hole
read 0x200000012000 8K
madvise 0x200000030000 4K remove             # -EACCES (private file mapping)
mmap 0x200000040000 8K rw- private+anon+fixed
madvise 0x200000040000 8K remove             # -EINVAL
mmap 0x200000050000 8K r-- shared+fixed+rofd f0 0
madvise 0x200000050000 8K remove             # -EACCES (read-only descriptor)
mmap 0x200000060000 8K r-- shared+fixed f0 0
madvise 0x200000060000 4K remove             # allowed: VM_MAYWRITE
read 0x200000010000 4K
pread f0 0 32K
file r0 32K
mmap 0x200000070000 16K rw- shared+fixed r0 0
write 0x200000070000 16K 4
fsync r0
madvise 0x200000071000 4K remove             # punches the disk file too
pread r0 0 16K
read 0x200000070000 16K
maps
