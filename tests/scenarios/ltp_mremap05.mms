# Ports LTP testcases/kernel/syscalls/mremap/mremap05.c, all five cases.
# Checks:
#  1. MREMAP_FIXED without MREMAP_MAYMOVE fails with EINVAL.
#  2. MREMAP_FIXED|MREMAP_MAYMOVE with a new address that is not page aligned: EINVAL.
#  3. MREMAP_FIXED|MREMAP_MAYMOVE with old (2 pages) and new (1 page) ranges overlapping:
#     EINVAL.
#  4. MREMAP_FIXED|MREMAP_MAYMOVE moves a page (holding data) to a free address and returns
#     that address; the data moved with it.
#  5. MREMAP_FIXED|MREMAP_MAYMOVE onto an existing mapping replaces it: the moved data is
#     seen at the new address, not what was mapped there.
# Upstream gets free target areas by mmap+munmap; here fixed addresses are used.
mmap 0x200000000000 4K rw- private+anon+fixed  # case 1
mremap 0x200000000000 4K 4K fixed 0x200000100000
munmap 0x200000000000 4K
mmap 0x200000000000 4K rw- private+anon+fixed  # case 2
mremap 0x200000000000 4K 4K maymove+fixed 0x200000100001
munmap 0x200000000000 4K
mmap 0x200000000000 8K rw- private+anon+fixed  # case 3
mremap 0x200000000000 8K 4K maymove+fixed 0x200000000000
munmap 0x200000000000 8K
mmap 0x200000000000 4K rw- private+anon+fixed  # case 4
write 0x200000000000 1 1
read 0x200000000000 4K
mremap 0x200000000000 4K 4K maymove+fixed 0x200000100000
maps
read 0x200000100000 4K                         # the same bytes
munmap 0x200000100000 4K
mmap 0x200000000000 4K rw- private+anon+fixed  # case 5
mmap 0x200000100000 4K rw- private+anon+fixed
write 0x200000000000 1 1
write 0x200000100000 1 2
read 0x200000000000 4K
mremap 0x200000000000 4K 4K maymove+fixed 0x200000100000
maps
read 0x200000100000 4K                         # the bytes of the moved page
munmap 0x200000100000 4K
maps
