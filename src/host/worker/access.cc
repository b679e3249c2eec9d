// Fault-guarded accesses (see access.h).
//
// Protocol: guarded_*() sets a sigsetjmp point, then arms the handler (g_armed = 1) and runs
// the access loop. A SIGSEGV/SIGBUS while armed disarms, records the signal and siglongjmps
// back, which restores the signal mask saved by sigsetjmp. A fault while disarmed is not
// ours: the handler restores the default action and returns, the instruction faults again
// and the worker dies, which the controller reports as an internal error.
//
// The access loops are excluded from sanitizer instrumentation: the window is application
// memory the sanitizers know nothing about (under ThreadSanitizer it is even inside a range
// its runtime reserves for itself; the first worker unmaps that part of the reservation).
#include "host/worker/access.h"

#include <csetjmp>
#include <csignal>
#include <cstring>

#include "mirrormm/script.h"

namespace mirrormm::host {
namespace {

sigjmp_buf g_jmp;
volatile sig_atomic_t g_armed = 0;
volatile sig_atomic_t g_signal = 0;

void on_fault(int sig, siginfo_t*, void*) {
  if (!g_armed) {
    struct sigaction dfl;
    std::memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigaction(sig, &dfl, nullptr);
    return;
  }
  g_armed = 0;
  g_signal = sig;
  siglongjmp(g_jmp, 1);
}

#define MIRRORMM_NO_SANITIZE __attribute__((noinline, no_sanitize("address", "thread", "undefined")))

MIRRORMM_NO_SANITIZE void write_bytes(uint64_t addr, uint64_t len, uint64_t seed) {
  for (uint64_t i = 0; i < len; ++i) {
    uint64_t a = addr + i;
    *reinterpret_cast<volatile uint8_t*>(static_cast<uintptr_t>(a)) = script::pattern(a, seed);
  }
}

MIRRORMM_NO_SANITIZE uint64_t hash_bytes(uint64_t addr, uint64_t len) {
  uint64_t h = script::kFnvOffset;
  for (uint64_t i = 0; i < len; ++i) {
    h ^= *reinterpret_cast<volatile const uint8_t*>(static_cast<uintptr_t>(addr + i));
    h *= script::kFnvPrime;
  }
  return h;
}

AccessResult fault_result() { return g_signal == SIGBUS ? AccessResult::kBus : AccessResult::kSegv; }

}  // namespace

void install_fault_handlers() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof sa);
  sa.sa_sigaction = on_fault;
  sa.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, nullptr);
  sigaction(SIGBUS, &sa, nullptr);
}

AccessResult guarded_write(uint64_t addr, uint64_t len, uint64_t seed) {
  if (sigsetjmp(g_jmp, 1) != 0) return fault_result();
  g_armed = 1;
  write_bytes(addr, len, seed);
  g_armed = 0;
  return AccessResult::kOk;
}

AccessResult guarded_read(uint64_t addr, uint64_t len, uint64_t* hash) {
  if (sigsetjmp(g_jmp, 1) != 0) return fault_result();
  g_armed = 1;
  *hash = hash_bytes(addr, len);
  g_armed = 0;
  return AccessResult::kOk;
}

}  // namespace mirrormm::host
