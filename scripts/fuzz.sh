#!/bin/bash
# Fuzz the QXL device with QEMU's generic fuzzer (libFuzzer, ASan, UBSan).
#
#   fuzz.sh [SECONDS [TARGET...]]      default: 600 s, target qxl-vga
#   fuzz.sh --coverage [TARGET...]     edges reached in hw/display/qxl*.c
#
# TARGET is qxl-vga (one qxl-vga) or qxl (qxl-vga + a secondary qxl): the
# generic-fuzz configurations the series adds.  Several targets run side by
# side, each for SECONDS, one CPU each.  The corpus grows in
# build/fuzz/corpus-TARGET (kept between runs, seeded from
# tests/fuzz/qxl-seeds.c), crashes, leaks, sanitizer reports and hangs land
# in build/fuzz/artifacts/, and every run appends a line to
# build/fuzz/ledger (target, CPU seconds, executions, result).
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

# ASan: report leaks too; UBSan: every finding is fatal, with a stack
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$top/tests/fuzz/lsan.supp}

# Which generic-fuzz region indices are qxl's I/O and RAM BARs?  Probe
# with one IN and one READ per index and read the qtest log.
probe() {
    local target=$1 p=$out/probe.bin i
    : >"$p"
    for i in $(seq 0 31); do
        # OP_IN {size 0, base i, offset 0}, OP_READ {size 0, base i, offset 0}
        printf '\x00\x00'"$(printf '\\x%02x' "$i")"'\x00\x00FUZZ' >>"$p"
        printf '\x02\x00'"$(printf '\\x%02x' "$i")"'\x00\x00\x00\x00\x00FUZZ' >>"$p"
    done
    QTEST_LOG=1 "$fuzzer" --fuzz-target="generic-fuzz-$target" "$p" \
        >"$out/probe-$target.log" 2>&1 || {
        tail -20 "$out/probe-$target.log" >&2
        die "probe of generic-fuzz-$target failed"
    }
    "$PYTHON" - "$out/probe-$target.log" <<'EOF'
import re, sys
ins, reads = [], []
for line in open(sys.argv[1], errors='replace'):
    m = re.search(r'\] (inb|readb) (0x[0-9a-f]+)', line)
    if m:
        (ins if m.group(1) == 'inb' else reads).append(int(m.group(2), 16))
# libqos maps the first device's I/O BAR at 0xc000 and its BAR 0 (RAM) at
# the bottom of the PCI hole; the probe ran index 0..31 in order
io = ins.index(0xc000)
ram = reads.index(0xe0000000)
print(io, ram, hex(0xe0000000))
EOF
}

seeds_for() {
    local target=$1 dir=$out/seeds-$target map
    map=$(probe "$target") || exit 1
    mkdir -p "$dir"
    cc -O1 -Wall $(pkg-config --cflags spice-protocol) \
        -o "$out/qxl-seeds" "$top/tests/fuzz/qxl-seeds.c"
    # shellcheck disable=SC2086
    "$out/qxl-seeds" "$dir" $map
    echo "$dir"
}

run_one() {
    local target=$1 corpus=$out/corpus-$target seeds log rc=0
    seeds=$(seeds_for "$target")
    mkdir -p "$corpus"
    log=$out/fuzz-$target.log
    step "fuzzing generic-fuzz-$target for $secs s (log: $log)"
    local TIMEFORMAT='%U %S' times
    times=$( { time "$fuzzer" --fuzz-target="generic-fuzz-$target" \
                   "$corpus" "$seeds" \
                   -max_total_time="$secs" -timeout=60 -rss_limit_mb=6144 \
                   -max_len=16384 -print_final_stats=1 \
                   -artifact_prefix="$out/artifacts/$target-" \
                   >"$log" 2>&1 || echo "rc=$?" >"$log.rc"; } 2>&1 )
    [ ! -f "$log.rc" ] || { rc=$(sed 's/rc=//' "$log.rc"); rm -f "$log.rc"; }
    local execs cpu result
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    [ -n "$execs" ] || execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' "$log" | tail -1)
    cpu=$(echo "$times" | awk '{printf "%d", $1 + $2}')
    if [ "$rc" -eq 0 ]; then
        result=clean
    else
        result="FINDING rc=$rc $(grep -E -m1 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' "$log" || true)"
    fi
    printf '%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$target" \
        "$cpu" "${execs:-0}" "$result" >>"$out/ledger"
    grep -E '^#[0-9]+.*(DONE|pulse|NEW)' "$log" | tail -1 || true
    echo "generic-fuzz-$target: $result (${execs:-?} executions)"
    [ "$rc" -eq 0 ]
}

coverage_one() {
    local target=$1 corpus=$out/corpus-$target seeds log
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

fail=0
if [ "$mode" = coverage ]; then
    for t in "${targets[@]}"; do coverage_one "$t"; done
    exit 0
fi
pids=()
for t in "${targets[@]}"; do
    run_one "$t" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p" || fail=1
done
step "ledger (build/fuzz/ledger): total CPU seconds per target"
awk -F'\t' '{s[$2] += $3; n[$2] += $4} END {for (t in s) printf "  %-8s %7d s %10d executions\n", t, s[t], n[t]}' "$out/ledger"
exit $fail
