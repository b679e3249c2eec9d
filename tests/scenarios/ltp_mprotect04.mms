# Ports LTP testcases/kernel/syscalls/mprotect/mprotect04.c, first case (testfunc_protnone).
# Checks: mprotect(PROT_NONE) of a one-page private anonymous RW mapping succeeds and a
# write to it then gets SIGSEGV (a read too, beyond upstream).
# Not ported: the second case (testfunc_protexec) copies a function into the page,
# mprotects it PROT_EXEC and calls it; scripts cannot execute code. Only the mprotect to
# PROT_EXEC and the resulting maps line are kept; no access is made to the exec-only page
# (whether a read of it faults depends on the CPU's protection keys).
mmap 0x200000000000 4K rw- private+anon+fixed
mprotect 0x200000000000 4K ---
maps
write 0x200000000000 1 1                       # SIGSEGV
read 0x200000000000 1                          # SIGSEGV
munmap 0x200000000000 4K
mmap 0x200000000000 4K rw- private+anon+fixed  # testfunc_protexec's page
write 0x200000000000 4K 2                      # "memcpy" of the code
mprotect 0x200000000000 4K --x
maps
munmap 0x200000000000 4K
maps
