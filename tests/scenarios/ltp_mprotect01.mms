# Ports LTP testcases/kernel/syscalls/mprotect/mprotect01.c: the error cases of mprotect(2).
# Checks:
#  1. ENOMEM for a range that is not mapped. Upstream passes address 0 with length
#     pagesize+1; scripts stay in the window, so an unmapped window address is used.
#  2. EINVAL for a start address that is not page aligned (upstream: a malloc()ed
#     pointer + 1; here a mapped page + 1).
#  3. EACCES for PROT_WRITE on a MAP_SHARED PROT_READ mapping of a file opened O_RDONLY
#     (upstream: /dev/zero; here a memfd mapped through a read-only descriptor, `rofd`).
# Beyond upstream: the failed calls change nothing (maps before and after).
mprotect 0x200000000000 4097 r--  # 1: nothing mapped there
mmap 0x200000010000 4K rw- private+anon+fixed
mprotect 0x200000010001 1024 r--  # 2: unaligned start
memfd f 4K
mmap 0x200000020000 4K r-- shared+fixed+rofd f 0
maps
mprotect 0x200000020000 4K -w-    # 3: shared mapping of a read-only fd
maps
