# Where mlock's population stops: a PROT_NONE mapping refuses the fault (-ENOMEM, the
# range stays locked, nothing after it is populated), a shared file mapping ends at the
# end of the file; write-only and exec-only mappings are populated; a private locked
# mapping that becomes writable is populated by mprotect; MAP_LOCKED populates and ignores
# the errors.
mmap 0x200000000000 16K --- private+anon+fixed
mmap 0x200000004000 16K r-- private+anon+fixed
mlock 0x200000000000 16K
mlocked
mlock 0x200000000000 32K
mlocked
mincore 0x200000000000 32K
mprotect 0x200000000000 16K rw-
mincore 0x200000000000 32K
mlocked
mmap 0x200000010000 16K -w- private+anon+fixed
mlock 0x200000010000 16K
mincore 0x200000010000 16K
mmap 0x200000020000 16K --x private+anon+fixed
mlock 0x200000020000 16K
mincore 0x200000020000 16K
memfd f 8K
mmap 0x200000100000 24K r-- shared+fixed f 0
mlock 0x200000100000 24K
mlocked
mincore 0x200000100000 24K
mmap 0x200000110000 24K rw- private+fixed f 0
mmap 0x200000116000 8K rw- private+anon+fixed
mlock 0x200000110000 32K
mlocked
mincore 0x200000110000 32K
mmap 0x200000120000 16K r-- shared+fixed+locked f 0
mincore 0x200000120000 16K
mlocked
mmap 0x200000130000 16K rw- private+anon+fixed+locked
mincore 0x200000130000 16K
mlocked
