#!/bin/bash
# make bench: patched vs. unpatched QEMU with a frozen SPICE client.
#
#   bench/run.sh [--seconds N] [--only upstream|patched] [--idle-seconds N]
#                [--only-spice | --no-spice] [--spice-bound S]
#                [--spice-fps-seconds S] [--spice-samples N]
#                [--only-desktop | --no-desktop]
#
# Runs bench/bench.py (see there, and bench/stall.py for the harness) against
# build/upstream and build/patched (a missing one is skipped with a note),
# then the second table (bench/spice_lag.py: build/patched with Debian's
# libspice-server and with build/spice's; --only-spice: that table alone),
# prints the tables and writes build/bench/results.json and results.md;
# then the desktop table (bench/desktop.py: x11perf in the desktop guest of
# tests/desktop, both binaries in interleaved rounds; build/bench/desktop.json
# and desktop.md; --no-desktop skips it, --only-desktop runs it alone, about
# 6 minutes; BENCH_DESKTOP_ROUNDS, default 2).
# Environment: BENCH_SECONDS (stall window, default 40), BENCH_IDLE_SECONDS
# (default 20), BENCH_ACCEL (tcg|kvm; default tcg on nested PVM, else kvm if
# /dev/kvm works), BENCH_SPICE_BOUND (default 40), BENCH_SPICE_FPS_SECONDS
# (default 10), BENCH_SPICE_SAMPLES (default 5).  Needs binutils (as, ld),
# python3-gi and gir1.2-spiceclientglib-2.0.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
cd "$top"

. "$top/tests/lib/spice-harness.sh"
spice_harness_check_deps 1

# The first table's rows hold a vCPU behind a frozen client, which needs a
# spice-server that waits for its clients: both QEMUs run with Debian's (the
# patched one links build/spice's otherwise; LD_LIBRARY_PATH overrides its
# RUNPATH).  The second table sets LD_LIBRARY_PATH (or unsets it) for each
# of its QEMUs itself, from --debian-spice.
debian_spice=$(ldconfig -p | awk '/libspice-server\.so\.1 /{ print $NF; exit }')
[ -n "$debian_spice" ] || { echo "$0: Debian's libspice-server1 is not installed" >&2; exit 1; }
export LD_LIBRARY_PATH=$(dirname "$debian_spice")
desktop=1 only_desktop=0 args=()
for a in "$@"; do
    case $a in
    --only-desktop) only_desktop=1 ;;
    --no-desktop) desktop=0 ;;
    *) args+=("$a") ;;
    esac
done
rc=0
if [ $only_desktop = 0 ]; then
    /usr/bin/python3 "$top/bench/bench.py" --debian-spice "$debian_spice" "${args[@]}" || rc=$?
fi
# the desktop table (bench/desktop.py): x11perf in the desktop guest,
# build/upstream (Debian's libspice-server) vs build/patched (build/spice's,
# desktop.py clears LD_LIBRARY_PATH for it), interleaved rounds
if [ $desktop = 1 ] || [ $only_desktop = 1 ]; then
    /usr/bin/python3 "$top/bench/desktop.py" ${BENCH_DESKTOP_ROUNDS:+--rounds "$BENCH_DESKTOP_ROUNDS"} || rc=$?
fi
exit $rc
