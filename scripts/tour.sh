#!/usr/bin/env bash
# The main job: set up, build (release), replay the tour of the primary MMU, then the tour of
# a secondary MMU kept coherent by MMU notifiers (examples/device_mirror.mms).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release --target mirrormm_cli
echo "== examples/tour.mms (the primary MMU)"
build/release/mirrormm replay examples/tour.mms
echo "== examples/device_mirror.mms (secondary MMUs and MMU notifiers)"
build/release/mirrormm replay examples/device_mirror.mms
