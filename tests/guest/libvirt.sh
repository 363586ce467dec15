#!/bin/bash
# The qxl test guest under Debian's libvirt, qemu:///session as an
# unprivileged user, with <emulator> = the given QEMU.
#
#   tests/guest/libvirt.sh QEMU_BINARY        (as root)
#
# As root it creates the test user if missing (LIBVIRT_USER, default
# qxltest; no login shell) and checks that the user can run QEMU_BINARY (a
# directory on its path without o+x gets o+x, and the script says so).  The
# guest's kernel and initramfs are copied into a private directory the user
# owns.  virsh runs as that user with a clean environment whose
# XDG_RUNTIME_DIR/XDG_CONFIG_HOME/XDG_CACHE_HOME/HOME point into that
# directory: it spawns a session daemon of its own (Debian 12: libvirtd
# --timeout=120, plus virtlogd), which keeps domains, logs and sockets
# there, and which the script stops at the end (by the pids in its pidfiles).
#
# Steps: domcapabilities probe of the binary (qxl video and spice graphics
# offered), define, start, the guest's QXL-GUEST-READY marker in the serial
# file, virsh screenshot shows the ready pattern, qemu-monitor-command
# query-status answers, spice listens where domdisplay says, destroy,
# undefine, the session daemons end.
#
# Env: LIBVIRT_DIR (artifacts, default build/libvirt/<binary's dir name>:
#      domain XML, serial log, libvirt's domain log (QEMU's command line and
#      stderr), screenshot, capabilities), LIBVIRT_USER, LIBVIRT_TIMEOUT
#      (seconds to the marker, default 120 under TCG, 60 under KVM),
#      GUEST_ACCEL=kvm|tcg.
# Output: TAP lines, then "N passed, N failed"; exit status 1 if any failed.
# On a failure the tails of the serial log and of libvirt's domain log are
# printed.  Neither QEMU nor the session daemons outlive the script.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
. "$here/tap.sh"

[ $# -eq 1 ] || { echo "usage: $0 QEMU_BINARY" >&2; exit 2; }
qemu=$1
qemu=$(tap_qemu "$qemu") || exit 2
[ "$(id -u)" = 0 ] || { echo "$0: run as root (creates the test user, runs virsh as it)" >&2; exit 2; }
for tool in virsh runuser useradd; do
    command -v "$tool" >/dev/null || { echo "$0: $tool not found (libvirt-clients, util-linux, passwd)" >&2; exit 2; }
done

user=${LIBVIRT_USER:-qxltest}
name=qxl-libvirt-$(basename "$(dirname "$qemu")")
art=${LIBVIRT_DIR:-$top/build/libvirt/$(basename "$(dirname "$qemu")")}
rm -rf "$art"
mkdir -p "$art"

secs() { $PY -c "print('%.1f' % ($EPOCHREALTIME - $1))"; }

rt=            # the user's private directory (sockets, domains, logs)
defined=0
# lv ARGS...: virsh -c qemu:///session as the test user, bounded
lv() {
    timeout 60 runuser -u "$user" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
        HOME="$rt/home" XDG_RUNTIME_DIR="$rt/run" XDG_CONFIG_HOME="$rt/config" \
        XDG_CACHE_HOME="$rt/cache" XDG_DATA_HOME="$rt/data" \
        virsh -q -c qemu:///session "$@"
}
domlog() { echo "$rt/cache/libvirt/qemu/log/$name.log"; }
qemu_pid() { cat "$rt/run/libvirt/qemu/run/$name.pid" 2>/dev/null; }
# pid_of_user PID: PID is alive and the test user's
pid_of_user() { [ -n "$1" ] && [ "$(ps -o user= -p "$1" 2>/dev/null)" = "$user" ]; }
# stop_pid PID: TERM, wait up to 5 s, KILL
stop_pid() {
    local p=$1 i
    pid_of_user "$p" || return 0
    kill -TERM "$p" 2>/dev/null
    for i in $(seq 50); do pid_of_user "$p" || return 0; sleep 0.1; done
    echo "# $p ($(ps -o comm= -p "$p")) ignored SIGTERM: SIGKILL"
    kill -KILL "$p" 2>/dev/null
    for i in $(seq 20); do pid_of_user "$p" || return 0; sleep 0.1; done
}
# the session daemons' pids, from their pidfiles
daemon_pids() {
    local f
    for f in "$rt"/run/libvirt/libvirtd.pid "$rt"/run/libvirt/virtqemud.pid \
             "$rt"/run/libvirt/virtlogd.pid; do
        [ -s "$f" ] && echo "$(basename "$f" .pid)=$(cat "$f")"
    done
}

t_start=$EPOCHREALTIME
finish() {
    trap - EXIT INT TERM
    if [ -n "$rt" ] && [ -d "$rt" ]; then
        local p
        p=$(qemu_pid)
        if pid_of_user "$p"; then
            lv destroy "$name" >/dev/null 2>&1
            stop_pid "$p"
        fi
        [ $defined = 0 ] || lv undefine "$name" >/dev/null 2>&1
        for p in $(daemon_pids | sed 's/.*=//'); do stop_pid "$p"; done
        cp "$rt/serial.log" "$art/serial.log" 2>/dev/null
        cp "$(domlog)" "$art/domain.log" 2>/dev/null
        rm -rf "$rt"
    fi
    if [ "$fail" -gt 0 ]; then
        tap_tail "serial log" "$art/serial.log" 30
        echo "# --- libvirt's domain log: QEMU command line and stderr (tail): $art/domain.log"
        tail -n 25 "$art/domain.log" 2>/dev/null | sed 's/^/# /'
    fi
    tap_runtime "$t_start"
    tap_done
}
tap_traps

# 1. the guest image
tap_guest_image "$art"

# 2. the test user, and what it can reach
if ! getent passwd "$user" >/dev/null; then
    if useradd --create-home --shell /usr/sbin/nologin \
            --comment "qxl-async libvirt session test user" "$user"; then
        note "created user $user"
    fi
fi
getent passwd "$user" >/dev/null
ok $? "test user $user exists ($(id "$user" 2>&1))"
getent passwd "$user" >/dev/null || exit 1
# the directories on the way to the binary (and its firmware next to it)
# must be searchable by the user
fixed=()
d=$(dirname "$(readlink -f "$qemu")")
while [ "$d" != / ]; do
    if ! runuser -u "$user" -- test -x "$d"; then
        chmod o+x "$d" && fixed+=("$d")
    fi
    d=$(dirname "$d")
done
[ ${#fixed[@]} = 0 ] || note "gave o+x to: ${fixed[*]}"
ver=$(timeout 20 runuser -u "$user" -- "$qemu" -version 2>&1 | head -1)
case $ver in QEMU*) rc=0 ;; *) rc=1 ;; esac
ok $rc "$user can run $qemu ($ver)${fixed[*]:+; o+x given to ${fixed[*]}}" "$ver"
[ $rc = 0 ] || exit 1

rt=$(mktemp -d /tmp/qxl-lv.XXXXXX)
mkdir -p "$rt/home" "$rt/run" "$rt/config" "$rt/cache" "$rt/data"
cp "$top/build/guest/vmlinuz" "$top/build/guest/initramfs.cpio.gz" "$rt/"
: >"$rt/serial.log"
chown -R "$user:" "$rt"
chmod 0700 "$rt/run"

accel=$(guest_accel)
if [ "$accel" = kvm ] &&
   ! runuser -u "$user" -- "$PY" -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
    note "$user cannot open /dev/kvm: TCG"
    accel=tcg
fi
virttype=$([ "$accel" = kvm ] && echo kvm || echo qemu)
timeout=${LIBVIRT_TIMEOUT:-$([ "$accel" = kvm ] && echo 60 || echo 120)}

# 3. libvirt's capability probe of the binary
t=$EPOCHREALTIME
lv domcapabilities --emulatorbin "$qemu" --virttype "$virttype" --arch x86_64 \
    --machine pc >"$art/domcapabilities.xml" 2>"$art/domcapabilities.err"
rc=$?
probe_secs=$(secs "$t")
caps=$($PY - "$art/domcapabilities.xml" "$qemu" <<'EOF'
import sys
import xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception as e:
    print(f'no capabilities XML: {e}')
    sys.exit(1)
path, machine = root.findtext('path'), root.findtext('machine')
video = [v.text for v in root.findall("./devices/video/enum[@name='modelType']/value")]
graphics = [v.text for v in root.findall("./devices/graphics/enum[@name='type']/value")]
print(f'path {path}, machine {machine}, video {",".join(video)}, graphics {",".join(graphics)}')
sys.exit(0 if path == sys.argv[2] and 'qxl' in video and 'spice' in graphics else 1)
EOF
)
[ $rc = 0 ] && echo "$caps" | grep -q '^path'
ok $? "virsh domcapabilities --emulatorbin probes the binary ($probe_secs s, virttype $virttype)" \
    "rc $rc: $(cat "$art/domcapabilities.err")"
echo "$caps" | grep -q 'video .*qxl' && echo "$caps" | grep -q 'graphics .*spice' &&
    echo "$caps" | grep -q "^path $qemu,"
ok $? "the probed binary offers qxl video and spice graphics ($caps)" "$caps"
daemons=$(daemon_pids | tr '\n' ' ')
[ -n "$daemons" ]
ok $? "virsh spawned a session daemon of the user's own: ${daemons:-none}" \
    "$(ls -la "$rt/run/libvirt" 2>&1)"

# 4. define and start
cat >"$art/domain.xml" <<EOF
<domain type='$virttype'>
  <name>$name</name>
  <memory unit='MiB'>256</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$rt/vmlinuz</kernel>
    <initrd>$rt/initramfs.cpio.gz</initrd>
    <cmdline>$(cat "$top/build/guest/cmdline")</cmdline>
  </os>
  <features><acpi/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>$qemu</emulator>
    <controller type='usb' model='none'/>
    <serial type='file'>
      <source path='$rt/serial.log'/>
      <target port='0'/>
    </serial>
    <graphics type='spice' autoport='yes' listen='127.0.0.1'/>
    <video><model type='qxl'/></video>
    <memballoon model='none'/>
  </devices>
</domain>
EOF
cp "$art/domain.xml" "$rt/domain.xml"
chown "$user:" "$rt/domain.xml"
out=$(lv define "$rt/domain.xml" 2>&1)
rc=$?
[ $rc = 0 ] && defined=1
ok $rc "virsh define $name (<emulator> $qemu, <acpi/>, qxl video, spice on 127.0.0.1, direct kernel boot, serial file)" "$out"
[ $rc = 0 ] || exit 1
t_boot=$EPOCHREALTIME
out=$(lv start "$name" 2>&1)
rc=$?
start_secs=$(secs "$t_boot")
ok $rc "virsh start $name ($start_secs s)" "$out"
[ $rc = 0 ] || exit 1
note "QEMU pid $(qemu_pid), command line in $art/domain.log"
grep -q -- "-device .*qxl-vga" "$(domlog)" && grep -q -- "-spice .*addr=127.0.0.1" "$(domlog)"
ok $? "libvirt's QEMU command line has the qxl-vga device and spice on 127.0.0.1" \
    "$(grep -E -- '-(device|spice)' "$(domlog)" | head -5)"

# 5. the guest boots to its marker
rc=1
end=$(( ${EPOCHREALTIME%.*} + timeout ))
while [ "${EPOCHREALTIME%.*}" -lt "$end" ]; do
    line=$(tr -d '\r' <"$rt/serial.log" | grep -a -m1 '^QXL-GUEST-READY')
    [ -n "$line" ] && { rc=0; break; }
    pid_of_user "$(qemu_pid)" || { rc=2; break; }
    sleep 0.2
done
boot_secs=$(secs "$t_boot")
case $rc in
0) ok 0 "guest booted to the marker (after $boot_secs s from virsh start): $line" ;;
1) ok 1 "guest boots to QXL-GUEST-READY" "no marker within $timeout s" ;;
*) ok 1 "guest boots to QXL-GUEST-READY" "QEMU exited" ;;
esac
[ $rc = 0 ] || exit 1

# 6. virsh screenshot (PNG from QEMU's screendump), retried: the drawing
#    reaches the device asynchronously
shot=$rt/screen.png
tries=0 why=
end=$(( ${EPOCHREALTIME%.*} + 30 ))
while :; do
    tries=$((tries + 1))
    rm -f "$shot"
    out=$(lv screenshot "$name" "$shot" 2>&1)
    rc=$?
    if [ $rc = 0 ]; then
        why=$($PY "$here/pattern.py" check "$shot" ready 1024x768 2>&1) && break
    else
        why=$out
    fi
    [ "${EPOCHREALTIME%.*}" -lt "$end" ] || { rc=1; break; }
    sleep 0.5
done
cp "$shot" "$art/screen.png" 2>/dev/null
[ $rc = 0 ] && file "$shot" 2>/dev/null | grep -q 'PNG image'
ok $? "virsh screenshot writes a PNG ($(file -b "$shot" 2>/dev/null | cut -d, -f1-2))" "$out"
[ $rc = 0 ]
ok $? "the screenshot shows the ready pattern at 1024x768 ($tries screenshot(s))" "$why"

# 7. QMP through libvirt
out=$(lv qemu-monitor-command --pretty "$name" '{"execute":"query-status"}' 2>&1)
echo "$out" | grep -q '"status": "running"'
ok $? "virsh qemu-monitor-command query-status answers: running" "$out"

# 8. spice where libvirt says
uri=$(lv domdisplay "$name" 2>&1)
port=$(echo "$uri" | sed -n 's|^spice://127\.0\.0\.1:\([0-9]*\).*|\1|p')
[ -n "$port" ] && $PY -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5).close()' "$port" 2>/dev/null
ok $? "spice listens where virsh domdisplay says: $uri" "$uri"

# 9. logs
errs=$(tr -d '\r' <"$rt/serial.log" | grep -a -i -E \
    'QXL-GUEST-ERROR|qxl.*(error|timeout|timed out|fail)|\[drm\].*(error|timeout)|\*ERROR\*|\bOops\b|BUG:|WARNING: CPU|Kernel panic|Call Trace' | head -5)
[ -z "$errs" ]
ok $? "serial log shows no qxl error, timeout or kernel warning" "$errs"
# QEMU's stderr lands in the domain log, timestamped (-msg timestamp=on):
# "2026-01-01T00:00:00.000000Z qemu-system-x86_64: ..."
qmsgs=$(grep -a -E '^[0-9-]+T[0-9:.]+Z ' "$(domlog)")
[ -z "$qmsgs" ] || note "QEMU said: $(echo "$qmsgs" | head -5 | tr '\n' '|')"
qerrs=$(echo "$qmsgs" | grep -a -i -E 'qxl|guest bug|spice|error' | head -5)
[ -z "$qerrs" ]
ok $? "libvirt's domain log (QEMU stderr) shows no qxl, spice or other error" "$qerrs"

# 10. destroy, undefine
p=$(qemu_pid)
out=$(lv destroy "$name" 2>&1)
rc=$?
for _ in $(seq 50); do pid_of_user "$p" || break; sleep 0.1; done
! pid_of_user "$p" && [ $rc = 0 ]
ok $? "virsh destroy $name: QEMU (pid $p) is gone" "$out"
out=$(lv undefine "$name" 2>&1)
rc=$?
[ $rc = 0 ] && defined=0
left=$(lv list --all --name 2>&1 | grep -v '^$')
[ $rc = 0 ] && [ -z "$left" ]
ok $? "virsh undefine $name: no domain left" "$out $left"

# 11. the session daemons end
daemons=$(daemon_pids | tr '\n' ' ')
pids=$(daemon_pids | sed 's/.*=//')
for p in $pids; do stop_pid "$p"; done
alive=
for p in $pids; do pid_of_user "$p" && alive="$alive $p"; done
[ -n "$pids" ] && [ -z "$alive" ]
ok $? "the session daemons (${daemons% }) are gone" "still alive:$alive"
note "capability probe $probe_secs s; virsh start $start_secs s; start to QXL-GUEST-READY $boot_secs s (accel $accel)"
