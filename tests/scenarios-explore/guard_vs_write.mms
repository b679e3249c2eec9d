# A guard region installed on the first page while a write runs over both: the write either
# populated the page first (the install zaps it and leaves its marker) or meets the marker
# and faults (SEGV); no page stays mapped under a marker.
mmap 0x200000000000 8K rw- private+anon+fixed
thread
  madvise 0x200000000000 4K guard_install
end
thread
  write 0x200000000000 8K 2
end
expect check == ok
