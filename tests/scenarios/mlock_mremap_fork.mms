# A locked mapping through mremap and fork: growing it populates what it gains, moving it
# moves the lock, MREMAP_DONTUNMAP clears the lock of the whole source mapping, and a fork
# child inherits no lock.
mmap 0x200000000000 16K rw- private+anon+fixed+locked
mmap 0x200000004000 16K rw- private+anon+fixed
mlocked
mlock 0x200000004000 16K                 # merges with the MAP_LOCKED mapping
mlocked
fork
@2 mlocked
@2 maps
@2 exit
mremap 0x200000000000 32K 48K 0
mincore 0x200000000000 48K
mlocked
mremap 0x200000000000 48K 48K maymove+fixed 0x200000020000
mlocked
mremap 0x200000020000 16K 16K maymove+fixed+dontunmap 0x200000040000
mlocked
mincore 0x200000020000 48K
munmap 0x200000028000 4K
mlocked
mremap 0x200000040000 16K 8K 0           # shrinking keeps the lock
mlocked
