#!/bin/bash
# make docs: render QEMU's manual, with the series' docs/specs/qxl-async.rst,
# using Sphinx from Debian, and check that the QXL pages were built without
# warnings (QEMU's Sphinx runs with warnings as errors).
#
# The HTML ends up in build/docs/docs/manual/; the QXL page is
# docs/manual/specs/qxl-async.html there.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

need=()
for p in python3-sphinx python3-sphinx-rtd-theme; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    step "docs: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" ||
        die "docs: apt-get install ${need[*]} failed"
fi

src=$top/build/tree
out=$top/build/docs
if [ ! -f "$out/build.ninja" ]; then
    step "docs: configure $out"
    mkdir -p "$out"
    (cd "$out" && "$src/configure" --target-list=x86_64-softmmu \
        --without-default-features --enable-spice --enable-pixman \
        --enable-fdt=system --disable-download --enable-docs \
        --disable-install-blobs \
        --python="$PYTHON") >"$out.configure.log" 2>&1 || {
        tail -30 "$out.configure.log" >&2
        rm -rf "$out"
        die "docs: configure failed (log: $out.configure.log)"
    }
fi
step "docs: sphinx-build (the whole manual, a few minutes)"
ninja -C "$out" html >"$out.log" 2>&1 || {
    grep -E -i 'warning|error' "$out.log" | head -30 >&2
    die "docs: the manual did not build (log: $out.log)"
}
page=$out/docs/manual/specs/qxl-async.html
[ -f "$page" ] || die "docs: $page was not generated"
step "docs: $page"
