# An mmap of the dmirror device file itself (Linux's dmirror_fops_mmap): the driver fills the
# VMA with zeroed pages by vm_insert_page, which makes it VM_MIXEDMAP. A private mapping maps
# them read-only (hmm-tests' mixedmap: the snapshot says READ) and copies on a CPU write; a
# shared one maps them writable, and fork shares them. An address whose page is gone has
# nothing to fault in (SIGBUS); reclaim never takes the pages.
hmm open 0
hmm mmap 0 0x200000000000 8K rw- private+fixed
maps
hmm snapshot 0 0x200000000000 2            # read-only driver pages
pageinfo 0x200000000000
read 0x200000000000 8K                      # zeroed
write 0x200000000000 4K 3                   # a private copy (anonymous)
hmm snapshot 0 0x200000000000 2
pageinfo 0x200000000000
madvise 0x200000001000 4K dontneed
read 0x200000001000 4K                      # no fault handler: SIGBUS
hmm read 0 0x200000001000 1                 # nor for the device
hmm migrate 0 0x200000000000 1              # VM_SPECIAL: migration refuses the VMA
munmap 0x200000000000 8K
hmm mmap 0 0x200000000000 16K rw- shared+fixed
hmm snapshot 0 0x200000000000 4             # writable in a shared mapping
hmm write 0 0x200000000000 4 9              # the device writes the driver pages
fork
@2 read 0x200000000000 16K                  # the child shares them
@2 write 0x200000000000 4K 5
read 0x200000000000 4K
swapon 1M
reclaim 64
smaps
hmm close 0
hmm mmap 0 0 4K r-- shared                  # a closed mirror
