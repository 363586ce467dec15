#!/bin/bash
# Build the Linux test guest for -vga qxl from Debian's archive only.
#
#   scripts/guest-image.sh [OUTDIR]        (default build/guest)
#
# Outputs in OUTDIR:
#   vmlinuz              Debian's kernel (the linux-image-amd64 dependency)
#   initramfs.cpio.gz    busybox-static, /init (tests/guest/init.sh), the qxl
#                        module and its dependencies, qxlmode (KMS helper)
#   cmdline              the kernel command line to boot it with
#   kernel-version       e.g. 6.1.0-56-amd64
# Rebuilds only when an input changes: the kernel package and its version,
# this script, the guest files in tests/guest/, busybox or gcc.
# Needs: apt (download), dpkg-deb, kmod (depmod), busybox-static, cpio,
# gzip, xz-utils / zstd (compressed modules), gcc + libc6-dev (qxlmode).
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"

out=${1:-$top/build/guest}
mkdir -p "$out"
out=$(cd "$out" && pwd)
# one build at a time (tests may start in parallel)
exec 9>"$out/.lock"
flock 9
guestsrc=$top/tests/guest

for tool in apt-cache apt-get dpkg-deb depmod busybox cpio gzip gcc; do
    command -v "$tool" >/dev/null || die "$tool not found (run scripts/deps.sh)"
done
busybox_bin=/bin/busybox
[ -x "$busybox_bin" ] || busybox_bin=$(command -v busybox)
! ldd "$busybox_bin" >/dev/null 2>&1 ||
    die "$busybox_bin is not static (install busybox-static)"

# --- which kernel: the real package behind linux-image-amd64 --------------
kernel_pkg() {
    apt-cache depends linux-image-amd64 2>/dev/null |
        sed -n 's/^ *|\{0,1\}Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -1
}
kpkg=$(kernel_pkg)
if [ -z "$kpkg" ]; then
    step "linux-image-amd64 unknown to apt: apt-get update"
    apt-get update -q >&2 || die "apt-get update failed"
    kpkg=$(kernel_pkg)
fi
[ -n "$kpkg" ] || die "cannot resolve linux-image-amd64's kernel package"
kver=${kpkg#linux-image-}
kpkgver=$(apt-cache show --no-all-versions "$kpkg" 2>/dev/null |
    sed -n 's/^Version: //p' | head -1)
[ -n "$kpkgver" ] || die "apt-cache knows no version of $kpkg"

# --- cache key ---------------------------------------------------------------
inputs=(
    "$top/scripts/guest-image.sh" "$guestsrc/init.sh"
    "$guestsrc/patterns" "$guestsrc/qxlmode.c" "$guestsrc/pattern.py"
)
# The boot mode (kernel command line video=) and its fbdev stride, for which
# the frames are drawn here rather than in the guest.
boot_w=1024 boot_h=768
key=$(
    echo "kernel $kpkg $kpkgver"
    echo "busybox $(dpkg-query -W -f='${Version}' busybox-static 2>/dev/null || busybox | head -1)"
    echo "gcc $(gcc -dumpfullversion)"
    sha256sum "${inputs[@]}" | sed "s|$top/||"
)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$key" ] &&
   [ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.cpio.gz" ] && [ -s "$out/cmdline" ]; then
    step "guest image up to date ($kpkg $kpkgver): $out"
    exit 0
fi
rm -f "$out/stamp"

# --- download and extract the kernel package ----------------------------------
debdir=$out/deb
mkdir -p "$debdir"
deb=$(ls "$debdir/${kpkg}_"*.deb 2>/dev/null | head -1 || true)
if [ -n "$deb" ] && [ "$(dpkg-deb -f "$deb" Version)" != "$kpkgver" ]; then
    rm -f "$deb"
    deb=
fi
if [ -z "$deb" ]; then
    step "download $kpkg $kpkgver"
    rm -f "$debdir"/*.deb
    (cd "$debdir" && apt-get download -q -o APT::Sandbox::User=root "$kpkg=$kpkgver" >&2) || {
        step "download failed: apt-get update and retry"
        apt-get update -q >&2 || die "apt-get update failed"
        (cd "$debdir" && apt-get download -q -o APT::Sandbox::User=root "$kpkg" >&2) || die "apt-get download $kpkg failed"
    }
    deb=$(ls "$debdir/${kpkg}_"*.deb | head -1)
fi
kpkgver=$(dpkg-deb -f "$deb" Version)

root=$out/kernel/$kver
if [ ! -f "$root/.extracted" ] || [ "$(cat "$root/.extracted")" != "$kpkgver" ]; then
    step "extract $(basename "$deb")"
    rm -rf "$out/kernel"
    mkdir -p "$root"
    dpkg-deb -x "$deb" "$root"
    echo "$kpkgver" >"$root/.extracted"
fi

vmlinuz=$root/boot/vmlinuz-$kver
[ -f "$vmlinuz" ] || die "$(basename "$deb") has no boot/vmlinuz-$kver"
# depmod -b looks in BASE/lib/modules; merged-/usr packages ship usr/lib/modules.
if [ ! -d "$root/lib/modules/$kver" ] && [ -d "$root/usr/lib/modules/$kver" ]; then
    mkdir -p "$root/lib"
    ln -sfn ../usr/lib/modules "$root/lib/modules"
fi
moddir=$root/lib/modules/$kver
[ -d "$moddir" ] || die "$(basename "$deb") has no modules for $kver"
if [ ! -s "$moddir/modules.dep" ] || [ "$moddir/modules.dep" -ot "$root/.extracted" ]; then
    step "depmod $kver"
    depmod -b "$root" "$kver"
fi

# --- the qxl module and its dependencies, in load order ------------------------
declare -A deps=() seen=()
while IFS= read -r line; do
    mod=${line%%:*}
    deps[$mod]=${line#*:}
done <"$moddir/modules.dep"

qxl=
for mod in "${!deps[@]}"; do
    case ${mod##*/} in qxl.ko | qxl.ko.xz | qxl.ko.zst | qxl.ko.gz) qxl=$mod ;; esac
done
[ -n "$qxl" ] || die "no qxl module in $kver's modules.dep"

order=()
visit() {
    local m=$1 d
    [ -z "${seen[$m]:-}" ] || return 0
    seen[$m]=1
    [ -n "${deps[$m]+x}" ] || die "modules.dep has no entry for $m"
    for d in ${deps[$m]}; do
        visit "$d"
    done
    order+=("$m")
}
visit "$qxl"
step "qxl needs: ${order[*]##*/}"

# --- qxlmode, the KMS helper ----------------------------------------------------
stage=$out/stage
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,proc,sys,run,tmp,etc/qxltest,lib/modules}
step "compile qxlmode"
gcc -static -Os -Wall -Wextra -Werror -o "$stage/bin/qxlmode" "$guestsrc/qxlmode.c" ||
    die "qxlmode does not build (gcc, libc6-dev)"
strip "$stage/bin/qxlmode"

# --- the initramfs -----------------------------------------------------------
cp "$busybox_bin" "$stage/bin/busybox"
for applet in $("$stage/bin/busybox" --list); do
    [ -e "$stage/bin/$applet" ] || ln -s busybox "$stage/bin/$applet"
done
install -m 0755 "$guestsrc/init.sh" "$stage/init"
cp "$guestsrc/patterns" "$stage/etc/qxltest/patterns"
mkdir -p "$stage/etc/qxltest/frames"
for name in boot ready; do
    /usr/bin/python3 "$guestsrc/pattern.py" raw "$name" "${boot_w}x$boot_h" $((boot_w * 4)) \
        "$stage/etc/qxltest/frames/$name-${boot_w}x$boot_h-$((boot_w * 4)).raw" ||
        die "cannot draw frame $name"
done
: >"$stage/etc/qxltest/modules"
for m in "${order[@]}"; do
    name=$(basename "$m")
    case $name in
    *.ko.xz) xz -dc "$moddir/$m" >"$stage/lib/modules/${name%.xz}" ;;
    *.ko.zst) zstd -q -dc "$moddir/$m" >"$stage/lib/modules/${name%.zst}" ;;
    *.ko.gz) gzip -dc "$moddir/$m" >"$stage/lib/modules/${name%.gz}" ;;
    *.ko) cp "$moddir/$m" "$stage/lib/modules/$name" ;;
    *) die "unknown module file type: $m" ;;
    esac || die "cannot unpack $m (xz-utils, zstd)"
    echo "${name%.ko*}.ko" >>"$stage/etc/qxltest/modules"
done
mknod -m 600 "$stage/dev/console" c 5 1 2>/dev/null || true

step "pack initramfs"
(cd "$stage" && find . | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) |
    gzip -9 -n >"$out/initramfs.cpio.gz.new"
mv "$out/initramfs.cpio.gz.new" "$out/initramfs.cpio.gz"
cp "$vmlinuz" "$out/vmlinuz"
echo "$kver" >"$out/kernel-version"
# video=: the boot mode.  vt.global_cursor_default=0: no cursor blinking on
# the framebuffer.  panic=-1 with -no-reboot: a panic ends QEMU at once.
echo "console=ttyS0 video=${boot_w}x$boot_h vt.global_cursor_default=0 panic=-1" >"$out/cmdline"
rm -rf "$stage"
echo "$key" >"$out/stamp"
step "guest image ready ($kpkg $kpkgver, $(du -h "$out/initramfs.cpio.gz" | cut -f1) initramfs): $out"
