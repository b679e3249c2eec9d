# The dmirror test driver (Linux's test_hmm) from a script: a device-private mirror (device 0)
# and a coherent one (device 2) over private anonymous memory: device reads and writes that
# fault, migration to device memory and back, snapshots, and the ioctls' errors.
mmap 0x200000000000 32K rw- private+anon+fixed
write 0x200000002000 24K 1
hmm open 0                                  # mirror 0 on a device-private device
hmm open 2                                  # mirror 1 on a coherent device
hmm open 4                                  # no such device
hmm read 0 0x200000000000 8                 # one fault round for the whole range
hmm read 0 0x200000000000 8                 # everything mirrored: no fault
read 0x200000000000 32K
hmm snapshot 0 0x200000000000 8             # zero pages read-only, data writable
hmm write 1 0x200000000000 2 7              # the device writes the two zero pages
read 0x200000000000 8K
hmm migrate 0 0x200000000000 4              # to device-private memory: same data
hmm snapshot 0 0x200000000000 8
hmm snapshot 1 0x200000000000 8             # another device's private pages are not reported
pageinfo 0x200000000000
read 0x200000000000 4K                      # a CPU access brings the page back
hmm snapshot 0 0x200000000000 8
hmm migrate_sys 0 0x200000000000 8          # the other three come back
hmm migrate 1 0x200000004000 4              # to coherent memory: still mapped by the CPU
hmm snapshot 1 0x200000000000 8
hmm snapshot 0 0x200000000000 8
hmm migrate 0 0x200000004000 1              # already on a device
hmm migrate_sys 1 0x200000004000 4
hmm fail_alloc 0
hmm migrate 0 0x200000000000 2              # the first allocation fails
hmm release 0                               # every page of device 0 back to system memory
hmm snapshot 0 0x200000000000 8
read 0x200000000000 32K
mprotect 0x200000000000 8K r--
hmm write 0 0x200000000000 2 3              # no VM_WRITE
mprotect 0x200000000000 8K ---
hmm read 0 0x200000000000 1                 # PROT_NONE
hmm migrate 0 0x200000000000 1
hmm read 0 0x200000000001 1                 # not page aligned
hmm read 0 0x200000000000 0
hmm check_exclusive 0 0x200000000000 8
hmm close 1
hmm read 1 0x200000002000 1                 # closed
hmm read 7 0x200000002000 1                 # never opened
fork
@2 hmm open 0                               # the child's own mirror
@2 hmm write 2 0x200000002000 1 9           # copy-on-write in the child
@2 read 0x200000002000 4K
read 0x200000002000 4K
check
