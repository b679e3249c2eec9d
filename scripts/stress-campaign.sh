#!/usr/bin/env bash
# The long stress campaign: `mirrormm stress --threads 4 --seconds SECONDS` for SEEDS seeds
# (default 20 x 60 s) in the release and tsan builds. Stops at the first failing seed.
#
# Usage: scripts/stress-campaign.sh [SEEDS [SECONDS]] [-- STRESS-FLAGS...]
#        scripts/stress-campaign.sh [--seeds N] [--first-seed F] [--seconds S]
#                                   [--preset P]... [-- STRESS-FLAGS...]
# Seeds F..F+N-1 (F defaults to 1) run in each preset (default: release, then tsan); two
# campaigns with different --preset can run side by side, one per core.
# STRESS-FLAGS are passed to every run (a --threads or --seconds among them replaces the
# campaign's), e.g.
#   scripts/stress-campaign.sh --seeds 10 --seconds 600 -- --threads 4 --memory 64 --swap 256
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=20
first=1
seconds=60
presets=()
positional=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --seeds=*) seeds=${1#*=}; shift ;;
    --first-seed) first=$2; shift 2 ;;
    --first-seed=*) first=${1#*=}; shift ;;
    --preset) presets+=("$2"); shift 2 ;;
    --preset=*) presets+=("${1#*=}"); shift ;;
    --seconds) seconds=$2; shift 2 ;;
    --seconds=*) seconds=${1#*=}; shift ;;
    --) shift; extra=("$@"); break ;;
    -*) echo "stress-campaign.sh: unknown option $1 (stress flags go after --)" >&2; exit 2 ;;
    *)
      case $positional in
        0) seeds=$1 ;;
        1) seconds=$1 ;;
        *) echo "stress-campaign.sh: too many arguments" >&2; exit 2 ;;
      esac
      positional=$((positional + 1)); shift ;;
  esac
done
threads=(--threads 4)
duration=(--seconds "$seconds")
for f in ${extra[@]+"${extra[@]}"}; do
  case "$f" in
    --threads | --threads=*) threads=() ;;
    --seconds | --seconds=*) duration=() ;;
    --seed | --seed=*) echo "stress-campaign.sh: the campaign sets --seed itself (F..F+N-1)" >&2; exit 2 ;;
  esac
done
[ ${#presets[@]} -gt 0 ] || presets=(release tsan)
scripts/setup.sh
for preset in "${presets[@]}"; do
  cmake --preset "$preset" >/dev/null
  cmake --build "build/$preset" --target mirrormm_cli
  for seed in $(seq "$first" $((first + seeds - 1))); do
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1 detect_deadlocks=0" \
      "build/$preset/mirrormm" stress ${threads[@]+"${threads[@]}"} ${duration[@]+"${duration[@]}"} --seed "$seed" \
      ${extra[@]+"${extra[@]}"} \
      2>/dev/null | tail -n 1 | sed "s/^/$preset seed $seed: /"
  done
done
