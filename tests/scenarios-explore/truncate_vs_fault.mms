# A shared-memory file truncated to empty while a write faults its pages back in: a fault
# either maps a page before the truncation unmaps and frees it, or sees the new size under
# the PTE lock and gets SIGBUS; no page outside the file stays mapped.
memfd f 8K
mmap 0x200000000000 8K rw- shared+fixed f 0
write 0x200000000000 8K 1
madvise 0x200000000000 8K dontneed
thread
  truncate f 0
end
thread
  write 0x200000000000 8K 2
end
expect check == ok
