# A migration of two pages to device-private memory (hmm migrate) racing munmap of the second
# page: the migration either moves the page before the unmap (which then frees the device
# page through its entry) or finds it gone; no device page outlives its mapping.
mmap 0x200000000000 8K rw- private+anon+fixed
write 0x200000000000 8K 1
hmm open 0
thread
  hmm migrate 0 0x200000000000 2
end
thread
  munmap 0x200000001000 4K
end
expect check == ok
