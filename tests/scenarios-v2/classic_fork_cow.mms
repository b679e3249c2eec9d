# A KVM-style shadow MMU (classic notifier, start/end) across fork and copy-on-write.
mmap 0x200000000000 16K rw- private+anon+fixed
mmap 0x200000010000 8K rw- shared+anon+fixed
write 0x200000000000 16K 3
write 0x200000010000 8K 4
dev attach kvm classic
dev fault kvm 0x200000000000 16K write
dev fault kvm 0x200000010000 8K write
dev show kvm 0x200000000000 16K
dev show kvm 0x200000010000 8K
fork                                      # write-protects the private pages only
dev log kvm
dev show kvm 0x200000000000 16K
dev show kvm 0x200000010000 8K
dev fault kvm 0x200000000000 16K read     # read-only until a write breaks COW
dev show kvm 0x200000000000 16K
@2 write 0x200000000000 4K 5              # the child's COW: the parent's PTEs do not change
dev log kvm
@2 write 0x200000010000 4K 6              # shared memory: the device sees the child's write
dev read kvm 0x200000010000 4K
@2 read 0x200000010000 4K
write 0x200000004000 1 9                  # outside the private mapping: SEGV, nothing changes
write 0x200000001000 4K 8                 # the parent's COW break replaces a page
dev log kvm
dev show kvm 0x200000000000 16K
dev fault kvm 0x200000002000 8K write     # two more COW breaks, made by the device fault
dev log kvm
dev show kvm 0x200000000000 16K
read 0x200000000000 16K
dev read kvm 0x200000000000 16K
@2 read 0x200000000000 16K                # the child keeps its own data
stats
check
