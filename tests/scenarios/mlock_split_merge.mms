# mlock, mlock2(MLOCK_ONFAULT) and munlock split and merge VMAs as mprotect does (the lock
# flags are merge-relevant VMA flags), round the range to pages, and stop at holes
# (selftests/mm/mlock2-tests.c: lo/lf in VmFlags, Locked: in smaps).
mmap 0x200000000000 32K rw- private+anon+fixed
mlock 0x200000002000 8K                  # split in three, the middle populated and locked
mlocked
mincore 0x200000000000 32K
mlock 0x200000004000 8K onfault          # VM_LOCKED|VM_LOCKONFAULT: nothing populated
mlocked
mincore 0x200000000000 32K
mlock 0x200000004000 8K                  # lf cleared: merges with the locked piece before
mlocked
munlock 0x200000000000 32K               # everything merges back
mlocked
maps
mlock 0x200000001005 10                  # an unaligned start rounds down: one page
mlocked
mlock 0x200000000000 0
mlock 0x200000000000 0xffffffffffffffff  # rounds up to a length of 0
mlock 0x200000000000 0xffffffffffffe000  # the end wraps
mlock 0x200000010000 4K                  # nothing mapped
munlock 0x200000000000 64K               # a hole after the mapping: applied, then -ENOMEM
mlocked
mlock 0x200000000000 64K
mlocked
mincore 0x200000000000 32K
madvise 0x200000000000 4K dontneed       # locked: -EINVAL
madvise 0x200000000000 4K cold
madvise 0x200000000000 4K pageout
madvise 0x200000000000 4K willneed
madvise 0x200000000000 4K dontfork
mlocked
munlock 0x200000000000 32K
madvise 0x200000000000 4K dofork
mlocked
munmap 0x200000000000 32K
