# /proc/PID/smaps of shared memory (shmem files and shared anonymous memory): a read fault
# maps the page clean, a write fault dirty; a page is dirty while its PTE or the page itself
# is (smaps_page_accumulate: pte_dirty || PG_dirty), so a page whose dirty PTE was zapped
# stays dirty when mapped again by a read fault; a page mapped by two processes is shared;
# truncation removes pages from the mappings and a partial last page stays dirty.
memfd f 32K
mmap 0x200000000000 32K rw- shared+fixed f 0
read 0x200000000000 4K
smaps
write 0x200000001000 4K 1
smaps
madvise 0x200000000000 32K dontneed
smaps
read 0x200000001000 1
smaps
fork
@2 write 0x200000002000 4K 2
smaps
@2 smaps
@2 exit
truncate f 6000
smaps
truncate f 32K
read 0x200000000000 32K
smaps
mmap 0x200000100000 16K rw- shared+anon+fixed
read 0x200000100000 4K
write 0x200000102000 4K 3
fork
smaps
@3 madvise 0x200000100000 16K dontneed
@3 read 0x200000102000 4K
@3 smaps
smaps
