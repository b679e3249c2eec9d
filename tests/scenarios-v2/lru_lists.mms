# The LRU lists as vmstat and pageinfo show them: new anonymous and shmem pages join the
# inactive anon list, a second touch by get_user_pages (populate) activates them, MADV_COLD
# deactivates the pages only this process maps, and pages leave the lists when freed.
mmap 0x200000000000 16K rw- private+anon+fixed
write 0x200000000000 8K 1
read 0x200000002000 1
pageinfo 0x200000000000
pageinfo 0x200000002000               # the zero page
pageinfo 0x200000003000               # never touched
vmstat nr_inactive_anon nr_active_anon pgfault
madvise 0x200000000000 8K populate_read
madvise 0x200000000000 8K populate_read
vmstat nr_inactive_anon nr_active_anon pgactivate
pageinfo 0x200000001000
fork
madvise 0x200000000000 8K cold        # shared with the child: left active
vmstat nr_active_anon pgdeactivate
@2 write 0x200000001000 1 2           # the child's copy joins the inactive list
@2 pageinfo 0x200000001000
@2 exit
madvise 0x200000000000 8K cold
vmstat nr_inactive_anon nr_active_anon pgdeactivate
pageinfo 0x200000000000
memfd data 8K
mmap 0x200000010000 8K rw- shared+fixed data 0
write 0x200000010000 4K 3
pageinfo 0x200000010000
vmstat nr_inactive_anon nr_inactive_file
munmap 0x200000000000 16K
munmap 0x200000010000 8K
vmstat nr_inactive_anon nr_active_anon
truncate data 0
vmstat nr_inactive_anon nr_active_anon nr_inactive_file nr_active_file nr_unevictable
pageinfo 0x200000000000
check
