# Ports LTP testcases/kernel/syscalls/mremap/mremap07.c, without its userfaultfd part.
# Checks: mremap(MREMAP_DONTUNMAP|MREMAP_MAYMOVE) of a one-page private anonymous mapping
# holding data ("ABCD") moves the data to the new address and leaves the old range mapped
# but empty; the new page can be written ("EFGH") independently of the old one.
# Differences: upstream registers the old range with userfaultfd (MISSING mode) and
# resolves the fault on it with UFFDIO_COPY from the new page; scripts have no
# userfaultfd, so the access to the old range is checked to see a fresh zero page instead.
# The kernel-chosen new address is replaced by MREMAP_FIXED to a window address. Upstream's
# setup probe (check_mremap_dontunmap) is kept as the first step.
mmap 0x200000000000 4K rw- private+anon+fixed  # check_mremap_dontunmap()
mremap 0x200000000000 4K 4K maymove+fixed+dontunmap 0x200000100000
munmap 0x200000100000 4K
munmap 0x200000000000 4K
mmap 0x200000000000 4K rw- private+anon+fixed  # old_addr
write 0x200000000000 5 1                       # "ABCD"
read 0x200000000000 4K
mremap 0x200000000000 4K 4K maymove+fixed+dontunmap 0x200000100000
maps
read 0x200000100000 4K                         # new_addr holds "ABCD"
write 0x200000100000 5 2                       # "EFGH"
mincore 0x200000000000 4K                      # old_addr has no page: uffd would see a fault
read 0x200000000000 4K                         # without uffd the fault maps the zero page
mincore 0x200000000000 4K
read 0x200000100000 4K
munmap 0x200000100000 4K
munmap 0x200000000000 4K
maps
