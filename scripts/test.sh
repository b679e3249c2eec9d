#!/usr/bin/env bash
# The whole test suite: set up, then for each preset (release, asan-ubsan, tsan) build
# everything and run ctest. The oracle compares the model with this host's kernel on random
# scripts (2,000 per profile in release, 200 under the sanitizers); the stress tests run
# concurrent workloads with the checkers, and the tsan preset adds three 10-second
# `mirrormm stress` runs, one with memory pressure and swap, page migration between two
# NUMA nodes and regular files with writeback, one with every kind of secondary MMU. Long campaigns:
# scripts/campaign.sh, scripts/stress-campaign.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
for preset in ${MIRRORMM_PRESETS:-release asan-ubsan tsan}; do
  echo "== preset $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build "build/$preset" -j "$jobs"
  seeds=2000
  [ "$preset" = release ] || seeds=200
  MIRRORMM_ORACLE_SEEDS=${MIRRORMM_ORACLE_SEEDS:-$seeds} ctest --preset "$preset" -j "$jobs"
  if [ "$preset" = tsan ]; then
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 1
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 2 --memory 64 --swap 256 --nodes 2 --writeback
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 3 --memory 64 --swap 256 --nodes 2 \
      --driver interval,classic,shadow,iotlb,xpmem
  fi
done
