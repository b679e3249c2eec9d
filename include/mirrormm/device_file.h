// Character device files and their driver mappings (struct file_operations' mmap, and
// vm_insert_page of mm/memory.c).
//
// A driver opens a device file (open_device_file) with its DeviceFileOps and private data;
// System::mmap of that File creates a VMA as for any file mapping, then calls ops->mmap with
// the mmap_lock held for write, before the VMA is linked. The hook fills the VMA with
// vm_insert_page: each inserted page is a driver page (a kernel page, on no LRU list, in no
// page cache, with no rmap identity), mapped with the VMA's vm_page_prot (read-only in a
// private mapping, writable in a shared writable one), counted in the file rss, and holding
// its own page reference; the first insertion marks the VMA VM_MIXEDMAP. A hook that fails
// has its insertions zapped, and the mmap fails with its errno.
//
// What follows from that, as in Linux:
//   - a fault on an address the driver did not fill is SIGBUS (the VMA has no fault
//     handler); a write to a private mapping copies the page into an anonymous one (COW);
//   - munmap, MADV_DONTNEED and exit drop the PTEs' references; the page is freed with its
//     last one (the driver normally drops its allocation reference right after inserting);
//   - fork copies the PTEs (VM_MIXEDMAP VMAs have no fault handler to refill them);
//   - reclaim never sees the pages (not on the LRU), and no reverse-map walk finds their
//     mappings (page->mapping is null): they are unevictable and never migrated;
//   - migrate_vma_setup refuses the VMA (VM_SPECIAL); hmm_range_fault and GUP accept it;
//   - /proc/PID/maps names the device, smaps shows VmFlags `mm`, and its pages count as
//     file pages (Rss, not Anonymous).
#pragma once

#include <cstdint>
#include <string>

#include "mirrormm/errno.h"

namespace mirrormm {

class System;
struct File;
struct Vma;

// struct file_operations, the part the model uses. mmap: the driver's f_op->mmap for the
// new VMA [start, end) (page aligned), called with the mmap_lock held for write; it inserts
// pages with vm_insert_page and returns kOk or an errno for mmap(2) to return.
struct DeviceFileOps {
  Errno (*mmap)(File* file, Vma* vma, uint64_t start, uint64_t end) = nullptr;
};

// Opens the character device `name` (e.g. "/dev/hmm_dmirror0"): a new open file description
// with one reference (the caller's), ops and private data, readable and writable as
// `writable` says. Every open of a device shares nothing with another: each has its own
// inode here (the model has no device numbers), so /proc/PID/maps shows only the name.
File* open_device_file(System* sys, const std::string& name, const DeviceFileOps* ops, void* private_data,
                       bool writable);
// fput: drops a reference (VMAs hold their own).
void put_device_file(File* file);
// file->private_data.
void* device_file_private_data(const File* file);

// vm_insert_page: maps the page at frame `pfn` (a page the caller holds a reference to,
// allocated with alloc_driver_page) at addr in vma, taking a reference of its own. Called
// from a DeviceFileOps::mmap hook (mmap_lock held for write). -EFAULT when addr is outside
// the VMA, -EINVAL for a page that may not be inserted (free, anonymous, a page-cache page,
// device memory), -EBUSY when addr is already mapped, -ENOMEM when no page table can be
// allocated.
Errno vm_insert_page(Vma* vma, uint64_t addr, uint64_t pfn);
// alloc_page(GFP_KERNEL | __GFP_ZERO) for a driver: a zeroed page with one reference (the
// caller's), on no list. 0 when memory is exhausted. Drop it with put_page_pfn (gup.h).
uint64_t alloc_driver_page(System* sys);

}  // namespace mirrormm
