# A mirroring driver unregisters (dev detach) while its process exits: release() runs once,
# whoever gets there first, and no device mapping outlives the address space.
mmap 0x200000000000 4K rw- private+anon+fixed
write 0x200000000000 4K 3
dev attach x xpmem 0x200000000000 4K
dev fault x 0x200000000000 4K write
thread
  exit
end
thread
  dev detach x
end
expect check == ok
