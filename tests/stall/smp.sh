#!/bin/bash
# A vCPU held in a synchronous QXL port, and the other vCPUs of an SMP
# guest (-smp 2 and 4): tests/stall/smp_tests.py, after the boot-sector
# guest's own SMP self-test (tests/stall/smp_selftest.py).
#
#   tests/stall/smp.sh QEMU_BINARY [CASE ...]
#
# Output: TAP lines, "#" diagnostics, last line "N passed, N failed"; exit
# status 1 if anything failed, 2 on a usage error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/spice-harness.sh"
spice_harness_run "$here/smp_tests.py" "$@"
