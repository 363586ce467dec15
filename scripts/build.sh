#!/bin/bash
# Configure (once) and build a lean x86_64 QEMU.
#
#   build.sh SRCDIR BUILDDIR [ninja targets...]
#
# The emulator ends up at BUILDDIR/qemu-system-x86_64, with firmware
# linked into BUILDDIR's data directory.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

src=$(cd "$1" && pwd); shift
builddir=$1; shift

config=(
    --target-list=x86_64-softmmu
    --without-default-features
    --enable-spice --enable-pixman --enable-png
    --enable-kvm --enable-tcg
    --enable-fdt=system --disable-download
    --disable-docs --disable-install-blobs
    --python="$PYTHON"
    ${QXL_EXTRA_CONFIG:-}
)
stamp="$src|${config[*]}"

if [ ! -f "$builddir/build.ninja" ] ||
   [ "$(cat "$builddir/.qxl-config" 2>/dev/null)" != "$stamp" ]; then
    step "configure $builddir (${config[*]})"
    rm -rf "$builddir"
    mkdir -p "$builddir"
    (cd "$builddir" && "$src/configure" "${config[@]}") >"$builddir.configure.log" 2>&1 || {
        tail -30 "$builddir.configure.log" >&2
        die "configure failed for $builddir (log: $builddir.configure.log)"
    }
    echo "$stamp" >"$builddir/.qxl-config"
fi

step "build $builddir ${*:-qemu-system-x86_64}"
ninja -C "$builddir" "${@:-qemu-system-x86_64}" >"$builddir.build.log" 2>&1 || {
    grep -E -A5 'error|FAILED' "$builddir.build.log" | head -60 >&2
    die "build failed in $builddir (log: $builddir.build.log)"
}
"$top/scripts/firmware.sh" "$builddir"
