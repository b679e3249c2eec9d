# Exclusive access through the dmirror driver (make_device_exclusive): the device takes pages
# from the CPU, and the CPU's next access, mprotect and fork take them back.
mmap 0x200000000000 16K rw- private+anon+fixed
write 0x200000000000 16K 1
hmm open 0
hmm exclusive 0 0x200000000000 4            # the data, read back from the device
hmm check_exclusive 0 0x200000000000 4      # the device's
pageinfo 0x200000000000                     # a device-exclusive entry
read 0x200000000000 4K                      # the CPU takes page 0 back
pageinfo 0x200000000000
hmm check_exclusive 0 0x200000000000 2      # the device dropped pages 0 and 1 (one page more)
hmm check_exclusive 0 0x200000000000 4      # pages 2-3 are still the device's
read 0x200000000000 16K                     # the same data as before
mprotect 0x200000000000 16K r--             # every page back to the CPU
hmm check_exclusive 0 0x200000000000 4
hmm exclusive 0 0x200000000000 1            # no write access
mprotect 0x200000000000 16K rw-
hmm exclusive 0 0x200000000000 2
fork
hmm check_exclusive 0 0x200000000000 4      # fork took them back
@2 write 0x200000000000 4K 2                # the child's copy
read 0x200000000000 16K
mmap 0x200000010000 4K rw- shared+anon+fixed
hmm exclusive 0 0x200000010000 1            # not anonymous memory
check
