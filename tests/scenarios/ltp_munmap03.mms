# Ports LTP testcases/kernel/syscalls/munmap/munmap03.c: the EINVAL cases of munmap(2).
# Checks:
#  1. EINVAL when [addr, addr+len) lies outside the valid address space. Upstream passes
#     RLIMIT_DATA's rlim_max (usually RLIM_INFINITY) as the address; to keep the start in
#     the window this starts at a window address and is long enough to end past
#     TASK_SIZE, which the kernel rejects before looking at any mapping.
#  2. EINVAL for len 0.
#  3. EINVAL for an address that is not page aligned.
# Beyond upstream: the 2-page mapping is untouched by the three failures.
mmap 0x200000000000 8K rw- private+anon+fixed
munmap 0x200000000000 0x600000000000  # 1: ends beyond TASK_SIZE
munmap 0x200000000000 0               # 2: len 0
munmap 0x200000000001 8K              # 3: unaligned
maps
munmap 0x200000000000 8K
maps
