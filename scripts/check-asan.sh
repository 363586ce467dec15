#!/bin/bash
# make check-asan: the QXL qtests against the ASan+UBSan build.
#
# Builds build/asan (scripts/build-asan.sh: clang, -fsanitize=address,
# undefined, plus libFuzzer coverage, which does not change behaviour) and
# runs tests/qtest/qxl-async-test there.  UBSan stops at the first report
# (halt_on_error), so undefined behaviour fails the case it happens in; any
# AddressSanitizer or UBSan report in the log fails the run as well.
#
# Leak detection is off for these runs: QEMU does not free everything on
# exit, so LeakSanitizer would report at every quit.  Leaks while the
# device works are the fuzzer's job (scripts/fuzz.sh checks every input).
#
# Then replays the fuzzer's regression inputs (tests/fuzz/regressions/).
#
# Prints the qtest's TAP, then one line per sanitizer check, then
# "N passed, N failed".
set -uo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
cd "$top"

[ -d build/tree/.git ] || scripts/tree.sh || die "cannot make the work tree"
scripts/build-asan.sh qemu-system-x86_64 tests/qtest/qxl-async-test \
    qemu-fuzz-x86_64 >&2 ||
    die "ASan build failed"

log=build/check-asan.log
export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:symbolize=1
export UBSAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_stacktrace=1
export QTEST_QEMU_BINARY=./qemu-system-x86_64
export QTEST_QEMU_IMG=false

# The fault matrix runs beside the other cases, in a second process (the
# cases are mostly QEMU start-up: this nearly halves the time on 2 CPUs).
(cd build/asan && timeout 1500 ./tests/qtest/qxl-async-test --tap -k \
    -p /x86_64/qxl/fault) >"$log.fault" 2>&1 &
pid=$!
(cd build/asan && timeout 1500 ./tests/qtest/qxl-async-test --tap -k \
    -s /x86_64/qxl/fault) >"$log" 2>&1
rc=$?
wait $pid || rc=1
cat "$log.fault" >>"$log"
rm -f "$log.fault"
grep -E '^ *(not )?ok [0-9]+' "$log"

p=$(grep -c -E '^ *ok [0-9]+' "$log")
f=$(grep -c -E '^ *not ok [0-9]+' "$log")
n=$((p + f))
report() {
    n=$((n + 1))
    if [ "$1" = ok ]; then
        p=$((p + 1)); echo "ok $n - $2"
    else
        f=$((f + 1)); echo "not ok $n - $2"
    fi
}
if grep -q -E 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' "$log"; then
    report fail "no sanitizer report (see $log)"
    grep -E -A12 'ERROR: AddressSanitizer|runtime error:' "$log" | head -40 |
        sed 's/^/# /'
else
    report ok "no sanitizer report in the QXL qtests"
fi
# Every input the fuzzer found a crash or hang with, replayed on the
# fuzzing binary (tests/fuzz/regressions/<target>-<what>).
for input in tests/fuzz/regressions/*; do
    [ -f "$input" ] || continue
    name=$(basename "$input")
    case $name in
    qxl-vga-*) target=qxl-vga ;;
    *) target=qxl ;;
    esac
    if timeout 120 env ASAN_OPTIONS=detect_leaks=1 build/asan/qemu-fuzz-x86_64 \
            --fuzz-target="generic-fuzz-$target" "$input" \
            >"build/check-asan-$name.log" 2>&1; then
        report ok "fuzzer regression $name (generic-fuzz-$target)"
    else
        report fail "fuzzer regression $name (generic-fuzz-$target, log build/check-asan-$name.log)"
        grep -E -m3 'ERROR|SUMMARY|Spice' "build/check-asan-$name.log" | sed 's/^/# /'
    fi
done

# A real vCPU held in the port of a secondary qxl that is unplugged
# meanwhile (tests/stall/smp_tests.py, case unplug), on this build.
smp_log=build/check-asan-unplug.log
if STALL_TEST_DIR=build/stall-tests/smp-asan ASAN_OPTIONS=detect_leaks=0 \
        timeout 600 "$PYTHON" tests/stall/smp_tests.py build/asan/qemu-system-x86_64 \
        unplug >"$smp_log" 2>&1; then
    report ok "unplug while a vCPU is held in the device's port, ASan/UBSan build"
else
    report fail "unplug while a vCPU is held in the device's port, ASan/UBSan build (log $smp_log)"
    grep -E '^(not ok|# )' "$smp_log" | head -20 | sed 's/^/# /'
fi

if [ $rc -eq 0 ]; then
    report ok "qxl-async-test under ASan/UBSan exits 0"
else
    report fail "qxl-async-test under ASan/UBSan exits 0 (status $rc, log $log)"
    tail -20 "$log" | sed 's/^/# /'
fi
echo "1..$n"
echo "$p passed, $f failed"
[ "$f" -eq 0 ]
