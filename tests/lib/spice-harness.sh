# Sourced by the harnesses that drive QEMU with a boot-sector guest and a
# real SPICE client (bench/run.sh, tests/stall/run.sh, tests/faults/run.sh).

# spice_harness_check_deps STATUS: exit with STATUS, naming the Debian
# packages to install, if the assembler or the SPICE client bindings the
# harness needs are missing.
spice_harness_check_deps() {
    local missing=()

    command -v as >/dev/null || missing+=(binutils)
    /usr/bin/python3 -c \
        'import gi; gi.require_version("SpiceClientGLib", "2.0")' \
        2>/dev/null || missing+=(python3-gi gir1.2-spiceclientglib-2.0)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "$0: missing packages: ${missing[*]}" >&2
        exit "$1"
    fi
}

# spice_harness_run SCRIPT QEMU_BINARY [ARG...]: check the arguments and
# the packages, then run SCRIPT (Python) with them.  Exit status 2 on a
# usage error or a missing package.
spice_harness_run() {
    local script=$1
    shift
    if [ $# -lt 1 ]; then
        echo "usage: $0 QEMU_BINARY [CASE ...]" >&2
        exit 2
    fi
    spice_harness_check_deps 2
    # Runs of one harness share their log directory (and the test that
    # cleans it): one at a time.  The lock is held until Python exits.
    local lock
    lock=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/build/${script##*/}.lock
    mkdir -p "${lock%/*}"
    exec 9>"$lock"
    if ! flock -n 9; then
        echo "# waiting for another run of ${script##*/}" >&2
        flock 9
    fi
    exec /usr/bin/python3 "$script" "$@"
}
