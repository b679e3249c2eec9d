#!/usr/bin/env bash
# The installed mirrormm, as a user outside the tree sees it: installs the build tree BUILD
# into a temporary prefix, builds and runs examples/driver-project against it with
# find_package(mirrormm), builds and runs a one-file program with
# `pkg-config --cflags --libs mirrormm`, and runs the installed program (--version, and a host
# script through the installed worker). Reuses the built library: takes a few seconds.
#
# Usage: install_test.sh SOURCE_DIR BUILD_DIR CXX [LAUNCHER]
set -euo pipefail
src=$1 build=$2 cxx=$3 launcher=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "install_test: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >/dev/null
for f in include/mirrormm/system.h include/mirrormm/mmu_notifier.h include/mirrormm/base/rcu.h \
         include/mirrormm/version.h lib/libmirrormm.a lib/cmake/mirrormm/mirrormmConfig.cmake \
         lib/cmake/mirrormm/mirrormmConfigVersion.cmake lib/cmake/mirrormm/mirrormmTargets.cmake \
         lib/pkgconfig/mirrormm.pc bin/mirrormm libexec/mirrormm/mirrormm-host-worker; do
  [ -e "$prefix/$f" ] || fail "not installed: $f"
done
version=$(sed -n 's/^#define MIRRORMM_VERSION "\(.*\)"$/\1/p' "$prefix/include/mirrormm/version.h")

echo "== examples/driver-project with find_package(mirrormm)"
cmake -S "$src/examples/driver-project" -B "$tmp/driver" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_CXX_COMPILER="$cxx" ${launcher:+-DCMAKE_CXX_COMPILER_LAUNCHER="$launcher"} >/dev/null
cmake --build "$tmp/driver" >/dev/null
"$tmp/driver/driver" | tee "$tmp/driver.out"
grep -q "^mirrormm $version: " "$tmp/driver.out" || fail "the driver does not print the installed version"

echo "== one file with pkg-config --cflags --libs mirrormm"
cat >"$tmp/one.cc" <<'CC'
#include <cstdio>

#include "mirrormm/mman.h"
#include "mirrormm/system.h"

int main() {
  mirrormm::System sys;
  mirrormm::Process* p = sys.process(1);
  auto r = sys.mmap(p, 0, 4096, mirrormm::kProtRead | mirrormm::kProtWrite,
                    mirrormm::kMapPrivate | mirrormm::kMapAnonymous);
  if (!r.ok()) return 1;
  std::printf("mmap: %#llx\n", static_cast<unsigned long long>(r.value()));
  return 0;
}
CC
flags=$(PKG_CONFIG_PATH=$prefix/lib/pkgconfig pkg-config --cflags --libs mirrormm)
# shellcheck disable=SC2086  # the flags are words
$launcher "$cxx" -std=c++20 "$tmp/one.cc" -o "$tmp/one" $flags
"$tmp/one" | grep "^mmap: 0x" || fail "the pkg-config program did not map"

echo "== the installed program"
"$prefix/bin/mirrormm" --version | grep -x "mirrormm $version" || fail "--version"
script='mmap 0x200000000000 4K rw- private+anon+fixed
write 0x200000000000 4K 1
munmap 0x200000000000 4K'
out=$(echo "$script" | env -u MIRRORMM_HOST_WORKER timeout 60 "$prefix/bin/mirrormm" host -)
[ "$out" = "$(printf '0x200000000000\nok\n0')" ] || fail "installed host run printed: $out"
# The worker it ran is the installed one: replaced by a stand-in that leaves a mark, it is
# the one that runs (and the run fails with the host runner's exit status 1).
worker=$prefix/libexec/mirrormm/mirrormm-host-worker
printf '#!/bin/sh\ntouch "%s"\nexit 1\n' "$tmp/ran" >"$worker"
rc=0
echo "$script" | env -u MIRRORMM_HOST_WORKER timeout 60 "$prefix/bin/mirrormm" host - >/dev/null 2>&1 || rc=$?
[ -e "$tmp/ran" ] || fail "the installed mirrormm did not run libexec/mirrormm/mirrormm-host-worker"
[ "$rc" = 1 ] || fail "a failing host worker gave exit status $rc, not 1"
echo "install_test: ok"
