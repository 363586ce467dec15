#!/bin/bash
# make check: build the series and run every test.
#
# Each test program prints TAP; every "ok"/"not ok" line counts, and so
# does each of the project's own checks (build, checkpatch per patch,
# bisect step per patch).  The last line is "N passed, N failed"; the exit
# status is non-zero on any failure.
#
#   check.sh [--long]
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
cd "$top"

long=0
[ "${1:-}" = --long ] && long=1

logdir=$top/build/check-logs
rm -rf "$logdir"; mkdir -p "$logdir"
passed=0
failed=0
failures=()
timings=()
todos=()

pass() { passed=$((passed + 1)); echo "ok - $*"; }
fail() { failed=$((failed + 1)); failures+=("$*"); echo "not ok - $*"; }

# run_tap NAME CMD...: run a TAP-producing command, count its results.
run_tap() {
    local name=$1; shift
    local log=$logdir/$name.log
    local start=$SECONDS
    step "$name"
    "$@" >"$log" 2>&1
    local rc=$?
    timings+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
    local p f
    # "# TODO": a check of a known bug, listed at the end, counted neither way
    p=$(grep -E '^ *ok [0-9]+' "$log" | grep -c -v '# TODO ')
    f=$(grep -E '^ *not ok [0-9]+' "$log" | grep -c -v '# TODO ')
    grep -E '^ *(not )?ok [0-9]+' "$log" | sed "s|^ *|    $name: |"
    while IFS= read -r line; do
        todos+=("$name: $line")
    done < <(grep -E '^ *(not )?ok [0-9]+.*# TODO ' "$log")
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -gt 0 ]; then
        failures+=("$name: $f case(s) failed")
    fi
    if [ $rc -ne 0 ] && [ "$f" -eq 0 ]; then
        fail "$name exited with status $rc (log: $log)"
        tail -20 "$log" | sed 's/^/    | /'
    elif [ "$p" -eq 0 ] && [ "$f" -eq 0 ]; then
        fail "$name ran no test (log: $log)"
    fi
}

finish() {
    echo
    if [ ${#timings[@]} -gt 0 ]; then
        echo "Time per part (whole check: $SECONDS s):"
        printf '  %s\n' "${timings[@]}"
    fi
    if [ ${#todos[@]} -gt 0 ]; then
        echo "Known bugs (TAP TODO; counted neither as passed nor failed):"
        printf '  %s\n' "${todos[@]}"
    fi
    if [ ${#failures[@]} -gt 0 ]; then
        echo "Failures:"
        printf '  %s\n' "${failures[@]}"
        echo "Logs: $logdir"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}

# series_applies SERIES: the work tree of SERIES (qemu or spice; see
# series_select in lib.sh) is made if absent, and must be the series in its
# patches directory: make check tests the truth, not whatever the work tree
# happens to hold.
series_applies() {
    local QXL_SERIES=$1
    series_select
    local tree=${series_tree#"$top/"} patches=${series_patches#"$top/"}
    local label=${series_make:+${series_make%-} }series
    if [ ! -d "$series_tree/.git" ]; then
        QXL_SERIES=$QXL_SERIES scripts/tree.sh || { fail "$label applies to the base"; return 1; }
    elif ! QXL_SERIES=$QXL_SERIES scripts/export.sh --check "$series_tree"; then
        fail "$tree matches $patches/ (run 'make ${series_make}export', or 'make ${series_make}tree FORCE=1')"
        return 1
    elif [ -n "$(git -C "$series_tree" status --porcelain --untracked-files=no)" ]; then
        # the builds compile the work tree's files, edits not committed
        # included: they would be tested in place of the series
        git -C "$series_tree" status --short --untracked-files=no | sed 's/^/# /'
        fail "$tree holds no uncommitted changes (commit and export them, or 'make ${series_make}tree FORCE=1')"
        return 1
    fi
    pass "$label applies to $series_name $(cat "$series_base/$series_vfile")"
}

# 1. Both series apply to their bases (the patched QEMU links the patched
#    spice-server), and the spice-server one to the newest spice too.
series_applies qemu || finish
series_applies spice || finish
if scripts/spice-base.sh --sid >"$logdir/spice-sid.log" 2>&1; then
    pass "spice series applies to spice $(cat build/spice-sid/.spice-base-version) (Debian sid)"
else
    tail -20 "$logdir/spice-sid.log" >&2
    fail "spice series applies to the newest spice (Debian sid; log: $logdir/spice-sid.log)"
fi

# 1b. Build the patched spice-server (libspice-server, into build/spice) and
#     run its own test suite.
start=$SECONDS
scripts/spice-build.sh 2>"$logdir/spice-build.log"
rc=$?
timings+=("$(printf '%5d s  %s' $((SECONDS - start)) spice-build)")
if [ $rc = 0 ]; then
    pass "build libspice-server"
else
    cat "$logdir/spice-build.log" >&2
    fail "build libspice-server"
    finish
fi
run_tap spice-test scripts/spice-test.sh

# 2. Build the patched emulator, linked to build/spice's libspice-server,
#    and the qtests.
qtests=(display-vga-test device-introspect-test)
[ -f build/tree/tests/qtest/qxl-async-test.c ] && qtests+=(qxl-async-test)
if QXL_SPICE_PREFIX=$spice_prefix scripts/build.sh build/tree build/patched qemu-system-x86_64 \
        "${qtests[@]/#/tests/qtest/}" 2>"$logdir/build.log"; then
    pass "build patched QEMU and qtests"
else
    cat "$logdir/build.log" >&2
    fail "build patched QEMU and qtests"
    finish
fi

# The unpatched base, for the compatibility tests (migration both ways).
if scripts/build.sh build/base build/upstream qemu-system-x86_64 \
        2>"$logdir/build-upstream.log"; then
    pass "build unpatched QEMU $(cat build/base/.qxl-base-version)"
else
    cat "$logdir/build-upstream.log" >&2
    fail "build unpatched QEMU"
fi

# 3. The qtests.
export QTEST_QEMU_BINARY=./qemu-system-x86_64
export QTEST_QEMU_IMG=false
for t in "${qtests[@]}"; do
    run_tap "qtest-$t" bash -c "cd build/patched && \
        timeout 600 ./tests/qtest/$t --tap -k"
done

# 3b. The QXL qtests again, on the ASan+UBSan build (make check-asan).
run_tap qtest-asan scripts/check-asan.sh

# 4. checkpatch.pl over every patch.
run_tap checkpatch scripts/checkpatch.sh

# 5. Every patch applies and builds on its own, and its qtest passes.
# Each step applies and builds; make check-long also runs each step's qtest
# (that is make bisect-check, about 8 minutes more on 2 CPUs).
if [ $long = 1 ]; then
    run_tap bisect scripts/bisect-check.sh
else
    run_tap bisect scripts/bisect-check.sh --build-only
fi

# 6. Real guests on the patched binary: the Linux qxl driver on -vga qxl
#    and on a secondary head, under libvirt, with a frozen SPICE client,
#    across live migration (also to and from the unpatched base); and a
#    real vCPU blocked in a synchronous port behind a frozen SPICE client.
qemu=build/patched/qemu-system-x86_64
for t in smoke secondary libvirt frozen-client; do
    [ -x "tests/guest/$t.sh" ] && run_tap "guest-$t" "tests/guest/$t.sh" "$qemu"
done
[ -x tests/guest/migrate-compat.sh ] &&
    run_tap guest-migrate-compat tests/guest/migrate-compat.sh "$qemu" \
        build/upstream/qemu-system-x86_64
if [ -x tests/guest/migrate.sh ]; then
    run_tap guest-migrate tests/guest/migrate.sh "$qemu" "$([ $long = 1 ] && echo 10 || echo 2)"
fi
# A frozen client holds nothing up with the spice-server series, which the
# patched QEMU links (build/spice): two real clients, one frozen.
[ -x tests/spice/run.sh ] && run_tap spice-lagging tests/spice/run.sh "$qemu"
# A desktop guest (issue 15): Debian's Xorg on the qxl driver, drawing,
# GetImage (UPDATE_AREA), xrandr; the image is built once (about 100 s) and
# cached in build/desktop.
[ -x tests/desktop/run.sh ] && run_tap desktop tests/desktop/run.sh "$qemu"
# make check-long: 10 minutes of desktop drawing behind a client frozen and
# thawed every 30 s, then two migrations (SOAK_SECONDS overrides the 600)
[ $long = 1 ] && run_tap desktop-soak tests/desktop/soak.sh "$qemu"
# What follows holds a vCPU, or an operation, behind a frozen client: that
# needs a spice-server that waits for its clients, i.e. Debian's, which the
# patched QEMU must work with too (LD_LIBRARY_PATH overrides its RUNPATH).
debian_spice=$(ldconfig -p | awk '/libspice-server\.so\.1 /{ print $NF; exit }')
step "held-vCPU suites with Debian's ${debian_spice:-libspice-server (not found)}"
with_debian_spice() {
    LD_LIBRARY_PATH=$(dirname "$debian_spice") "$@"
}
[ -x tests/stall/run.sh ] && run_tap stall with_debian_spice tests/stall/run.sh "$qemu"
# The same with several vCPUs: one held in a synchronous port while the
# others use the device, and management commands meanwhile.
[ -f tests/stall/smp_selftest.py ] &&
    run_tap stall-smp-guest "$PYTHON" tests/stall/smp_selftest.py "$qemu"
[ -x tests/stall/smp.sh ] && run_tap stall-smp with_debian_spice tests/stall/smp.sh "$qemu"
# The fault matrix: sync and async UPDATE_AREA held in flight by a frozen
# SPICE client while reset, stop/cont, migration, client disconnect or
# resume, or quit hit it.
[ -x tests/faults/run.sh ] && run_tap faults with_debian_spice tests/faults/run.sh "$qemu"
[ -f tests/faults/guest_reset.py ] &&
    run_tap faults-guest-reset with_debian_spice "$PYTHON" tests/faults/guest_reset.py "$qemu"

finish
