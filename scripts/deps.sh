#!/bin/bash
# Install everything the project needs from Debian's archive.  Idempotent:
# packages already present are not downloaded again.  Needs root (apt-get).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

# QEMU's own build dependencies for the lean x86_64 build, plus what the
# tests, the demo and the benchmark use, plus what spice-server needs beyond
# those (spice-build.sh: OpenSSL, libjpeg, the Python modules of
# spice-common's code generator; C++, zlib, glib, pixman and spice-protocol
# are in the list already).
pkgs=(
    build-essential git ninja-build pkg-config ccache dpkg-dev
    libglib2.0-dev libpixman-1-dev libspice-server-dev libspice-protocol-dev
    libpng-dev zlib1g-dev libfdt-dev flex bison python3-venv python3-setuptools
    seabios ipxe-qemu
    busybox-static kmod cpio xz-utils zstd
    python3-gi gir1.2-spiceclientglib-2.0 python3-pil
    libvirt-daemon-system libvirt-clients
    clang libclang-rt-dev
    libssl-dev libjpeg-dev python3-pyparsing python3-six
)

need=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
        need+=("$p")
done

export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
    step "installing ${need[*]}"
    apt-get update -q || die "apt-get update failed"
    apt-get install -y -q --no-install-recommends "${need[@]}" ||
        die "apt-get install failed for: ${need[*]}"
fi

# meson >= 1.5 and python3-pycotap: from Debian itself on 13+, from
# bookworm-backports on Debian 12 (through a private sources list).
meson_ok() {
    command -v meson >/dev/null &&
        dpkg --compare-versions "$(meson --version)" ge 1.5
}
if ! meson_ok || ! /usr/bin/python3 -c 'import pycotap' 2>/dev/null; then
    . /etc/os-release
    if [ "${VERSION_ID%%.*}" -ge 13 ] 2>/dev/null; then
        apt-get install -y -q --no-install-recommends meson python3-pycotap ||
            die "apt-get install meson python3-pycotap failed"
    else
        step "installing meson and python3-pycotap from ${VERSION_CODENAME}-backports"
        "$top/scripts/apt-private.sh" backports apt-get update -q ||
            die "apt-get update (${VERSION_CODENAME}-backports) failed"
        "$top/scripts/apt-private.sh" backports apt-get install -y -q \
            --no-install-recommends -t "${VERSION_CODENAME}-backports" \
            meson python3-pycotap ||
            die "installing meson from ${VERSION_CODENAME}-backports failed"
    fi
    meson_ok || die "meson >= 1.5 is required, have $(meson --version 2>/dev/null || echo none)"
fi
step "dependencies present (meson $(meson --version))"
