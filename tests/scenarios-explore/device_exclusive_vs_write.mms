# Exclusive device access to two pages (make_device_exclusive) racing a CPU write of the
# second: the write either comes first (the exclusive entry is made over the written page)
# or takes the page back from the device, which sees the invalidation.
mmap 0x200000000000 8K rw- private+anon+fixed
write 0x200000000000 8K 1
hmm open 0
thread
  hmm exclusive 0 0x200000000000 2
end
thread
  write 0x200000001000 4K 3
end
expect check == ok
