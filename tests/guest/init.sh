#!/bin/sh
# /init of the qxl test guest (busybox sh; scripts/guest-image.sh packs it).
#
# Loads the qxl module and its dependencies, then:
#   1. draws the "boot" pattern on /dev/fb0            -> QXL-GUEST-DRAWN boot WxH
#   2. changes the KMS mode with qxlmode (800x600)     -> QXL-GUEST-DRAWN mode WxH
#      and draws the "mode" pattern; on exit fbdev restores its own mode
#   3. draws the "ready" pattern on /dev/fb0           -> QXL-GUEST-READY WxH
# then idles, or with qxltest.loop=1 redraws boot/ready alternately every
# second (QXL-GUEST-LOOP N pattern=P).
#
# Kernel command line options:
#   qxltest.hold=N   after steps 1 and 2, wait up to N seconds for a line on
#                    /dev/ttyS1 (the host's control channel) before going on;
#                    0 (default) does not wait, the mode is held 1 second.
#   qxltest.mode=WxH the mode of step 2 (default 800x600)
#   qxltest.loop=1   redraw forever after step 3
# Patterns: /etc/qxltest/patterns (tests/guest/patterns).  Any failure prints
# a line starting with QXL-GUEST-ERROR.
PATH=/bin
export PATH

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
exec </dev/console >/dev/console 2>&1
mkdir -p /run

now() { cut -d' ' -f1 /proc/uptime; }
hang() { while :; do sleep 3600; done; }
error() { echo "QXL-GUEST-ERROR: $*"; }
fatal() { error "$*"; hang; }

echo "QXL-GUEST: init started t=$(now)"

loop=0 hold=0 mode=800x600
for arg in $(cat /proc/cmdline); do
    case $arg in
    qxltest.loop=*) loop=${arg#*=} ;;
    qxltest.hold=*) hold=${arg#*=} ;;
    qxltest.mode=*) mode=${arg#*=} ;;
    esac
done

# Control channel: the second UART, raw, opened once so that a line the
# host sends early waits in the tty buffer.
ctl=/dev/null
if [ -e /dev/ttyS1 ] && exec 3<>/dev/ttyS1 && stty -F /dev/ttyS1 raw -echo; then
    ctl=/dev/ttyS1
else
    exec 3</dev/null
fi
wait_go() {
    [ "$hold" -gt 0 ] 2>/dev/null || return 0
    if [ "$ctl" = /dev/ttyS1 ]; then
        read -t "$hold" line <&3
    else
        sleep "$hold"
    fi
}

while read -r m; do
    insmod "/lib/modules/$m" || fatal "insmod $m failed"
done </etc/qxltest/modules
echo "QXL-GUEST: modules loaded t=$(now)"

i=0
while [ ! -e /dev/fb0 ] || [ ! -e /sys/class/graphics/fb0/stride ]; do
    i=$((i + 1))
    [ $i -le 600 ] || fatal "no /dev/fb0 after 60 s"
    usleep 100000
done

# Keep fbcon (text console, blinking cursor) off the framebuffer.
for v in /sys/class/vtconsole/vtcon*; do
    grep -qi 'frame buffer' "$v/name" 2>/dev/null && echo 0 >"$v/bind"
done

size=$(cat /sys/class/graphics/fb0/virtual_size)
w=${size%,*} h=${size#*,}
stride=$(cat /sys/class/graphics/fb0/stride)
bpp=$(cat /sys/class/graphics/fb0/bits_per_pixel)
[ "$bpp" = 32 ] || fatal "fb0 has $bpp bits per pixel, want 32"
echo "QXL-GUEST: fb0 ${w}x${h} stride=$stride name=$(cat /sys/class/graphics/fb0/name) t=$(now)"

colours() { grep "^$1 " /etc/qxltest/patterns | { read -r n a b c d; echo "$a $b $c $d"; }; }

# pixel RRGGBB: 4 bytes of xRGB8888 little-endian (B G R 0)
pixel() {
    v=$((0x$1))
    printf "$(printf '\\%03o\\%03o\\%03o\\000' $((v & 255)) $((v >> 8 & 255)) $((v >> 16 & 255)))"
}
# repeat IN OUT BYTES: OUT = IN repeated, cut to BYTES
repeat() {
    cp "$1" /run/rep
    n=$(wc -c </run/rep)
    while [ "$n" -lt "$3" ]; do
        cat /run/rep /run/rep >/run/rep2 && mv /run/rep2 /run/rep
        n=$((n * 2))
    done
    head -c "$3" /run/rep >"$2"
    rm -f /run/rep
}
# frame NAME: /run/NAME.raw, the quadrants of pattern NAME at w x h / stride:
# built with the image for the boot mode (fast), else generated here (slow
# under TCG: many small processes).
frame() {
    if [ -f "/etc/qxltest/frames/$1-${w}x${h}-$stride.raw" ]; then
        ln -sf "/etc/qxltest/frames/$1-${w}x${h}-$stride.raw" "/run/$1.raw"
        return
    fi
    echo "QXL-GUEST: generating frame $1 for ${w}x${h} stride=$stride"
    set -- "$1" $(colours "$1")
    [ $# = 5 ] || fatal "no pattern $1"
    head -c $((stride - w * 4)) /dev/zero >/run/pad
    for half in top bottom; do
        if [ $half = top ]; then l=$2 r=$3 rows=$((h / 2)); else l=$4 r=$5 rows=$((h - h / 2)); fi
        pixel "$l" >/run/px && repeat /run/px /run/l $((w / 2 * 4))
        pixel "$r" >/run/px && repeat /run/px /run/r $(((w - w / 2) * 4))
        cat /run/l /run/r /run/pad >/run/row
        repeat /run/row /run/$half $((stride * rows))
    done
    cat /run/top /run/bottom >"/run/$1.raw"
    rm -f /run/top /run/bottom /run/row /run/l /run/r /run/px /run/pad
}
draw() { cat "/run/$1.raw" >/dev/fb0 || error "writing /dev/fb0 failed"; }

frame boot && frame ready || fatal "cannot build the frames"

draw boot
echo "QXL-GUEST-DRAWN boot ${w}x${h} stride=$stride t=$(now)"
wait_go

mhold=$hold
[ "$mhold" -gt 0 ] 2>/dev/null || mhold=1
qxlmode "$mode" $(colours mode) "$mhold" "QXL-GUEST-DRAWN mode $mode" <&3 ||
    error "qxlmode $mode failed"

draw ready
echo "QXL-GUEST-READY ${w}x${h} pattern=ready t=$(now)"

if [ "$loop" = 1 ]; then
    n=0
    while :; do
        sleep 1
        n=$((n + 1))
        if [ $((n % 2)) = 1 ]; then p=boot; else p=ready; fi
        draw $p
        echo "QXL-GUEST-LOOP $n pattern=$p"
    done
fi
hang
