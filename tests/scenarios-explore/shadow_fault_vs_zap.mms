# A shadow MMU (KVM's protocol) faults a page in while madvise(MADV_DONTNEED) zaps it: in
# every interleaving the fault either gives up, or maps the page before the zap's start
# callback drops it again, or maps nothing; the checker finds no stale mapping, and the page
# reads as zeros afterwards.
mmap 0x200000000000 4K rw- private+anon+fixed
write 0x200000000000 4K 1
dev attach d shadow 0x200000000000 4K
thread
  madvise 0x200000000000 4K dontneed
end
thread
  dev fault d 0x200000000000 4K read
end
expect read 0x200000000000 4K == fnv:b93a0c83ce3b6325
expect check == ok
