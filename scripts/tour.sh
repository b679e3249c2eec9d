#!/usr/bin/env bash
# The main job: set up, build (release) and replay the tour script.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release --target mirrormm_cli
build/release/mirrormm replay examples/tour.mms
