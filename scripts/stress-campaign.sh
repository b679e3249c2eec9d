#!/usr/bin/env bash
# The long stress campaign: `mirrormm stress --threads 4 --seconds SECONDS` for SEEDS seeds
# (default 20 x 60 s) in the release and tsan builds. Stops at the first failing seed.
#
# Usage: scripts/stress-campaign.sh [SEEDS [SECONDS]] [-- STRESS-FLAGS...]
#        scripts/stress-campaign.sh [--seeds N] [--seconds S] [-- STRESS-FLAGS...]
# STRESS-FLAGS are passed to every run (a --threads or --seconds among them replaces the
# campaign's), e.g.
#   scripts/stress-campaign.sh --seeds 10 --seconds 600 -- --threads 4 --memory 64 --swap 256
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=20
seconds=60
positional=0
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seeds) seeds=$2; shift 2 ;;
    --seeds=*) seeds=${1#*=}; shift ;;
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
    --seed | --seed=*) echo "stress-campaign.sh: the campaign sets --seed itself (1..SEEDS)" >&2; exit 2 ;;
  esac
done
scripts/setup.sh
for preset in release tsan; do
  cmake --preset "$preset" >/dev/null
  cmake --build "build/$preset" --target mirrormm_cli
  for seed in $(seq 1 "$seeds"); do
    TSAN_OPTIONS="suppressions=$PWD/tests/tsan.supp halt_on_error=1" \
      "build/$preset/mirrormm" stress ${threads[@]+"${threads[@]}"} ${duration[@]+"${duration[@]}"} --seed "$seed" \
      ${extra[@]+"${extra[@]}"} \
      2>/dev/null | tail -n 1 | sed "s/^/$preset seed $seed: /"
  done
done
