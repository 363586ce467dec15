#!/bin/bash
# Apply the series one patch at a time to a scratch tree and build each
# step incrementally (ccache and ninja keep it cheap); where a step has the
# QXL qtest, run it too.  One TAP line per patch.
#
# The series starts with fixes that apply to the unpatched device, before
# the qxl-async API (include/hw/qxl-async.h) is added: for each of them,
# in both modes, the qtest cases it adds must pass with it and fail on the
# step before it, and the test patches among them must pass as a whole.
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

# fixes_run QEMU CASE: run one qtest case against a QEMU binary (in a
# shell of its own, which reports the case's crash to the log, not here)
# (status 124: it did not end within FIXES_TIMEOUT seconds, default 300)
fixes_run() {
    bash -c 'cd "$1" && QTEST_QEMU_BINARY=$2 exec timeout "$3" \
        ./tests/qtest/qxl-async-test -p "$4"' - "$builddir" "$1" \
        "${FIXES_TIMEOUT:-300}" "$2" </dev/null
}

# fixes_step N PATCH: check one patch of the fixes section (see below)
fixes_step() {
    local bin=$builddir/qemu-system-x86_64
    # the previous step's binary: in a directory of its own, under the
    # name libqtest takes the target from, with the build's firmware
    local prev=$builddir/prev/qemu-system-x86_64 c rc failed=() passed=() new=()

    (cd "$builddir" && QTEST_QEMU_BINARY=./qemu-system-x86_64 \
        ./tests/qtest/qxl-async-test -l </dev/null) 2>/dev/null |
        grep '^/' | sort >"$tree.cases"
    touch "$tree.cases.prev"
    mapfile -t new < <(comm -13 "$tree.cases.prev" "$tree.cases")
    mv "$tree.cases" "$tree.cases.prev"
    if git -C "$tree" diff --name-only HEAD~1 HEAD |
            grep -qvE '^(tests/|docs/|MAINTAINERS$)'; then
        # a fix: its new cases pass now, and failed before it
        for c in "${new[@]}"; do
            fixes_run ./qemu-system-x86_64 "$c" >"$tree.fix-case.log" 2>&1 ||
                failed+=("$c")
            [ -x "$prev" ] || continue
            # without the fix: the case fails, in its own checks or by
            # QEMU dying, or hangs (a case passes within seconds), not
            # because QEMU cannot start
            FIXES_TIMEOUT=120 fixes_run "$prev" "$c" >"$tree.prev-case.log" 2>&1
            rc=$?
            if [ $rc = 0 ] || { [ $rc != 124 ] &&
               ! grep -qE 'ERROR:|QEMU death|Broken pipe|signal' "$tree.prev-case.log"; }; then
                passed+=("$c")
            fi
        done
        # ... and the binary without the fix works otherwise
        if [ ${#new[@]} -gt 0 ] && [ -x "$prev" ] &&
           ! fixes_run "$prev" /x86_64/qxl/vga/pci >"$tree.prev-case.log" 2>&1; then
            sed 's/^/# /' "$tree.prev-case.log" | tail -5
            echo "not ok $1 - $2: the binary without it does not run"
            return 1
        fi
        if [ ${#failed[@]} -gt 0 ]; then
            sed 's/^/# /' "$tree.fix-case.log" | tail -20
            echo "not ok $1 - $2: fails its own cases: ${failed[*]}"
            return 1
        fi
        if [ ${#passed[@]} -gt 0 ]; then
            echo "not ok $1 - $2: cases that do not fail without the fix: ${passed[*]}"
            return 1
        fi
        if [ ${#new[@]} -eq 0 ]; then
            fixes_what="a fix without a qtest case (its commit says why)"
        else
            fixes_what="${#new[@]} new case(s) pass, and fail without it"
        fi
    else
        # a test patch: everything passes on the device as it is
        if ! (cd "$builddir" && QTEST_QEMU_BINARY=./qemu-system-x86_64 \
                timeout 600 ./tests/qtest/qxl-async-test </dev/null) \
                >"$tree.fix-case.log" 2>&1; then
            grep -E '^not ok|ERROR' "$tree.fix-case.log" | sed 's/^/# /' | head
            echo "not ok $1 - $2: its cases fail on the unpatched device"
            return 1
        fi
        fixes_what="$(grep -c '^ok' "$tree.fix-case.log") cases pass on the device as it is"
    fi
    mkdir -p "${prev%/*}"
    ln -sfn ../qemu-bundle "${prev%/*}/qemu-bundle"
    cp "$bin" "$prev"
}

rm -rf "$tree.cases.prev" "$builddir/prev"
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
    # The fixes at the head of the series (every patch before the one
    # that adds the qxl-async API) apply to the unpatched device: the
    # cases each one adds pass with it and fail without it (the previous
    # step's binary); the test patches among them pass as a whole.
    if [ ! -f "$tree/include/hw/qxl-async.h" ]; then
        if ! fixes_step "$n" "$p"; then
            rc=1
            continue
        fi
        echo "ok $n - $p applies and builds; $fixes_what"
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
