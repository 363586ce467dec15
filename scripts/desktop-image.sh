#!/bin/bash
# Build the desktop test guest for -vga qxl from Debian's archive only:
# Debian bookworm (minbase), its kernel (drm/qxl), Xorg with the qxl driver
# (xserver-xorg-video-qxl), x11-apps (x11perf, xwd, xwud), xrandr, xinit,
# xterm; systemd starts Xorg and a session (tests/desktop/guest/) that
# reports on ttyS0 and runs the host's commands from ttyS1.
#
#   scripts/desktop-image.sh [OUTDIR]        (default build/desktop)
#
# Outputs in OUTDIR:
#   rootfs.ext4          the root filesystem (ext4, made with mke2fs -d: no
#                        loop mount); boot it on virtio-blk, read-only or
#                        with snapshot=on (the tests never write to it)
#   vmlinuz              the image's kernel, for -kernel
#   initramfs.cpio.gz    the image's initramfs (initramfs-tools, MODULES=list:
#                        virtio-blk and ext4), for -initrd
#   cmdline              the kernel command line to boot it with
#   kernel-version       e.g. 6.1.0-41-amd64
#   packages.txt         every package in the image, with its version
#   build-time           seconds the last build took
# The tree is merged-/usr from the start (mmdebstrap's merged-usr hooks),
# so that apt installs usr-is-merged rather than usrmerge and perl.
# Rebuilds only when an input changes: this script (the package list is in
# it), the guest files in tests/desktop/guest/, the pictures of
# tests/desktop/pattern.py.  The .debs are kept in OUTDIR/debs for the next
# build.  Needs: mmdebstrap (installed here with apt-get if missing),
# e2fsprogs, python3.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
. "$top/scripts/lib.sh"
guestsrc=$top/tests/desktop/guest

suite=bookworm
mirror=http://deb.debian.org/debian
security=http://deb.debian.org/debian-security
# Beyond minbase.  No Recommends (mmdebstrap's default).
packages=(
    systemd-sysv udev dbus kmod initramfs-tools linux-image-amd64
    xserver-xorg-core xserver-xorg-video-qxl xserver-xorg-input-libinput
    xinit xterm x11-apps x11-xserver-utils x11-utils xfonts-base
    spice-vdagent
)
# Left out of every package: documentation, translations; the GL stack
# Xorg's dependencies pull in (mesa's DRI drivers, LLVM and what only it
# uses: the session runs Xorg without GLX, see tests/desktop/guest/20-qxl.conf);
# the C compiler behind cpp (x11-xserver-utils needs it for xrdb, which the
# tests do not run); kernel modules of hardware and file systems QEMU's pc
# machine and the tests do not have.
# (dpkg's patterns: no pathname expansion here)
set -f
excludes=(
    /usr/share/doc/* /usr/share/man/* /usr/share/info/* /usr/share/locale/*
    /usr/share/lintian/* /usr/share/linda/* /usr/share/bug/*
    /usr/lib/x86_64-linux-gnu/dri/* /usr/lib/x86_64-linux-gnu/libLLVM-15.so*
    /usr/lib/llvm-15/* /usr/lib/x86_64-linux-gnu/libz3.so*
    /usr/lib/gcc/x86_64-linux-gnu/*/cc1
)
for m in /lib/modules /usr/lib/modules; do
    for d in drivers/net drivers/media drivers/infiniband drivers/staging \
             drivers/gpu/drm/amd drivers/gpu/drm/nouveau drivers/gpu/drm/i915 \
             drivers/gpu/drm/radeon drivers/bluetooth drivers/iio drivers/isdn drivers/scsi \
             drivers/hid drivers/md drivers/mtd drivers/usb drivers/nfc drivers/thunderbolt \
             drivers/ata drivers/target drivers/mmc drivers/hwmon drivers/comedi \
             drivers/nvme drivers/xen drivers/w1 drivers/watchdog sound net \
             fs/ocfs2 fs/btrfs fs/xfs fs/nfs fs/nfsd fs/ceph fs/smb fs/gfs2 fs/f2fs; do
        excludes+=("$m/*/kernel/$d/*")
    done
done
set +f
# The modules the initramfs needs to mount the root filesystem.
initrd_modules=(virtio_pci virtio_blk ext4 crc32c_generic)

# --- hooks (mmdebstrap runs this script again for them) ---------------------
if [ "${1:-}" = --essential-hook ]; then
    # before the kernel is installed: a small initramfs
    root=$2
    mkdir -p "$root/etc/initramfs-tools/conf.d" "$root/usr/share/initramfs-tools/modules.d"
    printf 'MODULES=list\nCOMPRESS=gzip\n' >"$root/etc/initramfs-tools/conf.d/desktop"
    printf '%s\n' "${initrd_modules[@]}" >"$root/usr/share/initramfs-tools/modules.d/desktop"
    exit 0
fi
if [ "${1:-}" = --customize-hook ]; then
    root=$2 pics=$3
    install -m 0755 "$guestsrc/desktop-start" "$guestsrc/desktop-session" "$root/usr/local/bin/"
    install -D -m 0644 "$guestsrc/20-qxl.conf" "$root/etc/X11/xorg.conf.d/20-qxl.conf"
    install -D -m 0644 "$guestsrc/desktop.service" "$root/etc/systemd/system/desktop.service"
    mkdir -p "$root/usr/local/share/desktop"
    cp "$pics"/* "$root/usr/local/share/desktop/"
    mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
    ln -sf ../desktop.service "$root/etc/systemd/system/multi-user.target.wants/desktop.service"
    # ttyS0 is the session's report channel, tty1 is X's: no getty.
    # spice-vdagentd is started by the session (desktop-session), without
    # systemd-logind's session tracking: Xorg runs outside any login session.
    for unit in serial-getty@ttyS0.service getty@tty1.service getty.target \
                systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer \
                e2scrub_reap.service e2scrub_all.timer fstrim.timer \
                spice-vdagentd.service spice-vdagentd.socket; do
        ln -sf /dev/null "$root/etc/systemd/system/$unit"
    done
    echo desktop >"$root/etc/hostname"
    printf '127.0.0.1 localhost\n127.0.1.1 desktop\n' >"$root/etc/hosts"
    printf '/dev/vda / ext4 defaults 0 0\n' >"$root/etc/fstab"
    : >"$root/etc/machine-id"
    # the .debs, for the next build
    mkdir -p "$out/debs"
    find "$out/debs" -name '*.deb' -delete
    cp "$root"/var/cache/apt/archives/*.deb "$out/debs/" 2>/dev/null || true
    exit 0
fi

out=${1:-$top/build/desktop}
mkdir -p "$out"
out=$(cd "$out" && pwd)
export out
exec 9>"$out/.lock"
flock 9

command -v mmdebstrap >/dev/null || {
    step "install mmdebstrap"
    apt-get install -y -q mmdebstrap >&2 || {
        apt-get update -q >&2
        apt-get install -y -q mmdebstrap >&2
    } || die "cannot install mmdebstrap"
}
for tool in mmdebstrap mke2fs /usr/bin/python3; do
    command -v "$tool" >/dev/null || die "$tool not found"
done

# --- cache key ---------------------------------------------------------------
pics=$out/pictures
rm -rf "$pics"
/usr/bin/python3 "$top/tests/desktop/pattern.py" files "$pics" || die "cannot make the pictures"
key=$(
    echo "suite $suite"
    sha256sum "$top/scripts/desktop-image.sh" "$guestsrc"/* "$pics"/* | sed "s|$top/||; s|$out/||"
)
if [ -f "$out/stamp" ] && [ "$(cat "$out/stamp")" = "$key" ] &&
   [ -s "$out/rootfs.ext4" ] && [ -s "$out/vmlinuz" ] && [ -s "$out/initramfs.cpio.gz" ] &&
   [ -s "$out/cmdline" ]; then
    step "desktop image up to date ($(cat "$out/kernel-version")): $out"
    exit 0
fi
rm -f "$out/stamp"
t0=$EPOCHREALTIME

# --- the root filesystem -------------------------------------------------------
tree=$out/rootfs
rm -rf "$tree"
dpkgopts=()
for e in "${excludes[@]}"; do
    dpkgopts+=(--dpkgopt="path-exclude=$e")
done
self=$top/scripts/desktop-image.sh
step "mmdebstrap $suite: ${packages[*]}"
mmdebstrap --mode=root --variant=minbase --format=directory \
    --include="$(IFS=,; echo "${packages[*]}")" \
    "${dpkgopts[@]}" \
    --aptopt='Acquire::Retries "3"' \
    --skip=essential/unlink \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --hook-dir=/usr/share/mmdebstrap/hooks/eatmydata \
    --setup-hook='mkdir -p "$1/var/cache/apt/archives"' \
    --setup-hook='for f in "$out"/debs/*.deb; do [ -e "$f" ] && cp "$f" "$1/var/cache/apt/archives/"; done; true' \
    --essential-hook="\"$self\" --essential-hook \"\$1\"" \
    --customize-hook="\"$self\" --customize-hook \"\$1\" \"$pics\"" \
    "$suite" "$tree" \
    "deb $mirror $suite main" "deb $mirror $suite-updates main" \
    "deb $security $suite-security main" >&2 ||
    die "mmdebstrap failed"

# --- kernel, initramfs, command line -------------------------------------------
kver=$(ls "$tree/lib/modules" | sort -V | tail -1)
[ -n "$kver" ] && [ -f "$tree/boot/vmlinuz-$kver" ] && [ -f "$tree/boot/initrd.img-$kver" ] ||
    die "no kernel or initramfs in $tree/boot"
cp "$tree/boot/vmlinuz-$kver" "$out/vmlinuz.new"
cp "$tree/boot/initrd.img-$kver" "$out/initramfs.cpio.gz.new"
chroot "$tree" dpkg-query -W -f '${Package} ${Version}\n' >"$out/packages.txt"
# booted with -kernel/-initrd: /boot is not needed in the image
rm -f "$tree/boot/vmlinuz-$kver" "$tree/boot/initrd.img-$kver"

# --- the ext4 image (mke2fs -d: the tree as it is, owners included) ---------------
kib=$(du -s -k "$tree" | cut -f1)
size_mib=$(( (kib * 5 / 4) / 1024 + 64 ))
step "mke2fs -d: $((kib / 1024)) MiB of files in a $size_mib MiB ext4 image"
rm -f "$out/rootfs.ext4.new"
mke2fs -q -t ext4 -L desktop -E root_owner=0:0 -O ^has_journal -m 0 -d "$tree" \
    "$out/rootfs.ext4.new" "${size_mib}M" >&2 || die "mke2fs -d failed"
mv "$out/rootfs.ext4.new" "$out/rootfs.ext4"
mv "$out/vmlinuz.new" "$out/vmlinuz"
mv "$out/initramfs.cpio.gz.new" "$out/initramfs.cpio.gz"
echo "$kver" >"$out/kernel-version"
# quiet, loglevel=3: the serial log is the session's report channel
echo "root=/dev/vda rw console=ttyS0 quiet loglevel=3 systemd.show_status=error panic=-1 vt.global_cursor_default=0" \
    >"$out/cmdline"
rm -rf "$tree"
secs=$(/usr/bin/python3 -c "print('%.0f' % ($EPOCHREALTIME - $t0))")
echo "$secs" >"$out/build-time"
echo "$key" >"$out/stamp"
step "desktop image ready in $secs s ($kver, $(wc -l <"$out/packages.txt") packages, rootfs.ext4 $size_mib MiB, $(du -m "$out/rootfs.ext4" | cut -f1) MiB used): $out"
