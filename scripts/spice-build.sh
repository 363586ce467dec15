#!/bin/bash
# Configure (once; again when the options change) and build spice-server
# from the work tree build/spice-tree with meson, in build/spice-tree/build,
# and install it into build/spice: the patched QEMU (build/patched) links
# build/spice's libspice-server (see QXL_SPICE_PREFIX in build.sh).
#
#   spice-build.sh [SRCDIR]      (default build/spice-tree)
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

src=$(cd "${1:-$top/build/spice-tree}" && pwd)
builddir=$src/build
log=$spice_prefix

# What QEMU needs, and the library's own tests; no optional codecs, no SASL,
# no smartcard, no manual.
options=(
    -Dgstreamer=no -Dlz4=false -Dsasl=false -Dopus=disabled
    -Dsmartcard=disabled -Dmanual=false -Dtests=true
    --buildtype=debugoptimized --prefix="$spice_prefix"
)
stamp="$src|${options[*]}"

if [ ! -f "$builddir/build.ninja" ] ||
   [ "$(cat "$builddir/.qxl-config" 2>/dev/null)" != "$stamp" ]; then
    step "spice: configure $builddir (${options[*]})"
    rm -rf "$builddir"
    meson setup "${options[@]}" "$builddir" "$src" >"$log.configure.log" 2>&1 || {
        tail -30 "$log.configure.log" >&2
        die "spice: meson setup failed for $builddir (log: $log.configure.log)"
    }
    echo "$stamp" >"$builddir/.qxl-config"
fi

step "spice: build $builddir"
ninja -C "$builddir" >"$log.build.log" 2>&1 || {
    grep -E -A5 'error|FAILED' "$log.build.log" | head -60 >&2
    die "spice: build failed in $builddir (log: $log.build.log)"
}
step "spice: install into ${spice_prefix#"$top/"}"
meson install -C "$builddir" --no-rebuild >"$log.install.log" 2>&1 || {
    tail -30 "$log.install.log" >&2
    die "spice: meson install failed (log: $log.install.log)"
}
