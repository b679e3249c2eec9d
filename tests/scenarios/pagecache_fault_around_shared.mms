# Read fault-around and other mappings of the same pages (Linux 6.18 filemap_map_pages;
# madvise_cold_or_pageout_pte_range skips a page another mapping also maps).
# Checks: the pages a read fault maps around raise their mapcount, so `madvise pageout`
# through another mapping no longer drops them; pageout through the mapping that faulted
# them in does. Both for a memfd and for shared anonymous memory across fork.

memfd f 64K
mmap 0x200000000000 64K rw- shared+fixed f 0
read 0x200000000000 4K
read 0x200000002000 4K
mmap 0x200000100000 64K r-- shared+fixed f 0
read 0x200000101000 1
madvise 0x200000000000 64K pageout
mincore 0x200000000000 64K
madvise 0x200000100000 64K pageout
mincore 0x200000000000 64K

mmap 0x200000200000 64K rw- shared+anon+fixed
read 0x200000200000 64K
fork
@2 read 0x200000203000 1
madvise 0x200000200000 64K pageout
mincore 0x200000200000 64K
@2 madvise 0x200000200000 64K pageout
mincore 0x200000200000 64K
@2 exit
