#!/usr/bin/env bash
# The long stress campaign: `mirrormm stress --threads 4 --seconds SECONDS` for SEEDS seeds
# (default 20 x 60 s) in the release and tsan builds. Stops at the first failing seed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
seeds=${1:-20}
seconds=${2:-60}
for preset in release tsan; do
  cmake --preset "$preset" >/dev/null
  cmake --build "build/$preset" --target mirrormm_cli
  for seed in $(seq 1 "$seeds"); do
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress --threads 4 --seconds "$seconds" --seed "$seed" 2>/dev/null | tail -n 1 |
      sed "s/^/$preset seed $seed: /"
  done
done
