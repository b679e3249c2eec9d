// Internal view of the System for the mechanisms in src/mm.
#pragma once

#include "mirrormm/system.h"
#include "mm/cpu.h"
#include "mm/mm_types.h"
#include "mm/physmem.h"
#include "mm/tlb.h"
