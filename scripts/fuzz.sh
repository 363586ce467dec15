#!/bin/bash
# Fuzz the QXL device with QEMU's generic fuzzer (libFuzzer, ASan, UBSan).
#
#   fuzz.sh [SECONDS [TARGET...]]      default: 600 s, target qxl-vga
#   fuzz.sh --coverage [TARGET...]     edges reached in hw/display/qxl*.c
#
# TARGET is qxl-vga (one qxl-vga) or qxl (qxl-vga + a secondary qxl): the
# generic-fuzz configurations the series adds.  Each target runs FUZZ_JOBS
# fuzzer processes side by side (default: the number of CPUs divided by the
# number of targets, at least 1), each for SECONDS, sharing the target's
# corpus: the crashes that depend on timing between the fuzzer's writes and
# the spice worker show up far sooner with several jobs than with one.  The
# corpus grows in build/fuzz/corpus-TARGET (kept between runs, seeded from
# tests/fuzz/qxl-seeds.c), crashes, leaks, sanitizer reports and hangs land
# in build/fuzz/artifacts/ (every death keeps its input, spice-server's
# fatal errors included), and every job appends a line to build/fuzz/ledger
# (target, CPU seconds, executions, result, job).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

mode=fuzz
if [ "${1:-}" = --coverage ]; then
    mode=coverage
    shift
    secs=0
else
    secs=${1:-600}
    [ $# -eq 0 ] || shift
fi
targets=("${@:-qxl-vga}")
case $secs in *[!0-9]*) die "SECONDS must be a number, not $secs" ;; esac

[ -d "$top/build/tree/.git" ] || "$top/scripts/tree.sh"
"$top/scripts/build-asan.sh" qemu-fuzz-x86_64
fuzzer=$top/build/asan/qemu-fuzz-x86_64
out=$top/build/fuzz
mkdir -p "$out/artifacts"

# ASan: report leaks too, and turn SIGTRAP (spice-server's fatal errors,
# g_error()) into a report, so that libFuzzer saves the input; UBSan: every
# finding is fatal, with a stack
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1:handle_sigtrap=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/fuzz/lsan.supp}

# Where generic-fuzz's (index, offset) operands land.  The fuzzer counts the
# fuzzable regions in flat-view order: in I/O space the Bochs VBE and VGA
# ports (6 ranges) come before qxl's I/O BAR, which libqos maps at 0xc000;
# in memory, the VGA window at 0xa0000 comes before BAR 0 (RAM), mapped at
# the bottom of libqos' PCI hole.  The seeds are checked to really reach
# native mode below, so a change in this layout cannot go unnoticed.
QXL_FUZZ_IO_INDEX=6
QXL_FUZZ_RAM_INDEX=1
QXL_FUZZ_RAM_ADDR=0xe0000000

# Functions only a native-mode, drawing, rendering device runs
native_funcs="qxl_add_memslot qxl_create_guest_primary qxl_spice_update_area
interface_get_command qxl_track_command"

seeds_for() {
    local target=$1 dir f
    dir=$out/seeds-$target
    rm -rf "$dir"; mkdir -p "$dir"
    "$out/qxl-seeds" "$dir" $QXL_FUZZ_IO_INDEX $QXL_FUZZ_RAM_INDEX \
        $QXL_FUZZ_RAM_ADDR >&2
    ASAN_OPTIONS=detect_leaks=0 "$fuzzer" --fuzz-target="generic-fuzz-$target" \
        -runs=0 -print_coverage=1 "$dir" >"$out/seeds-$target.log" 2>&1 ||
        die "the seed corpus crashes generic-fuzz-$target (log: $out/seeds-$target.log)"
    for f in $native_funcs; do
        grep -q "^COVERED_FUNC: .* $f " "$out/seeds-$target.log" ||
            die "the seeds do not reach $f in generic-fuzz-$target (log: $out/seeds-$target.log)"
    done
    echo "$dir"
}

run_one() {
    local target=$1 job=$2 seeds=$3 log rc=0
    local corpus=$out/corpus-$target
    mkdir -p "$corpus"
    log=$out/fuzz-$target-$job.log
    step "fuzzing generic-fuzz-$target, job $job, for $secs s (log: $log)"
    # libFuzzer's own -timeout cannot see a hang here: its SIGALRM may go
    # to the spice worker thread.  Watch the main thread instead: while
    # fuzzing it is always running; if it used no CPU for a minute it is
    # stuck (e.g. waiting for a worker that will never answer), and
    # SIGABRT makes libFuzzer save the input as a crash.
    "$fuzzer" --fuzz-target="generic-fuzz-$target" "$corpus" "$seeds" \
        -max_total_time="$secs" -timeout=60 -rss_limit_mb=6144 \
        -max_len=16384 -print_final_stats=1 \
        -artifact_prefix="$out/artifacts/$target-$job-" >"$log" 2>&1 &
    local pid=$! ticks=0 last=-1 idle=0 now hz
    hz=$(getconf CLK_TCK)
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        now=$(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null) || break
        [ -n "$now" ] || break
        ticks=$(awk '{print $14 + $15 + $16 + $17}' "/proc/$pid/stat" 2>/dev/null || echo "$ticks")
        if [ "$(awk '{print $14 + $15}' "/proc/$pid/task/$pid/stat" 2>/dev/null)" = "$last" ]; then
            idle=$((idle + 5))
        else
            idle=0
            # (the fuzzer may just have exited: not an error, set -e)
            last=$(awk '{print $14 + $15}' "/proc/$pid/task/$pid/stat" 2>/dev/null || true)
        fi
        if [ $idle -ge 60 ]; then
            echo "fuzz.sh: main thread idle for 60 s: hang, aborting" >>"$log"
            command -v gdb >/dev/null &&
                gdb -p "$pid" -batch -ex "thread apply all bt 15" \
                    >"$out/artifacts/$target-$job-hang-$(date +%s).bt" 2>&1
            kill -ABRT "$pid"
            break
        fi
    done
    wait "$pid" || rc=$?
    local execs cpu result
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
    cpu=$((ticks / hz))
    if [ "$rc" -eq 0 ]; then
        result=clean
    elif [ "$rc" -eq 72 ] && grep -q 'run interrupted' "$log"; then
        result=interrupted     # SIGINT: stopped by hand, nothing found
        rc=0
    else
        result="FINDING rc=$rc $(grep -E -m1 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$log" || true)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" \
        "$cpu" "${execs:-0}" "$result" "job $job/$jobs" >>"$out/ledger"
    grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "$log" | tail -1 || true
    echo "generic-fuzz-$target job $job: $result (${execs:-?} executions)"
    [ "$rc" -eq 0 ]
}

coverage_one() {
    local target=$1 seeds log
    local corpus=$out/corpus-$target
    seeds=$(seeds_for "$target")
    log=$out/coverage-$target.log
    "$fuzzer" --fuzz-target="generic-fuzz-$target" -runs=0 -print_coverage=1 \
        "$corpus" "$seeds" >"$log" 2>&1 || true
    "$PYTHON" - "$log" "$target" <<'EOF'
import re, sys
cov = tot = 0
funcs = {}
for line in open(sys.argv[1], errors='replace'):
    m = re.match(r'(UN)?COVERED_FUNC: hits: (\d+) edges: (\d+)/(\d+) (\S+) (\S+)', line)
    if not m or not re.search(r'hw/display/qxl[^/]*\.c:', m.group(6)):
        continue
    c, t = int(m.group(3)), int(m.group(4))
    funcs[m.group(5)] = (c, t)
if not funcs:
    # older libFuzzer: uncovered functions listed without edge counts
    print(f"generic-fuzz-{sys.argv[2]}: no per-function coverage in the log")
    sys.exit(0)
cov = sum(c for c, t in funcs.values())
tot = sum(t for c, t in funcs.values())
hit = sum(1 for c, t in funcs.values() if c)
print(f"generic-fuzz-{sys.argv[2]}: hw/display/qxl*.c edges {cov}/{tot} "
      f"({100.0 * cov / max(tot, 1):.1f}%), functions {hit}/{len(funcs)}")
EOF
}

cc -O1 -Wall $(pkg-config --cflags spice-protocol) \
    -o "$out/qxl-seeds" "$top/tests/fuzz/qxl-seeds.c" ||
    die "cannot build the seed generator"

fail=0
if [ "$mode" = coverage ]; then
    for t in "${targets[@]}"; do coverage_one "$t"; done
    exit 0
fi
jobs=${FUZZ_JOBS:-$(( $(nproc) / ${#targets[@]} ))}
[ "$jobs" -ge 1 ] 2>/dev/null || jobs=1
pids=()
for t in "${targets[@]}"; do
    seeds=$(seeds_for "$t")
    for j in $(seq 1 "$jobs"); do
        run_one "$t" "$j" "$seeds" &
        pids+=($!)
    done
done
for p in "${pids[@]}"; do
    wait "$p" || fail=1
done
step "ledger (build/fuzz/ledger): total CPU seconds per target"
awk -F'\t' '{s[$2] += $3; n[$2] += $4} END {for (t in s) printf "  %-8s %7d s %10d executions\n", t, s[t], n[t]}' "$out/ledger"
exit $fail
