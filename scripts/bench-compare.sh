#!/usr/bin/env bash
# Compares one benchmark program of this tree with the same program built from another
# revision, in the same run: the two binaries take turns (ROUNDS rounds, each a Google
# Benchmark run with --benchmark_repetitions), so that whatever else the machine does weighs
# on both alike. Prints, per benchmark, the median over the rounds of each side's median and
# the ratio this/baseline (above 1: this tree is slower).
#
#   scripts/bench-compare.sh [--rounds N] [--bench NAME] [--filter REGEX] BASE_REV
#
# NAME is a target in bench/ (default primary_mmu_bench); REGEX a --benchmark_filter
# (default: the model's anonymous fault benchmarks). BASE_REV is built in a temporary
# git worktree with the release preset (ccache is used when installed); this tree's build
# is build/release.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=7
bench=primary_mmu_bench
filter='BM_Model_Fault(Touch|In)/'
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --bench) bench=$2; shift 2 ;;
    --filter) filter=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "bench-compare.sh: unknown option $1" >&2; exit 2 ;;
    *) break ;;
  esac
done
[ $# -eq 1 ] || { echo "usage: scripts/bench-compare.sh [--rounds N] [--bench NAME] [--filter REGEX] BASE_REV" >&2; exit 2; }
base_rev=$(git rev-parse --verify "$1^{commit}") || { echo "bench-compare.sh: no such revision: $1" >&2; exit 2; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake --preset release >/dev/null
cmake --build build/release --target "$bench" >/dev/null
wt=$(mktemp -d /tmp/mirrormm-base.XXXXXX)
cleanup() { git worktree remove --force "$wt" >/dev/null 2>&1 || rm -rf "$wt"; }
trap cleanup EXIT
git worktree add -q --detach "$wt" "$base_rev"
(cd "$wt" && CCACHE_BASEDIR="$wt" cmake --preset release "${launcher[@]}" >/dev/null &&
  cmake --build build/release --target "$bench" >/dev/null)

this_bin=build/release/bench/$bench
base_bin=$wt/build/release/bench/$bench
out=$(mktemp -d /tmp/mirrormm-cmp.XXXXXX)
for ((r = 0; r < rounds; r++)); do
  for side in base this; do
    bin=$this_bin; [ $side = base ] && bin=$base_bin
    "$bin" --benchmark_filter="$filter" --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
      --benchmark_out="$out/run.csv" --benchmark_out_format=csv >/dev/null 2>&1
    awk -F, '$1 ~ /_median"$/ { gsub(/"/, "", $1); sub(/_median$/, "", $1); print $1, $3 }' "$out/run.csv" >>"$out/$side"
  done
done
echo "$bench, $rounds rounds, baseline $(git log -1 --format='%h %s' "$base_rev" | cut -c1-60)"
awk '
  function median(arr, n,   i, j, t) {
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (arr[j] < arr[i]) { t = arr[i]; arr[i] = arr[j]; arr[j] = t }
    return n % 2 ? arr[(n + 1) / 2] : (arr[n / 2] + arr[n / 2 + 1]) / 2
  }
  FNR == 1 { side = (FILENAME ~ /\/base$/) ? "base" : "this" }
  { k = $1; n[side, k]++; v[side, k, n[side, k]] = $2; names[k] = 1 }
  END {
    for (k in names) {
      delete a; for (i = 1; i <= n["base", k]; i++) a[i] = v["base", k, i]; mb = median(a, n["base", k])
      delete a; for (i = 1; i <= n["this", k]; i++) a[i] = v["this", k, i]; mt = median(a, n["this", k])
      printf "%-48s %14.0f %14.0f %8.3f\n", k, mb, mt, mt / mb
    }
  }' "$out/base" "$out/this" | sort >"$out/table"
printf "%-48s %14s %14s %8s\n" benchmark "baseline ns" "this ns" ratio
cat "$out/table"
rm -rf "$out"
