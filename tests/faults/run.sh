#!/bin/bash
# A fault matrix for a QXL operation a real vCPU has in flight behind a
# frozen SPICE client.
#
#   tests/faults/run.sh QEMU_BINARY [CASE ...]
#
# Cells: {sync, async} x {resume, disconnect, stopcont, reset, migrate,
# quit}: sync is QXL_IO_UPDATE_AREA, async QXL_IO_UPDATE_AREA_ASYNC, both
# written by the boot-sector guest's vCPU (bench/stall.py).  CASE: a cell
# (sync/reset or sync-reset), an operation (async), a fault (migrate) or a
# number 1-12; default: all twelve.  See tests/faults/fault_tests.py for
# what each check means.  Output: TAP lines, "#" diagnostics, last line
# "N passed, N failed"; exit status 1 if anything failed, 2 on a usage
# error.  No QEMU or client outlives the run.
#
# Environment: FAULT_TEST_BOUND (s, counted from the port write, for what
# should happen while the client is frozen; default 15), FAULT_TEST_TIMEOUT
# (every other wait, default 120), FAULT_TEST_GRACE (diagnostics only,
# default 1), FAULT_TEST_DIR (logs, default build/fault-tests/<binary's
# directory name>), BENCH_ACCEL=tcg|kvm.  Needs binutils (as, ld),
# python3-gi and gir1.2-spiceclientglib-2.0.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/spice-harness.sh"
spice_harness_run "$here/fault_tests.py" "$@"
