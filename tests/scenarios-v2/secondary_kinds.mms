# The other kinds of secondary MMU: a shadow MMU, an SVA IOTLB and a remote mapper on one
# process, told about the same changes in their own ways.
mmap 0x200000000000 16K rw- private+anon+fixed
write 0x200000000000 16K 3
dev attach kvm shadow
dev attach iommu iotlb 0x200000000000 16K
dev attach xp xpmem 0x200000000000 16K
dev fault kvm 0x200000000000 16K read
dev read iommu 0x200000000000 8K          # misses, walks the page tables, fills the IOTLB
dev fault xp 0x200000000000 16K write
dev show kvm 0x200000000000 16K
dev show iommu 0x200000000000 16K
dev show xp 0x200000000000 16K
mprotect 0x200000000000 8K r--           # start/end for kvm and xp, a TLB flush for iommu
dev log kvm
dev log iommu
dev log xp
dev show iommu 0x200000000000 16K
dev read iommu 0x200000000000 4K         # refilled read-only
dev show iommu 0x200000000000 16K
mprotect 0x200000000000 8K rw-           # an upgrade: only the IOTLB is told
dev log kvm
dev log iommu
dev show iommu 0x200000000000 16K
dev write iommu 0x200000000000 4K 7
read 0x200000000000 4K
dev read kvm 0x200000000000 4K
dev read xp 0x200000000000 4K
dev fault xp 0x200000000000 4K read
dev read xp 0x200000000000 4K
check
stats
