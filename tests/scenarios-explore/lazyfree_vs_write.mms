# MADV_FREE and an immediate pageout racing a write to the first page: a page written
# after MADV_FREE is wanted again and must survive reclaim (it becomes swap-backed again and
# goes to swap), a clean lazily freed page is dropped and reads back as zeros. The checkers and
# the consistency check see every interleaving.
swapon 1M
mmap 0x200000000000 8K rw- private+anon+fixed
write 0x200000000000 8K 1
thread
  madvise 0x200000000000 8K free
  madvise 0x200000000000 8K pageout
end
thread
  write 0x200000000000 4K 2
end
expect check == ok
