// Result formatting shared by the replay engine and the tests.
#pragma once

#include <string>

#include "mm/mm_types.h"

namespace mirrormm::replay {

// The `maps` line of the spec: the VMAs intersecting the window, "START-END PERMS[ OFF NAME]"
// joined by "; ", or "none".
std::string format_maps(Mm* mm);

}  // namespace mirrormm::replay
