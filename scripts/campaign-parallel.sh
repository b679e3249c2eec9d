#!/usr/bin/env bash
# A campaign of `mirrormm oracle` or `mirrormm stress` split into shards that GNU parallel
# runs side by side, one per core (or on other machines with --sshlogin), then merged into
# the verdict the unsharded run prints. See docs/campaigns.md.
#
# Usage: scripts/campaign-parallel.sh [--shards N] [--jobs J] [--records FILE]
#            [--sshlogin LOGINS] [--mirrormm PATH] -- oracle|stress ARGS...
#   --shards N       split the seeds into N shards (default: the number of cores)
#   --jobs J         shards run at the same time on each machine (default: N)
#   --records FILE   where the shards' JSON Lines records go (default:
#                    build/campaign/records.jsonl); their reports go to FILE's .log
#   --sshlogin L     GNU parallel's --sshlogin: run the shards on these machines (mirrormm
#                    must be at PATH on each; the records come back over ssh)
#   --mirrormm PATH  the program (default: build/release/mirrormm, built if missing)
# e.g.
#   scripts/campaign-parallel.sh --shards 4 -- oracle --seeds 200 --profile anon
#   scripts/campaign-parallel.sh --shards 8 -- stress --seeds 16 --seconds 30 --threads 2
#   scripts/campaign-parallel.sh --shards 64 --sshlogin 16/node1,16/node2 \
#       --mirrormm /opt/mirrormm/bin/mirrormm -- oracle --seeds 100000 --keep-going
# Exit status: mirrormm merge's: 0 every seed passed, 1 a finding, 2 a usage error or a
# campaign with seeds missing.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
shards=$(nproc)
jobs=""
records="$root/build/campaign/records.jsonl"
sshlogin=()
mirrormm=""
usage() {
  sed -n '6,21p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
}
while [ $# -gt 0 ]; do
  case "$1" in
    --shards) shards=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --records) records=$2; shift 2 ;;
    --sshlogin) sshlogin=(--sshlogin "$2"); shift 2 ;;
    --mirrormm) mirrormm=$2; shift 2 ;;
    --) shift; break ;;
    *) echo "campaign-parallel.sh: unknown option $1" >&2; usage ;;
  esac
done
[ $# -gt 0 ] || usage
case "$1" in
  oracle | stress) ;;
  *) echo "campaign-parallel.sh: the campaign is mirrormm oracle or mirrormm stress, not $1" >&2; exit 2 ;;
esac
for a in "$@"; do
  case "$a" in
    --shard | --shard=* | --json | --json=*)
      echo "campaign-parallel.sh: the script gives each shard its --shard and --json itself" >&2; exit 2 ;;
  esac
done
case "$shards" in
  '' | *[!0-9]* | 0) echo "campaign-parallel.sh: --shards is a positive number, not $shards" >&2; exit 2 ;;
esac
if ! command -v parallel >/dev/null; then
  echo "campaign-parallel.sh: GNU parallel is not installed (scripts/setup.sh installs it)" >&2
  exit 2
fi
if [ -z "$mirrormm" ]; then
  mirrormm="$root/build/release/mirrormm"
  if [ ! -x "$mirrormm" ]; then
    (cd "$root" && cmake --preset release >/dev/null && cmake --build build/release --target mirrormm_cli) >&2
  fi
fi
mkdir -p "$(dirname "$records")"
log="${records%.jsonl}.log"
# Each shard writes its records to standard output (--json -), which GNU parallel collects
# job by job (whole lines, never interleaved) from this machine or over ssh; the shards'
# reports go to the log. A shard's exit status is not the campaign's: the merge decides.
status=0
parallel -q ${sshlogin[@]+"${sshlogin[@]}"} --jobs "${jobs:-$shards}" \
  "$mirrormm" "$@" --shard "{}/$shards" --json - ::: $(seq 0 $((shards - 1))) >"$records" 2>"$log" || status=$?
# GNU parallel's status counts the shards that exited non-zero (a finding); 255 is its own
# failure.
if [ "$status" -eq 255 ]; then
  echo "campaign-parallel.sh: GNU parallel failed; see $log" >&2
fi
echo "records: $records (shard reports: $log)" >&2
# The merge runs here: with --sshlogin, PATH may exist only on the other machines.
merger=$mirrormm
[ -x "$merger" ] || merger="$root/build/release/mirrormm"
exec "$merger" merge "$records"
