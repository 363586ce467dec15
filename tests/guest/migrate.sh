#!/bin/bash
# Live migration of the qxl test guest while it draws.
#
#   tests/guest/migrate.sh QEMU_BINARY [COUNT [DEST_QEMU_BINARY]]
#
# The guest boots on -vga qxl with qxltest.loop=1: it keeps redrawing
# /dev/fb0 and, every MIGRATE_LOOPMODE-th step, changes the KMS mode
# (DESTROY/CREATE_PRIMARY_ASYNC, each completed by QXL_INTERRUPT_IO_CMD; see
# tests/guest/init.sh).  Then COUNT live migrations (default 2: there and
# back), each to a fresh QEMU with the same command line plus
# -incoming unix:SOCKET, driven by QMP migrate / query-migrate on the source.
# After each: the destination runs, the guest goes on drawing and changing
# modes there, repeated screendumps show its patterns changing (two
# different ones), the source ends cleanly.  At the end: no qxl error/timeout in the guest's kernel log, no
# mode change that took as long as the qxl driver's 5 s wait for a lost
# QXL_INTERRUPT_IO_CMD, no qxl error from QEMU.
#
# Env: MIGRATE_DIR (artifacts, default build/migrate/<binary's dir name>;
#      one subdirectory per QEMU process: vm0 the first source, vmN the
#      destination of migration N), MIGRATE_TIMEOUT (seconds to the first
#      marker, default 120 under TCG, 60 under KVM), MIGRATE_LOOPMS (pause
#      between the guest's loop steps, default 0: the guest is always drawing
#      or changing modes, so switchovers often land in a mode change, whose
#      DESTROY/CREATE_PRIMARY_ASYNC wait for QXL_INTERRUPT_IO_CMD),
#      MIGRATE_LOOPMODE (every K-th step a mode change, default 2: steps
#      draw boot, mode change, draw ready, mode change, ...),
#      GUEST_ACCEL=kvm|tcg.
# Output: TAP lines, per-migration downtime/total time, a summary line
# "# migrations: ...", then "N passed, N failed"; exit status 1 if any
# failed.  On a failure the tails of the serial logs and QEMU stderr are
# printed.  No QEMU outlives the script.
#
# Between two different binaries: DEST_QEMU_BINARY (or env MIGRATE_DEST_QEMU;
# the argument wins) makes the QEMUs alternate: vm0 and every even vmN run
# QEMU_BINARY, every odd vmN DEST_QEMU_BINARY, so migration 1 goes A -> B,
# migration 2 B -> A, ... (COUNT >= 2 covers both directions).  The TAP lines
# then name each QEMU's binary (its directory name), a "# direction ..."
# line gives downtime/total time per direction, and MIGRATE_DIR defaults to
# build/migrate/<A's dir name>-<B's dir name>.  Unset or empty: one binary,
# output as before.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tap.sh"
export PYTHONPATH=$here    # qmp.py, pattern.py for the inline Python

[ $# -ge 1 ] && [ $# -le 3 ] || { echo "usage: $0 QEMU_BINARY [COUNT [DEST_QEMU_BINARY]]" >&2; exit 2; }
qemu=$1
count=${2:-2}
qemu_b=${3:-${MIGRATE_DEST_QEMU:-}}
[ -x "$qemu" ] || { echo "$0: $qemu is not executable" >&2; exit 2; }
[ -z "$qemu_b" ] || [ -x "$qemu_b" ] || { echo "$0: $qemu_b is not executable" >&2; exit 2; }
[[ $count =~ ^[1-9][0-9]*$ ]] || { echo "$0: COUNT must be a positive number" >&2; exit 2; }
qemu=$(cd "$(dirname "$qemu")" && pwd)/$(basename "$qemu")
[ -z "$qemu_b" ] || qemu_b=$(cd "$(dirname "$qemu_b")" && pwd)/$(basename "$qemu_b")
qemu_a=$qemu
# vm_qemu I: the binary QEMU number I runs (alternating when a destination
# binary is given); vm_dir I: its directory's name; vm_name I: " (vm_dir)"
# with a destination binary, else nothing
vm_qemu() { if [ -n "$qemu_b" ] && [ $(($1 % 2)) = 1 ]; then echo "$qemu_b"; else echo "$qemu_a"; fi; }
vm_dir() { basename "$(dirname "$(vm_qemu "$1")")"; }
vm_name() { [ -z "$qemu_b" ] || echo " ($(vm_dir "$1"))"; }
dir_a=$(basename "$(dirname "$qemu_a")")
run=${MIGRATE_DIR:-$top/build/migrate/$dir_a${qemu_b:+-$(basename "$(dirname "$qemu_b")")}}
rm -rf "$run"
mkdir -p "$run"
loopms=${MIGRATE_LOOPMS:-0}
loopmode=${MIGRATE_LOOPMODE:-2}
append="qxltest.loop=1 qxltest.loopmode=$loopmode qxltest.loopms=$loopms"

secs() { $PY -c "print('%.1f' % ($EPOCHREALTIME - $1))"; }

# status checks read QMP output from a here-string, not "echo | grep -q":
# with pipefail, grep -q exiting at its match can SIGPIPE the line-buffered
# echo (status 141) and fail a check whose output shows the status
# --- two QEMUs at once: lib.sh keeps one guest in GUEST_*; save/load them ---

migsock_dir=$(mktemp -d /tmp/qxl-mig.XXXXXX)
t_start=$EPOCHREALTIME
finish() {
    trap - EXIT INT TERM
    vm_stop src
    vm_stop dst
    rm -rf "$migsock_dir"
    if [ "$fail" -gt 0 ]; then
        local d
        for d in "$run"/vm*; do
            [ -d "$d" ] || continue
            tap_tail "serial log" "$d/serial.log" 25
            tap_tail "QEMU stderr" "$d/qemu.stderr" 10
        done
    fi
    tap_runtime "$t_start"
    tap_done
}
tap_traps

# 1. the guest image
tap_guest_image "$run"

accel=$(guest_accel)
timeout=${MIGRATE_TIMEOUT:-$([ "$accel" = kvm ] && echo 60 || echo 120)}
traces=(-trace qxl_set_guest_bug -trace qxl_pre_save -trace qxl_pre_load
    -trace qxl_post_load -trace 'qxl_async_*' -msg timestamp=on)

# start_vm I [ARGS...]: QEMU number I (run dir vmI) with the guest's command line
start_vm() {
    local i=$1
    shift
    guest_start "$(vm_qemu "$i")" "$top/build/guest" "$run/vm$i" "$append" \
        "${traces[@]}" -D "$run/vm$i/trace.log" "$@"
}
# wait_for REGEX TIMEOUT: guest_wait, 0 found / 1 timeout / 2 QEMU exited
wait_for() { local rc=0; guest_wait "$1" "$2" || rc=$?; return $rc; }
describe_wait() {
    case $1 in
    1) echo "not on serial within $2 s" ;;
    *) echo "QEMU exited with status $GUEST_EXIT" ;;
    esac
}
log() { tr -d '\r' <"$1"; }
# last_loop FILE: the last QXL-GUEST-LOOP step number in a serial log
last_loop() { log "$1" | sed -n 's/^QXL-GUEST-LOOP\(-MODE\)\{0,1\} \([0-9]*\) .*/\2/p' | tail -1; }

# 2. the source: boot, then let the loop run
if start_vm 0; then
    ok 0 "source QEMU (vm0$(vm_name 0)) up, accel $GUEST_ACCEL_USED"
else
    ok 1 "source QEMU (vm0$(vm_name 0)) starts, accel $accel"
    exit 1
fi
vm_save src
rc=0; wait_for '^QXL-GUEST-READY' "$timeout" || rc=$?
ok $rc "guest booted to QXL-GUEST-READY${GUEST_WAITED:+ (after $GUEST_WAITED s)}" "$(describe_wait $rc "$timeout")"
[ $rc = 0 ] || exit 1
boot_secs=$GUEST_WAITED
rc=0; wait_for '^QXL-GUEST-LOOP-MODE [0-9]+ restored' 60 || rc=$?
ok $rc "guest loops: redraws and a mode change completed before migrating ($(log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP') loop lines)" \
    "$(describe_wait $rc 60)"
[ $rc = 0 ] || exit 1
vm_save src

# 3. the migrations
downtimes=() totals=()
dir_down=() dir_tot=()    # per direction: [0] A -> B, [1] B -> A
for i in $(seq 1 "$count"); do
    sock=$migsock_dir/mig$i.sock
    vm_load src
    src_serial=$GUEST_SERIAL
    if ! start_vm "$i" -incoming "unix:$sock"; then
        ok 1 "migration $i: destination QEMU (vm$i$(vm_name "$i")) starts with -incoming"
        exit 1
    fi
    vm_save dst
    st=$(guest_qmp query-status 2>&1)
    grep -q '"inmigrate"' <<<"$st"
    ok $? "migration $i: destination vm$i$(vm_name "$i") waits with -incoming (status inmigrate)" "$st"

    # migrate on the source, poll query-migrate (bounded)
    vm_load src
    result=$($PY - "$GUEST_QMP" "unix:$sock" "$run/vm$i/query-migrate.json" <<'EOF'
import json, sys, time
from qmp import QMP
sock, uri, out = sys.argv[1:4]
t0 = time.monotonic()
with QMP(sock, timeout=30) as q:
    q.execute('migrate', uri=uri)
    deadline = t0 + 300
    while True:
        info = q.execute('query-migrate')
        status = info.get('status')
        if status in ('completed', 'failed', 'cancelled'):
            break
        if time.monotonic() > deadline:
            q.execute('migrate_cancel')
            status = 'timeout'
            break
        time.sleep(0.05)
wall = (time.monotonic() - t0) * 1000
json.dump(info, open(out, 'w'), indent=1)
ram = info.get('ram', {})
print(status, info.get('downtime', -1), info.get('total-time', -1),
      info.get('setup-time', -1), '%.0f' % wall,
      '%.1f' % (ram.get('transferred', 0) / 1048576), ram.get('dirty-sync-count', 0),
      json.dumps(info.get('error-desc', '')))
EOF
)
    read -r status downtime total setup wall mib syncs err <<<"${result:-error}"
    if [ "$status" = completed ]; then
        ok 0 "migration $i: vm$((i - 1))$(vm_name $((i - 1))) -> vm$i$(vm_name "$i") completed: downtime $downtime ms, total $total ms (setup $setup ms, $mib MiB, $syncs dirty syncs)"
        downtimes+=("$downtime")
        totals+=("$total")
        d=$(((i - 1) % 2))
        dir_down[d]="${dir_down[d]:-} $downtime"
        dir_tot[d]="${dir_tot[d]:-} $total"
    else
        ok 1 "migration $i: vm$((i - 1))$(vm_name $((i - 1))) -> vm$i$(vm_name "$i") completes" "status ${status:-?} ${err:-}; $result"
        exit 1
    fi

    src_last=$(last_loop "$src_serial")
    # the source: stopped after migration, then quits cleanly
    st=$(guest_qmp query-status 2>&1)
    grep -q '"postmigrate"' <<<"$st"
    ok $? "migration $i: source vm$((i - 1)) is in postmigrate" "$st"
    guest_stop
    vm_save src
    [ "${GUEST_EXIT:-x}" = 0 ]
    ok $? "migration $i: source vm$((i - 1)) exits cleanly on quit (status ${GUEST_EXIT:-?})"

    # the destination runs and the guest goes on there
    vm_load dst
    guest_wait_status running 10
    ok $? "migration $i: destination vm$i is running" "$GUEST_STATUS"
    t_dst=$EPOCHREALTIME
    # two completed mode changes on the destination: the second one began
    # and ended there
    rc=0
    end=$(( ${EPOCHREALTIME%.*} + 60 ))
    while [ "$(log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP-MODE [0-9]* restored')" -lt 2 ]; do
        if ! kill -0 "$GUEST_PID" 2>/dev/null; then rc=2; guest_reap; break; fi
        [ "${EPOCHREALTIME%.*}" -lt "$end" ] || { rc=1; break; }
        sleep 0.2
    done
    dst_first=$(log "$GUEST_SERIAL" | sed -n 's/^QXL-GUEST-LOOP\(-MODE\)\{0,1\} \([0-9]*\) .*/\2/p' | head -1)
    dst_last=$(last_loop "$GUEST_SERIAL")
    ok $rc "migration $i: guest keeps drawing on vm$i: loop steps ${dst_first:-?}..${dst_last:-?} (source ended at ${src_last:-?}), 2 mode changes done in $(secs "$t_dst") s" \
        "$(describe_wait $rc 60); destination serial: $(log "$GUEST_SERIAL" | tail -3 | tr '\n' '|')"
    [ $rc = 0 ] || exit 1
    [ -n "$dst_first" ] && [ -n "$src_last" ] && [ "$dst_first" -ge "$src_last" ]
    ok $? "migration $i: the loop continues where it stopped (source last ${src_last:-?}, destination first ${dst_first:-?})"
    out=$($PY - "$GUEST_QMP" "$run/vm$i/screen.png" <<'EOF'
import os, sys, time
from qmp import QMP
import pattern
sock, path = sys.argv[1:3]
tmp = path + '.tmp'
t0 = time.monotonic()
deadline = t0 + 30
tries, seen, whys = 0, [], []
# the guest's display keeps changing: wait until two different patterns
# were seen (a frozen display would show one only)
with QMP(sock, timeout=30) as q:
    while True:
        tries += 1
        q.execute('screendump', filename=tmp, format='png')
        whys = []
        for name, size in (('boot', (1024, 768)), ('ready', (1024, 768)), ('mode', (800, 600))):
            why = pattern.check(tmp, name, size)
            if why is None:
                if name not in seen:
                    seen.append(name)
                    os.replace(tmp, path.replace('.png', f'-{name}.png'))
                break
            whys.append(f'{name}: {why}')
        if len(seen) >= 2:
            print(f'screendumps show the display changing: patterns {" then ".join(seen)}'
                  f' ({tries} screendumps, {time.monotonic() - t0:.1f} s)')
            sys.exit(0)
        if time.monotonic() > deadline:
            print(f'screendumps show patterns {seen or "none"} only after {tries} screendumps;'
                  f' last: ' + '; '.join(whys))
            sys.exit(1)
        time.sleep(0.1)
EOF
)
    ok $? "migration $i: vm$i $out" "$out"
    vm_save dst
    # the destination is the next source
    for v in "${vm_vars[@]}"; do n_=dst_$v; printf -v "src_$v" '%s' "${!n_}"; printf -v "dst_$v" '%s' ''; done
done

# 4. the whole run: logs of every QEMU, in order
all=$run/serial-all.log
for i in $(seq 0 "$count"); do log "$run/vm$i/serial.log"; done >"$all"
errs=$(grep -a -i -E \
    'QXL-GUEST-ERROR|qxl.*(error|timeout|timed out|fail)|\[drm\].*(error|timeout)|\*ERROR\*|\bOops\b|BUG:|WARNING: CPU|Kernel panic|Call Trace' "$all" | head -5)
[ -z "$errs" ]
ok $? "guest kernel log (all $((count + 1)) serial logs) shows no qxl error, timeout or kernel warning" "$errs"
modes=$($PY - "$all" "$run"/vm*/serial.log <<'EOF'
import re, sys
t0, dur, gaps, last = {}, [], [], None
# which QEMU printed the start and the end of each mode change
where = {}
for vm, path in enumerate(sorted(sys.argv[2:], key=lambda p: int(re.search(r'vm(\d+)/', p).group(1)))):
    for line in open(path, errors='replace'):
        m = re.match(r'QXL-GUEST-LOOP(-MODE)? (\d+) .*(pattern=mode|restored|start)', line)
        if m:
            where.setdefault(int(m.group(2)), []).append(vm)
span = sorted(k for k, v in where.items() if len(set(v)) > 1)
for line in open(sys.argv[1], errors='replace'):
    m = re.match(r'QXL-GUEST-LOOP (\d+) .*pattern=mode .*t=([0-9.]+)', line)
    if m:
        t0[int(m.group(1))] = float(m.group(2))
    m = re.match(r'QXL-GUEST-LOOP-MODE (\d+) restored t=([0-9.]+)', line)
    if m and int(m.group(1)) in t0:
        dur.append(float(m.group(2)) - t0[int(m.group(1))])
    m = re.match(r'QXL-GUEST-LOOP(?:-MODE)? \d+ .*t=([0-9.]+)', line)
    if m:
        t = float(m.group(1))
        if last is not None:
            gaps.append(t - last)
        last = t
if not dur:
    print('no mode change completed')
    sys.exit(1)
print(f'{len(dur)} mode changes, guest time min/avg/max {min(dur):.2f}/{sum(dur)/len(dur):.2f}/{max(dur):.2f} s;'
      f' longest gap between loop steps {max(gaps or [0]):.2f} s;'
      f' {len(span)} mode change(s) spanned a switchover (steps {",".join(map(str, span)) or "none"})')
sys.exit(1 if max(dur) >= 4.0 else 0)
EOF
)
ok $? "no mode change waited for a lost QXL_INTERRUPT_IO_CMD (all < 4 s): $modes" "$modes"
bugs=$(cat "$run"/vm*/trace.log 2>/dev/null | grep -a -c 'qxl_set_guest_bug')
[ "${bugs:-0}" -eq 0 ]
ok $? "QEMU saw no qxl guest bug in any process" "$bugs qxl_set_guest_bug event(s)"
# the series' async trace (patched binaries only): operations the source had
# submitted and not finished when it saved the device
inflight=$($PY - "$run"/vm*/trace.log <<'EOF'
import re, sys
events, counts, gaps = 0, [], []
def stamp(line):
    m = re.match(r'\d+@([0-9.]+):', line)
    return float(m.group(1)) if m else None
for path in sorted(sys.argv[1:], key=lambda p: int(re.search(r'vm(\d+)/', p).group(1))):
    live, last = {}, None
    for line in open(path, errors='replace'):
        m = re.search(r'qxl_async_(submit|finish) op=(\S+)(?: kind=(\d+) port=(\d+))?', line)
        if m:
            events += 1
            last = stamp(line)
            if m.group(1) == 'submit':
                live[m.group(2)] = m.group(4)
            else:
                live.pop(m.group(2), None)
        elif 'qxl_pre_save' in line:
            counts.append(f'{len(live)}' + (f' (ports {",".join(sorted(live.values()))})' if live else ''))
            t = stamp(line)
            if t is not None and last is not None:
                gaps.append(f'{(t - last) * 1000:.0f}')
            break
print(f'unfinished async ops at each qxl_pre_save: {", ".join(counts)};'
      f' ms from the last async event to qxl_pre_save: {", ".join(gaps)}' if events
      else 'no qxl_async trace (unpatched binary)')
EOF
)
note "$inflight"
loads=$(cat "$run"/vm*/trace.log 2>/dev/null | grep -a 'qxl_post_load' | sed 's/.*qxl_post_load/post_load/' | sort | uniq -c | tr -s ' ' | tr '\n' ';')
note "qxl migration trace: pre_save $(cat "$run"/vm*/trace.log | grep -a -c qxl_pre_save), $loads"
qerrs=$(cat "$run"/vm*/qemu.stderr 2>/dev/null | grep -a -i -E 'qxl|guest bug|spice.*(error|critical)|migrat.*(error|fail)' | head -5)
[ -z "$qerrs" ]
ok $? "QEMU stderr (every process) shows no qxl, spice or migration error" "$qerrs"

# 5. the last destination quits cleanly
vm_load src
guest_stop
vm_save src
[ "${GUEST_EXIT:-x}" = 0 ]
ok $? "last destination vm$count exits cleanly on quit (status ${GUEST_EXIT:-?})"

stats() {
    $PY -c 'import sys
v = [int(x) for x in sys.argv[1:]]
print("min/avg/max %d/%.0f/%d ms" % (min(v), sum(v) / len(v), max(v)) if v else "none")' "$@"
}
note "boot to QXL-GUEST-READY: ${boot_secs:-?} s (accel $accel)"
note "migrations: ${#downtimes[@]}/$count completed; downtime $(stats "${downtimes[@]}"): ${downtimes[*]}; total time $(stats "${totals[@]}"): ${totals[*]}"
if [ -n "$qemu_b" ]; then
    for d in 0 1; do
        [ -n "${dir_down[d]:-}" ] || continue
        # shellcheck disable=SC2086  # word splitting of the lists intended
        note "direction $(vm_dir "$d") -> $(vm_dir $((d + 1))): downtime $(stats ${dir_down[d]}):${dir_down[d]}; total time $(stats ${dir_tot[d]}):${dir_tot[d]}"
    done
fi
