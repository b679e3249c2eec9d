// /proc/PID/maps (fs/proc/task_mmu.c): the VMA list of an address space as users see it.
#include <fmt/format.h>

#include "mirrormm/mmu_notifier.h"
#include "mirrormm/system.h"
#include "mm/internal.h"
#include "mm/shmem.h"

namespace mirrormm {

namespace {

// The name shmem_zero_setup (mmap.cc) gives the file of a shared anonymous mapping.
constexpr const char* kSharedAnonFile = "dev/zero";

// show_map_vma: one VMA, read under the mmap_lock.
MapsEntry show_map_vma(const Vma* v) {
  MapsEntry e;
  e.start = v->vm_start;
  e.end = v->vm_end;
  e.read = v->vm_flags & VM_READ;
  e.write = v->vm_flags & VM_WRITE;
  e.exec = v->vm_flags & VM_EXEC;
  e.shared = v->vm_flags & VM_MAYSHARE;
  if (v->vm_file) {
    const std::string& name = v->vm_file->inode->name();
    e.backing = name == kSharedAnonFile ? MapsEntry::Backing::kSharedAnon : MapsEntry::Backing::kFile;
    if (e.backing == MapsEntry::Backing::kFile) e.file = name;
    e.offset = v->vm_pgoff << kPageShift;
  }
  return e;
}

}  // namespace

Result<std::vector<MapsEntry>> System::proc_maps(Process* p) {
  // proc_maps_open's mm reference: the address space cannot go while it is read.
  Mm* mm = get_task_mm(p);
  if (!mm) return Errno::kSrch;
  std::vector<MapsEntry> out;
  {
    MmapReadGuard g(mm);
    for (Vma* v = mm->find_vma(0); v; v = mm->vma_next(v)) out.push_back(show_map_vma(v));
  }
  mmput_ref(mm);
  return out;
}

std::string format_maps_entry(const MapsEntry& e) {
  std::string out = fmt::format("{:x}-{:x} {}{}{}{}", e.start, e.end, e.read ? 'r' : '-', e.write ? 'w' : '-',
                                e.exec ? 'x' : '-', e.shared ? 's' : 'p');
  switch (e.backing) {
    case MapsEntry::Backing::kAnon: break;
    case MapsEntry::Backing::kSharedAnon: out += fmt::format(" {:x} shmem", e.offset); break;
    case MapsEntry::Backing::kFile: out += fmt::format(" {:x} {}", e.offset, e.file); break;
  }
  return out;
}

}  // namespace mirrormm
