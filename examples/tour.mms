# A tour of mirrormm's primary MMU. Every command prints one line; run it with
#   mirrormm replay examples/tour.mms
# and against the host kernel with
#   mirrormm host examples/tour.mms
# The two outputs are identical.

# Two adjacent private anonymous mappings merge into one VMA.
mmap 0x200000000000 16K rw- private+anon+fixed
mmap 0x200000004000 16K rw- private+anon+fixed
maps

# A read of untouched private memory maps the shared zero page; mincore sees it resident.
read 0x200000000000 4K
mincore 0x200000000000 32K

# mprotect of the middle splits the VMA; restoring the protection merges it back.
mprotect 0x200000002000 8K r--
maps
write 0x200000002000 1 1          # SEGV: the page is read-only now
mprotect 0x200000002000 8K rw-
maps

# Write a pattern, fork, and let the child break copy-on-write.
write 0x200000000000 32K 42
fork
@2 read 0x200000000000 32K        # the child sees the parent's data
@2 write 0x200000000000 4K 7      # a private copy for the child
@2 read 0x200000000000 32K
read 0x200000000000 32K           # the parent's data is unchanged

# Shared anonymous memory is shared across fork; two such mappings never merge.
mmap 0x200000100000 8K rw- shared+anon+fixed
mmap 0x200000102000 8K rw- shared+anon+fixed
fork
@3 write 0x200000100000 8K 9
read 0x200000100000 8K             # the parent sees the child's write
maps

# Errors come with Linux's errno, in Linux's order.
mprotect 0x200000000001 4K r--     # unaligned start
mprotect 0x200000000000 0 r--      # len 0 succeeds
munmap 0x200000000000 0            # len 0 fails
mmap 0x200000000000 4K rw- private+anon+noreplace
mprotect 0x200000200000 4K r--     # nothing mapped there

# A stack grows down on a fault below it.
mmap 0x200000400000 16K rw- private+anon+fixed+growsdown
write 0x2000003fe000 1 5
maps

# Processes exit; later commands for them fail with ESRCH.
@3 exit
@3 maps
munmap 0x200000000000 1M
maps
