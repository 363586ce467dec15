#!/bin/bash
# Guest smoke test: boot the Linux test guest on -vga qxl with spice, check
# what it draws through QMP screendump, and how it drove the device.
#
#   tests/guest/smoke.sh QEMU_BINARY
#
# Env: SMOKE_DIR (artifacts, default build/smoke/<binary's dir name>),
#      SMOKE_TIMEOUT (seconds to the first marker, default 120 under TCG,
#      60 under KVM), GUEST_ACCEL=kvm|tcg (default: see tests/guest/lib.sh).
# Output: one TAP line per assertion ("ok N - ..." / "not ok N - ..."), then
# "N passed, N failed"; exit status 1 if any failed.  On a failure the tails
# of the serial log and of QEMU's stderr are printed.  QEMU never outlives
# the script.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tap.sh"

tap_one_qemu smoke "${SMOKE_DIR:-}" "$@"


finish() {
    trap - EXIT INT TERM
    guest_stop
    if [ "$fail" -gt 0 ]; then
        tap_tail "serial log" "$run/serial.log" 40
        tap_tail "QEMU stderr" "$run/qemu.stderr" 20
    fi
    tap_done
}
tap_traps

# 1. the guest image
tap_guest_image "$run"

accel=$(guest_accel)
timeout=${SMOKE_TIMEOUT:-$([ "$accel" = kvm ] && echo 60 || echo 120)}
trace=$run/trace.log

# 2. QEMU up, spice listening, QMP answering
if guest_start "$qemu" "$top/build/guest" "$run" "qxltest.hold=60" \
        -trace qxl_io_write -trace qxl_set_guest_bug -D "$trace"; then
    status=$(guest_qmp query-status 2>&1)
    echo "$status" | grep -q '"status": "running"'
    ok $? "QEMU runs with -vga qxl, accel $GUEST_ACCEL_USED, QMP answers" "$status"
else
    ok 1 "QEMU starts with -vga qxl, accel $accel"
    exit 1
fi
$PY - "$GUEST_SPICE_PORT" <<'EOF'
import socket, sys
s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=5)
s.close()
EOF
ok $? "spice listens on 127.0.0.1:$GUEST_SPICE_PORT"

# wait_marker REGEX DESCRIPTION: one assertion
wait_marker() {
    local rc=0
    guest_wait "$1" "$timeout" || rc=$?
    case $rc in
    0) ok 0 "$2 (after ${GUEST_WAITED} s): $GUEST_LINE" ;;
    1) ok 1 "$2" "no '$1' on serial within $timeout s" ;;
    *) ok 1 "$2" "QEMU exited with status $GUEST_EXIT" ;;
    esac
    # the rest depends on the guest getting there
    [ $rc = 0 ] || exit 1
}
# screen PATTERN WxH DESCRIPTION: one assertion
screen() {
    local out
    out=$($PY "$here/pattern.py" wait "$GUEST_QMP" "$run/$1.png" "$1" "$2" 30 2>&1)
    ok $? "$3" "$out"
    note "$out"
}
count() { grep -a -c "qxl_io_write.*(QXL_IO_$1)" "$trace" 2>/dev/null || true; }

# 3. boot mode, drawn through fbdev
wait_marker '^QXL-GUEST-DRAWN boot' "guest loaded qxl and drew the boot pattern"
screen boot 1024x768 "screendump shows the boot pattern at 1024x768"
create_before=$(count CREATE_PRIMARY_ASYNC)
destroy_before=$(count DESTROY_PRIMARY_ASYNC)

# 4. a real KMS mode change (qxlmode), held until we say go
guest_send go
wait_marker '^QXL-GUEST-DRAWN mode' "guest changed the mode to 800x600 and drew"
screen mode 800x600 "screendump shows the mode pattern at 800x600"

# 5. back to fbdev's mode, redrawn
guest_send go
wait_marker '^QXL-GUEST-READY' "guest is back in its boot mode and ready"
screen ready 1024x768 "screendump shows the ready pattern at 1024x768"

# 6. how the guest drove the device (trace event qxl_io_write)
ports=$(grep -a -o 'qxl_io_write.*(QXL_IO_[A-Z_]*)' "$trace" 2>/dev/null |
    sed 's/.*(QXL_IO_\([A-Z_]*\))/\1/' | sort | uniq -c |
    awk '{printf "%s%s=%s", sep, $2, $1; sep=" "}')
note "ports written: ${ports:-none}"
memslot=$(count MEMSLOT_ADD_ASYNC)
create=$(count CREATE_PRIMARY_ASYNC)
destroy=$(count DESTROY_PRIMARY_ASYNC)
[ "$memslot" -ge 1 ]
ok $? "guest used MEMSLOT_ADD_ASYNC ($memslot)"
[ "$create" -ge 1 ]
ok $? "guest used CREATE_PRIMARY_ASYNC ($create)"
[ $((create - create_before)) -ge 1 ] && [ $((destroy - destroy_before)) -ge 1 ]
ok $? "the mode changes went through DESTROY/CREATE_PRIMARY_ASYNC (+$((destroy - destroy_before))/+$((create - create_before)))"
sync_ports=$(grep -a -o 'qxl_io_write.*(QXL_IO_[A-Z_]*)' "$trace" 2>/dev/null |
    grep -E '\(QXL_IO_(UPDATE_AREA|MEMSLOT_ADD|CREATE_PRIMARY|DESTROY_PRIMARY|DESTROY_SURFACE_WAIT|DESTROY_ALL_SURFACES)\)' |
    sed 's/.*(QXL_IO_\([A-Z_]*\))/\1/' | sort -u | tr '\n' ' ')
[ -z "$sync_ports" ]
ok $? "no blocking synchronous port was used" "used: $sync_ports"
bugs=$(grep -a -c 'qxl_set_guest_bug' "$trace" 2>/dev/null || true)
[ "$bugs" -eq 0 ]
ok $? "QEMU saw no qxl guest bug" "$bugs qxl_set_guest_bug event(s)"

# 7. logs
errs=$(tr -d '\r' <"$run/serial.log" | grep -a -i -E \
    'QXL-GUEST-ERROR|qxl.*(error|timeout|timed out|fail)|\[drm\].*(error|timeout)|\*ERROR\*|\bOops\b|BUG:|WARNING: CPU|Kernel panic|Call Trace' | head -5)
[ -z "$errs" ]
ok $? "serial log shows no qxl error, timeout or kernel warning" "$errs"
qerrs=$(grep -a -i -E 'qxl|guest bug|spice.*(error|critical)' "$run/qemu.stderr" | head -5)
[ -z "$qerrs" ]
ok $? "QEMU stderr shows no qxl or spice error" "$qerrs"

# 8. clean exit
guest_stop
[ "${GUEST_EXIT:-x}" = 0 ]
ok $? "QEMU exits cleanly on QMP quit (status ${GUEST_EXIT:-?})"
