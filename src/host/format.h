// Result-line formatting shared by the host runner's controller and its workers.
//
// Workers format into preallocated buffers (no allocation in their command loop), so these
// helpers write into caller-provided storage and never allocate.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mirrormm::host {

// "EINVAL" for EINVAL, ...; for an errno this table does not know, "ERRNO<n>" written into
// the caller's buffer (at least 16 bytes). Never returns null.
const char* errno_name(int err, char* buf16);

// Writes v in lowercase hex without prefix or leading zeros ("0" for 0) at p; returns the
// end. At most 16 characters.
char* put_hex(char* p, uint64_t v);

// Writes v in decimal at p; returns the end. At most 20 characters.
char* put_dec(char* p, uint64_t v);

// Writes "-" + errno_name(err) at p; returns the end. At most 24 characters.
char* put_errno(char* p, int err);

}  // namespace mirrormm::host
