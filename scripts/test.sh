#!/usr/bin/env bash
# The whole test suite: set up, then for each preset (release, asan-ubsan, tsan) build
# everything and run ctest. The oracle compares the model with this host's kernel on random
# scripts (2,000 per profile in release, 200 under the sanitizers); the stress tests run
# concurrent workloads with the checkers, and the tsan preset adds three 10-second
# `mirrormm stress` runs, one with memory pressure and swap, page migration between two
# NUMA nodes and regular files with writeback, one with every kind of secondary MMU. The
# release preset also opens a traced run's HTML report in headless Chromium
# (scripts/check-report.sh), and runs the oracle in 4 shards under GNU parallel and checks
# that their merge matches the unsharded run, and explores every interleaving of the scenario
# scripts (tests/scenarios-explore/) and of the bug catalog's scenarios up to two preemptions
# (docs/explore.md), printing interleavings per second. Long campaigns: scripts/campaign.sh,
# scripts/stress-campaign.sh, scripts/campaign-parallel.sh.
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
    # The oracle split into 4 shards under GNU parallel and merged comes to the same verdict
    # line, over the same seeds, as the same campaign run in one go.
    out=build/release/campaign
    mkdir -p "$out"
    scripts/campaign-parallel.sh --shards 4 --records "$out/sharded.jsonl" --mirrormm build/release/mirrormm \
      -- oracle --seeds 200 --profile anon >"$out/sharded.txt"
    build/release/mirrormm oracle --seeds 200 --profile anon --json "$out/whole.jsonl" >"$out/whole.txt" 2>/dev/null
    for f in sharded whole; do
      grep -E '^[0-9]+ scripts: ' "$out/$f.txt" >"$out/$f.verdict"
      grep -o '"seed":[0-9]*' "$out/$f.jsonl" | sort >"$out/$f.seeds"
    done
    diff "$out/sharded.verdict" "$out/whole.verdict"
    diff "$out/sharded.seeds" "$out/whole.seeds"
    echo "sharded oracle: $(cat "$out/sharded.verdict"), as unsharded"
    # Every interleaving of the scenario scripts and of each catalog scenario, without its bug
    # (clean: status 0) and with it (found: status 1).
    for f in tests/scenarios-explore/*.mms; do
      "build/$preset/mirrormm" explore "$f" >"$out/explore.txt"
      head -1 "$out/explore.txt"
    done
    for b in $("build/$preset/mirrormm" explore --list); do
      "build/$preset/mirrormm" explore --scenario "$b" >"$out/explore.txt"
      head -1 "$out/explore.txt"
      if "build/$preset/mirrormm" explore --inject "$b" >"$out/explore.txt"; then
        echo "explore --inject $b: not found" >&2
        exit 1
      fi
      head -1 "$out/explore.txt"
    done
  fi
  if [ "$preset" = tsan ]; then
    # detect_deadlocks=0: TSan's lock-order detector holds at most 64 locks per thread, fewer
    # than mm_take_all_locks takes in a process with many mappings; the model's lockdep checks
    # the lock order.
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 detect_deadlocks=0" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 1
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 detect_deadlocks=0" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 2 --memory 64 --swap 256 --nodes 2 --writeback
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 detect_deadlocks=0" \
      "build/$preset/mirrormm" stress --threads 4 --seconds 10 --seed 3 --memory 64 --swap 256 --nodes 2 \
      --driver interval,classic,shadow,iotlb,xpmem
  fi
done
