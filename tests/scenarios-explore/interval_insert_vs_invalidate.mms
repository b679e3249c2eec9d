# An HMM mirror's interval notifier inserted (mmu_interval_notifier_insert) while
# madvise(MADV_DONTNEED) invalidates the range, then the mirror's fault. An insert that meets
# an invalidation in progress joins the tree when the invalidation ends (the deferred list),
# and its sequence says "invalidating" until then, so the fault's read_begin waits for the
# end. In every interleaving the mirror maps either the page before the zap (which then
# drops it again) or the zero page after it, and the checker finds nothing stale. The other
# mirror, attached first, gives the address space its interval tree.
mmap 0x200000000000 4K rw- private+anon+fixed
write 0x200000000000 4K 1
dev attach other interval 0x200000000000 4K
thread
  madvise 0x200000000000 4K dontneed
end
thread
  dev attach d interval 0x200000000000 4K
  dev fault d 0x200000000000 4K read
end
expect read 0x200000000000 4K == fnv:b93a0c83ce3b6325
expect check == ok
