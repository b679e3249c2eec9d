// Fault-guarded accesses to script memory in a host worker: `write` and `read` touch bytes
// one at a time in ascending order and stop at the first fault, which becomes a result
// (SEGV or SIGBUS) rather than the end of the worker.
#pragma once

#include <cstdint>

namespace mirrormm::host {

enum class AccessResult { kOk, kSegv, kBus };

// Installs the worker's SIGSEGV/SIGBUS handlers (SA_SIGINFO|SA_NODEFER). They recover only
// from faults inside guarded_write()/guarded_read(); any other fault is the worker's own bug
// and kills it with the default action. Dispositions survive fork(), so the first worker
// calls this once.
void install_fault_handlers();

// Writes pattern(a, seed) at each address a in [addr, addr+len) ascending, through a
// volatile pointer; bytes before a faulting address stay written.
AccessResult guarded_write(uint64_t addr, uint64_t len, uint64_t seed);

// FNV-1a 64 of the bytes [addr, addr+len) in ascending order into *hash (kFnvOffset for
// len 0); *hash is meaningless unless the result is kOk.
AccessResult guarded_read(uint64_t addr, uint64_t len, uint64_t* hash);

}  // namespace mirrormm::host
