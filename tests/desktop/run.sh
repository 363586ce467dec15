#!/bin/bash
# Desktop test: the Debian desktop guest (scripts/desktop-image.sh) on
# -vga qxl, Xorg on the qxl driver (xf86-video-qxl on the kernel's drm/qxl),
# driven from here through its command channel (ttyS1), checked through its
# serial log, QMP screendump and a spice-client-glib client's picture.
#
#   tests/desktop/run.sh QEMU_BINARY
#
# Boots with -smp 2 -m 1024 (GUEST_SMP, GUEST_MEM override), TCG unless KVM
# is usable (tests/guest/lib.sh), spice on 127.0.0.1 with
# image-compression=off, the root filesystem on virtio-blk with
# snapshot=on.  Checks: Xorg runs on the qxl driver with no (EE) line; a
# tiled root (xsetroot -bitmap) and an image put with PutImage (xwud) show
# exactly in the screendump and in the client's picture; GetImage (xwd
# -root) right after drawing returns exactly the drawn pixels; an xrandr
# mode change to 800x600 and back reaches the screendump, the client and
# GetImage; then, when QEMU loads the spice-server series (build/spice), a
# frozen client: SIGSTOP, the guest draws (x11perf) until spice-server says
# the client lags (its pipe is full: the client is behind), and while it is
# frozen QMP answers every 100 ms sample (a second QMP monitor), the guest
# draws (xsetroot, xwud), GetImage returns the drawn pixels, the screendump
# shows them, and a mode change and back completes before the thaw (it
# does not wait for the client); after SIGCONT the client's picture equals the
# screendump pixel for pixel and it was never disconnected (the frozen part
# stays well below spice-server's 30 s ping timeout); no qxl guest bug, no
# kernel or Xorg error.
#
# Env: DESKTOP_DIR (artifacts, default build/desktop-test/<binary's dir
#      name>), DESKTOP_IMAGE (default build/desktop), DESKTOP_TIMEOUT
#      (seconds to DESKTOP-READY, default 300 under TCG, 120 under KVM),
#      DESKTOP_CMDLOG=1 (QEMU logs every command it takes, -global
#      qxl-vga.cmdlog=1, and the end notes a census of them: census.py).
# Output: TAP ("ok N - ..." / "not ok N - ..."), "# " notes, then
# "N passed, N failed"; exit status 1 if any failed.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$top/tests/guest/tap.sh"

tap_one_qemu desktop-test "${DESKTOP_DIR:-}" "$@"
img=${DESKTOP_IMAGE:-$top/build/desktop}
t_start=$EPOCHREALTIME


finish() {
    trap - EXIT INT TERM
    client_kill
    guest_stop
    [ -z "${sockdir:-}" ] || rm -rf "$sockdir"
    if [ "$fail" -gt 0 ]; then
        # without the commands' output (XWDs in base64)
        grep -a -v '^DESKTOP-OUT' "$run/serial.log" >"$run/serial.short.log" 2>/dev/null
        tap_tail "serial log, without DESKTOP-OUT lines" "$run/serial.short.log" 40
        tap_tail "QEMU stderr" "$run/qemu.stderr" 20
        tap_tail "client" "$run/client.log" 10
    fi
    tap_runtime "$t_start"
    tap_done
}
tap_traps

. "$here/lib.sh"

# --- 1. the image -------------------------------------------------------------
t0=$EPOCHREALTIME
if "$top/scripts/desktop-image.sh" "$img" >"$run/desktop-image.log" 2>&1; then
    ok 0 "desktop image ready ($(cat "$img/kernel-version"), $(wc -l <"$img/packages.txt") packages, rootfs $(du -m "$img/rootfs.ext4" | cut -f1) MiB; $("$PY" -c "print('%.1f' % ($EPOCHREALTIME - $t0))") s here, last build $(cat "$img/build-time" 2>/dev/null || echo ?) s)"
else
    ok 1 "desktop image built" "see $run/desktop-image.log"
    tail -n 20 "$run/desktop-image.log" | sed 's/^/# /'
    exit 1
fi

# --- 2. boot ----------------------------------------------------------------------
# which libspice-server QEMU loads: with the spice-server series
# (build/spice) a frozen client lags instead of holding anything up, and the
# frozen-client section runs; its lag lines (spice_debug) need
# G_MESSAGES_DEBUG=Spice
spice_lib=$(ldd "$qemu" 2>/dev/null | awk '/libspice-server\.so/ { print $3; exit }')
case $spice_lib in
"$top"/build/spice/*) series=1 ;;
*) series=0 ;;
esac
accel=$(guest_accel)
timeout=${DESKTOP_TIMEOUT:-$([ "$accel" = kvm ] && echo 120 || echo 300)}
trace=$run/trace.log
# a second QMP monitor: one connection samples query-status while the
# client is frozen, the other takes screendumps
sockdir=$(mktemp -d /tmp/qxl-desktop.XXXXXX)
qmp2=$sockdir/qmp2.sock
if G_MESSAGES_DEBUG=Spice GUEST_MEM=${GUEST_MEM:-1024} GUEST_SMP=${GUEST_SMP:-2} guest_start "$qemu" "$img" "$run" "" \
        -drive "file=$img/rootfs.ext4,if=virtio,format=raw,snapshot=on" \
        -spice image-compression=off \
        -qmp "unix:$qmp2,server=on,wait=off" \
        -device virtio-serial-pci,id=vser \
        -chardev spicevmc,id=vdagent,name=vdagent \
        -device virtserialport,bus=vser.0,chardev=vdagent,name=com.redhat.spice.0 \
        -trace qxl_io_write -trace qxl_set_guest_bug \
        -trace qxl_interrupt_client_monitors_config -D "$trace" \
        ${DESKTOP_CMDLOG:+-global qxl-vga.cmdlog=1}; then
    status=$(guest_qmp query-status 2>&1)
    echo "$status" | grep -q '"status": "running"'
    ok $? "QEMU runs with -vga qxl -smp ${GUEST_SMP:-2} -m ${GUEST_MEM:-1024}, accel $GUEST_ACCEL_USED, spice on 127.0.0.1:$GUEST_SPICE_PORT, QMP answers" "$status"
else
    ok 1 "QEMU starts with -vga qxl, accel $accel"
    exit 1
fi

# wait_marker REGEX DESCRIPTION: one assertion; the test ends if it fails
wait_marker() {
    local rc=0
    guest_wait "$1" "$timeout" || rc=$?
    case $rc in
    0) ok 0 "$2 (after $GUEST_WAITED s): $GUEST_LINE" ;;
    1) ok 1 "$2" "no '$1' on serial within $timeout s$(grep -a '^DESKTOP-ERROR\|^DESKTOP-XINIT' "$GUEST_SERIAL" | head -3 | sed 's/^/; /')" ;;
    *) ok 1 "$2" "QEMU exited with status $GUEST_EXIT" ;;
    esac
    [ $rc = 0 ] || exit 1
}
wait_marker '^DESKTOP-DRM card0 .*driver=qxl' "the kernel's drm/qxl drives the device (/dev/dri/card0)"
wait_marker '^DESKTOP-READY' "Xorg and the session are up"
boot_s=$GUEST_WAITED
note "boot to DESKTOP-READY: $boot_s s (QEMU start to the session's first command; guest $(echo "$GUEST_LINE" | tr -d '\r' | sed 's/.*uptime=/uptime /') s)"

# --- 3. Xorg runs on the qxl driver, without errors --------------------------------------
log() { tr -d '\r' <"$GUEST_SERIAL"; }
drv=$(log | sed -n 's/^DESKTOP-XORG-DRIVER //p')
echo "$drv" | grep -q 'Loading /usr/lib/xorg/modules/drivers/qxl_drv.so' &&
    echo "$drv" | grep -q 'qxl(0): Output .* connected'
ok $? "Xorg.0.log: the qxl driver (qxl_drv.so) drives screen 0, an output connected" \
    "driver lines: $(echo "$drv" | head -5)"
ee=$(log | sed -n 's/^DESKTOP-XORG-EE-COUNT //p' | head -1)
[ "$ee" = 0 ]
ok $? "Xorg.0.log has no (EE) line" "$ee (EE) lines: $(log | sed -n 's/^DESKTOP-XORG-EE //p' | head -5)"
output=$(log | sed -n 's/^DESKTOP-XRANDR \([^ ]*\) connected.*/\1/p' | head -1)
note "xrandr: $(log | sed -n 's/^DESKTOP-XRANDR //p' | head -3 | tr '\n' ';')"

# --- 4. the spice client ----------------------------------------------------------------
"$PY" "$top/bench/spice_client.py" 127.0.0.1 "$GUEST_SPICE_PORT" --timeout 1200 \
    --dump "$run/client.raw" --control "$run/client.ctl" >"$run/client.log" 2>"$run/client.stderr" </dev/null &
CLIENT_PID=$!
rc=1
for _ in $(seq 300); do      # 30 s
    grep -q '"event": "primary-create", "width": 1024, "height": 768' "$run/client.log" 2>/dev/null &&
        { rc=0; break; }
    kill -0 "$CLIENT_PID" 2>/dev/null || break
    sleep 0.1
done
ok $rc "spice client connected, display channel open, 1024x768 primary surface" \
    "client: $(tail -3 "$run/client.log" | tr '\n' ' ') $(tail -2 "$run/client.stderr" | tr '\n' ' ')"

# --- 5. drawing: a tiled root (fills) and an image (PutImage) ------------------------------
t_draw=$SECONDS
gcmd 60 "$(root_tile ff8000 0040c0) &&
    (xwud -in $photo -geometry +100+50 -noclick >/tmp/xwud.log 2>&1 &) &&
    for i in \$(seq 100); do xwininfo -name 'xwud: photo' >/dev/null 2>&1 && break; sleep 0.1; done &&
    xwininfo -name 'xwud: photo' | grep -E 'Absolute|Width|Height'"
ok $? "the guest drew: xsetroot -bitmap (tiled root), xwud (a 256x192 image at 100,50)" "$(gdiag)"
shown=(size=1024x768 photo@100,50 tile=ff8000,0040c0@0,0,100,768
    tile=ff8000,0040c0@356,0,668,768 tile=ff8000,0040c0@100,0,256,50
    tile=ff8000,0040c0@100,242,256,526)
screendump_until "$run/draw.ppm" 30 "${shown[@]}"
ok $? "QMP screendump shows both, every pixel ($TRIES screendumps, $((SECONDS - t_draw)) s)" "$WHY"
if [ -n "$CLIENT_PID" ]; then
    client_until "$run/client.raw" 30 "${shown[@]}"
    ok $? "the spice client's picture shows both, every pixel ($TRIES dumps)" "$WHY"
fi

# --- 6. GetImage right after drawing: UPDATE_AREA end to end ------------------------------------
ua0=$(count UPDATE_AREA_ASYNC) uas0=$(count UPDATE_AREA)
getimage "$run/getimage.xwd" "$(root_tile c02060 f0f0a0)"
ok $? "xsetroot then xwd -root at once: the XWD came back (GetImage took ${GT:-?} s with the draw)" "$(gdiag); $WHY"
ua=$(( $(count UPDATE_AREA_ASYNC) - ua0 )) uas=$(( $(count UPDATE_AREA) - uas0 ))
fresh=(size=1024x768 photo@100,50 tile=c02060,f0f0a0@0,0,100,768
    tile=c02060,f0f0a0@356,0,668,768 tile=c02060,f0f0a0@100,0,256,50
    tile=c02060,f0f0a0@100,242,256,526)
WHY=$(pat check "$run/getimage.xwd" "${fresh[@]}")
ok $? "GetImage returned the freshly drawn root and the image, every pixel" "$WHY"
[ $((ua + uas)) -ge 1 ]
ok $? "the driver read them back through UPDATE_AREA (UPDATE_AREA_ASYNC +$ua, UPDATE_AREA +$uas)"
screendump_until "$run/getimage.ppm" 30 "${fresh[@]}"
ok $? "QMP screendump shows the same ($TRIES screendumps)" "$WHY"

# --- 7. a RandR mode change, and back ---------------------------------------------------------------
# xf86-video-qxl leaves the root black after a resize (it does not repaint
# the root's background; on the unpatched QEMU too): redraw it.
t_mode=$SECONDS
gcmd 60 "xrandr --output ${output:-Virtual-1} --mode 800x600 && $(root_tile 10a040 ffffff) && xrandr | grep -E '^Screen|\\*'"
ok $? "xrandr --output ${output:-Virtual-1} --mode 800x600 went through (${GT:-?} s): $(echo "$GOUT" | head -1 | sed 's/.*\(current [0-9]* x [0-9]*\).*/\1/')" "$(gdiag)"
echo "$GOUT" | grep -q 'current 800 x 600' && echo "$GOUT" | grep -q '800x600 .*\*'
ok $? "xrandr reports 800x600 as the current mode" "$GOUT"
small=(size=800x600 photo@100,50 tile=10a040,ffffff@0,0,100,600 tile=10a040,ffffff@356,0,444,600
    tile=10a040,ffffff@100,242,256,358)
screendump_until "$run/mode.ppm" 30 "${small[@]}"
ok $? "QMP screendump is 800x600 and shows the redrawn root and the image ($TRIES screendumps, $((SECONDS - t_mode)) s)" "$WHY"
if [ -n "$CLIENT_PID" ]; then
    grep -q '"event": "primary-create", "width": 800, "height": 600' "$run/client.log"
    ok $? "the spice client got an 800x600 primary surface" "$(grep primary "$run/client.log" | tail -2 | tr '\n' ' ')"
    client_until "$run/client.raw" 30 "${small[@]}"
    ok $? "the spice client's picture shows them at 800x600 ($TRIES dumps)" "$WHY"
fi
getimage "$run/mode.xwd" "$(root_tile 6020a0 e0e0e0)"
ok $? "GetImage at 800x600 came back" "$(gdiag); $WHY"
WHY=$(pat check "$run/mode.xwd" size=800x600 photo@100,50 tile=6020a0,e0e0e0@0,0,100,600 \
    tile=6020a0,e0e0e0@356,0,444,600 tile=6020a0,e0e0e0@100,242,256,358)
ok $? "GetImage at 800x600 returned the freshly drawn root and the image" "$WHY"
gcmd 60 "xrandr --output ${output:-Virtual-1} --mode 1024x768 && $(root_tile ff8000 0040c0) && xrandr | grep -E '^Screen'"
ok $? "xrandr back to 1024x768 (${GT:-?} s)" "$(gdiag)"
screendump_until "$run/back.ppm" 30 "${shown[@]}"
ok $? "QMP screendump is 1024x768 again and shows the root and the image ($TRIES screendumps)" "$WHY"
if [ -n "$CLIENT_PID" ]; then
    client_until "$run/client.raw" 30 "${shown[@]}"
    ok $? "the spice client's picture too ($TRIES dumps)" "$WHY"
fi

# --- 7b. the spice agent: the client asks for a size -------------------------------------
# What a SPICE client window's resize does: the client sends a monitors
# config to the guest's agent; spice-server hands it to the qxl device
# instead (client monitors config in the ROM), which raises
# QXL_INTERRUPT_CLIENT_MONITORS_CONFIG; drm/qxl reads it and offers the
# size as the output's preferred mode, which the session then sets (a
# desktop environment would; here xrandr --auto).  A size no mode list has:
# it can only come from the request.
# client_wait REGEX TIMEOUT: the client's log has a line matching REGEX
client_wait() {
    local i
    for i in $(seq $(($2 * 10))); do
        grep -q -E "$1" "$run/client.log" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
# client_resize W H: ask for display 0 at W x H
client_resize() {
    local before
    before=$(grep -c '"event": "resize"' "$run/client.log")
    echo "resize $1 $2" >"$run/client.ctl"
    kill -HUP "$CLIENT_PID" 2>/dev/null || return 1
    for _ in $(seq 50); do
        [ "$(grep -c '"event": "resize"' "$run/client.log")" -gt "$before" ] && break
        sleep 0.1
    done
    grep '"event": "resize"' "$run/client.log" | tail -1 | grep -q "\"width\": $1, \"height\": $2, \"sent\": true"
}
t_agent=$SECONDS
agent_line=$(log | sed -n 's/^DESKTOP-VDAGENT //p' | head -1)
echo "$agent_line" | grep -q '^started'
ok $? "spice-vdagentd and spice-vdagent run in the guest: $agent_line" "$agent_line"
if [ -n "$CLIENT_PID" ]; then
    client_wait '"event": "agent", "connected": true' 30
    ok $? "the spice client sees the guest's agent connected" "$(grep '"agent"' "$run/client.log" | tail -2 | tr '\n' ' ')"
    cmc0=$(grep -a -c qxl_interrupt_client_monitors_config "$trace" 2>/dev/null || true)
    client_resize 912 684
    ok $? "the client sent a monitors config asking for 912x684" "$(tail -2 "$run/client.log" | tr '\n' ' ')"
    for _ in $(seq 100); do
        [ "$(grep -a -c qxl_interrupt_client_monitors_config "$trace")" -gt "$cmc0" ] && break
        sleep 0.1
    done
    cmc=$(grep -a qxl_interrupt_client_monitors_config "$trace" | tail -1)
    [ "$(grep -a -c qxl_interrupt_client_monitors_config "$trace")" -gt "$cmc0" ]
    ok $? "QEMU's qxl put the client's monitors config in its ROM for the guest (trace qxl_interrupt_client_monitors_config: device $(echo "$cmc" | awk '{print $(NF-2)}'), $(echo "$cmc" | awk '{print $(NF-1)}') heads, the client's display slots)" "no new qxl_interrupt_client_monitors_config event: $cmc"
    gcmd 30 "for i in \$(seq 100); do xrandr | grep -q '^ *912x684' && break; sleep 0.1; done; xrandr | grep -E '^Screen|^ *912x684|\\*'"
    echo "$GOUT" | grep -q -E '^ *912x684 .*\+'
    ok $? "drm/qxl read it: xrandr offers 912x684 as the preferred mode ($(echo "$GOUT" | grep -E '^ *912x684' | tr -s ' '))" "$(gdiag)"
    applied=$(echo "$GOUT" | grep -c 'current 912 x 684')
    gcmd 60 "xrandr --output ${output:-Virtual-1} --auto && $(root_tile 10a040 ffffff) && xrandr | grep -E '^Screen'"
    echo "$GOUT" | grep -q 'current 912 x 684'
    ok $? "xrandr --auto set it: the screen is 912 x 684 (${GT:-?} s; the agent had $([ "$applied" -gt 0 ] || echo "not ")set it before)" "$(gdiag)"
    mid=(size=912x684 photo@100,50 tile=10a040,ffffff@0,0,100,684 tile=10a040,ffffff@356,0,556,684)
    screendump_until "$run/agent.ppm" 30 "${mid[@]}"
    ok $? "QMP screendump is 912x684 and shows the redrawn root and the image ($TRIES screendumps)" "$WHY"
    client_wait '"event": "primary-create", "width": 912, "height": 684' 30
    ok $? "the spice client got a 912x684 primary surface" "$(grep primary "$run/client.log" | tail -2 | tr '\n' ' ')"
    client_until "$run/client.raw" 30 "${mid[@]}"
    ok $? "the spice client's picture shows them at 912x684 ($TRIES dumps)" "$WHY"
    # and back, the same way
    client_resize 1024 768
    gcmd 60 "for i in \$(seq 100); do xrandr | grep -q -E '^ *1024x768 .*\\+' && break; sleep 0.1; done;
        xrandr --output ${output:-Virtual-1} --auto && $(root_tile ff8000 0040c0) && xrandr | grep -E '^Screen'"
    echo "$GOUT" | grep -q 'current 1024 x 768'
    ok $? "the client asked for 1024x768 again: preferred, set, the screen is 1024 x 768 (${GT:-?} s)" "$(gdiag)"
    screendump_until "$run/agent-back.ppm" 30 "${shown[@]}"
    ok $? "QMP screendump is 1024x768 again and shows the root and the image ($TRIES screendumps)" "$WHY"
    client_until "$run/client.raw" 30 "${shown[@]}"
    ok $? "the spice client's picture too ($TRIES dumps)" "$WHY"
    note "agent section: $((SECONDS - t_agent)) s"
fi

# --- 8. a frozen client (the spice-server series) -------------------------------------------
# The client is stopped (SIGSTOP) and the guest draws until spice-server says
# it lags (its pipe passed 50 items or 8 MiB of images: the client is
# behind); then, frozen: QMP answers throughout, the guest draws and reads
# back, the screendump shows it, a mode change; thawed: the client's picture
# equals the screendump pixel for pixel and it was never disconnected.
# backlog: bytes the frozen client has not read (its sockets' Recv-Q) and
# QEMU could not send (Send-Q of spice's sockets), over the client's
# connections to the spice port
backlog() {
    ss -tnH state established "( sport = :$GUEST_SPICE_PORT or dport = :$GUEST_SPICE_PORT )" 2>/dev/null |
        awk -v p=":$GUEST_SPICE_PORT" '$3 ~ p"$" { s += $2 } $4 ~ p"$" { r += $1 } END { printf "%d %d", r, s }'
}
if [ "$series" = 0 ] || [ -z "$CLIENT_PID" ]; then
    ok_skip "frozen client: the guest draws, reads back and changes modes while it lags" \
        "QEMU loads ${spice_lib:-no libspice-server}, not the spice-server series (build/spice)"
else
    t_frozen=$SECONDS
    lag0=$(lags)
    kill -STOP "$CLIENT_PID"
    sleep 0.2
    state0=$(client_state)
    rm -f "$run/qmp.stop"
    "$PY" "$here/qmp_sampler.py" "$qmp2" "$run/qmp.stop" "$run/qmp-frozen.json" &
    sampler=$!
    # draws that spice-server cannot merge away: x11perf's small rectangles
    # and copies all over its window (a fixed count: no calibration, since
    # spice-server drops a client that has not answered its ping for 30 s,
    # the whole frozen part must stay well below that)
    gcmd 120 "x11perf -repeat 1 -reps 5 -rect10 -copywinwin10 2>&1 | grep -E 'reps' | tail -3"
    ok $? "frozen: the guest drew (x11perf -reps 5 -rect10 -copywinwin10: $(echo "$GOUT" | sed -n 's/.*(\(.*\/sec\)): \(.*\)/\2 \1/p' | tr '\n' ';' | sed 's/;$//'); ${GT:-?} s)" "$(gdiag)"
    for _ in $(seq 50); do [ "$(lags)" -gt "$lag0" ] && break; sleep 0.1; done
    read -r unread unsent <<<"$(backlog)"
    [ "$(lags)" -gt "$lag0" ]
    ok $? "the client was behind: spice-server said it lags (its pipe full: $(( $(lags) - lag0 )) lag line(s) since the freeze); unread by the client $unread bytes, unsent by QEMU $unsent bytes" \
        "no 'display client ... lags' line on QEMU's stderr (G_MESSAGES_DEBUG=Spice) after the freeze"
    frozen_shown=(size=1024x768 photo@100,50 photo@600,400 tile=203080,f0c040@0,0,100,768
        tile=203080,f0c040@356,0,244,768 tile=203080,f0c040@100,0,256,50
        tile=203080,f0c040@100,242,256,526 tile=203080,f0c040@856,0,168,768
        tile=203080,f0c040@600,0,256,400 tile=203080,f0c040@600,592,256,176)
    getimage "$run/frozen.xwd" "$(root_tile 203080 f0c040) &&
        (xwud -in $photo -geometry +600+400 -noclick >/tmp/xwud2.log 2>&1 &) &&
        for i in \$(seq 100); do [ \$(xwininfo -root -children | grep -c 'xwud: photo') -ge 2 ] && break; sleep 0.1; done &&
        sleep 0.5"
    ok $? "frozen: the guest drew a new root (xsetroot) and a second image (xwud at 600,400) and read the screen back (xwd -root, ${GT:-?} s)" "$(gdiag); $WHY"
    WHY=$(pat check "$run/frozen.xwd" "${frozen_shown[@]}")
    ok $? "frozen: GetImage returned the drawn pixels (root, both images), every pixel" "$WHY"
    screendump_until "$run/frozen.ppm" 30 "${frozen_shown[@]}"
    ok $? "frozen: QMP screendump shows them, every pixel ($TRIES screendumps)" "$WHY"
    # The mode change does not wait for the lagging client (its surface
    # messages are compacted, DESTROY_PRIMARY does not wait): asked while
    # frozen, it must complete before the thaw (8 s).
    mode_cmd="xrandr --output ${output:-Virtual-1} --mode 800x600 && xrandr --output ${output:-Virtual-1} --mode 1024x768 && $(root_tile 203080 f0c040) && xrandr | grep -E '^Screen'"
    gcmd 8 "$mode_cmd"
    mode_rc=$GRC mode_id=$GID
    state1=$(client_state)
    [ "$state0" = T ] && [ "$state1" = T ]
    ok $? "the client stayed stopped (SIGSTOP) while the guest drew, read back and changed modes ($((SECONDS - t_frozen)) s; state $state0 .. $state1)"
    touch "$run/qmp.stop"
    wait "$sampler"
    q=$(cat "$run/qmp-frozen.json" 2>/dev/null)
    qf() { echo "$q" | "$PY" -c "import json,sys; print(json.load(sys.stdin).get('$1'))" 2>/dev/null; }
    [ -n "$q" ] && [ "$(qf sent)" -ge 1 ] && [ "$(qf answered)" = "$(qf sent)" ] &&
        [ "$(qf in_order)" = "$(qf sent)" ] && [ "$(qf running)" = "$(qf sent)" ]
    ok $? "frozen: QMP answered throughout: $(qf answered)/$(qf sent) query-status samples (every 100 ms) answered in order, all running (latency median $(qf median_ms) ms, max $(qf max_ms) ms: information)" "$q"
    kill -CONT "$CLIENT_PID"
    # the mode change: done before the thaw, and after it in any case
    if [ "$mode_rc" = timeout ]; then
        rc=0; guest_wait "^DESKTOP-DONE $mode_id " 60 || rc=$?
        GRC=$(echo "$GUEST_LINE" | sed -n 's/.* rc=\([0-9]*\).*/\1/p')
        [ $rc = 0 ] || GRC=timeout
        ok 1 "frozen: xrandr --mode 800x600 and back completed before the thaw" \
            "not done 8 s after it was asked, while the client was frozen; after the thaw: ${GRC:-?}"
    else
        ok "$([ "$mode_rc" = 0 ] && echo 0 || echo 1)" "frozen: xrandr --mode 800x600 and back completed before the thaw" "status $mode_rc"
    fi
    [ "$GRC" = 0 ]
    ok $? "the mode change and back completed (after the thaw at the latest; status $GRC)"
    screendump_until "$run/thaw-expected.ppm" 30 size=1024x768 photo@100,50 photo@600,400 \
        tile=203080,f0c040@0,0,100,768 tile=203080,f0c040@856,0,168,768
    ok $? "QMP screendump shows the redrawn root and both images at 1024x768 ($TRIES screendumps)" "$WHY"
    client_until "$run/client.raw" 30 "same=$run/thaw-expected.ppm"
    ok $? "thawed: the client caught up, its picture equals that screendump pixel for pixel ($TRIES dumps)" "$WHY"
    ! grep -q '"event": "disconnected"\|"channel-error"\|"channel-closed"' "$run/client.log" && kill -0 "$CLIENT_PID" 2>/dev/null
    ok $? "the client was never disconnected (no disconnected, channel-error or channel-closed event; still running)" \
        "$(grep 'disconnected\|channel-error\|channel-closed' "$run/client.log" | head -3)"
    note "frozen-client section: $((SECONDS - t_frozen)) s"
fi

# --- 9. logs: guest, Xorg, QEMU ---------------------------------------------------------------------
gcmd 60 "echo ee=\$(grep -a -c '^\\[.*(EE)' /var/log/Xorg.0.log); grep -a '^\\[.*(EE)' /var/log/Xorg.0.log | head -5;
    dmesg --level=emerg,alert,crit,err,warn | grep -a -i -E 'qxl|drm|ttm|BUG|Oops|WARNING|Call Trace' | head -5"
ee=$(echo "$GOUT" | sed -n 's/^ee=//p')
[ "$GRC" = 0 ] && [ "$ee" = 0 ]
ok $? "Xorg.0.log still has no (EE) line at the end" "$(gdiag)"
kerr=$(echo "$GOUT" | grep -v '^ee=\|(EE)')
[ "$GRC" = 0 ] && [ -z "$kerr" ]
ok $? "the guest kernel logged no qxl/drm error or warning" "$kerr"
if [ -n "$CLIENT_PID" ]; then
    ! grep -q '"event": "disconnected"\|"channel-error"' "$run/client.log" && kill -0 "$CLIENT_PID" 2>/dev/null
    ok $? "the spice client stayed connected throughout" "$(grep 'disconnected\|channel-error' "$run/client.log" | head -3)"
fi
ports=$(grep -a -o 'qxl_io_write.*(QXL_IO_[A-Z_]*)' "$trace" 2>/dev/null |
    sed 's/.*(QXL_IO_\([A-Z_]*\))/\1/' | sort | uniq -c |
    awk '{printf "%s%s=%s", sep, $2, $1; sep=" "}')
note "ports written: ${ports:-none}"
if [ -n "${DESKTOP_CMDLOG:-}" ]; then
    "$PY" "$here/census.py" "$run/qemu.stderr" | while read -r line; do
        note "command log: $line"
    done
fi
bugs=$(grep -a -c 'qxl_set_guest_bug' "$trace" 2>/dev/null || true)
[ "$bugs" -eq 0 ]
ok $? "QEMU saw no qxl guest bug" "$bugs qxl_set_guest_bug event(s): $(grep -a 'qxl_set_guest_bug' "$trace" | head -3)"
qerrs=$(grep -a -v -E '^qemu-system-x86_64: info: Spice: |^[0-9]+ qxl-[0-9]+/(cmd|csr|vga): ' "$run/qemu.stderr" | grep -a -i -E 'qxl|guest bug|spice.*(error|critical)' | head -5)
[ -z "$qerrs" ]
ok $? "QEMU stderr shows no qxl or spice error" "$qerrs"

# --- 10. clean exit --------------------------------------------------------------------------------
client_kill
guest_stop
[ "${GUEST_EXIT:-x}" = 0 ]
ok $? "QEMU exits cleanly on QMP quit (status ${GUEST_EXIT:-?})"
