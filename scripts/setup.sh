#!/usr/bin/env bash
# Installs every Debian package mirrormm needs to build, test and benchmark. Idempotent; runs
# as root or through sudo.
set -euo pipefail
PACKAGES=(
  build-essential g++ cmake ninja-build pkg-config
  clang-14 libclang-rt-14-dev lld-14
  liburcu-dev libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev libfmt-dev
  nlohmann-json3-dev librapidcheck-dev libabsl-dev
  libjs-chart.js chromium python3 parallel
)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all packages present"
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "setup: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
