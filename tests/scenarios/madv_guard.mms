# MADV_GUARD_INSTALL / MADV_GUARD_REMOVE (Linux 6.13+, mm/madvise.c; the kernel's
# selftests/mm/guard-regions.c): guard markers fault with SEGV, do not split the VMA,
# survive MADV_DONTNEED/FREE/PAGEOUT and mprotect, stop population with -EFAULT, are copied
# by fork (not into a wipe-on-fork VMA) and moved by mremap. Measured on the 6.18 host.
mmap 0x200000000000 32K rw- private+anon+fixed
write 0x200000000000 32K 1
madvise 0x200000001000 8K guard_install
maps                                         # one VMA
read 0x200000001000 1                        # SEGV
write 0x200000002000 1 2                     # SEGV
read 0x200000003000 4K                       # the data after the guard stays
mincore 0x200000000000 32K                   # 1001 1111: guard pages are not resident
smaps
madvise 0x200000000000 32K dontneed
read 0x200000001000 1                        # still SEGV
madvise 0x200000000000 32K free
madvise 0x200000000000 32K pageout
madvise 0x200000000000 32K cold
mprotect 0x200000000000 32K r--
read 0x200000002000 1                        # SEGV
mprotect 0x200000000000 32K rw-
madvise 0x200000000000 32K populate_read     # -EFAULT at the guard
madvise 0x200000000000 32K populate_write    # -EFAULT
mincore 0x200000000000 32K                   # page 0 was populated, page 3 not
madvise 0x200000001000 4K guard_install      # again: fine
madvise 0x200000000000 4K guard_remove       # no guard there: fine
madvise 0x200000001000 4K guard_remove
read 0x200000001000 4K                       # zeros: the guard dropped the page
read 0x200000002000 1                        # SEGV
madvise 0x200000000000 64K guard_install     # -ENOMEM after guarding the mapped part
read 0x200000007000 1                        # SEGV
madvise 0x200000000000 64K guard_remove      # -ENOMEM after removing them
read 0x200000007000 1
madvise 0x200000000001 4K guard_install      # -EINVAL
madvise 0x200000000000 0 guard_install
# fork copies guards; a wipe-on-fork VMA's child sees none.
mmap 0x200000010000 16K rw- private+anon+fixed
madvise 0x200000010000 16K wipeonfork
madvise 0x200000011000 4K guard_install
madvise 0x200000003000 4K guard_install
fork
@2 read 0x200000003000 1                     # SEGV: copied
@2 read 0x200000011000 1                     # zeros: wiped
@2 write 0x200000003000 1 3                  # SEGV
# mremap moves markers (and munmap drops them).
mremap 0x200000000000 32K 32K maymove+fixed 0x200000040000
read 0x200000043000 1                        # SEGV
mmap 0x200000000000 32K rw- private+anon+fixed
read 0x200000003000 1                        # zeros
mremap 0x200000040000 32K 32K maymove+fixed+dontunmap 0x200000050000
read 0x200000043000 1                        # the source lost the marker
read 0x200000053000 1                        # SEGV
munmap 0x200000050000 32K
mmap 0x200000050000 32K rw- private+anon+fixed
read 0x200000053000 1
maps
@2 maps
