# A write fault on a shared-memory page racing madvise(MADV_REMOVE), which punches a hole in
# the file: the fault finds the page in the cache, the hole takes it out (unmapping the range
# before and after). The fault maps the page with the page locked and only while it is still
# the cache's, so in every interleaving the page is either mapped before the removal (whose
# second unmap then takes it away) or not mapped at all (the write faults again and gets a
# new page). A page the cache no longer has is never left mapped: the consistency check
# would find a mapping that no reverse-map walk reaches.
mmap 0x200000000000 4K rw- shared+anon+fixed
write 0x200000000000 4K 1
madvise 0x200000000000 4K dontneed
thread
  madvise 0x200000000000 4K remove
end
thread
  write 0x200000000000 4K 2
end
expect check == ok
