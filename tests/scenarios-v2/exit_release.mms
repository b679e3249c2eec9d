# Devices on a process that exits: the interval device gets the release invalidation and
# the teardown, the classic device its release() callback; both are empty afterwards and
# stay attached (as objects of the model) until detached.
mmap 0x200000000000 16K rw- private+anon+fixed
fork
@2 write 0x200000000000 16K 2
@2 dev attach dma interval 0x200000000000 16K
@2 dev attach kvm classic
@2 dev attach early interval 0x200000000000 4K
dev fault dma 0x200000000000 16K read
dev fault kvm 0x200000000000 8K write
dev fault early 0x200000000000 4K write
dev detach early                          # detached before the exit: told nothing more
stats
@2 exit
dev log dma
dev log kvm
dev show dma 0x200000000000 16K
dev show kvm 0x200000000000 16K
dev fault dma 0x200000000000 4K read
dev fault kvm 0x200000000000 4K read
dev read kvm 0x200000000000 4K
@2 dev attach again classic               # the process is gone
@2 maps
stats
check
dev detach dma
dev detach kvm
dev log kvm
stats
check
