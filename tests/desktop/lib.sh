# shellcheck shell=bash
# Helpers of the desktop tests (tests/desktop/run.sh, soak.sh), sourced after
# tests/guest/tap.sh; they use the caller's globals: here (this directory),
# run (artifacts), GUEST_* (tests/guest/lib.sh), CLIENT_PID (the spice
# client, bench/spice_client.py, logging to $run/client.log) and trace
# (QEMU's -D file).

lags() { grep -a -c "display client .* lags" "$GUEST_STDERR" 2>/dev/null || true; }

pat() { "$PY" "$here/pattern.py" "$@"; }

# gcmd TIMEOUT SHELL-COMMAND: run SHELL-COMMAND in the guest's X session
# (DISPLAY=:0, as root); sets GID (its id), GRC (exit status, "timeout" or
# "exited"), GT (seconds it took in the guest) and GOUT (its output).  The
# channel takes one line a command: newlines become spaces.
gseq=0
gcmd() {
    local timeout=$1 rc=0 line cmd
    shift
    cmd=$*
    gseq=$((gseq + 1))
    GID=cmd$gseq GRC= GT= GOUT=
    if ! guest_send "$GID ${cmd//$'\n'/ }"; then
        GRC=send
        return 1
    fi
    guest_wait "^DESKTOP-DONE $GID " "$timeout" || rc=$?
    case $rc in
    1) GRC=timeout; return 1 ;;
    2) GRC=exited; return 1 ;;
    esac
    line=$GUEST_LINE
    GRC=$(echo "$line" | sed -n 's/.* rc=\([0-9]*\).*/\1/p')
    GT=$(echo "$line" | sed -n 's/.* t=\([0-9.]*\).*/\1/p')
    GOUT=$(grep -a "^DESKTOP-OUT $GID: " "$GUEST_SERIAL" | tr -d '\r' | sed "s/^DESKTOP-OUT $GID: //")
    [ "$GRC" = 0 ]
}
gdiag() { echo "guest command $GID: status $GRC${GOUT:+; output: $(echo "$GOUT" | tail -5)}"; }

# screendump_until OUT TIMEOUT SPEC...: QMP screendump (PPM) to OUT until it
# shows every SPEC (tests/desktop/pattern.py check); WHY: the last reason
# it did not, TRIES: screendumps taken
screendump_until() {
    local out=$1 timeout=$2 end err
    shift 2
    end=$((SECONDS + timeout))
    TRIES=0
    while :; do
        TRIES=$((TRIES + 1))
        if err=$(guest_qmp screendump "filename=$out" format=ppm 2>&1); then
            WHY=$(pat check "$out" "$@") && return 0
        else
            WHY="screendump failed: $err"
        fi
        [ $SECONDS -lt "$end" ] || return 1
        sleep 0.5
    done
}

# client_until OUT TIMEOUT SPEC...: the same with the spice client's
# picture (SIGUSR1: it dumps its primary surface, raw xRGB, to OUT)
client_until() {
    local out=$1 timeout=$2 end before dump
    shift 2
    end=$((SECONDS + timeout))
    TRIES=0
    while :; do
        TRIES=$((TRIES + 1))
        before=$(grep -c '"event": "dump"' "$run/client.log")
        kill -USR1 "$CLIENT_PID" 2>/dev/null || { WHY="client not running"; return 1; }
        dump=
        for _ in $(seq 50); do
            [ "$(grep -c '"event": "dump"' "$run/client.log")" -gt "$before" ] &&
                { dump=$(grep '"event": "dump"' "$run/client.log" | tail -1); break; }
            sleep 0.1
        done
        if [ -z "$dump" ]; then
            WHY="client did not dump its picture within 5 s"
        elif echo "$dump" | grep -q '"path": null'; then
            WHY="client has no primary surface"
        else
            WHY=$(pat check "RAW:$(echo "$dump" | "$PY" -c '
import json, sys
d = json.load(sys.stdin)
print("%d:%d:%d:%s" % (d["width"], d["height"], d["stride"], d["path"]))')" "$@") && return 0
        fi
        [ $SECONDS -lt "$end" ] || return 1
        sleep 0.5
    done
}

# getimage ID-OUT SHELL-COMMAND: run SHELL-COMMAND, then xwd -root at once
# (GetImage of the whole screen), the XWD back over the serial log into
# ID-OUT; status 0 if both ran and the XWD decoded
getimage() {
    local out=$1
    shift
    gcmd 120 "$* && xwd -root -silent | gzip -1 | base64 -w 160" || return 1
    WHY=$(pat xwd-from-serial "$GUEST_SERIAL" "$GID" "$out")
}

# ports written so far, from the trace (qxl_io_write)
count() { grep -a -c "qxl_io_write.*(QXL_IO_$1)" "$trace" 2>/dev/null || true; }

tile=/usr/local/share/desktop/tile.xbm
photo=/usr/local/share/desktop/photo.xwd
# xsetroot's tiled root in colours FG and BG (RRGGBB)
root_tile() { echo "xsetroot -bitmap $tile -fg '#$1' -bg '#$2'"; }
