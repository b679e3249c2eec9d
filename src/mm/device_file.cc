// Character device files (mirrormm/device_file.h): their open file descriptions, driver
// pages, and the f_op->mmap call of mmap_region (call_mmap). vm_insert_page is in memory.cc,
// with the other PTE installers.
#include "mirrormm/device_file.h"

#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/shmem.h"

namespace mirrormm {

File* open_device_file(System* sys, const std::string& name, const DeviceFileOps* ops, void* private_data,
                       bool writable) {
  // The inode holds no pages (no size, no page cache): it names the mappings and keeps
  // their i_mmap tree.
  ShmemInode* inode = new ShmemInode(sys, name, 0, InodeKind::kDevice);
  File* f = open_file(inode, writable);
  inode->put();  // the file's reference keeps it
  f->f_op = ops;
  f->private_data = private_data;
  return f;
}

void put_device_file(File* file) { fput(file); }

void* device_file_private_data(const File* file) { return file->private_data; }

uint64_t alloc_driver_page(System* sys) {
  PhysMem& mem = sys->mem();
  Page* page = mem.alloc_page(Zero::kYes, Gfp::kUser);
  return page ? mem.page_to_pfn(page) : 0;
}

}  // namespace mirrormm
