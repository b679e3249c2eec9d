# /proc/PID/smaps of private anonymous memory (fs/proc/task_mmu.c, smaps_account): a write
# fault maps a private dirty page; a read fault maps the shared zero page, which no counter
# includes; fork shares the written pages (Shared_Dirty on both sides, Pss halved); a write
# after fork copies the page, after which the copy and the original are each private and
# dirty; a read after fork of a page never written still maps the zero page.
mmap 0x200000000000 32K rw- private+anon+fixed
smaps
write 0x200000000000 8K 1
read 0x200000002000 8K
smaps
fork
smaps
@2 smaps
@2 write 0x200000000000 4K 2
smaps
@2 smaps
write 0x200000001000 1 3
smaps
@2 smaps
@2 read 0x200000004000 4K
@2 write 0x200000005000 4K 4
@2 smaps
fork
@3 smaps
smaps
@3 exit
@2 exit
smaps
mmap 0x200000100000 16K rw- private+anon+fixed+populate
smaps
mmap 0x200000200000 16K r-- private+anon+fixed+populate
smaps
