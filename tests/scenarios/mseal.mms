# mseal (Linux 6.10+, mm/mseal.c; selftests/mm/mseal_test.c), measured on the 6.18 host.
mmap 0x200000000000 32K rw- private+anon+fixed
mseal 0x200000000001 4K                      # -EINVAL
mseal 0x200000000000 0
mseal 0x200000000000 64K                     # -ENOMEM: a hole, nothing sealed
munmap 0x200000007000 4K
mseal 0x200000006000 1                       # one page, split off
maps
mseal 0x200000001000 8K
mseal 0x200000001000 4K                      # again: fine
maps
mprotect 0x200000000000 16K r--              # -EPERM after changing 0-1000
maps
munmap 0x200000000000 16K                    # -EPERM, nothing unmapped
mremap 0x200000001000 8K 8K 0                # -EPERM even as a no-op
mremap 0x200000001000 8K 4K 0                # -EPERM
mremap 0x200000001000 8K 8K maymove+fixed 0x200000040000
mmap 0x200000001000 4K rw- private+anon+fixed    # -EPERM
mmap 0x200000001000 4K rw- private+anon+noreplace  # -EEXIST first
mprotect 0x200000001000 8K rw-               # -EPERM even unchanged
madvise 0x200000001000 8K dontneed           # writable: allowed
madvise 0x200000001000 8K free
madvise 0x200000001000 8K hugepage           # flag advice: allowed
maps
# read-only sealed anonymous memory refuses the discarding advice
mmap 0x200000010000 16K r-- private+anon+fixed
mseal 0x200000010000 16K
madvise 0x200000010000 4K dontneed           # -EPERM
madvise 0x200000010000 4K free               # -EPERM
madvise 0x200000010000 4K dontneed_locked    # -EPERM
madvise 0x200000010000 4K remove             # -EPERM
madvise 0x200000010000 4K dontfork           # -EPERM
madvise 0x200000010000 4K wipeonfork         # -EPERM
madvise 0x200000010000 4K guard_install      # -EPERM
madvise 0x200000010000 4K guard_remove
madvise 0x200000010000 4K pageout
madvise 0x200000010000 4K cold
madvise 0x200000010000 4K dofork
mmap 0x200000020000 8K --- private+anon+fixed
mseal 0x200000020000 8K
madvise 0x200000020000 8K dontneed           # -EPERM (PROT_NONE)
memfd f0 16K
mmap 0x200000030000 8K r-- private+fixed f0 0
mseal 0x200000030000 8K
madvise 0x200000030000 8K dontneed           # a file: allowed
mmap 0x200000050000 8K rw- private+anon+fixed
write 0x200000050000 1 1
mmap 0x200000052000 8K r-- private+anon+fixed
mseal 0x200000052000 8K
madvise 0x200000050000 16K dontneed          # -EPERM after zapping the first VMA
read 0x200000050000 1
write 0x200000050000 1 2
madvise 0x200000050000 16K guard_install     # -EPERM after guarding the first VMA
read 0x200000050000 1                        # SEGV
madvise 0x200000050000 16K wipeonfork        # -EPERM after the first VMA
# merging and fork
mmap 0x200000060000 8K rw- private+anon+fixed
mseal 0x200000060000 8K
mmap 0x200000062000 8K rw- private+anon+fixed
mseal 0x200000062000 8K                      # merges with its sealed neighbour
mmap 0x200000064000 8K rw- private+anon+fixed   # not with an unsealed one
maps
fork
@2 munmap 0x200000060000 4K                  # -EPERM in the child too
@2 maps
