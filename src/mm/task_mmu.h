// What /proc/PID/smaps shows of a VMA beyond its statistics (fs/proc/task_mmu.c).
#pragma once

#include <string>

#include "mirrormm/vm_flags.h"

namespace mirrormm {

// show_smap_vma_flags: the "VmFlags:" line's list for flags, each set flag's two-letter
// mnemonic followed by a space, in bit order (so "rd wr mr mw me ac " for a private writable
// anonymous VMA). Flags the host kernel does not name (none of the model's) print nothing;
// VM_SOFTDIRTY is VM_NONE here, as "sd" never appears on the host (CONFIG_MEM_SOFT_DIRTY off).
std::string show_smap_vma_flags(vm_flags_t flags);

}  // namespace mirrormm
