#!/usr/bin/env bash
# The whole test suite: set up, then for each preset (release, asan-ubsan, tsan) build
# everything and run ctest. The oracle compares the model with this host's kernel on random
# scripts (2,000 per profile in release, 200 under the sanitizers); the stress tests run
# concurrent workloads with the checkers, and the tsan preset adds two 10-second
# `mirrormm stress` runs, one with memory pressure and swap, page migration between two
# NUMA nodes and regular files with writeback; the release preset also opens a traced
# run's HTML report in headless Chromium (scripts/check-report.sh). Long campaigns:
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
  if [ "$preset" = release ]; then
    # A traced run's report in headless Chromium: no page error, a screenshot that is not
    # blank, and deliberately broken copies rejected (docs/tracing.md).
    report_dir=$(mktemp -d)
    "build/$preset/mirrormm" run --seconds 3 --trace "$report_dir/T.json" --report "$report_dir/R.html" >/dev/null
    scripts/check-report.sh --self-test "$report_dir/R.html"
    rm -rf "$report_dir"
  fi
  if [ "$preset" = tsan ]; then
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 1
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 2 --memory 64 --swap 256 --nodes 2 --writeback
  fi
done
