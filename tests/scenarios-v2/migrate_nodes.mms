# NUMA nodes and page migration: the pool split into two nodes, pages moved between them
# with migrate (private, shared and forked pages), pageinfo's node, and the MIGRATE
# invalidations a device mirror sees.
nodes 65                                  # out of 1..64
nodes 2
mmap 0x200000000000 16K rw- private+anon+fixed
nodes 4                                   # too late: memory is mapped
write 0x200000000000 16K 3
pageinfo 0x200000000000
dev attach gpu interval 0x200000000000 16K
dev fault gpu 0x200000000000 8K read
dev log gpu
migrate 0x200000000000 8K 1               # the mirrored pages: one MIGRATE per page
dev log gpu
dev show gpu 0x200000000000 16K
pageinfo 0x200000000000
read 0x200000000000 16K                   # the data came along
migrate 0x200000000000 16K 1              # two pages were there already
migrate 0x200000000000 16K 0
migrate 0x200000000000 16K 2              # no such node
migrate 0x200000000001 4K 1               # unaligned
migrate 0x200000000000 32K 1              # a hole in the range
dev log gpu
dev detach gpu
mmap 0x200000010000 8K rw- shared+anon+fixed
write 0x200000010000 8K 5
fork
@2 read 0x200000010000 8K                # the child maps the shared pages
@2 migrate 0x200000010000 8K 1            # from the child: the parent's mappings move too
pageinfo 0x200000010000
@2 pageinfo 0x200000010000
read 0x200000010000 8K
@2 migrate 0x200000000000 4K 1            # a page both processes map after fork
pageinfo 0x200000000000
@2 write 0x200000000000 4K 9              # the child's write copies
read 0x200000000000 4K
check
stats
