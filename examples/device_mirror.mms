# Secondary MMUs in the model (format version 2, docs/mms-v2.md). Run it with
#   mirrormm replay examples/device_mirror.mms
# `mirrormm host` prints SKIP for every dev/stats/check line (they exist only in the model)
# and the kernel's answers for the others.
#
# Two devices mirror process 1: `gpu`, an HMM-style mirror with an interval notifier over
# one range, and `kvm`, a KVM-style shadow MMU with a classic notifier over everything.
mmap 0x200000000000 16K rw- private+anon+fixed
dev attach gpu interval 0x200000000000 16K
dev attach kvm classic
write 0x200000000000 16K 1
dev fault gpu 0x200000000000 16K read      # 4: pages mirrored
dev fault kvm 0x200000000000 16K write
dev show gpu 0x200000000000 16K            # wwww: the PTEs are writable, the mirror says so
dev show kvm 0x200000000000 16K

# mprotect downgrades the primary PTEs: both devices drop their copies first.
mprotect 0x200000000000 8K r--
dev log gpu                                # protection_vma 200000000000-200000002000
dev log kvm
dev show gpu 0x200000000000 16K            # --ww
dev fault gpu 0x200000000000 8K read       # mirrored again, read-only now
dev show gpu 0x200000000000 16K            # rrww

# munmap: an unmap invalidation.
munmap 0x200000003000 4K
dev log gpu                                # unmap 200000003000-200000004000
dev log kvm                                # the same, as a classic start/end pair
dev show gpu 0x200000000000 16K            # rrw-

# fork write-protects the private pages; the first CPU write afterwards breaks
# copy-on-write and replaces the page under the devices.
fork                                       # 2
dev log gpu                                # one protection_page per private VMA (mprotect split it)
dev log kvm
dev show gpu 0x200000000000 16K            # ----
dev fault kvm 0x200000002000 4K read
dev show kvm 0x200000000000 16K            # --r-
write 0x200000002000 4K 2
dev log kvm                                # clear 200000002000-200000003000
dev show kvm 0x200000000000 16K            # ----
@2 read 0x200000002000 4K                  # the child keeps the old data
stats
check                                      # ok: no device mapping outlived its PTE

# exit: the interval device gets the release invalidation and the teardown, the classic one
# its release() callback; afterwards neither maps anything.
exit
dev log gpu                                # release 0-800000000000; unmap ...
dev log kvm                                # release
stats
check
