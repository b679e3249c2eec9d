# MADV_PAGEOUT of two pages racing an HMM mirror's write fault over them: the fault swaps in
# what reclaim already sent out, waiting out a reclaim that holds a slot's SWAP_HAS_CACHE
# (swapcache_prepare answers -EEXIST) while its page is between the swap cache and the free
# list. Every interleaving ends with the device mapping current pages.
swapon 1M
mmap 0x200000000000 8K rw- private+anon+fixed
write 0x200000000000 8K 1
dev attach d interval 0x200000000000 8K
thread
  madvise 0x200000000000 8K pageout
end
thread
  dev fault d 0x200000000000 8K write
end
expect check == ok
