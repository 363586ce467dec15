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
#   qxltest.loopmode=K  in the loop, every K-th step is a KMS mode change
#                    (qxlmode, qxltest.mode, pattern "mode", no hold: two
#                    mode changes) instead of a redraw (the redraws still
#                    alternate boot/ready); 0 (default): never.
#                    "QXL-GUEST-LOOP-MODE N start t=T0" before qxlmode starts,
#                    "QXL-GUEST-LOOP N pattern=mode WxH t=T0 pitch=P" when the
#                    mode is set, then
#                    "QXL-GUEST-LOOP-MODE N restored t=T1" when fbdev has its
#                    mode back.  (Linux's qxl driver gives up waiting for a
#                    lost QXL_INTERRUPT_IO_CMD after 5 s without a message:
#                    T1 - T0 shows it.)
#   qxltest.loopms=MS   pause between loop steps (default 1000)
#   qxltest.console=1  instead of all of the above: leave the framebuffer to
#                    the text console (fbcon on the qxl driver), print a
#                    banner and start a shell on tty1 (keyboard through
#                    SPICE), say QXL-GUEST-CONSOLE on serial.  For the demo.
#   qxltest.head2=1  if there is a second qxl head (/dev/fb1, /dev/dri/card1),
#                    after step 3 and before the loop:
#                      draw "boot" on fb1        -> QXL-GUEST-HEAD2 DRAWN boot WxH
#                      mode change on card1      -> QXL-GUEST-HEAD2 DRAWN mode WxH
#                      draw "ready" on fb1       -> QXL-GUEST-HEAD2 READY WxH
#                    each held like steps 1 and 2 (qxltest.hold); without a
#                    second head: QXL-GUEST-HEAD2 NONE
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

loop=0 hold=0 mode=800x600 loopmode=0 loopms=1000 head2=0 console=0
for arg in $(cat /proc/cmdline); do
    case $arg in
    qxltest.loop=*) loop=${arg#*=} ;;
    qxltest.loopmode=*) loopmode=${arg#*=} ;;
    qxltest.loopms=*) loopms=${arg#*=} ;;
    qxltest.head2=*) head2=${arg#*=} ;;
    qxltest.console=*) console=${arg#*=} ;;
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

if [ "$console" = 1 ]; then
    {
        printf '\033[2J\033[H'
        echo "qxl-async demo guest"
        echo
        echo "  kernel   $(uname -r)"
        echo "  display  $(cat /sys/class/graphics/fb0/name)" \
             "$(tr , x </sys/class/graphics/fb0/virtual_size)," \
             "the Linux qxl driver's console"
        echo "  QEMU     -vga qxl, with the qxl-async series"
        echo
        echo "Type here through SPICE (remote-viewer)."
        echo
    } >/dev/tty1
    setsid sh -c 'exec sh </dev/tty1 >/dev/tty1 2>&1' &
    echo "QXL-GUEST-CONSOLE t=$(now)"
    hang
fi

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
# frame NAME [OUT]: OUT (default /run/NAME.raw), the quadrants of pattern
# NAME at w x h / stride: built with the image for the boot mode (fast), else
# generated here (slow under TCG: many small processes).
frame() {
    fout=${2:-/run/$1.raw}
    if [ -f "/etc/qxltest/frames/$1-${w}x${h}-$stride.raw" ]; then
        ln -sf "/etc/qxltest/frames/$1-${w}x${h}-$stride.raw" "$fout"
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
    cat /run/top /run/bottom >"$fout"
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

# The second head (qxltest.head2=1): its own fbdev and DRM device.
if [ "$head2" = 1 ]; then
    if [ -e /sys/class/graphics/fb1/stride ] && [ -e /dev/fb1 ] && [ -e /dev/dri/card1 ]; then
        w0=$w h0=$h stride0=$stride
        size=$(cat /sys/class/graphics/fb1/virtual_size)
        w=${size%,*} h=${size#*,}
        stride=$(cat /sys/class/graphics/fb1/stride)
        echo "QXL-GUEST: fb1 ${w}x${h} stride=$stride name=$(cat /sys/class/graphics/fb1/name) t=$(now)"
        frame boot /run/fb1-boot.raw && frame ready /run/fb1-ready.raw ||
            error "cannot build the frames for fb1"
        cat /run/fb1-boot.raw >/dev/fb1 || error "writing /dev/fb1 failed"
        echo "QXL-GUEST-HEAD2 DRAWN boot ${w}x${h} t=$(now)"
        wait_go
        qxlmode "$mode" $(colours mode) "$mhold" "QXL-GUEST-HEAD2 DRAWN mode $mode" /dev/dri/card1 <&3 ||
            error "qxlmode $mode on card1 failed"
        cat /run/fb1-ready.raw >/dev/fb1 || error "writing /dev/fb1 failed"
        echo "QXL-GUEST-HEAD2 READY ${w}x${h} t=$(now)"
        w=$w0 h=$h0 stride=$stride0
    else
        echo "QXL-GUEST-HEAD2 NONE"
    fi
fi

if [ "$loop" = 1 ]; then
    n=0 d=0
    while :; do
        usleep $((loopms * 1000))
        n=$((n + 1))
        if [ "$loopmode" -gt 0 ] 2>/dev/null && [ $((n % loopmode)) = 0 ]; then
            t0=$(now)
            echo "QXL-GUEST-LOOP-MODE $n start t=$t0"
            qxlmode "$mode" $(colours mode) 0 "QXL-GUEST-LOOP $n pattern=mode $mode t=$t0" </dev/null ||
                error "qxlmode $mode failed"
            echo "QXL-GUEST-LOOP-MODE $n restored t=$(now)"
            continue
        fi
        d=$((d + 1))
        if [ $((d % 2)) = 1 ]; then p=boot; else p=ready; fi
        draw $p
        echo "QXL-GUEST-LOOP $n pattern=$p t=$(now)"
    done
fi
hang
