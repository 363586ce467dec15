#!/bin/bash
# Live migration of the drawing qxl test guest between the patched and the
# unpatched (upstream) QEMU, both ways: tests/guest/migrate.sh with the
# upstream binary as the first source and the patched one as destination, so
# migration 1 is upstream -> patched and migration 2 patched -> upstream
# (the series does not change the device's migration format).
#
#   tests/guest/migrate-compat.sh [PATCHED_QEMU [UPSTREAM_QEMU [COUNT]]]
#
# Defaults: build/patched/qemu-system-x86_64, build/upstream/qemu-system-x86_64,
# COUNT 2 (odd migrations upstream -> patched, even ones patched -> upstream).
# Env as migrate.sh (MIGRATE_DIR defaults to build/migrate/upstream-patched).
# Output: migrate.sh's TAP lines, ending with "N passed, N failed"; exit
# status 1 if any failed.  Without an upstream binary: one TAP skip line,
# "1 passed, 0 failed", exit 0.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

[ $# -le 3 ] || { echo "usage: $0 [PATCHED_QEMU [UPSTREAM_QEMU [COUNT]]]" >&2; exit 2; }
patched=${1:-$top/build/patched/qemu-system-x86_64}
upstream=${2:-$top/build/upstream/qemu-system-x86_64}
count=${3:-2}
[ -x "$patched" ] || { echo "$0: $patched is not executable" >&2; exit 2; }
if [ ! -x "$upstream" ]; then
    echo "ok 1 # SKIP no upstream binary ($upstream)"
    echo "1 passed, 0 failed"
    exit 0
fi
echo "# migrate.sh between $upstream (vm0, even vmN) and $patched (odd vmN)"
unset MIGRATE_DEST_QEMU
exec "$here/migrate.sh" "$upstream" "$count" "$patched"
