# An HMM mirror's fault, one step at a time (mmu_interval_read_begin, hmm_range_fault, then
# read_retry and the install under the driver lock), while madvise(MADV_DONTNEED) zaps the
# page. Wherever the zap falls between the steps, the mirror either installs the page before
# the zap's invalidation drops it again, or read_retry sees the invalidation and `dev map`
# installs nothing (-EAGAIN): the checker never finds a stale mapping. Written with
# `dev map d unchecked` instead, the scenario fails: the install after the zap maps a page the primary PTE no longer maps.
mmap 0x200000000000 4K rw- private+anon+fixed
write 0x200000000000 4K 1
dev attach d interval 0x200000000000 4K
thread
  madvise 0x200000000000 4K dontneed
end
thread
  dev begin d 0x200000000000 4K read
  dev walk d
  dev retry d
  dev map d
end
expect read 0x200000000000 4K == fnv:b93a0c83ce3b6325
expect check == ok
