#!/usr/bin/env bash
# The whole test suite: set up, build the release and asan-ubsan presets, run ctest on both
# (the oracle test compares the model with this host's kernel on a bounded number of random
# scripts; MIRRORMM_ORACLE_SEEDS raises it). A long campaign: scripts/campaign.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
jobs=$(nproc)
for preset in ${MIRRORMM_PRESETS:-release asan-ubsan}; do
  echo "== preset $preset"
  cmake --preset "$preset" >/dev/null
  cmake --build "build/$preset" -j "$jobs"
  # The oracle compares with this host's kernel: 2,000 scripts per profile in release, fewer
  # under the sanitizers (slower, same code).
  seeds=2000
  [ "$preset" = release ] || seeds=200
  MIRRORMM_ORACLE_SEEDS=${MIRRORMM_ORACLE_SEEDS:-$seeds} ctest --preset "$preset" -j "$jobs"
done
