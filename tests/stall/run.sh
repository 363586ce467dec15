#!/bin/bash
# QEMU keeps working while a vCPU waits in a synchronous QXL port write.
#
#   tests/stall/run.sh QEMU_BINARY [CASE ...]
#
# Four cases (1 qmp, 2 reset, 3 stopcont, 4 migrate; default: all), each
# with the boot-sector guest's vCPU inside a synchronous QXL_IO_UPDATE_AREA
# behind a frozen SPICE client (bench/stall.py); see
# tests/stall/stall_tests.py for what each case checks.  Only the binary
# given is tested.  Output: TAP lines, "#" diagnostics, last line
# "N passed, N failed"; exit status 1 if anything failed, 2 on a usage
# error.  No QEMU or client outlives the run.
#
# Environment: STALL_TEST_BOUND (s to wait for what should happen while the
# client is frozen, default 20), STALL_TEST_TIMEOUT (every other wait,
# default 120), STALL_TEST_DIR (logs, default build/stall-tests/<binary's
# directory name>), BENCH_ACCEL=tcg|kvm (default: tcg on nested PVM, else
# kvm if /dev/kvm works).  Needs binutils (as, ld), python3-gi and
# gir1.2-spiceclientglib-2.0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/spice-harness.sh"
spice_harness_run "$here/stall_tests.py" "$@"
