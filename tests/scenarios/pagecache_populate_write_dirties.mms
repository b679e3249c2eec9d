# MADV_POPULATE_WRITE through a PTE that already allows writing (Linux 6.18 follow_page_pte:
# with FOLL_TOUCH | FOLL_WRITE it marks a clean page dirty, as the caller is about to write it).
# Checks: a shared file mapping's read faults map its cached pages writable but clean; populating
# one of them for writing takes no fault, yet dirties that page, so `madvise pageout` keeps it
# and drops the clean ones. MADV_POPULATE_READ dirties nothing.

memfd f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0
read 0x200000000000 16K
madvise 0x200000002000 4K populate_write
madvise 0x200000000000 4K populate_read
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
read 0x200000000000 16K
madvise 0x200000000000 16K populate_write
madvise 0x200000000000 16K pageout
mincore 0x200000000000 16K
