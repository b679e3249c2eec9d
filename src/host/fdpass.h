// Passing descriptors over the controller/worker socketpairs (SCM_RIGHTS), shared by both
// sides. No allocation: the worker calls these in its command loop.
#pragma once

#include <cstddef>
#include <sys/types.h>

namespace mirrormm::host {

// Sends buf[0, len) whole, the descriptor fd (if >= 0) riding with the first bytes.
// Retries EINTR and short writes; false on error or a closed peer.
bool send_all_with_fd(int sock, const void* buf, size_t len, int fd);

// One recvmsg of up to len bytes into buf (EINTR retried). A descriptor that arrives replaces
// *passed_fd (closing a previous one). Returns the byte count, 0 at EOF, -1 on error.
ssize_t recv_with_fd(int sock, void* buf, size_t len, int* passed_fd);

}  // namespace mirrormm::host
