#!/bin/bash
# Boot the Linux test guest on -vga qxl with spice, show what it drew.
#
#   scripts/demo.sh [--once] [QEMU_BINARY]
#
# QEMU: the argument, else $QEMU, else $PATCHED, else
# build/patched/qemu-system-x86_64.  The guest (scripts/guest-image.sh)
# brings up the qxl driver and its text console, prints a banner and starts
# a shell there; the screen is saved with QMP screendump to
# build/demo/screen.png and checked to show that console.  The guest then
# keeps running, with a spice server on 127.0.0.1 (type into its shell with
# remote-viewer), until Ctrl-C (QEMU is shut down with QMP quit).
#
# --once or DEMO_EXIT=1: exit after the screendump (status 0 if it shows the
# console).  DEMO_LOOP=1: the test patterns instead, redrawn forever
# (qxltest.loop=1).
# SPICE_PORT=N: use that port instead of a free one.  GUEST_ACCEL=kvm|tcg:
# force the accelerator (default: kvm if /dev/kvm is usable and kvm_pvm is
# not loaded, else tcg).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
. "$top/tests/guest/lib.sh"

once=${DEMO_EXIT:-0}
arg=
for a in "$@"; do
    case $a in
    --once) once=1 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $a" ;;
    *) arg=$a ;;
    esac
done
qemu=${arg:-${QEMU:-${PATCHED:-$top/build/patched/qemu-system-x86_64}}}
[ -x "$qemu" ] ||
    die "no QEMU at $qemu: run 'make build', or pass a binary (scripts/demo.sh QEMU, or QEMU=...)"

"$top/scripts/guest-image.sh"

run=$top/build/demo
mkdir -p "$run"
rm -f "$run/screen.png" "$run/serial.log"

append=qxltest.console=1
[ "${DEMO_LOOP:-0}" != 1 ] || append=qxltest.loop=1

on_signal() {
    trap - INT TERM
    echo >&2
    step "stopping the guest (QMP quit)"
    guest_stop
    step "QEMU exited (status ${GUEST_EXIT:-?})"
    exit 0
}
trap guest_stop EXIT
trap on_signal INT TERM

step "boot the guest: $qemu"
guest_start "$qemu" "$top/build/guest" "$run" "$append" || die "QEMU did not start"
accel=$GUEST_ACCEL_USED
timeout=$([ "$accel" = kvm ] && echo 60 || echo 120)
step "accel $accel, spice on 127.0.0.1:$GUEST_SPICE_PORT, serial log $GUEST_SERIAL"

marker='^QXL-GUEST-CONSOLE'
[ "${DEMO_LOOP:-0}" != 1 ] || marker='^QXL-GUEST-READY'
rc=0
guest_wait "$marker" "$timeout" || rc=$?
if [ $rc != 0 ]; then
    echo "--- serial log (tail)" >&2
    tail -n 30 "$GUEST_SERIAL" | tr -d '\r' >&2
    echo "--- QEMU stderr (tail)" >&2
    tail -n 10 "$GUEST_STDERR" >&2
    [ $rc = 1 ] && die "no ${marker#^} on serial within $timeout s"
    die "QEMU exited (status $GUEST_EXIT) before the guest was ready"
fi
step "guest ready after $GUEST_WAITED s: $GUEST_LINE"
grep -a 'QXL-GUEST-ERROR' "$GUEST_SERIAL" >&2 && step "the guest reported errors (above)"

size=$(echo "$GUEST_LINE" | sed -n 's/.*READY \([0-9]*x[0-9]*\).*/\1/p')
shot=ok
if [ "${DEMO_LOOP:-0}" != 1 ]; then
    # the guest's text console, on the qxl driver's framebuffer
    check=(console "$GUEST_QMP" "$run/screen.png" 30)
else
    check=(wait "$GUEST_QMP" "$run/screen.png" ready "${size:-1024x768}" 30)
fi
if ! out=$(/usr/bin/python3 "$top/tests/guest/pattern.py" "${check[@]}"); then
    shot=bad
    echo "$out" >&2
    [ -s "$run/screen.png" ] &&
        /usr/bin/python3 "$top/tests/guest/pattern.py" nonblank "$run/screen.png" >&2 || true
fi
[ "$shot" = bad ] || step "$out"

cat <<EOF

  Screen:  $run/screen.png$([ "$shot" = ok ] || echo "  (NOT what the guest should show)")
  Serial:  $GUEST_SERIAL
  QMP:     tests/guest/qmp.py $GUEST_QMP query-status
  Viewer:  remote-viewer spice://127.0.0.1:$GUEST_SPICE_PORT

EOF

if [ "$once" = 1 ]; then
    guest_stop
    step "QEMU exited (status ${GUEST_EXIT:-?})"
    [ "$shot" = ok ]
    exit
fi

step "guest running (pid $GUEST_PID); Ctrl-C to stop"
guest_reap
step "QEMU exited by itself (status ${GUEST_EXIT:-?})"
