# Ports LTP testcases/kernel/syscalls/mremap/mremap06.c, reproducer for 7e7757876f25
# ("mm/mremap: fix vm_pgoff in vma_merge() case 3").
# Checks: pages of a 4-page MAP_SHARED file mapping hold distinct data; page 1 is moved by
# mremap(MAYMOVE|FIXED) onto page 3 and then moved back. When it merges back into its
# neighbours, the merged VMA's file offset must stay right, so each page still shows its
# own data. Three cases as upstream: all pages compatible (merges with both neighbours),
# page 2 made read-only while page 1 is away (merges with the previous VMA only), page 0
# made read-only while page 1 is away (merges with the next VMA only: the case-3 pgoff bug).
# Here the file is a memfd, pages hold `write` patterns (upstream: one byte 0x30+i) and
# each page is checked by its hash (the same lines as after setup); maps shows the offsets.
memfd f 16K
mmap 0x200000000000 16K rw- shared+fixed f 0  # setup: distinct data in each page
write 0x200000000000 4K 10
write 0x200000001000 4K 11
write 0x200000002000 4K 12
write 0x200000003000 4K 13
read 0x200000000000 4K
read 0x200000001000 4K
read 0x200000002000 4K
munmap 0x200000000000 16K                     # clear the page tables
# case 1: all pages with compatible mapping
mmap 0x200000000000 16K rw- shared+fixed f 0
mremap 0x200000001000 4K 4K maymove+fixed 0x200000003000
maps
mremap 0x200000003000 4K 4K maymove+fixed 0x200000001000
maps
read 0x200000000000 4K
read 0x200000001000 4K
read 0x200000002000 4K
munmap 0x200000000000 12K
# case 2: third page's mapping incompatible
mmap 0x200000000000 16K rw- shared+fixed f 0
mremap 0x200000001000 4K 4K maymove+fixed 0x200000003000
mprotect 0x200000002000 4K r--
maps
mremap 0x200000003000 4K 4K maymove+fixed 0x200000001000
maps
read 0x200000000000 4K
read 0x200000001000 4K
read 0x200000002000 4K
munmap 0x200000000000 12K
# case 3: first page's mapping incompatible
mmap 0x200000000000 16K rw- shared+fixed f 0
mremap 0x200000001000 4K 4K maymove+fixed 0x200000003000
mprotect 0x200000000000 4K r--
maps
mremap 0x200000003000 4K 4K maymove+fixed 0x200000001000
maps
read 0x200000000000 4K
read 0x200000001000 4K
read 0x200000002000 4K
munmap 0x200000000000 12K
maps
