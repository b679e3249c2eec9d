# An interval notifier is removed (dev detach) while an invalidation of its range runs: the
# removal waits for the invalidation's end when it finds the tree frozen.
mmap 0x200000000000 8K rw- private+anon+fixed
write 0x200000000000 8K 2
dev attach m interval 0x200000000000 8K
dev fault m 0x200000000000 8K write
thread
  madvise 0x200000000000 4K dontneed
end
thread
  dev detach m
end
expect check == ok
