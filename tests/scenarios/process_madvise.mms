# process_madvise (Linux 6.18 mm/madvise.c, measured on the host): another process takes
# only MADV_COLD, MADV_PAGEOUT and MADV_WILLNEED; a process may give itself any advice.
mmap 0x200000000000 16K rw- private+anon+fixed
write 0x200000000000 16K 1
madvise 0x200000000000 16K free
fork
@2 pmadvise 1 0x200000000000 16K pageout     # the lazily free pages are shared with the child: kept
read 0x200000000000 4K
@2 read 0x200000000000 4K
@2 pmadvise 1 0x200000000000 16K cold
@2 pmadvise 1 0x200000000000 16K willneed
@2 pmadvise 1 0x200000000000 16K dontneed    # -EINVAL
@2 pmadvise 1 0x200000000000 16K free        # -EINVAL
@2 pmadvise 1 0x200000000000 16K guard_install   # -EINVAL
@2 pmadvise 1 0x200000000000 16K hugepage    # -EINVAL
@2 pmadvise 1 0x200000040000 16K cold        # -ENOMEM
@2 pmadvise 1 0x200000000001 16K cold        # -EINVAL
@2 pmadvise 1 0x200000000001 0 cold          # nothing to advise
@2 pmadvise 1 0x200000000000 5K cold         # LEN rounds up
@2 pmadvise 9 0x200000000000 16K cold        # -ESRCH
@2 pmadvise 9 0x200000000000 16K dontneed    # -ESRCH first
pmadvise 1 0x200000000000 8K dontneed        # its own: anything
pmadvise 1 0x200000000000 4K guard_install
read 0x200000000000 1                        # SEGV
pmadvise 2 0x200000000000 4K guard_install   # -EINVAL
@2 madvise 0x200000000000 16K free
pmadvise 2 0x200000000000 16K pageout        # the child's own lazily free pages go now
@2 read 0x200000000000 4K                    # zeros
@2 exit
pmadvise 2 0x200000000000 4K cold            # -ESRCH
maps
