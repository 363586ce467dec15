#!/bin/bash
# A frozen SPICE client while the guest keeps drawing on qxl.
#
#   tests/guest/frozen-client.sh QEMU_BINARY
#
# The guest boots on -vga qxl, spice on 127.0.0.1 with
# image-compression=off,streaming-video=off, and loops forever
# (qxltest.loop=1 qxltest.loopmode=2 qxltest.loopms=0: redraws and KMS mode
# changes, DESTROY/CREATE_PRIMARY_ASYNC, back to back; tests/guest/init.sh).
# A headless spice-client-glib client (bench/spice_client.py) connects; once
# its display channel is open it is frozen with SIGSTOP, so its sockets stop
# draining and spice-server's pipe to it fills up while the guest draws.
# For FROZEN_SECONDS QMP query-status is sampled every 100 ms on one QMP
# connection: every sample must be answered, in order, with "running" (the
# largest latency is printed as information, it is not asserted).  The guest
# must keep going meanwhile (new QXL-GUEST-LOOP lines on serial).  Then the
# client is resumed (SIGCONT), runs CLIENT_RESUME_SECONDS and is disconnected
# (SIGTERM).  At the end: no qxl error/timeout/oops in the guest's log, every
# loop mode change took < 4 s of guest time (a lost QXL_INTERRUPT_IO_CMD
# shows as drm/qxl's 5 s wait), QEMU still runs, a screendump shows one of
# the patterns the loop draws, QEMU saw no qxl guest bug.  With Debian's
# libspice-server one mode change may take as long as the freeze (spice-
# server finishes it once the display channel has sent what it queued);
# when QEMU loads the library of the spice-server series (build/spice, as
# ldd resolves it, LD_LIBRARY_PATH included) none may: a client that falls
# behind lags instead of holding anything up.
#
# Env: FROZEN_DIR (artifacts, default build/frozen-client/<binary's dir
#      name>), FROZEN_SECONDS (default 15; keep it below spice-server's 30 s
#      client timeout), CLIENT_RESUME_SECONDS (default 3), FROZEN_TIMEOUT
#      (seconds to the guest's first completed mode change, default 120
#      under TCG, 60 under KVM), GUEST_ACCEL=kvm|tcg.
# Output: TAP lines ("ok N - ..." / "not ok N - ..."), "# " notes, then
# "N passed, N failed"; exit status 1 if any failed.  Neither QEMU nor the
# client outlives the script (the client gets SIGCONT then SIGKILL).
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tap.sh"
export PYTHONPATH=$here    # qmp.py, pattern.py for the inline Python

tap_one_qemu frozen-client "${FROZEN_DIR:-}" "$@"

frozen=${FROZEN_SECONDS:-15}
resume=${CLIENT_RESUME_SECONDS:-3}
[[ $frozen =~ ^[0-9]+$ ]] && [ "$frozen" -ge 1 ] && [ "$frozen" -lt 30 ] ||
    { echo "$0: FROZEN_SECONDS must be 1..29" >&2; exit 2; }
[[ $resume =~ ^[0-9]+$ ]] || { echo "$0: CLIENT_RESUME_SECONDS must be a number" >&2; exit 2; }

t_start=$EPOCHREALTIME

log() { tr -d '\r' <"$1" 2>/dev/null; }
qmpc() { timeout 20 "$PY" "$here/qmp.py" --timeout 10 "$GUEST_QMP" "$@"; }
loop_lines() { log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP'; }

finish() {
    trap - EXIT INT TERM
    client_kill
    guest_stop
    if [ "$fail" -gt 0 ]; then
        tap_tail "serial log" "$run/serial.log" 30
        tap_tail "QEMU stderr" "$run/qemu.stderr" 20
        echo "# --- client (tail): $run/client.log"
        tail -n 10 "$run/client.log" 2>/dev/null | sed 's/^/# /'
    fi
    tap_runtime "$t_start"
    tap_done
}
tap_traps

# 1. guest image (built by scripts/guest-image.sh, e.g. through smoke.sh)
img=$top/build/guest
if [ -s "$img/vmlinuz" ] && [ -s "$img/initramfs.cpio.gz" ] && [ -s "$img/cmdline" ]; then
    ok 0 "guest image present ($(cat "$img/kernel-version" 2>/dev/null))"
else
    ok 1 "guest image present" "no $img/{vmlinuz,initramfs.cpio.gz,cmdline}: run scripts/guest-image.sh"
    exit 1
fi
$PY -c 'import gi; gi.require_version("SpiceClientGLib", "2.0"); from gi.repository import SpiceClientGLib' \
    2>"$run/gi.err"
ok $? "spice-client-glib is importable from $PY" "$(tail -1 "$run/gi.err")"
[ "$fail" = 0 ] || exit 1

accel=$(guest_accel)
timeout=${FROZEN_TIMEOUT:-$([ "$accel" = kvm ] && echo 60 || echo 120)}
# which libspice-server QEMU loads: the spice-server series' (build/spice)
# lets no mode change wait for the frozen client
spice_lib=$(ldd "$qemu" 2>/dev/null | awk '/libspice-server\.so/ { print $3; exit }')
case $spice_lib in
"$top"/build/spice/*) strict=1 ;;
*) strict=0 ;;
esac
note "libspice-server: ${spice_lib:-not found} ($([ $strict = 1 ] &&
    echo "the spice-server series: no mode change may wait for the frozen client" ||
    echo "not the spice-server series: one mode change may wait for the frozen client"))"
trace=$run/trace.log

# 2. boot, looping with mode changes; -spice options merge with lib.sh's
if guest_start "$qemu" "$img" "$run" \
        "qxltest.loop=1 qxltest.loopmode=2 qxltest.loopms=0" \
        -spice image-compression=off,streaming-video=off \
        -trace qxl_set_guest_bug -D "$trace"; then
    status=$(qmpc query-status 2>&1)
    echo "$status" | grep -q '"status": "running"'
    ok $? "QEMU runs with -vga qxl, spice image-compression=off,streaming-video=off on 127.0.0.1:$GUEST_SPICE_PORT, accel $GUEST_ACCEL_USED" "$status"
else
    ok 1 "QEMU starts with -vga qxl, accel $accel"
    exit 1
fi
rc=0; guest_wait '^QXL-GUEST-LOOP-MODE [0-9]+ restored' "$timeout" || rc=$?
case $rc in
0) ok 0 "guest loops and completed a mode change (after $GUEST_WAITED s): $GUEST_LINE" ;;
1) ok 1 "guest loops and completed a mode change" "no QXL-GUEST-LOOP-MODE restored within $timeout s" ;;
*) ok 1 "guest loops and completed a mode change" "QEMU exited with status $GUEST_EXIT" ;;
esac
[ $rc = 0 ] || exit 1

# 3. the client, display channel up
"$PY" "$top/bench/spice_client.py" 127.0.0.1 "$GUEST_SPICE_PORT" --timeout 120 \
    >"$run/client.log" 2>"$run/client.stderr" </dev/null &
CLIENT_PID=$!
rc=1
for _ in $(seq 150); do      # 15 s
    if grep -q '"event": "primary-create"' "$run/client.log" 2>/dev/null &&
       grep -q '"event": "channel-opened", "type": "display"' "$run/client.log"; then
        rc=0; break
    fi
    kill -0 "$CLIENT_PID" 2>/dev/null || break
    sleep 0.1
done
ok $rc "SPICE client connected, display channel open, primary surface received" \
    "client: $(tail -3 "$run/client.log" | tr '\n' ' ') $(tail -2 "$run/client.stderr" | tr '\n' ' ')"
[ $rc = 0 ] || exit 1
sleep 1     # let it take some drawing before it stops reading
note "client before freezing: $(grep -c . "$run/client.log") events, last: $(tail -1 "$run/client.log")"

# 4. freeze it; sample QMP while the guest draws
before_loop=$(loop_lines)
before_mode=$(log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP-MODE [0-9]* restored')
client_events_frozen=$(grep -c . "$run/client.log")
kill -STOP "$CLIENT_PID"
sleep 0.2
state_start=$(client_state)
sample=$(timeout $((frozen + 60)) $PY - "$GUEST_QMP" "$frozen" "$run/qmp-samples.txt" <<'EOF'
import json, sys, time
from qmp import QMP
sock, secs, out = sys.argv[1], float(sys.argv[2]), sys.argv[3]
PER_SAMPLE = 10.0       # a sample unanswered this long counts as lost
sent = answered = running = in_order = 0
lat, errors, last_id = [], [], 0
q = None
t0 = time.monotonic()
end = t0 + secs
nxt = t0
last_answer = t0        # the longest time without an answer: stall
stall = 0.0

def connect():
    global q
    try:
        q = QMP(sock, timeout=PER_SAMPLE)
    except Exception as e:
        q = None
        errors.append(f'connect at {time.monotonic() - t0:.1f} s: {type(e).__name__}: {e}')

with open(out, 'w') as f:
    connect()
    while time.monotonic() < end:
        sent += 1
        ts = time.monotonic()
        if q is None:
            connect()
        if q is None:
            f.write(f'{ts - t0:.3f} LOST no connection\n')
        else:
            try:
                msg_id = sent
                r = q.execute_raw({'execute': 'query-status', 'id': msg_id})
                now = time.monotonic()
                answered += 1
                lat.append(now - ts)
                stall = max(stall, now - last_answer)
                last_answer = now
                if msg_id > last_id:
                    in_order += 1
                last_id = msg_id
                if r.get('status') == 'running' and r.get('running'):
                    running += 1
                f.write(f'{ts - t0:.3f} {(now - ts) * 1000:.1f}ms {r.get("status")}\n')
            except Exception as e:
                errors.append(f'sample {sent} at {ts - t0:.1f} s: {type(e).__name__}: {e}')
                f.write(f'{ts - t0:.3f} LOST {e}\n')
                q.close()
                q = None
        nxt += 0.1
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            nxt = time.monotonic()
    if answered < sent:
        # how long until QMP answers again (bounded)
        try:
            if q is None:
                q = QMP(sock, timeout=30)
            q.execute('query-status', timeout=30)
            now = time.monotonic()
            stall = max(stall, now - last_answer)
            f.write(f'{now - t0:.3f} answered again\n')
        except Exception as e:
            errors.append(f'after the window: {type(e).__name__}: {e}')
if q is not None:
    q.close()
lat.sort()
print(json.dumps({
    'sent': sent, 'answered': answered, 'running': running, 'in_order': in_order,
    'expected': int(secs * 10), 'span': round(time.monotonic() - t0, 2),
    'max_ms': round(lat[-1] * 1000, 1) if lat else None,
    'median_ms': round(lat[len(lat) // 2] * 1000, 1) if lat else None,
    'longest_without_answer_s': round(stall, 2),
    'errors': errors[:3]}))
EOF
)
state_end=$(client_state)
after_loop=$(loop_lines)
after_mode=$(log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP-MODE [0-9]* restored')
client_events_during=$(( $(grep -c . "$run/client.log") - client_events_frozen ))
[ "$state_start" = T ] && [ "$state_end" = T ]
ok $? "client stayed frozen (SIGSTOP) throughout the $frozen s (state $state_start .. $state_end)"
field() { echo "$sample" | $PY -c "import json,sys; print(json.load(sys.stdin).get('$1'))" 2>/dev/null; }
sent=$(field sent) answered=$(field answered) running=$(field running) in_order=$(field in_order)
[ -n "$sent" ] && [ "$sent" != None ] && [ "$sent" -ge 1 ] && [ "$answered" = "$sent" ] &&
    [ "$in_order" = "$sent" ] && [ "$running" = "$sent" ]
ok $? "QMP answered throughout the freeze: $answered/$sent query-status samples answered, in order, all running" \
    "$sample"
note "QMP while frozen: $sent samples sent (every 100 ms: $(field expected) ticks in $(field span) s), $answered answered, latency of answered samples median $(field median_ms) ms, max $(field max_ms) ms, longest time without an answer $(field longest_without_answer_s) s (information, not asserted); samples: $run/qmp-samples.txt"
[ "$after_loop" -gt "$before_loop" ]
ok $? "guest kept drawing while the client was frozen: $((after_loop - before_loop)) new QXL-GUEST-LOOP lines ($((after_mode - before_mode)) mode changes completed)" \
    "loop lines $before_loop before, $after_loop after"
note "client events logged while frozen: $client_events_during (expected 0)"

# 5. resume, let it catch up, disconnect
kill -CONT "$CLIENT_PID"
modes_at_thaw=$(log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP-MODE .* restored')
events_resume=$(grep -c . "$run/client.log")
sleep "$resume"
alive=0; kill -0 "$CLIENT_PID" 2>/dev/null || alive=1
note "client after resuming $resume s: $(( $(grep -c . "$run/client.log") - events_resume )) new events, state $(client_state), last: $(tail -1 "$run/client.log")"
kill -TERM "$CLIENT_PID" 2>/dev/null
rc=1
for _ in $(seq 50); do
    kill -0 "$CLIENT_PID" 2>/dev/null || { rc=0; break; }
    sleep 0.1
done
if [ $rc = 0 ]; then
    wait "$CLIENT_PID" 2>/dev/null; crc=$?
    CLIENT_PID=
else
    crc=timeout
    client_kill
fi
[ $alive = 0 ] && [ $rc = 0 ]
ok $? "client ran again after SIGCONT and ended on SIGTERM (exit $crc)" \
    "alive after resume: $([ $alive = 0 ] && echo yes || echo no); client: $(tail -3 "$run/client.log" | tr '\n' ' ')"
if grep -q '"event": "disconnected"\|"channel-error"' "$run/client.log"; then
    note "client saw: $(grep '"disconnected"\|"channel-error"' "$run/client.log" | head -3 | tr '\n' ' ')"
fi
# the guest goes on, with or without a client: two more mode changes
modes_after=$modes_at_thaw
for _ in $(seq 300); do
    modes_after=$(log "$GUEST_SERIAL" | grep -a -c '^QXL-GUEST-LOOP-MODE .* restored')
    [ "$modes_after" -ge $((modes_at_thaw + 2)) ] && break
    sleep 0.2
done
[ "$modes_after" -ge $((modes_at_thaw + 2)) ]
ok $? "the guest completed mode changes after the client was resumed ($((modes_after - modes_at_thaw)))" \
    "$((modes_after - modes_at_thaw)) mode changes completed since the thaw"

# 6. the guest's log
errs=$(log "$GUEST_SERIAL" | grep -a -i -E \
    'QXL-GUEST-ERROR|qxl.*(error|timeout|timed out|fail)|\[drm\].*(error|timeout)|\*ERROR\*|\bOops\b|BUG:|WARNING: CPU|Kernel panic|Call Trace' | head -5)
[ -z "$errs" ]
ok $? "serial log shows no qxl error, timeout, oops or BUG" "$errs"
modes=$(log "$GUEST_SERIAL" | $PY -c '
import re, sys
t0, dur, slow, gaps, last = {}, [], [], [], None
for line in sys.stdin:
    m = re.match(r"QXL-GUEST-LOOP(?:-MODE)? (\d+) .*t=([0-9.]+)", line)
    if m:
        if last is not None:
            gaps.append((float(m.group(2)) - last[1], last[0]))
        last = (int(m.group(1)), float(m.group(2)))
    m = re.match(r"QXL-GUEST-LOOP (\d+) .*pattern=mode .*t=([0-9.]+)", line)
    if m:
        t0[int(m.group(1))] = float(m.group(2))
    m = re.match(r"QXL-GUEST-LOOP-MODE (\d+) restored t=([0-9.]+)", line)
    if m and int(m.group(1)) in t0:
        d = float(m.group(2)) - t0[int(m.group(1))]
        dur.append(d)
        if d >= 4.0:
            slow.append((int(m.group(1)), d))
if not dur:
    print("no mode change completed")
    sys.exit(1)
print(f"{len(dur)} mode changes, guest time min/avg/max {min(dur):.2f}/{sum(dur)/len(dur):.2f}/{max(dur):.2f} s"
      + (f"; longest gap between loop lines {max(gaps)[0]:.2f} s after step {max(gaps)[1]}" if gaps else "")
      + ("; slow: " + ", ".join("step %d: %.2f s" % nd for nd in slow[:5]) if slow else ""))
# With Debian libspice-server a mode change completes only once the display
# channel has sent what it queued (or dropped the client): the one mode
# change in progress while the client was frozen may take as long as the
# freeze.  Any other slow one, or one slower than the freeze by far, is a
# lost QXL_INTERRUPT_IO_CMD (drm/qxl waits 5 s for it).  With the
# spice-server series (strict) no mode change waits for the client.
limit = float(sys.argv[1]) + 10
if sys.argv[2] == "1":
    sys.exit(1 if slow else 0)
sys.exit(1 if len(slow) > 1 or any(d > limit for n, d in slow) else 0)
' "$frozen" "$strict")
rc=$?
if [ $strict = 1 ]; then
    # the surface and monitors-config messages the mode changes queue for
    # the frozen client are compacted while it lags: its pipe stays
    # bounded, the worker never stops for it, DESTROY_PRIMARY never waits
    ok $rc "mode changes completed in < 4 s guest time, none held up by the frozen client (spice-server series; no lost QXL_INTERRUPT_IO_CMD): $modes" "$modes"
else
    ok $rc "mode changes completed in < 4 s guest time but for the one the frozen client held up (no lost QXL_INTERRUPT_IO_CMD): $modes" "$modes"
fi

# 7. QEMU
if kill -0 "$GUEST_PID" 2>/dev/null; then
    status=$(qmpc query-status 2>&1)
    echo "$status" | grep -q '"status": "running"'
    ok $? "QEMU still running, query-status running" "$status"
else
    ok 1 "QEMU still running" "QEMU exited"
    exit 1
fi
out=$(timeout 60 $PY - "$GUEST_QMP" "$run/screen.png" <<'EOF'
import os, sys, time
from qmp import QMP
import pattern
sock, path = sys.argv[1:3]
tmp = path + '.tmp'
t0 = time.monotonic()
tries, whys = 0, []
with QMP(sock, timeout=20) as q:
    while True:
        tries += 1
        q.execute('screendump', filename=tmp, format='png')
        whys = []
        for name, size in (('boot', (1024, 768)), ('ready', (1024, 768)), ('mode', (800, 600))):
            why = pattern.check(tmp, name, size)
            if why is None:
                os.replace(tmp, path)
                print(f'pattern {name} {size[0]}x{size[1]} ({tries} screendumps, {time.monotonic() - t0:.1f} s)')
                sys.exit(0)
            whys.append(f'{name}: {why}')
        if time.monotonic() - t0 > 20:
            os.replace(tmp, path)
            print(f'no pattern after {tries} screendumps; last: ' + '; '.join(whys))
            sys.exit(1)
        time.sleep(0.1)
EOF
)
ok $? "screendump shows one of the loop's patterns: $out" "$out"
bugs=$(grep -a -c 'qxl_set_guest_bug' "$trace" 2>/dev/null)
[ "${bugs:-0}" -eq 0 ]
ok $? "QEMU saw no qxl guest bug" "$bugs qxl_set_guest_bug event(s)"
swarn=$(grep -a -i 'spice' "$GUEST_STDERR" | sed 's/^qemu-system-x86_64: warning: //' | sort | uniq -c | sed 's/^ *//' | head -5 | tr '\n' ';')
[ -z "$swarn" ] || note "spice-server warnings on QEMU stderr (not asserted): $swarn"
qerrs=$(grep -a -i -E 'qxl|guest bug|spice.*(error|critical)' "$GUEST_STDERR" | head -5)
[ -z "$qerrs" ]
ok $? "QEMU stderr shows no qxl or spice error" "$qerrs"

guest_stop
[ "${GUEST_EXIT:-x}" = 0 ]
ok $? "QEMU exits cleanly on QMP quit (status ${GUEST_EXIT:-?})"
