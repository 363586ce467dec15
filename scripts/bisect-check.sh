#!/bin/bash
# Apply the series one patch at a time to a scratch tree and build each
# step incrementally (ccache and ninja keep it cheap); where a step has the
# QXL qtest, run it too.  One TAP line per patch.
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

# --build-only: apply and build each step, without its qtest (make check;
# the full check is make bisect-check and make check-long)
tests=1
[ "${1:-}" = --build-only ] && tests=0

tree=$top/build/bisect
builddir=$tree/build

if [ ! -d "$tree/.git" ]; then
    git clone -q --no-checkout "$top/build/base" "$tree" ||
        die "bisect: cannot clone the base"
    git -C "$tree" config user.name "qxl-async"
    git -C "$tree" config user.email "qxl-async@invalid"
fi
git -C "$tree" checkout -q -f -B bisect base
git -C "$tree" clean -q -f -d -x -e /build

n=0; rc=0
while read -r p; do
    case $p in ''|\#*) continue ;; esac
    n=$((n + 1))
    if ! git -C "$tree" am -q "$top/patches/$p" >"$tree.am.log" 2>&1; then
        sed 's/^/# /' "$tree.am.log"
        git -C "$tree" am --abort 2>/dev/null
        echo "not ok $n - $p applies"
        rc=1
        break
    fi
    targets=(qemu-system-x86_64)
    [ -f "$tree/tests/qtest/qxl-async-test.c" ] &&
        targets+=(tests/qtest/qxl-async-test)
    if ! "$top/scripts/build.sh" "$tree" "$top/build/bisect-build" "${targets[@]}" \
            2>"$tree.err"; then
        sed 's/^/# /' "$tree.err"
        echo "not ok $n - $p builds"
        rc=1
        continue
    fi
    # The fault matrix (/x86_64/qxl/fault/...) runs beside the other
    # cases, in a second process: the cases are mostly QEMU start-up, so
    # this nearly halves the time on two CPUs.
    if [ $tests = 1 ] && [ -x "$builddir/tests/qtest/qxl-async-test" ] &&
       ! (cd "$builddir" || exit 1
            export QTEST_QEMU_BINARY=./qemu-system-x86_64
            timeout 600 ./tests/qtest/qxl-async-test -p /x86_64/qxl/fault \
                >"$tree.test-fault.log" 2>&1 &
            pid=$!
            timeout 600 ./tests/qtest/qxl-async-test -s /x86_64/qxl/fault \
                >"$tree.test.log" 2>&1
            rc=$?
            wait $pid || rc=1
            cat "$tree.test-fault.log" >>"$tree.test.log"
            exit $rc); then
        grep -E '^not ok|Bail|ERROR|signal|Aborted' "$tree.test.log" | sed 's/^/# /'
        cp "$tree.test.log" "$tree.test-$n.failed.log"
        echo "# log: $tree.test-$n.failed.log"
        echo "not ok $n - $p: qxl-async-test"
        rc=1
        continue
    fi
    if [ $tests = 1 ]; then
        echo "ok $n - $p builds and passes its tests"
    else
        echo "ok $n - $p applies and builds"
    fi
done <"$top/patches/series"
echo "1..$n"
exit $rc
