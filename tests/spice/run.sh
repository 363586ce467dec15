#!/bin/bash
# A frozen SPICE client holds nothing up: the spice-server series
# (spice/patches/) end to end, on a QEMU that links it
# (tests/spice/lagging_tests.py).
#
#   tests/spice/run.sh QEMU_BINARY [CASE ...]
#
# Output: TAP lines, "#" diagnostics, last line "N passed, N failed"; exit
# status 1 if anything failed, 2 on a usage error.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
. "$here/../lib/spice-harness.sh"
spice_harness_run "$here/lagging_tests.py" "$@"
