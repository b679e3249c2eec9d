# Droppable mappings never take the lock flags, not even from mlockall(MCL_FUTURE), which
# still populates them (with MCL_ONFAULT too). Guard markers flag a VMA without keeping it
# from sharing a neighbour's anon_vma (anon_vma_compatible ignores VM_MAYBE_GUARD as merging
# does), which decides what a later mprotect merges.

mlockall future+onfault
mmap 0x200000000000 32K rw- droppable+fixed+anon
mlocked
smaps
munlockall
mmap 0x200000010000 0x38000 rw- droppable+fixed+anon
mprotect 0x200000043000 8K --x
mlockall current
madvise 0x20000001d000 0x31000 guard_install
mprotect 0x20000003b000 0xf000 rw-
maps
munlockall
mmap 0x200000100000 0x28000 rwx private+fixed+anon
mmap 0x200000110000 16K -wx private+fixed+anon
madvise 0x20000010f000 16K guard_install
mprotect 0x20000010e000 32K r-x
maps
