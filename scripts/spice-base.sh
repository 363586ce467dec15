#!/bin/bash
# Fetch the spice source package (spice-server, libspice-server) as Debian 13
# (trixie) ships it, verified by apt against the archive's signed indexes,
# extract it with dpkg-source (Debian's patches applied) and commit it, with
# its subprojects/spice-common, as the base of a git repository at
# build/spice-base.  Nothing happens if build/spice-base already holds the
# version the archive offers.
#
#   spice-base.sh [--sid]
#   --sid: fetch the newest spice Debian has (unstable) to build/spice-sid
#          instead, and apply spice/patches/series to a scratch clone of it,
#          build/spice-sid-tree (applied only: it needs a newer
#          spice-protocol than Debian 12's to build).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)

if [ "${1:-}" = --sid ]; then
    "$top/scripts/debian-source.sh" sid spice "$top/build/spice-sid" \
        .spice-base-version spice
    FORCE=1 QXL_SERIES=spice-sid exec "$top/scripts/tree.sh"
fi
exec "$top/scripts/debian-source.sh" trixie spice "$top/build/spice-base" \
    .spice-base-version spice
