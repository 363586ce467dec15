#!/bin/bash
# Configure (once) and build a lean x86_64 QEMU.
#
#   build.sh SRCDIR LINK [ninja targets...]
#
# The build directory is SRCDIR/build, or SRCDIR/$QXL_BUILD_SUBDIR for a
# variant configured with $QXL_EXTRA_CONFIG (so that every tree compiles with
# the same relative paths and ccache hits across them); LINK is made a
# symbolic link to it.  The emulator ends up at LINK/qemu-system-x86_64,
# with firmware linked into the build's data directory.
#
# With QXL_SPICE_PREFIX set (the patched build: make build, check.sh), QEMU
# is configured against the spice-server installed there (spice-build.sh)
# instead of Debian's, and finds it at run time through an rpath.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

src=$(cd "$1" && pwd); shift
link=$1; shift
builddir=$src/${QXL_BUILD_SUBDIR:-build}
log=${link%/}
mkdir -p "$(dirname "$link")"
if [ ! -L "$link" ] && [ -f "$link/build.ninja" ]; then
    # a build directory of its own, configured before: keep using it
    builddir=$(cd "$link" && pwd)
elif [ "$(readlink -f "$link" 2>/dev/null)" != "$builddir" ]; then
    [ -L "$link" ] || [ ! -e "$link" ] || rm -rf "$link"
    ln -sfn "$builddir" "$link"
fi

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
if [ -n "${QXL_SPICE_PREFIX:-}" ]; then
    pc=$(find "$QXL_SPICE_PREFIX" -path '*/pkgconfig/spice-server.pc' 2>/dev/null | head -1)
    [ -n "$pc" ] || die "no spice-server.pc under $QXL_SPICE_PREFIX; run 'make spice'"
    export PKG_CONFIG_PATH=${pc%/*}${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
    config+=(--extra-ldflags="-Wl,-rpath,$(pkg-config --variable=libdir spice-server)")
fi
stamp="$src|${config[*]}${QXL_SPICE_PREFIX:+|PKG_CONFIG_PATH=$PKG_CONFIG_PATH}"

if [ ! -f "$builddir/build.ninja" ] ||
   [ "$(cat "$builddir/.qxl-config" 2>/dev/null)" != "$stamp" ]; then
    step "configure $builddir (${config[*]})"
    rm -rf "$builddir"
    mkdir -p "$builddir"
    (cd "$builddir" && "$src/configure" "${config[@]}") >"$log.configure.log" 2>&1 || {
        tail -30 "$log.configure.log" >&2
        die "configure failed for $builddir (log: $log.configure.log)"
    }
    echo "$stamp" >"$builddir/.qxl-config"
fi

step "build $builddir ${*:-qemu-system-x86_64}"
ninja -C "$builddir" "${@:-qemu-system-x86_64}" >"$log.build.log" 2>&1 || {
    grep -E -A5 'error|FAILED' "$log.build.log" | head -60 >&2
    die "build failed in $builddir (log: $log.build.log)"
}
"$top/scripts/firmware.sh" "$builddir"
