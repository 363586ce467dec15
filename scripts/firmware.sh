#!/bin/bash
# Link firmware into a build directory's data directory, so that the
# emulator run from there finds it without -L:
#   - SeaBIOS and its VGA BIOSes (Debian's seabios),
#   - NIC option ROMs (Debian's ipxe-qemu),
#   - the x86 option ROMs that -kernel boot asks for (linuxboot_dma.bin,
#     kvmvapic.bin, multiboot_dma.bin, pvh.bin), from Debian trixie's
#     qemu-system-data of the same version as the base source.
#
#   firmware.sh BUILDDIR
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

builddir=$1
data=$builddir/qemu-bundle/usr/local/share/qemu
fw=$top/build/firmware
version=$(cat "$top/build/base/.qxl-base-version")
optionroms="kvmvapic.bin linuxboot.bin linuxboot_dma.bin multiboot.bin multiboot_dma.bin pvh.bin"

if [ "$(cat "$fw/.version" 2>/dev/null)" != "$version" ]; then
    step "firmware: fetching qemu-system-data $version (x86 option ROMs)"
    rm -rf "$fw.new"; mkdir -p "$fw.new/deb"
    (cd "$fw.new/deb" &&
     "$top/scripts/apt-private.sh" trixie apt-get download -q \
        "qemu-system-data=$version" >/dev/null) ||
        die "firmware: apt-get download qemu-system-data=$version failed"
    dpkg-deb -x "$fw.new"/deb/*.deb "$fw.new/root" ||
        die "firmware: cannot unpack qemu-system-data"
    mkdir -p "$fw.new/roms"
    for f in $optionroms; do
        [ -f "$fw.new/root/usr/share/qemu/$f" ] ||
            die "firmware: qemu-system-data $version has no $f"
        cp "$fw.new/root/usr/share/qemu/$f" "$fw.new/roms/"
    done
    rm -rf "$fw.new/deb" "$fw.new/root"
    echo "$version" >"$fw.new/.version"
    rm -rf "$fw"; mv "$fw.new" "$fw"
fi

mkdir -p "$data"
for f in /usr/share/seabios/*.bin /usr/lib/ipxe/qemu/*.rom "$fw"/roms/*; do
    [ -e "$f" ] || die "firmware: $f is missing (is seabios/ipxe-qemu installed?)"
    ln -sf "$f" "$data/$(basename "$f")"
done
