#!/bin/bash
# Fetch QEMU 10.0.x as Debian 13 (trixie) ships it, verified by apt against
# the archive's signed indexes, extract it with dpkg-source (so Debian's own
# packaging patches apply) and commit it as the base of a git repository at
# build/base.  Re-running is cheap: nothing happens if build/base already
# holds the version the archive offers.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)

exec "$top/scripts/debian-source.sh" trixie qemu "$top/build/base" \
    .qxl-base-version QEMU '*:10.0.*'
