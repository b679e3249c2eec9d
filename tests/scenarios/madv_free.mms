# MADV_FREE (Linux 6.18 mm/madvise.c, madvise_free_single_vma): lazily freed private
# anonymous pages keep their data and become clean until reclaim (here MADV_PAGEOUT, on a
# machine without swap) drops them; a write in between keeps a page. Probed on the host
# with smaps (Private_Clean after MADV_FREE) and reads after MADV_PAGEOUT.
mmap 0x200000000000 16K rw- private+anon+fixed
write 0x200000000000 16K 1
madvise 0x200000000000 8K free               # pages 0 and 1 lazily free
smaps                                        # 8K clean, 8K dirty, all still mapped
read 0x200000000000 16K                      # the data is still there
write 0x200000000000 1 2                     # page 0 written again: kept
madvise 0x200000000000 16K pageout           # page 1 (clean, lazy) is dropped
read 0x200000001000 4K                       # zeros
read 0x200000000000 1                        # page 0 kept what was written
read 0x200000002000 8K                       # pages 2 and 3 never freed: kept
smaps
mincore 0x200000000000 16K
# A read after MADV_FREE does not keep the page: only a write does.
mmap 0x200000010000 8K rw- private+anon+fixed
write 0x200000010000 8K 3
madvise 0x200000010000 8K free
read 0x200000010000 8K
madvise 0x200000010000 8K pageout
read 0x200000010000 8K
smaps
# Where MADV_FREE applies: private anonymous memory only, not locked; a hole is -ENOMEM
# after the mapped part was freed; the zero page and PROT_NONE memory are accepted.
mmap 0x200000020000 8K rw- shared+anon+fixed
madvise 0x200000020000 8K free               # -EINVAL (shared)
memfd f0 16K
mmap 0x200000030000 8K rw- private+fixed f0 0
madvise 0x200000030000 8K free               # -EINVAL (a file)
mmap 0x200000040000 8K --- private+anon+fixed
madvise 0x200000040000 8K free
mmap 0x200000050000 8K r-- private+anon+fixed
read 0x200000050000 8K
madvise 0x200000050000 8K free
madvise 0x200000050000 64K free              # -ENOMEM: a hole after the mapping
madvise 0x200000001000 0 free
madvise 0x200000001001 4K free               # -EINVAL
# After fork, a shared page is lazily freed in the parent too (only its own PTE is cleaned).
mmap 0x200000060000 8K rw- private+anon+fixed
write 0x200000060000 8K 4
fork
madvise 0x200000060000 8K free
smaps
@2 smaps
@2 write 0x200000060000 1 5
madvise 0x200000060000 8K pageout
read 0x200000060000 8K
@2 read 0x200000060000 8K
maps
