# mlockall and munlockall: flags checked first, MCL_FUTURE locks later mappings (and
# populates them unless MCL_ONFAULT, which even MAP_POPULATE then does not), MCL_CURRENT
# locks every mapping whole, munlockall undoes both, a fork child starts unlocked.
mmap 0x200000000000 16K rw- private+anon+fixed
mlockall 0
mlockall onfault
mlockall future
mlocked
mmap 0x200000008000 16K rw- private+anon+fixed
mincore 0x200000008000 16K
mlocked
mlockall future+onfault
mmap 0x200000010000 16K rw- private+anon+fixed+populate
mincore 0x200000010000 16K
mlocked
mlockall current+onfault
mlocked
mincore 0x200000000000 16K
mmap 0x200000018000 16K rw- private+anon+fixed
mlocked
mlockall current
mlocked
mincore 0x200000000000 16K
mincore 0x200000010000 16K
munlockall
mlocked
mlockall current+future
fork
@2 mmap 0x200000020000 16K rw- private+anon+fixed
@2 mlocked
@2 exit
munlockall
mmap 0x200000020000 16K rw- private+anon+fixed
mlocked
