# shellcheck shell=bash
# Boot helpers for the qxl test guest, sourced by scripts/demo.sh,
# tests/guest/smoke.sh and later guest tests (bash).
#
#   guest_accel                  kvm or tcg (GUEST_ACCEL=... overrides)
#   guest_free_port              a free TCP port on 127.0.0.1
#   guest_start QEMU IMAGEDIR RUNDIR APPEND [QEMU ARGS...]
#       boots the guest in the background with -vga qxl, spice on a free
#       loopback port, serial 0 to RUNDIR/serial.log, serial 1 (the guest's
#       control channel, /dev/ttyS1) on a pipe, QMP on a unix socket.
#       Sets GUEST_PID GUEST_QMP GUEST_SERIAL GUEST_STDERR GUEST_SPICE_PORT
#       GUEST_ACCEL_USED GUEST_T0 (start time, $EPOCHREALTIME).
#   guest_wait REGEX TIMEOUT     waits for REGEX (grep -E) in the serial log;
#       0: found (GUEST_LINE, GUEST_WAITED seconds since start), 1: timeout,
#       2: QEMU exited (GUEST_EXIT its status)
#   guest_send LINE              sends LINE to the guest's control channel
#   guest_qmp ARGS...            tests/guest/qmp.py GUEST_QMP ARGS...
#   guest_stop                   QMP quit, then TERM, then KILL; reaps QEMU.
#       Safe to call twice and from a trap.  Sets GUEST_EXIT.
# The caller must run guest_start in its own shell (not in $(...)) so that
# guest_stop can reap QEMU.

guest_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GUEST_PYTHON=/usr/bin/python3

guest_accel() {
    if [ -n "${GUEST_ACCEL:-}" ]; then
        echo "$GUEST_ACCEL"
        return
    fi
    # kvm_pvm (nested PVM): a Linux guest never leaves its decompressor.
    if [ ! -e /sys/module/kvm_pvm ] && [ -c /dev/kvm ] &&
       "$GUEST_PYTHON" -c 'import os; os.close(os.open("/dev/kvm", os.O_RDWR))' 2>/dev/null; then
        echo kvm
    else
        echo tcg
    fi
}

guest_free_port() {
    "$GUEST_PYTHON" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

guest_start() {
    local qemu=$1 image=$2 run=$3 append=$4
    shift 4
    local f
    for f in vmlinuz initramfs.cpio.gz cmdline; do
        [ -s "$image/$f" ] || { echo "guest_start: no $image/$f" >&2; return 1; }
    done
    mkdir -p "$run"
    # unix socket paths are limited to 107 bytes: keep sockets in /tmp
    GUEST_SOCKDIR=$(mktemp -d /tmp/qxl-guest.XXXXXX)
    GUEST_QMP=$GUEST_SOCKDIR/qmp.sock
    GUEST_CTL=$GUEST_SOCKDIR/ctl
    mkfifo "$GUEST_CTL.in" "$GUEST_CTL.out"
    GUEST_SERIAL=$run/serial.log
    GUEST_STDERR=$run/qemu.stderr
    GUEST_SPICE_PORT=${SPICE_PORT:-$(guest_free_port)}
    GUEST_ACCEL_USED=$(guest_accel)
    : >"$GUEST_SERIAL"
    GUEST_CMD=("$qemu" -nodefaults -machine pc -accel "$GUEST_ACCEL_USED"
        -m "${GUEST_MEM:-256}" -smp "${GUEST_SMP:-2}" -no-reboot
        -kernel "$image/vmlinuz" -initrd "$image/initramfs.cpio.gz"
        -append "$(cat "$image/cmdline") $append"
        -vga qxl -display none
        -spice "port=$GUEST_SPICE_PORT,addr=127.0.0.1,disable-ticketing=on"
        -serial "file:$GUEST_SERIAL" -serial "pipe:$GUEST_CTL"
        -qmp "unix:$GUEST_QMP,server=on,wait=off"
        "$@")
    printf '%q ' "${GUEST_CMD[@]}" >"$run/qemu.cmdline"
    echo >>"$run/qemu.cmdline"
    GUEST_T0=$EPOCHREALTIME
    "${GUEST_CMD[@]}" </dev/null >"$run/qemu.stdout" 2>"$GUEST_STDERR" &
    GUEST_PID=$!
    GUEST_EXIT=
    # QMP up (bounded): the socket exists once QEMU parsed its options
    local i
    for i in $(seq 100); do
        [ -S "$GUEST_QMP" ] && return 0
        kill -0 "$GUEST_PID" 2>/dev/null || break
        sleep 0.1
    done
    guest_reap
    echo "guest_start: QEMU did not come up (exit ${GUEST_EXIT:-?}):" >&2
    tail -5 "$GUEST_STDERR" >&2
    return 1
}

guest_elapsed() {
    "$GUEST_PYTHON" -c "print('%.1f' % ($EPOCHREALTIME - $GUEST_T0))"
}

guest_wait() {
    local regex=$1 timeout=$2 end
    end=$(( ${EPOCHREALTIME%.*} + ${timeout%.*} ))
    while :; do
        GUEST_LINE=$(grep -a -m1 -E -- "$regex" "$GUEST_SERIAL" 2>/dev/null | tr -d '\r')
        if [ -n "$GUEST_LINE" ]; then
            GUEST_WAITED=$(guest_elapsed)
            return 0
        fi
        if ! kill -0 "$GUEST_PID" 2>/dev/null; then
            guest_reap
            return 2
        fi
        [ "${EPOCHREALTIME%.*}" -lt "$end" ] || return 1
        sleep 0.2
    done
}

guest_send() {
    timeout 5 sh -c 'printf "%s\n" "$1" >"$2"' sh "$1" "$GUEST_CTL.in"
}

guest_qmp() {
    "$GUEST_PYTHON" "$guest_lib_dir/qmp.py" "$GUEST_QMP" "$@"
}

guest_reap() {
    [ -n "${GUEST_PID:-}" ] || return 0
    local rc=0
    wait "$GUEST_PID" 2>/dev/null || rc=$?
    GUEST_EXIT=$rc
    GUEST_PID=
    [ -z "${GUEST_SOCKDIR:-}" ] || rm -rf "$GUEST_SOCKDIR"
    GUEST_SOCKDIR=
}

guest_stop() {
    [ -n "${GUEST_PID:-}" ] || return 0
    local i
    if kill -0 "$GUEST_PID" 2>/dev/null; then
        [ -S "${GUEST_QMP:-}" ] &&
            timeout 10 "$GUEST_PYTHON" "$guest_lib_dir/qmp.py" --timeout 5 "$GUEST_QMP" quit \
                >/dev/null 2>&1
        for i in $(seq 100); do
            kill -0 "$GUEST_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$GUEST_PID" 2>/dev/null; then
            echo "guest_stop: QEMU $GUEST_PID ignored quit: SIGTERM" >&2
            kill -TERM "$GUEST_PID" 2>/dev/null
            for i in $(seq 50); do
                kill -0 "$GUEST_PID" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$GUEST_PID" 2>/dev/null && kill -KILL "$GUEST_PID" 2>/dev/null
        fi
    fi
    guest_reap
}

# guest_wait_status STATUS TIMEOUT: poll QMP query-status until the VM's
# status is STATUS or TIMEOUT seconds passed; GUEST_STATUS: the last answer
guest_wait_status() {
    local want=$1 end=$(( ${EPOCHREALTIME%.*} + ${2%.*} ))
    while :; do
        GUEST_STATUS=$(guest_qmp query-status 2>&1)
        grep -q "\"status\": \"$want\"" <<<"$GUEST_STATUS" && return 0
        [ "${EPOCHREALTIME%.*}" -lt "$end" ] || return 1
        sleep 0.1
    done
}

# Two QEMUs at once (migration): the GUEST_* of one guest saved under a
# prefix and loaded back.  vm_save PREFIX, vm_load PREFIX, vm_stop PREFIX.
vm_vars=(GUEST_PID GUEST_QMP GUEST_CTL GUEST_SERIAL GUEST_STDERR GUEST_SPICE_PORT
    GUEST_SOCKDIR GUEST_T0 GUEST_EXIT GUEST_ACCEL_USED)
vm_save() { local v; for v in "${vm_vars[@]}"; do printf -v "${1}_$v" '%s' "${!v:-}"; done; }
vm_load() { local v n; for v in "${vm_vars[@]}"; do n=${1}_$v; printf -v "$v" '%s' "${!n:-}"; done; }
vm_stop() { vm_load "$1"; guest_stop; vm_save "$1"; }

# The test's SPICE client (bench/spice_client.py), CLIENT_PID.  client_kill
# lets a frozen one go (SIGCONT), asks it to end, and kills it after 3 s;
# client_state prints its state: R, S, T (stopped), ... or "gone".
CLIENT_PID=
client_kill() {
    [ -n "${CLIENT_PID:-}" ] || return 0
    kill -CONT "$CLIENT_PID" 2>/dev/null
    kill -TERM "$CLIENT_PID" 2>/dev/null
    for _ in $(seq 30); do
        kill -0 "$CLIENT_PID" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$CLIENT_PID" 2>/dev/null
    wait "$CLIENT_PID" 2>/dev/null
    CLIENT_PID=
}
client_state() {
    local s
    s=$(sed 's/^.*) //' "/proc/$CLIENT_PID/stat" 2>/dev/null | cut -d' ' -f1)
    echo "${s:-gone}"
}
