# mlock racing MADV_PAGEOUT: whichever comes first, the pages end up resident, locked and
# unchanged (mlock brings back what pageout sent to swap; pageout skips locked pages).
swapon 1M
mmap 0x200000000000 8K rw- private+anon+fixed
write 0x200000000000 8K 1
thread
  mlock 0x200000000000 8K
end
thread
  madvise 0x200000000000 8K pageout
end
expect mlocked == 200000000000-200000002000 lo Locked=8
expect mincore 0x200000000000 8K == 11
expect read 0x200000000000 8K == fnv:b510e3ffcf83991b
expect check == ok
