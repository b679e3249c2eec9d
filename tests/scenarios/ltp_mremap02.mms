# Ports LTP testcases/kernel/syscalls/mremap/mremap02.c.
# Checks: mremap(2) fails with EINVAL when the old address is not page aligned (upstream:
# NULL + pagesize - 1, growing 1 page to 2 with MREMAP_MAYMOVE).
# Differences: the address is a window address + pagesize - 1; MREMAP_MAYMOVE alone is not
# used in scripts, so the call is tried without flags (in-place growth) and with
# MAYMOVE|FIXED; beyond upstream it is also tried on an unaligned address inside a
# mapping, and the mapping is unchanged afterwards.
mremap 0x200000000fff 4K 8K 0
mremap 0x200000000fff 4K 8K maymove+fixed 0x200000100000
mmap 0x200000010000 4K rw- private+anon+fixed
mremap 0x200000010fff 4K 8K 0
mremap 0x200000010fff 4K 8K maymove+fixed 0x200000100000
maps
