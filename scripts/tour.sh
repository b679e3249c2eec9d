#!/usr/bin/env bash
# The tour: set up, build (release), replay the tour of the primary MMU and the tour of a
# secondary MMU kept coherent by MMU notifiers (examples/device_mirror.mms), each command
# beside its result, then the main job: `mirrormm run`, the whole system at work for ten
# seconds with every checker on.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cmake --preset release >/dev/null
cmake --build build/release --target mirrormm_cli
echo "== examples/tour.mms (the primary MMU)"
build/release/mirrormm replay --pretty examples/tour.mms
echo "== examples/device_mirror.mms (secondary MMUs and MMU notifiers)"
build/release/mirrormm replay --pretty examples/device_mirror.mms
echo "== mirrormm run (processes, devices, memory pressure and swap, every checker on)"
build/release/mirrormm run --seconds 10
