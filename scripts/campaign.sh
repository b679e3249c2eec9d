#!/usr/bin/env bash
# The long differential campaign: SEEDS random scripts (default 2000) of 300 commands,
# model against the host kernel. Stops at the first divergence and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release --target mirrormm_cli
exec build/release/mirrormm oracle --seeds "${1:-2000}" --seed "${2:-1}" --profile "${3:-anon}"
