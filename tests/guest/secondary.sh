#!/bin/bash
# Secondary qxl head: the Linux test guest on -vga qxl plus a second
# -device qxl (id qxl1).  Linux's qxl driver binds both (card0/fb0 and
# card1/fb1); with qxltest.head2=1 the guest's /init draws on fb1 and changes
# card1's mode after it is done with the primary head (tests/guest/init.sh).
#
#   tests/guest/secondary.sh QEMU_BINARY
#
# Checks: boot to the markers, both devices in query-pci and HMP info pci,
# the guest bound both, QMP screendump of the primary head shows the
# primary's patterns, screendump device=qxl1 shows the secondary's patterns
# (and the primary is untouched meanwhile), both devices were driven
# through the async ports, no qxl error in the guest's kernel log or QEMU.
#
# Env: SECONDARY_DIR (artifacts, default build/secondary/<binary's dir name>),
#      SECONDARY_TIMEOUT (seconds per marker, default 120 under TCG, 60 KVM),
#      GUEST_ACCEL=kvm|tcg (default: see tests/guest/lib.sh).
# Output: TAP lines, then "N passed, N failed"; exit status 1 if any failed.
# On a failure the tails of the serial log and of QEMU's stderr are printed.
# QEMU never outlives the script.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tap.sh"

tap_one_qemu secondary "${SECONDARY_DIR:-}" "$@"


t_start=$EPOCHREALTIME
finish() {
    trap - EXIT INT TERM
    guest_stop
    if [ "$fail" -gt 0 ]; then
        tap_tail "serial log" "$run/serial.log" 40
        tap_tail "QEMU stderr" "$run/qemu.stderr" 20
    fi
    tap_runtime "$t_start"
    tap_done
}
tap_traps

# 1. the guest image
tap_guest_image "$run"

accel=$(guest_accel)
timeout=${SECONDARY_TIMEOUT:-$([ "$accel" = kvm ] && echo 60 || echo 120)}
trace=$run/trace.log

# 2. QEMU up with two qxl devices
if guest_start "$qemu" "$top/build/guest" "$run" "qxltest.hold=60 qxltest.head2=1" \
        -device qxl,id=qxl1 \
        -trace qxl_io_write -trace qxl_set_guest_bug \
        -trace qxl_create_guest_primary -D "$trace"; then
    status=$(guest_qmp query-status 2>&1)
    echo "$status" | grep -q '"status": "running"'
    ok $? "QEMU runs with -vga qxl + -device qxl,id=qxl1, accel $GUEST_ACCEL_USED, QMP answers" "$status"
else
    ok 1 "QEMU starts with -vga qxl + -device qxl,id=qxl1, accel $accel"
    exit 1
fi

# 3. both devices on the PCI bus
guest_qmp query-pci >"$run/query-pci.json" 2>&1
pci=$($PY - "$run/query-pci.json" <<'EOF'
import json, sys
try:
    buses = json.load(open(sys.argv[1]))
except Exception as e:
    print(f'bad query-pci answer: {e}')
    sys.exit(1)
qxl = [d for b in buses for d in b['devices']
       if d['id']['vendor'] == 0x1b36 and d['id']['device'] == 0x0100]
for d in qxl:
    print(f"{d['bus']:02x}:{d['slot']:02x}.{d['function']} class={d['class_info']['class']:04x}"
          f" qdev_id={d.get('qdev_id', '')!r}")
vga = [d for d in qxl if d['class_info']['class'] == 0x0300]
sec = [d for d in qxl if d['class_info']['class'] == 0x0380 and d.get('qdev_id') == 'qxl1']
sys.exit(0 if len(qxl) == 2 and len(vga) == 1 and len(sec) == 1 else 1)
EOF
)
ok $? "query-pci: a qxl VGA controller (class 0300) and qxl1 (display controller, class 0380)" "$pci"
note "$(echo "$pci" | tr '\n' ';')"
# PCI addresses of the heads, as the guest's kernel names them
pri_addr=$(echo "$pci" | sed -n 's/^\([0-9a-f:.]*\) class=0300.*/0000:\1/p')
sec_addr=$(echo "$pci" | sed -n 's/^\([0-9a-f:.]*\) class=0380.*/0000:\1/p')
hmp=$(guest_qmp human-monitor-command '{"command-line": "info pci"}' 2>&1)
nqxl=$(echo "$hmp" | grep -c -i 'PCI device 1b36:0100')
[ "$nqxl" = 2 ]
ok $? "HMP info pci lists two qxl devices (1b36:0100)" "$hmp"

# wait_marker REGEX DESCRIPTION: one assertion; the rest needs the guest there
wait_marker() {
    local rc=0
    guest_wait "$1" "$timeout" || rc=$?
    case $rc in
    0) ok 0 "$2 (after ${GUEST_WAITED} s): $GUEST_LINE" ;;
    1) ok 1 "$2" "no '$1' on serial within $timeout s" ;;
    *) ok 1 "$2" "QEMU exited with status $GUEST_EXIT" ;;
    esac
    [ $rc = 0 ] || exit 1
}
# screen NAME PATTERN WxH DESCRIPTION [DEVICE]: one assertion
screen() {
    local out dev=()
    [ -z "${5:-}" ] || dev=(--device "$5")
    out=$($PY "$here/pattern.py" wait "$GUEST_QMP" "$run/$1.png" "$2" "$3" 30 "${dev[@]}" 2>&1)
    ok $? "$4" "$out"
    note "$out"
}

# 4. the primary head, as in the smoke test
wait_marker '^QXL-GUEST-DRAWN boot' "guest loaded qxl and drew the boot pattern on fb0"
screen primary-boot boot 1024x768 "primary screendump shows the boot pattern"
guest_send go
wait_marker '^QXL-GUEST-DRAWN mode' "guest changed the primary's mode to 800x600"
screen primary-mode mode 800x600 "primary screendump shows the mode pattern at 800x600"
guest_send go
wait_marker '^QXL-GUEST-READY' "guest is back in its boot mode and ready (boot to marker)"
boot_secs=$GUEST_WAITED
screen primary-ready ready 1024x768 "primary screendump shows the ready pattern"

# 5. what the guest made of the second head
log() { tr -d '\r' <"$run/serial.log"; }
init_pri=$(log | grep -a -E "\[drm\] Initialized qxl .* for $pri_addr on minor 0")
init_sec=$(log | grep -a -E "\[drm\] Initialized qxl .* for $sec_addr on minor 1")
[ -n "$pri_addr" ] && [ -n "$sec_addr" ] && [ -n "$init_pri" ] && [ -n "$init_sec" ]
ok $? "the guest's qxl driver bound both heads ($pri_addr minor 0, $sec_addr minor 1)" \
    "$(log | grep -a -E 'Initialized qxl|fb[01]: qxldrmfb')"
wait_marker '^QXL-GUEST-(HEAD2 DRAWN|HEAD2 NONE)' "guest found the second head (fb1, card1) and drew on it"
case $GUEST_LINE in *NONE*) ok 1 "fb1 is there" "the guest has no /dev/fb1 or /dev/dri/card1"; exit 1 ;; esac
fb1=$(log | grep -a -m1 '^QXL-GUEST: fb1 ' | sed 's/.*fb1 \([0-9]*x[0-9]*\) .*/\1/')
note "guest: $(log | grep -a -m1 '^QXL-GUEST: fb1 ')"

# 6. screendump device=qxl1 follows the second head; the primary stays
# Linux's drm/qxl now and then keeps the second head's shadow primary
# surface at its initial 64x64 although fb1 is 1024x768, until the next
# mode set (its monitors config says 1024x768 meanwhile); the guest's boot
# pattern then never reaches a primary surface of fb1's size.  The trace
# tells: when qxl 1's latest primary is not fb1's size, the check is skipped
# provided the screendump shows exactly that surface (QEMU shows no more
# than the primary surface); otherwise it must show the pattern.
out=$($PY "$here/pattern.py" wait "$GUEST_QMP" "$run/head2-boot.png" boot "${fb1:-1024x768}" 30 --device qxl1 2>&1)
rc=$?
prims=$(grep -a -o 'qxl_create_guest_primary 1 [0-9]*x[0-9]*' "$trace" | cut -d' ' -f3 | tr '\n' ' ')
last=${prims% }; last=${last##* }
if [ $rc != 0 ] && [ -n "$last" ] && [ "$last" != "${fb1:-1024x768}" ] &&
        echo "$out" | grep -q "size $last,"; then
    ok_skip "screendump device=qxl1 shows the boot pattern on the second head" \
        "the guest's driver kept a $last primary surface for its ${fb1:-1024x768} fb1 (drm/qxl resizes its shadow primary at the next mode set); the screendump shows that surface" \
        "$out
qxl 1 primary surfaces so far: $prims"
else
    ok $rc "screendump device=qxl1 shows the boot pattern on the second head" "$out
qxl 1 primary surfaces so far: $prims"
fi
note "$out"
screen primary-1 ready 1024x768 "primary screendump still shows the ready pattern"
# count ID PORT: qxl_io_write events of qxl ID on PORT so far
count() { grep -a -c "qxl_io_write $1 .*(QXL_IO_$2)" "$trace" 2>/dev/null || true; }
c0_before=$(count 0 CREATE_PRIMARY_ASYNC) c1_before=$(count 1 CREATE_PRIMARY_ASYNC)
d1_before=$(count 1 DESTROY_PRIMARY_ASYNC)
guest_send go
wait_marker '^QXL-GUEST-HEAD2 DRAWN mode' "guest changed the second head's mode to 800x600 (card1)"
screen head2-mode mode 800x600 "screendump device=qxl1 shows the mode pattern at 800x600" qxl1
screen primary-2 ready 1024x768 "primary screendump still shows the ready pattern at 1024x768"
guest_send go
wait_marker '^QXL-GUEST-HEAD2 READY' "second head back in its boot mode"
screen head2-ready ready "${fb1:-1024x768}" "screendump device=qxl1 shows the ready pattern" qxl1
c0=$(( $(count 0 CREATE_PRIMARY_ASYNC) - c0_before )) c1=$(( $(count 1 CREATE_PRIMARY_ASYNC) - c1_before ))
d1=$(( $(count 1 DESTROY_PRIMARY_ASYNC) - d1_before ))
[ "$c1" -ge 1 ] && [ "$d1" -ge 1 ] && [ "$c0" = 0 ]
ok $? "the second head's mode changes reached qxl 1 only (qxl 1: +$d1 DESTROY/+$c1 CREATE_PRIMARY_ASYNC, qxl 0: +$c0 CREATE)"

# 7. how the guest drove each device (trace qxl_io_write: first field = qxl id)
for id in 0 1; do
    ports=$(grep -a -o "qxl_io_write $id .*(QXL_IO_[A-Z_]*)" "$trace" 2>/dev/null |
        sed 's/.*(QXL_IO_\([A-Z_]*\))/\1/' | sort | uniq -c |
        awk '{printf "%s%s=%s", sep, $2, $1; sep=" "}')
    note "qxl $id ports written: ${ports:-none}"
    c=$(count $id CREATE_PRIMARY_ASYNC) d=$(count $id DESTROY_PRIMARY_ASYNC)
    [ "${c:-0}" -ge 2 ] && [ "${d:-0}" -ge 1 ]
    ok $? "qxl $id: the guest's mode changes went through CREATE/DESTROY_PRIMARY_ASYNC ($c/$d)" "$ports"
done
sync_ports=$(grep -a -o 'qxl_io_write.*(QXL_IO_[A-Z_]*)' "$trace" 2>/dev/null |
    grep -E '\(QXL_IO_(UPDATE_AREA|MEMSLOT_ADD|CREATE_PRIMARY|DESTROY_PRIMARY|DESTROY_SURFACE_WAIT|DESTROY_ALL_SURFACES)\)' |
    sed 's/.*(QXL_IO_\([A-Z_]*\))/\1/' | sort -u | tr '\n' ' ')
[ -z "$sync_ports" ]
ok $? "no blocking synchronous port was used on either head" "used: $sync_ports"
bugs=$(grep -a -c 'qxl_set_guest_bug' "$trace" 2>/dev/null)
[ "${bugs:-0}" -eq 0 ]
ok $? "QEMU saw no qxl guest bug" "$(grep -a 'qxl_set_guest_bug' "$trace" | head -5)"

# 8. logs
errs=$(log | grep -a -i -E \
    'QXL-GUEST-ERROR|qxl.*(error|timeout|timed out|fail)|\[drm\].*(error|timeout)|\*ERROR\*|\bOops\b|BUG:|WARNING: CPU|Kernel panic|Call Trace' | head -5)
[ -z "$errs" ]
ok $? "serial log shows no qxl error, timeout or kernel warning" "$errs"
qerrs=$(grep -a -i -E 'qxl|guest bug|spice.*(error|critical)' "$run/qemu.stderr" | head -5)
[ -z "$qerrs" ]
ok $? "QEMU stderr shows no qxl or spice error" "$qerrs"

# 9. clean exit
guest_stop
[ "${GUEST_EXIT:-x}" = 0 ]
ok $? "QEMU exits cleanly on QMP quit (status ${GUEST_EXIT:-?})"
note "boot to QXL-GUEST-READY: ${boot_secs:-?} s (accel $accel)"
