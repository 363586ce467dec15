#!/bin/bash
# The instrumented build: clang with AddressSanitizer, UndefinedBehaviorSanitizer
# and libFuzzer coverage, in build/tree/build-asan (link: build/asan).  One
# build serves both `make check-asan` (qemu-system-x86_64 and the QXL qtests)
# and `make fuzz` (qemu-fuzz-x86_64).
#
#   build-asan.sh [ninja targets...]
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

export QXL_BUILD_SUBDIR=build-asan
export QXL_EXTRA_CONFIG="--cc=clang --cxx=clang++ --enable-asan --enable-ubsan --enable-fuzzing"
# Not part of the work tree's history
grep -qx '/build-asan/' "$top/build/tree/.git/info/exclude" 2>/dev/null ||
    echo '/build-asan/' >>"$top/build/tree/.git/info/exclude"
[ $# -gt 0 ] || set -- qemu-system-x86_64 qemu-fuzz-x86_64 tests/qtest/qxl-async-test
exec "$top/scripts/build.sh" "$top/build/tree" "$top/build/asan" "$@"
