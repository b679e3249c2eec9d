# Ports LTP testcases/kernel/syscalls/mremap/mremap03.c.
# Checks: mremap(2) fails with EFAULT when the old range is not mapped. Upstream's
# "bad address" (tst_get_bad_addr) is a one-page PROT_NONE mapping, and it asks to grow
# 1000 pages to 2000 with MREMAP_MAYMOVE, so the EFAULT comes from the old range running
# past the end of that one-page VMA.
# Differences: MREMAP_MAYMOVE alone is not used in scripts, so the call is tried without
# flags and with MAYMOVE|FIXED to a free target; beyond upstream an old address with no
# mapping at all is tried too, and nothing changes.
mmap 0x200000000000 1 --- private+anon+fixed  # tst_get_bad_addr()
mremap 0x200000000000 4000K 8000K 0
mremap 0x200000000000 4000K 8000K maymove+fixed 0x200001000000
mremap 0x200000800000 4000K 8000K 0           # nothing mapped at all
mremap 0x200000800000 4000K 8000K maymove+fixed 0x200001000000
maps
