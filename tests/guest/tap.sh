# TAP output shared by the guest tests (tests/guest/*.sh), sourced by them.
#
#   ok STATUS DESCRIPTION [DIAGNOSTIC]   one "ok N - ..." / "not ok N - ..."
#                                        line; DIAGNOSTIC follows a failure
#   note TEXT...                         a "# TEXT" comment line
#   tap_done                             "N passed, N failed", then exit 0 or
#                                        1; usable from an EXIT trap, where a
#                                        bare "exit" would keep the status
#                                        from before the trap
#   tap_qemu PATH                        PATH made absolute; exit 2 if it is
#                                        not an executable
#   tap_one_qemu NAME DIR ARG...         the arguments of a test that takes
#                                        one QEMU binary: sets qemu (made
#                                        absolute) and run (DIR if not empty,
#                                        else build/NAME/<the binary's
#                                        directory name>, emptied)
#   tap_tail TITLE FILE LINES            the tail of FILE as "#" lines
#
# Sourcing it sources tests/guest/lib.sh too, and sets PY.

. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PY=/usr/bin/python3

n=0 pass=0 fail=0

# ok STATUS DESCRIPTION [DIAGNOSTIC]: one TAP line, the diagnostic after a
# failure
ok() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        pass=$((pass + 1))
        echo "ok $n - $2"
        return
    fi
    fail=$((fail + 1))
    echo "not ok $n - $2"
    tap_diag "${3:-}"
}

# ok_skip DESCRIPTION REASON [DIAGNOSTIC]: a check whose precondition the
# guest did not meet: "ok N - DESCRIPTION # SKIP REASON" (TAP: not a failure)
ok_skip() {
    n=$((n + 1))
    pass=$((pass + 1))
    echo "ok $n - $1 # SKIP $2"
    tap_diag "${3:-}"
}

# ok_todo RC DESCRIPTION ISSUE [DIAGNOSTIC]: a check of a known bug,
# reported as TAP "# TODO ISSUE" and counted neither as passed nor failed
# (scripts/check.sh lists it)
ok_todo() {
    n=$((n + 1))
    if [ "$1" = 0 ]; then
        echo "ok $n - $2 # TODO $3"
    else
        echo "not ok $n - $2 # TODO $3"
        tap_diag "${4:-}"
    fi
}

tap_diag() { [ -z "$1" ] || printf '%s\n' "$1" | sed 's/^/#   /'; }

note() { printf '# %s\n' "$*"; }

tap_done() {
    echo "$pass passed, $fail failed"
    [ "$fail" -eq 0 ] && exit 0
    exit 1
}

tap_qemu() {
    [ -x "$1" ] || { echo "$0: $1 is not executable" >&2; exit 2; }
    echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
}

tap_one_qemu() {
    local name=$1 dir=$2 top
    shift 2
    [ $# -eq 1 ] || { echo "usage: $0 QEMU_BINARY" >&2; exit 2; }
    qemu=$(tap_qemu "$1") || exit 2
    top=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    run=${dir:-$top/build/$name/$(basename "$(dirname "$qemu")")}
    rm -rf "$run"
    mkdir -p "$run"
}

tap_tail() {
    echo "# --- $1 (tail): $2"
    tail -n "$3" "$2" 2>/dev/null | tr -d '\r' | sed 's/^/# /'
}

# The scripts' own finish() runs on exit; an interruption counts as a failure.
tap_traps() {
    trap finish EXIT
    trap 'echo "# interrupted"; fail=$((fail + 1)); exit 1' INT TERM
}

# tap_guest_image DIR: build the guest image (scripts/guest-image.sh, $top
# is the project root) as a test step, logging to DIR; the test ends here
# if that fails.
tap_guest_image() {
    if "$top/scripts/guest-image.sh" >"$1/guest-image.log" 2>&1; then
        ok 0 "guest image built ($(cat "$top/build/guest/kernel-version"))"
    else
        ok 1 "guest image built" "see $1/guest-image.log"
        tail -n 20 "$1/guest-image.log" | sed 's/^/# /'
        exit 1
    fi
}

# tap_runtime START: a note with the seconds since START ($EPOCHREALTIME)
tap_runtime() {
    note "runtime $(/usr/bin/python3 -c "print('%.1f' % ($EPOCHREALTIME - $1))") s"
}
