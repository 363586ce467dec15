#!/usr/bin/python3
"""The QXL stall harness: a frozen SPICE client, a full command ring and a
synchronous QXL port write from a real vCPU.

Used by bench/bench.py (`make bench`) and meant to be imported by tests:

    sys.path.insert(0, 'bench')
    from stall import StallHarness

    with StallHarness('build/patched/qemu-system-x86_64') as h:
        h.start()                  # QEMU (TCG/KVM) + qtest + 2 QMP + spice
        h.setup_device()           # memslot + 1024x768 primary, via qtest
        h.prepare_draws()          # random 256x256 bitmaps in BAR0
        h.start_client()           # headless SPICE client, display channel up
        h.calibrate_tsc()          # guest rdtsc -> host time
        h.freeze_client()          # SIGSTOP: its socket stops draining
        h.fill_ring()              # draws until the worker stops taking them
        r = h.stall(seconds=8, thaw_after=3)
        # QMP query-status every 10 ms; 2 s in, the vCPU writes
        # QXL_IO_UPDATE_AREA (sync); 3 s later the client is thawed so the
        # write can finish before spice-server's 30 s timeout.
        assert r['qmp_answered_during_write'] > 0    # 0 on unpatched QEMU
        assert r['qmp']['max_ms'] < 100

Lower-level pieces: guest_post()/guest_wait() (any port write from the vCPU,
timed with rdtsc; cpu=K for vCPU K of StallHarness(smp=N)), mailbox_readl()
(a mailbox field, e.g. Mailbox.OUTS: the writes that returned so far),
start_probe() (a QmpProbe thread; .samples holds
(t_send, t_recv) in time.monotonic() seconds), op_window() (a finished
request's start/end in the same clock), answered_during(), the QTest
object at .qt, the QMP control connection at .qmp.  For tests
(tests/stall/): last_draw_to_fill() (the last draw in the ring becomes an
opaque fill of a known colour) and read_surface_rect() (primary surface
pixels from BAR0); start(incoming='unix:PATH', boot_image=src.boot_image)
starts a migration destination (qemu_args() is the command line) and
adopt_device(src) takes over the source's device and mailbox state;
clear_guest_ready()/wait_guest_ready() follow a guest reboot.

How the pieces fit:

* QEMU runs a real accelerator (`-accel tcg`, or kvm where it works) *and*
  `-qtest unix:...`: the qtest socket gives the harness guest-physical
  memory and port access, executed in the main-loop thread.  That is how the
  device is set up (PCI config through cf8/cfc, BARs as SeaBIOS programmed
  them, QXLRom/QXLRam, memslot, primary surface, command ring), never how the
  measured port write is issued: a qtest port write runs in the main loop and
  would block QMP whatever QEMU does.
* The measured port writes come from the vCPU: bench/bootsector.S, booted by
  SeaBIOS from a raw disk image, serves requests posted in a mailbox at
  guest-physical 0x1000 (see the layout there and in class Mailbox) and
  times each `out` with rdtsc.  With StallHarness(smp=N) every vCPU serves
  a mailbox of its own, Mailbox.addr(cpu) (cpu: the APIC ID, 0 the BSP);
  guest_post(..., cpu=K) posts there, so two vCPUs can write ports at the
  same time.
* QMP: one control monitor for the harness, one for the latency probe.
* The SPICE client is bench/spice_client.py (spice-client-glib).

Every wait is bounded; close() (also run by the context manager, atexit and
SIGTERM/SIGINT through install_signal_handlers()) kills the client (SIGCONT
then SIGKILL) and QEMU (QMP quit, then SIGKILL).  Children are started
under `setpriv --pdeathsig KILL` where available, so they also die with the
harness.
"""

import base64
import ctypes
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import atexit
import weakref

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'guest'))
from qmp import QMP  # noqa: E402

PYTHON = '/usr/bin/python3'

# ---------------------------------------------------------------------------
# spice-protocol's qxl_dev.h (offsets checked against gcc's offsetof)

QXL_IO_NOTIFY_CMD = 0
QXL_IO_NOTIFY_CURSOR = 1
QXL_IO_UPDATE_AREA = 2
QXL_IO_UPDATE_IRQ = 3
QXL_IO_NOTIFY_OOM = 4
QXL_IO_RESET = 5
QXL_IO_MEMSLOT_ADD = 8
QXL_IO_CREATE_PRIMARY = 12
QXL_IO_DESTROY_PRIMARY = 13
QXL_IO_UPDATE_AREA_ASYNC = 16
QXL_IO_MEMSLOT_ADD_ASYNC = 17
QXL_IO_CREATE_PRIMARY_ASYNC = 18
QXL_IO_DESTROY_PRIMARY_ASYNC = 19

QXL_INTERRUPT_DISPLAY = 1 << 0
QXL_INTERRUPT_CURSOR = 1 << 1
QXL_INTERRUPT_IO_CMD = 1 << 2
QXL_INTERRUPT_ERROR = 1 << 3

QXL_ROM_MAGIC = 0x4f525851   # "QXRO"
QXL_RAM_MAGIC = 0x41525851   # "QXRA"
REDHAT_PCI_VENDOR_ID = 0x1b36
QXL_DEVICE_ID_STABLE = 0x0100

QXL_CMD_DRAW = 1
QXL_DRAW_FILL = 1
QXL_DRAW_COPY = 3
QXL_EFFECT_BLEND = 0
QXL_EFFECT_OPAQUE = 1
SPICE_BRUSH_TYPE_SOLID = 1
SPICE_ROPD_OP_PUT = 1 << 3
SPICE_CLIP_TYPE_NONE = 0
SPICE_IMAGE_TYPE_BITMAP = 0
SPICE_BITMAP_FMT_32BIT = 8
QXL_BITMAP_DIRECT = 1 << 0
QXL_BITMAP_TOP_DOWN = 1 << 2
SPICE_SURFACE_FMT_32_xRGB = 32
QXL_SURF_TYPE_PRIMARY = 0


class _P(ctypes.LittleEndianStructure):
    _pack_ = 1


class QXLRect(_P):
    _fields_ = [('top', ctypes.c_int32), ('left', ctypes.c_int32),
                ('bottom', ctypes.c_int32), ('right', ctypes.c_int32)]


class QXLPoint(_P):
    _fields_ = [('x', ctypes.c_int32), ('y', ctypes.c_int32)]


class QXLRom(_P):
    _fields_ = [('magic', ctypes.c_uint32), ('id', ctypes.c_uint32),
                ('update_id', ctypes.c_uint32),
                ('compression_level', ctypes.c_uint32),
                ('log_level', ctypes.c_uint32), ('mode', ctypes.c_uint32),
                ('modes_offset', ctypes.c_uint32),
                ('num_pages', ctypes.c_uint32),
                ('pages_offset', ctypes.c_uint32),
                ('draw_area_offset', ctypes.c_uint32),
                ('surface0_area_size', ctypes.c_uint32),
                ('ram_header_offset', ctypes.c_uint32),
                ('mm_clock', ctypes.c_uint32),
                ('n_surfaces', ctypes.c_uint32), ('flags', ctypes.c_uint64),
                ('slots_start', ctypes.c_uint8), ('slots_end', ctypes.c_uint8),
                ('slot_gen_bits', ctypes.c_uint8),
                ('slot_id_bits', ctypes.c_uint8),
                ('slot_generation', ctypes.c_uint8)]


class QXLCommand(_P):
    _fields_ = [('data', ctypes.c_uint64), ('type', ctypes.c_uint32),
                ('padding', ctypes.c_uint32)]


class QXLCommandRing(_P):
    _fields_ = [('num_items', ctypes.c_uint32), ('prod', ctypes.c_uint32),
                ('notify_on_prod', ctypes.c_uint32),
                ('cons', ctypes.c_uint32), ('notify_on_cons', ctypes.c_uint32),
                ('items', QXLCommand * 32)]


class QXLReleaseRing(_P):
    _fields_ = [('num_items', ctypes.c_uint32), ('prod', ctypes.c_uint32),
                ('notify_on_prod', ctypes.c_uint32),
                ('cons', ctypes.c_uint32), ('notify_on_cons', ctypes.c_uint32),
                ('items', ctypes.c_uint64 * 8)]


class QXLMemSlot(_P):
    _fields_ = [('mem_start', ctypes.c_uint64), ('mem_end', ctypes.c_uint64)]


class QXLSurfaceCreate(_P):
    _fields_ = [('width', ctypes.c_uint32), ('height', ctypes.c_uint32),
                ('stride', ctypes.c_int32), ('format', ctypes.c_uint32),
                ('position', ctypes.c_uint32), ('mouse_mode', ctypes.c_uint32),
                ('flags', ctypes.c_uint32), ('type', ctypes.c_uint32),
                ('mem', ctypes.c_uint64)]


class QXLRam(_P):
    _fields_ = [('magic', ctypes.c_uint32), ('int_pending', ctypes.c_uint32),
                ('int_mask', ctypes.c_uint32),
                ('log_buf', ctypes.c_uint8 * 4096),
                ('cmd_ring', QXLCommandRing),
                ('cursor_ring', QXLCommandRing),
                ('release_ring', QXLReleaseRing),
                ('update_area', QXLRect),
                ('update_surface', ctypes.c_uint32),
                ('mem_slot', QXLMemSlot),
                ('create_surface', QXLSurfaceCreate),
                ('flags', ctypes.c_uint64),
                ('monitors_config', ctypes.c_uint64)]


class QXLQMask(_P):
    _fields_ = [('flags', ctypes.c_uint8), ('pos', QXLPoint),
                ('bitmap', ctypes.c_uint64)]


class QXLCopy(_P):
    _fields_ = [('src_bitmap', ctypes.c_uint64), ('src_area', QXLRect),
                ('rop_descriptor', ctypes.c_uint16),
                ('scale_mode', ctypes.c_uint8), ('mask', QXLQMask)]


class QXLBrush(_P):
    _fields_ = [('type', ctypes.c_uint32), ('color', ctypes.c_uint32),
                ('_pattern_pad', ctypes.c_uint8 * 12)]


class QXLFill(_P):
    _fields_ = [('brush', QXLBrush), ('rop_descriptor', ctypes.c_uint16),
                ('mask', QXLQMask)]


class QXLClip(_P):
    _fields_ = [('type', ctypes.c_uint32), ('data', ctypes.c_uint64)]


class QXLDrawable(_P):
    _fields_ = [('release_info', ctypes.c_uint64),
                ('surface_id', ctypes.c_uint32),
                ('effect', ctypes.c_uint8), ('type', ctypes.c_uint8),
                ('self_bitmap', ctypes.c_uint8),
                ('self_bitmap_area', QXLRect), ('bbox', QXLRect),
                ('clip', QXLClip), ('mm_time', ctypes.c_uint32),
                ('surfaces_dest', ctypes.c_int32 * 3),
                ('surfaces_rects', QXLRect * 3),
                ('copy', QXLCopy),
                ('_union_pad', ctypes.c_uint8 * (68 - 44))]


class QXLImageDescriptor(_P):
    _fields_ = [('id', ctypes.c_uint64), ('type', ctypes.c_uint8),
                ('flags', ctypes.c_uint8), ('width', ctypes.c_uint32),
                ('height', ctypes.c_uint32)]


class QXLBitmap(_P):
    _fields_ = [('format', ctypes.c_uint8), ('flags', ctypes.c_uint8),
                ('x', ctypes.c_uint32), ('y', ctypes.c_uint32),
                ('stride', ctypes.c_uint32), ('palette', ctypes.c_uint64),
                ('data', ctypes.c_uint64)]


class QXLImage(_P):
    _fields_ = [('descriptor', QXLImageDescriptor), ('bitmap', QXLBitmap)]


# Sizes and offsets as gcc computes them for spice-protocol 0.14.3.
for _t, _size in ((QXLRom, 69), (QXLRam, 5348), (QXLCommandRing, 532),
                  (QXLReleaseRing, 84), (QXLSurfaceCreate, 40),
                  (QXLDrawable, 191), (QXLCopy, 44), (QXLImage, 48),
                  (QXLBrush, 20), (QXLFill, 39)):
    assert ctypes.sizeof(_t) == _size, (_t.__name__, ctypes.sizeof(_t))
assert QXLRam.cmd_ring.offset == 4108 and QXLRam.create_surface.offset == 5292
assert QXLDrawable.copy.offset == 123 and QXLRom.slots_start.offset == 64


def ram_off(field):
    return getattr(QXLRam, field).offset


RING_PROD = ram_off('cmd_ring') + QXLCommandRing.prod.offset
RING_CONS = ram_off('cmd_ring') + QXLCommandRing.cons.offset
RING_ITEMS = ram_off('cmd_ring') + QXLCommandRing.items.offset
RING_SIZE = 32

# ---------------------------------------------------------------------------
# The boot-sector guest's mailbox (bench/bootsector.S)


class Mailbox:
    """Field offsets in a mailbox; ADDR and SAMPLES are the BSP's (CPU 0),
    addr(cpu) and samples(cpu) any vCPU's (cpu: its APIC ID)."""
    ADDR = 0x1000
    STRIDE = 0x100
    MAGIC, SEQ, BUSY, ACK = 0x00, 0x04, 0x08, 0x0c
    COUNT, PORT, VALUE, INTADDR, INTMASK = 0x10, 0x14, 0x18, 0x1c, 0x20
    TIMEOUTS, WAITLIM, GAP = 0x24, 0x28, 0x2c
    TSC0, TSC1, LAST = 0x30, 0x38, 0x40
    OUTS, SBASE, APIC = 0x48, 0x4c, 0x50
    SIZE = 0x54
    SAMPLES = 0x10000
    MAX_SAMPLES = 0x4000
    MAX_CPUS = 8         # the samples of APIC IDs 0-7 fit below 0x90000
    READY = 0x424c5851   # 'QXLB'

    @classmethod
    def addr(cls, cpu=0):
        return cls.ADDR + cls.STRIDE * cpu

    @classmethod
    def samples(cls, cpu=0):
        """Where CPU puts its samples unless sbase was changed."""
        return cls.SAMPLES * (cpu + 1)


def build_bootsector(outdir):
    """Assemble bench/bootsector.S (GNU as/ld) into OUTDIR/boot.img: the
    512-byte sector padded to a 1 MiB raw disk.  Returns the image path."""
    os.makedirs(outdir, exist_ok=True)
    src = os.path.join(HERE, 'bootsector.S')
    obj = os.path.join(outdir, 'bootsector.o')
    binf = os.path.join(outdir, 'bootsector.bin')
    img = os.path.join(outdir, 'boot.img')
    for tool in ('as', 'ld'):
        if not shutil.which(tool):
            raise HarnessError(f'{tool} (binutils) is needed to build the boot sector')
    subprocess.run(['as', '--32', '-o', obj, src], check=True, timeout=60)
    subprocess.run(['ld', '-m', 'elf_i386', '-Ttext=0x7c00', '-e', '_start',
                    '--oformat=binary', '-o', binf, obj], check=True, timeout=60)
    data = open(binf, 'rb').read()
    if len(data) != 512 or data[510:] != b'\x55\xaa':
        raise HarnessError(f'{binf}: not a 512-byte boot sector ({len(data)} bytes)')
    with open(img + '.tmp', 'wb') as f:
        f.write(data)
        f.truncate(1 << 20)
    os.replace(img + '.tmp', img)
    return img


# ---------------------------------------------------------------------------


class HarnessError(Exception):
    pass


def choose_accel():
    """TCG unless /dev/kvm works and this is not nested PVM (FACTS.md)."""
    forced = os.environ.get('BENCH_ACCEL')
    if forced:
        return forced
    if os.path.exists('/sys/module/kvm_pvm'):
        return 'tcg'
    try:
        fd = os.open('/dev/kvm', os.O_RDWR)
        os.close(fd)
        return 'kvm'
    except OSError:
        return 'tcg'


def free_tcp_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


def percentile(sorted_vals, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_vals:
        return None
    k = max(0, min(len(sorted_vals) - 1,
                   int(-(-p * len(sorted_vals) // 100)) - 1))
    return sorted_vals[k]


def _pdeathsig_prefix():
    # Children die with the harness even if it is SIGKILLed.
    exe = shutil.which('setpriv')
    if exe and subprocess.run([exe, '--pdeathsig', 'KILL', 'true'],
                              capture_output=True).returncode == 0:
        return [exe, '--pdeathsig', 'KILL', '--']
    return []


class QTest:
    """The qtest line protocol (system/qtest.c) over a connected socket."""

    def __init__(self, sock, timeout=60.0):
        self.sock = sock
        self.timeout = timeout
        self._buf = b''

    def cmd(self, line, timeout=None):
        self.sock.settimeout(timeout or self.timeout)
        self.sock.sendall(line.encode() + b'\n')
        while True:
            while b'\n' not in self._buf:
                data = self.sock.recv(1 << 16)
                if not data:
                    raise HarnessError(f'qtest: connection closed (after {line[:40]!r})')
                self._buf += data
            resp, self._buf = self._buf.split(b'\n', 1)
            resp = resp.decode()
            if resp.startswith('IRQ'):
                continue
            if resp == 'OK':
                return ''
            if resp.startswith('OK '):
                return resp[3:]
            raise HarnessError(f'qtest: {line[:60]!r} -> {resp!r}')

    def readb(self, a): return int(self.cmd(f'readb 0x{a:x}'), 0)
    def readw(self, a): return int(self.cmd(f'readw 0x{a:x}'), 0)
    def readl(self, a): return int(self.cmd(f'readl 0x{a:x}'), 0)
    def readq(self, a): return int(self.cmd(f'readq 0x{a:x}'), 0)
    def writeb(self, a, v): self.cmd(f'writeb 0x{a:x} 0x{v:x}')
    def writel(self, a, v): self.cmd(f'writel 0x{a:x} 0x{v & 0xffffffff:x}')
    def writeq(self, a, v): self.cmd(f'writeq 0x{a:x} 0x{v & (2**64 - 1):x}')
    def outb(self, p, v): self.cmd(f'outb 0x{p:x} 0x{v:x}')
    def outl(self, p, v): self.cmd(f'outl 0x{p:x} 0x{v:x}')
    def inl(self, p): return int(self.cmd(f'inl 0x{p:x}'), 0)

    def write(self, addr, data):
        if not data:
            return
        b64 = base64.b64encode(bytes(data)).decode()
        self.cmd(f'b64write 0x{addr:x} {len(data)} {b64}')

    def read(self, addr, size):
        return base64.b64decode(self.cmd(f'b64read 0x{addr:x} {size}'))


class QmpProbe(threading.Thread):
    """query-status every INTERVAL seconds for SECONDS; records
    (t_send, t_recv) in time.monotonic() seconds.  A request that blocks is
    one long sample (the next one is sent when it returns)."""

    def __init__(self, path, seconds, interval=0.010, rpc_timeout=120.0):
        super().__init__(daemon=True, name='qmp-probe')
        self.path = path
        self.seconds = seconds
        self.interval = interval
        self.rpc_timeout = rpc_timeout
        self.samples = []
        self.error = None
        self.started_at = None
        self._stop_ev = threading.Event()
        self._ready = threading.Event()

    def run(self):
        try:
            with QMP(self.path, timeout=self.rpc_timeout, connect_wait=10) as q:
                q.execute('query-status')
                self._ready.set()
                self.started_at = t0 = time.monotonic()
                nxt = t0
                while not self._stop_ev.is_set():
                    now = time.monotonic()
                    if now >= t0 + self.seconds:
                        break
                    if nxt > now:
                        time.sleep(nxt - now)
                    ts = time.monotonic()
                    q.execute('query-status')
                    tr = time.monotonic()
                    self.samples.append((ts, tr))
                    nxt = ts + self.interval
        except BaseException as e:   # reported by result()
            self.error = f'{type(e).__name__}: {e}'
        finally:
            self._ready.set()

    def wait_ready(self, timeout=15):
        if not self._ready.wait(timeout):
            raise HarnessError('QMP probe did not connect')
        if self.error:
            raise HarnessError(f'QMP probe: {self.error}')

    def stop(self):
        self._stop_ev.set()

    def latencies_ms(self):
        return [(tr - ts) * 1e3 for ts, tr in self.samples]

    def result(self):
        lat = sorted(self.latencies_ms())
        res = {'samples': len(lat), 'interval_ms': self.interval * 1e3,
               'seconds': self.seconds, 'error': self.error}
        if lat:
            res.update(p50_ms=percentile(lat, 50), p90_ms=percentile(lat, 90),
                       p99_ms=percentile(lat, 99), max_ms=lat[-1], min_ms=lat[0],
                       over_10ms=sum(1 for x in lat if x > 10),
                       over_100ms=sum(1 for x in lat if x > 100))
            # the slowest round trips and when they were sent (s into the run)
            slow = sorted(((tr - ts) * 1e3, ts - self.started_at)
                          for ts, tr in self.samples)[-20:]
            res['slowest'] = [[round(t, 3), round(ms, 2)] for ms, t in sorted(
                slow, key=lambda x: x[1])]
        return res


_live = weakref.WeakSet()


@atexit.register
def _cleanup_all():
    for h in list(_live):
        try:
            h.close()
        except Exception:
            pass


def install_signal_handlers():
    """SIGTERM/SIGINT/SIGHUP -> SystemExit, so that finally/atexit clean up."""
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(s, handler)


class StallHarness:
    """One QEMU with qxl-vga, the boot-sector guest, qtest, QMP and spice.

    WORKDIR holds the QEMU and client logs and the guest image (a temporary
    directory, removed by close() unless QXL_STALL_KEEP is set, when not
    given).  ACCEL: see choose_accel().  DEVICE is the -device argument
    (e.g. 'qxl-vga,id=qxl0,revision=2' for a legacy-revision device);
    EXTRA_ARGS go to QEMU as they are.  TIMEOUT bounds every single wait.
    SMP: vCPUs (-smp, at most Mailbox.MAX_CPUS), each serving its own
    mailbox; a migration destination needs the source's.
    """

    def __init__(self, qemu, workdir=None, accel=None, name='qemu',
                 spice_port=None, extra_args=(), log=None, timeout=60.0,
                 memory_mb=32, device='qxl-vga,id=qxl0', smp=1):
        if not 1 <= smp <= Mailbox.MAX_CPUS:
            raise ValueError(f'smp {smp}: 1 to {Mailbox.MAX_CPUS} vCPUs')
        self.qemu = qemu
        self.smp = smp
        self.name = name
        self._own_workdir = workdir is None
        self.workdir = workdir or tempfile.mkdtemp(prefix='qxl-stall-')
        os.makedirs(self.workdir, exist_ok=True)
        self.accel = accel or choose_accel()
        self.spice_port = spice_port
        self.extra_args = list(extra_args)
        self.device = device
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.log = log or (lambda msg: print(f'[{self.name}] {msg}',
                                             file=sys.stderr, flush=True))
        self.proc = None
        self.client = None
        self.client_frozen = False
        self.client_events = []
        self._client_cv = threading.Condition()
        self.qt = None
        self.qmp = None
        self._listener = None
        self.seqs = [0] * smp        # per vCPU: the last request posted
        self.tsc_points = []         # the BSP's; the APs' in _ap_tsc_points
        self._ap_tsc_points = {}
        self._ap_tsc_refs = {}
        self.tsc_hz = None
        self.draws_pushed = 0
        self.qemu_log = os.path.join(self.workdir, f'{name}.log')
        self.client_log = os.path.join(self.workdir, f'{name}-client.log')
        self.sock_dir = tempfile.mkdtemp(prefix='qxl-stall-sock-')   # short paths
        self.qtest_path = os.path.join(self.sock_dir, 'qtest.sock')
        self.qmp_path = os.path.join(self.sock_dir, 'qmp.sock')
        self.probe_path = os.path.join(self.sock_dir, 'probe.sock')
        _live.add(self)

    @property
    def seq(self):
        """The BSP's request counter (seqs[cpu] for any vCPU)."""
        return self.seqs[0]

    @seq.setter
    def seq(self, value):
        self.seqs[0] = value

    # -- lifetime ----------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def qemu_args(self, boot_image, incoming=None):
        """The QEMU command line (a migration destination: the same one
        with its own sockets and spice port, plus -incoming INCOMING)."""
        args = [self.qemu, '-machine', 'pc', '-accel', self.accel,
                '-m', str(self.memory_mb), '-nodefaults', '-vga', 'none',
                '-device', self.device,
                '-drive', f'file={boot_image},format=raw,if=ide,snapshot=on',
                '-display', 'none',
                '-spice', f'port={self.spice_port},addr=127.0.0.1,'
                          'disable-ticketing=on,image-compression=off,'
                          'streaming-video=off',
                '-qtest', f'unix:{self.qtest_path}', '-qtest-log', '/dev/null',
                '-qmp', f'unix:{self.qmp_path},server=on,wait=off',
                '-qmp', f'unix:{self.probe_path},server=on,wait=off',
                ] + self.extra_args
        if self.smp > 1:
            i = args.index('-m') + 2
            args[i:i] = ['-smp', str(self.smp)]
        if incoming:
            args += ['-incoming', incoming]
        return args

    def start(self, boot_image=None, incoming=None):
        """Start QEMU and wait until the boot-sector guest is ready.  With
        INCOMING (e.g. 'unix:/path'), start a migration destination: QEMU
        waits for the migration stream and start() returns once qtest and
        QMP are connected (take the device state from the source with
        adopt_device(); BOOT_IMAGE should be the source's .boot_image)."""
        if not os.access(self.qemu, os.X_OK):
            raise HarnessError(f'{self.qemu}: no such executable')
        img = boot_image or build_bootsector(os.path.join(self.workdir, 'guest'))
        self.boot_image = img
        if self.spice_port is None:
            self.spice_port = free_tcp_port()
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._listener.bind(self.qtest_path)
        self._listener.listen(1)
        self._listener.settimeout(1.0)
        args = self.qemu_args(img, incoming)
        self.log(f'starting {" ".join(args)}')
        self._qemu_logf = open(self.qemu_log, 'wb')
        self.proc = subprocess.Popen(_pdeathsig_prefix() + args,
                                     stdin=subprocess.DEVNULL,
                                     stdout=self._qemu_logf,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + self.timeout
        conn = None
        while conn is None:
            self._check_alive('before connecting to qtest')
            if time.monotonic() > deadline:
                raise HarnessError('QEMU did not connect to the qtest socket')
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                pass
        self.qt = QTest(conn, timeout=self.timeout)
        self.qmp = QMP(self.qmp_path, timeout=self.timeout, connect_wait=10)
        if incoming:
            return self
        self.wait_guest_ready()
        self.tsc_points.append(self._tsc_point())
        for cpu in range(1, self.smp):
            self._ap_tsc_points[cpu] = [self._tsc_point(cpu)]
        return self

    def wait_guest_ready(self, timeout=None):
        """Wait (bounded) until the boot-sector guest says it is ready in
        the mailbox, on every vCPU; each has just cleared its mailbox, so
        the request counters start again at 0.  After a guest reset, clear
        the magic first (clear_guest_ready()) or this sees the old one."""
        timeout = self.timeout if timeout is None else timeout
        t0 = time.monotonic()
        for cpu in range(self.smp):
            mb = Mailbox.addr(cpu)
            while self.qt.readl(mb + Mailbox.MAGIC) != Mailbox.READY:
                self._check_alive('while booting')
                if time.monotonic() - t0 > timeout:
                    raise HarnessError(f'the boot-sector guest did not come up '
                                       f'on CPU {cpu} of {self.smp} '
                                       f'(log: {self.qemu_log})')
                time.sleep(0.02)
            # a mailbox served by the wrong vCPU (APIC IDs not 0..smp-1)
            apic = self.qt.readl(mb + Mailbox.APIC)
            if apic != cpu:
                raise HarnessError(f'mailbox {cpu} served by APIC ID {apic}')
        self.seqs = [0] * self.smp
        self.log(f'guest ready after {time.monotonic() - t0:.2f} s '
                 f'(accel {self.accel}, {self.smp} vCPU)')

    def clear_guest_ready(self):
        """Zero the mailbox magic of every vCPU (only the guest's boot code
        writes it), so that a later wait_guest_ready() waits for a fresh
        boot."""
        for cpu in range(self.smp):
            self.qt.writel(Mailbox.addr(cpu) + Mailbox.MAGIC, 0)

    DEVICE_STATE = ('pci_dev', 'bar0', 'bar1', 'bar2', 'io_base', 'rom', 'ram',
                    'int_pending', 'slot_id', 'slot_gen', 'width', 'height',
                    'free_start', 'free_end', 'seqs', 'tsc_hz', '_tsc_ref',
                    '_ap_tsc_refs')

    def adopt_device(self, src):
        """Take over what SRC (another harness) knows about the device and
        the guest: for a migration destination, whose guest RAM, PCI
        configuration and device state come from SRC (started with the
        same smp)."""
        if src.smp != self.smp:
            raise HarnessError(f'source has {src.smp} vCPUs, this one {self.smp}')
        for k in self.DEVICE_STATE:
            if hasattr(src, k):
                v = getattr(src, k)
                # the two harnesses' counters must not be one object
                setattr(self, k, v.copy() if isinstance(v, (list, dict)) else v)
        return self

    def _check_alive(self, what):
        if self.proc is not None and self.proc.poll() is not None:
            raise HarnessError(f'QEMU exited ({self.proc.returncode}) {what}; '
                               f'log: {self.qemu_log}: {self._log_tail()}')

    def _log_tail(self, n=600):
        try:
            with open(self.qemu_log, 'rb') as f:
                return f.read()[-n:].decode(errors='replace')
        except OSError:
            return ''

    def close(self):
        """Kill the client and QEMU; safe to call more than once."""
        if self.client is not None:
            c, self.client = self.client, None
            try:
                c.send_signal(signal.SIGCONT)
                c.kill()
            except ProcessLookupError:
                pass
            try:
                c.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.qmp is not None:
            q, self.qmp = self.qmp, None
            if self.proc is not None and self.proc.poll() is None:
                try:
                    q.sock.settimeout(5)
                    q.sock.sendall(b'{"execute": "quit"}\n')
                except OSError:
                    pass
            q.close()
        if self.proc is not None:
            p, self.proc = self.proc, None
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
            self.returncode = p.returncode
        if self.qt is not None:
            self.qt.sock.close()
            self.qt = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        shutil.rmtree(self.sock_dir, ignore_errors=True)
        for f in ('_qemu_logf', '_client_logf'):
            if getattr(self, f, None):
                getattr(self, f).close()
                setattr(self, f, None)
        if self._own_workdir and not os.environ.get('QXL_STALL_KEEP'):
            shutil.rmtree(self.workdir, ignore_errors=True)
        _live.discard(self)

    # -- the device, through qtest ------------------------------------------

    def pci_cfg_readl(self, dev, reg, bus=0, fn=0):
        self.qt.outl(0xcf8, 0x80000000 | bus << 16 | dev << 11 | fn << 8 | reg)
        return self.qt.inl(0xcfc)

    def find_qxl(self):
        for dev in range(32):
            v = self.pci_cfg_readl(dev, 0)
            if v == (QXL_DEVICE_ID_STABLE << 16 | REDHAT_PCI_VENDOR_ID):
                return dev
        raise HarnessError('no qxl-vga (1b36:0100) on PCI bus 0')

    def setup_device(self, width=1024, height=768):
        """Memslot over BAR0 and a WIDTHxHEIGHT primary surface, through
        qtest (the async ports, like Linux does; waits for IO_CMD)."""
        qt = self.qt
        self.pci_dev = dev = self.find_qxl()
        cmd = self.pci_cfg_readl(dev, 4) & 0xffff
        bars = [self.pci_cfg_readl(dev, 0x10 + 4 * i) for i in range(4)]
        if not (cmd & 3) or (bars[3] & 1) == 0:
            raise HarnessError(f'qxl BARs not set up by the firmware: '
                               f'cmd {cmd:#x} bars {[hex(b) for b in bars]}')
        self.bar0 = bars[0] & ~0xf
        self.bar1 = bars[1] & ~0xf
        self.bar2 = bars[2] & ~0xf
        self.io_base = bars[3] & ~3
        rom = QXLRom.from_buffer_copy(qt.read(self.bar2, ctypes.sizeof(QXLRom)))
        if rom.magic != QXL_ROM_MAGIC:
            raise HarnessError(f'bad QXLRom magic {rom.magic:#x}')
        self.rom = rom
        self.ram = self.bar0 + rom.ram_header_offset
        if qt.readl(self.ram) != QXL_RAM_MAGIC:
            raise HarnessError('bad QXLRam magic')
        self.int_pending = self.ram + ram_off('int_pending')
        self.slot_id = rom.slots_start
        self.slot_gen = rom.slot_generation
        self.log(f'qxl at 00:{dev:02x}.0: BAR0 {self.bar0:#x} BAR1 {self.bar1:#x} '
                 f'ROM {self.bar2:#x} IO {self.io_base:#x}; ram header '
                 f'+{rom.ram_header_offset:#x}, surface0 {rom.surface0_area_size:#x}, '
                 f'slot {self.slot_id}')
        qt.writel(self.ram + ram_off('int_mask'), 0)
        qt.writel(self.int_pending, 0)
        # Memslot: all of BAR0 up to the RAM header.
        slot = QXLMemSlot(self.bar0, self.bar0 + rom.ram_header_offset)
        qt.write(self.ram + ram_off('mem_slot'), bytes(slot))
        self.io_async(QXL_IO_MEMSLOT_ADD_ASYNC, self.slot_id)
        # The slot's generation is set by the add (QEMU resets it to 0).
        self.slot_gen = qt.readb(self.bar2 + QXLRom.slot_generation.offset)
        # Primary surface in BAR0's surface0 area.
        self.width, self.height = width, height
        sc = QXLSurfaceCreate(width=width, height=height, stride=width * 4,
                              format=SPICE_SURFACE_FMT_32_xRGB, position=0,
                              mouse_mode=1, flags=0, type=QXL_SURF_TYPE_PRIMARY,
                              mem=self.phys(self.bar0))
        qt.write(self.ram + ram_off('create_surface'), bytes(sc))
        self.io_async(QXL_IO_CREATE_PRIMARY_ASYNC, 0)
        # Free space after the surface0 area: bitmaps, then drawables.
        self.free_start = self.bar0 + rom.surface0_area_size
        self.free_end = self.ram
        return self

    def phys(self, gpa):
        """QXLPHYSICAL of guest-physical GPA inside the memslot (BAR0)."""
        off = gpa - self.bar0
        assert 0 <= off < self.rom.ram_header_offset
        hi = (self.slot_id << self.rom.slot_gen_bits | self.slot_gen)
        return hi << (64 - self.rom.slot_gen_bits - self.rom.slot_id_bits) | off

    def io_async(self, port, val, timeout=None):
        """An *_ASYNC port written through qtest (main loop); waits for
        QXL_INTERRUPT_IO_CMD in int_pending and clears it.  Setup only."""
        qt = self.qt
        qt.outb(self.io_base + port, val)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            pend = qt.readl(self.int_pending)
            if pend & QXL_INTERRUPT_ERROR:
                raise HarnessError(f'QXL_INTERRUPT_ERROR after port {port} '
                                   f'(guest bug; log {self.qemu_log})')
            if pend & QXL_INTERRUPT_IO_CMD:
                qt.writel(self.int_pending, 0)
                return
            if time.monotonic() > deadline:
                raise HarnessError(f'no IO_CMD interrupt after async port {port}')
            time.sleep(0.005)

    def set_update_area(self, left=0, top=0, right=None, bottom=None, surface=0):
        right = self.width if right is None else right
        bottom = self.height if bottom is None else bottom
        self.qt.write(self.ram + ram_off('update_area'),
                      bytes(QXLRect(top=top, left=left, bottom=bottom, right=right)))
        self.qt.writel(self.ram + ram_off('update_surface'), surface)

    # -- draw commands --------------------------------------------------------

    BITMAP_W = BITMAP_H = 256
    DRAWABLE_BLOCK = 512

    def prepare_draws(self, n_bitmaps=32, max_draws=2048, seed=None):
        """Write N_BITMAPS random (incompressible) 256x256 xRGB bitmaps into
        BAR0 and reserve room for MAX_DRAWS drawables."""
        bsize = self.BITMAP_W * self.BITMAP_H * 4
        self.bitmaps = []
        addr = (self.free_start + 0xfff) & ~0xfff
        t0 = time.monotonic()
        for i in range(n_bitmaps):
            self.qt.write(addr, os.urandom(bsize))
            self.bitmaps.append(addr)
            addr += bsize
        self.draw_base = addr
        self.max_draws = max_draws
        if addr + max_draws * self.DRAWABLE_BLOCK > self.free_end:
            raise HarnessError('BAR0 too small for the bitmaps and drawables')
        self.log(f'{n_bitmaps} random bitmaps written in {time.monotonic() - t0:.2f} s')

    def _draw_bytes(self, i):
        blk = self.draw_base + i * self.DRAWABLE_BLOCK
        w, h = self.BITMAP_W, self.BITMAP_H
        x = (i * 97) % (self.width - w)
        y = (i * 61) % (self.height - h)
        d = QXLDrawable()
        d.release_info = blk           # any unique non-zero id
        d.surface_id = 0
        d.effect = QXL_EFFECT_BLEND    # not opaque: never dropped as covered
        d.type = QXL_DRAW_COPY
        d.bbox = QXLRect(top=y, left=x, bottom=y + h, right=x + w)
        d.clip = QXLClip(type=SPICE_CLIP_TYPE_NONE, data=0)
        for k in range(3):
            d.surfaces_dest[k] = -1
        d.copy.src_bitmap = self.phys(blk + 256)
        d.copy.src_area = QXLRect(top=0, left=0, bottom=h, right=w)
        d.copy.rop_descriptor = SPICE_ROPD_OP_PUT
        img = QXLImage()
        img.descriptor = QXLImageDescriptor(id=(i + 1) << 32, type=SPICE_IMAGE_TYPE_BITMAP,
                                            flags=0, width=w, height=h)
        img.bitmap = QXLBitmap(format=SPICE_BITMAP_FMT_32BIT,
                               flags=QXL_BITMAP_DIRECT | QXL_BITMAP_TOP_DOWN,
                               x=w, y=h, stride=w * 4, palette=0,
                               data=self.phys(self.bitmaps[i % len(self.bitmaps)]))
        buf = bytearray(self.DRAWABLE_BLOCK)
        buf[0:ctypes.sizeof(d)] = bytes(d)
        buf[256:256 + ctypes.sizeof(img)] = bytes(img)
        return blk, bytes(buf)

    def ring_state(self):
        return self.qt.readl(self.ram + RING_PROD), self.qt.readl(self.ram + RING_CONS)

    def push_draws(self, n):
        """Put up to N draws on the command ring (as much as fits), notify.
        Returns how many were pushed."""
        prod, cons = self.ring_state()
        n = min(n, RING_SIZE - (prod - cons) % 2**32,
                self.max_draws - self.draws_pushed)
        for _ in range(n):
            blk, data = self._draw_bytes(self.draws_pushed)
            self.qt.write(blk, data)
            self.qt.write(self.ram + RING_ITEMS + (prod % RING_SIZE) * 16,
                          bytes(QXLCommand(data=self.phys(blk), type=QXL_CMD_DRAW)))
            prod = (prod + 1) % 2**32
            self.qt.writel(self.ram + RING_PROD, prod)
            self.draws_pushed += 1
        if n:
            self.qt.outb(self.io_base + QXL_IO_NOTIFY_CMD, 0)
        return n

    def _fill_bytes(self, blk, left, top, right, bottom, color):
        """An opaque solid QXL_DRAW_FILL of COLOR (xRGB) over the rectangle,
        as the drawable at guest address BLK."""
        d = QXLDrawable()
        d.release_info = blk
        d.surface_id = 0
        d.effect = QXL_EFFECT_OPAQUE
        d.type = QXL_DRAW_FILL
        d.bbox = QXLRect(top=top, left=left, bottom=bottom, right=right)
        d.clip = QXLClip(type=SPICE_CLIP_TYPE_NONE, data=0)
        for k in range(3):
            d.surfaces_dest[k] = -1
        f = QXLFill()
        f.brush.type = SPICE_BRUSH_TYPE_SOLID
        f.brush.color = color
        f.rop_descriptor = SPICE_ROPD_OP_PUT
        buf = bytearray(bytes(d))
        off = QXLDrawable.copy.offset      # the union's start
        buf[off:off + ctypes.sizeof(f)] = bytes(f)
        return bytes(buf)

    def last_draw_to_fill(self, left, top, right, bottom, color):
        """Turn the draw pushed last, which must still wait in the command
        ring (after fill_ring()), into an opaque solid QXL_DRAW_FILL of
        COLOR (xRGB) over the rectangle: after a synchronous UPDATE_AREA
        that covers it, the primary surface holds exactly that colour
        there (read_surface_rect()).  Returns the rectangle."""
        if not self.draws_pushed:
            raise HarnessError('no draw pushed yet')
        i = self.draws_pushed - 1
        prod, cons = self.ring_state()
        if (prod - cons) % 2**32 == 0 or (prod - 1 - cons) % 2**32 >= RING_SIZE:
            raise HarnessError(f'the last draw has left the ring (prod {prod}, cons {cons})')
        blk = self.draw_base + i * self.DRAWABLE_BLOCK
        self.qt.write(blk, self._fill_bytes(blk, left, top, right, bottom, color))
        # Still in the ring after the rewrite: the worker reads it later.
        prod2, cons2 = self.ring_state()
        if (prod2 - cons2) % 2**32 == 0 or prod2 != prod:
            raise HarnessError(f'the last draw left the ring while it was '
                               f'rewritten (prod {prod2}, cons {cons2})')
        return (left, top, right, bottom)

    def push_fill(self, left, top, right, bottom, color):
        """Put one opaque fill (see last_draw_to_fill()) on the command ring,
        in the next drawable block, and notify; the ring must have room."""
        prod, cons = self.ring_state()
        if (prod - cons) % 2**32 >= RING_SIZE or self.draws_pushed >= self.max_draws:
            raise HarnessError('no room for a fill in the ring')
        blk = self.draw_base + self.draws_pushed * self.DRAWABLE_BLOCK
        self.qt.write(blk, self._fill_bytes(blk, left, top, right, bottom, color))
        self.qt.write(self.ram + RING_ITEMS + (prod % RING_SIZE) * 16,
                      bytes(QXLCommand(data=self.phys(blk), type=QXL_CMD_DRAW)))
        self.qt.writel(self.ram + RING_PROD, (prod + 1) % 2**32)
        self.draws_pushed += 1
        self.qt.outb(self.io_base + QXL_IO_NOTIFY_CMD, 0)

    def read_surface_rect(self, left, top, right, bottom):
        """The primary surface's pixels (u32 xRGB, row by row) in the
        rectangle, read from BAR0 through qtest."""
        stride = self.width * 4
        rows = []
        for y in range(top, bottom):
            data = self.qt.read(self.bar0 + y * stride + left * 4, (right - left) * 4)
            rows.append(list(struct.unpack(f'<{right - left}I', data)))
        return rows

    def fill_ring(self, stall_after=2.0, timeout=120.0):
        """Keep the command ring full until the worker stops taking commands
        for STALL_AFTER seconds (a frozen client's pipe is full).  Returns
        {'consumed': draws the worker took, 'pushed': ..., 'seconds': ...}."""
        t0 = time.monotonic()
        last_cons, last_change = None, t0
        while True:
            self._check_alive('while filling the ring')
            self.push_draws(RING_SIZE)
            prod, cons = self.ring_state()
            now = time.monotonic()
            if cons != last_cons:
                last_cons, last_change = cons, now
            elif prod - cons == RING_SIZE and now - last_change >= stall_after:
                break
            if self.draws_pushed >= self.max_draws and prod == cons:
                raise HarnessError(f'{self.draws_pushed} draws and the worker '
                                   'still takes commands: is the client frozen?')
            if now - t0 > timeout:
                raise HarnessError(f'ring not stuck after {timeout} s '
                                   f'(prod {prod}, cons {cons})')
            time.sleep(0.01)
        res = {'consumed': cons, 'pushed': prod, 'in_ring': prod - cons,
               'seconds': round(time.monotonic() - t0, 2)}
        self.log(f'worker stopped taking commands after {cons} draws '
                 f'({prod - cons} waiting in the ring)')
        return res

    # -- the SPICE client -----------------------------------------------------

    def start_client(self, timeout=30.0, want_width=None):
        """Start bench/spice_client.py and wait until its display channel
        has the primary surface (WANT_WIDTH wide; default the one created
        by setup_device(), or any when the device is not set up)."""
        if want_width is None:
            want_width = getattr(self, 'width', None)
        self._client_logf = open(self.client_log, 'w')
        self.client = subprocess.Popen(
            _pdeathsig_prefix() +
            [PYTHON, os.path.join(HERE, 'spice_client.py'), '127.0.0.1',
             str(self.spice_port), '--timeout', '3600'],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=self._client_logf, text=True)
        threading.Thread(target=self._client_reader, args=(self.client,),
                         daemon=True, name='spice-client-reader').start()

        def ready(ev):
            return ev.get('event') == 'primary-create' and \
                (want_width is None or ev.get('width') == want_width)
        self.wait_client_event(ready, timeout)
        return self

    def _client_reader(self, proc):
        for line in proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {'event': 'garbage', 'line': line.rstrip()}
            ev['t'] = time.monotonic()
            with self._client_cv:
                self.client_events.append(ev)
                self._client_cv.notify_all()
        with self._client_cv:
            self.client_events.append({'event': 'exited', 't': time.monotonic()})
            self._client_cv.notify_all()

    def wait_client_event(self, pred, timeout):
        deadline = time.monotonic() + timeout
        seen = 0
        with self._client_cv:
            while True:
                for ev in self.client_events[seen:]:
                    if pred(ev):
                        return ev
                    if ev['event'] in ('exited', 'connect-failed', 'disconnected'):
                        raise HarnessError(f'SPICE client: {ev} (log {self.client_log})')
                seen = len(self.client_events)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f'SPICE client: timeout; events {self.client_events[-5:]}')
                self._client_cv.wait(min(left, 1.0))

    def freeze_client(self):
        self.client.send_signal(signal.SIGSTOP)
        self.client_frozen = True

    def thaw_client(self):
        self.client.send_signal(signal.SIGCONT)
        self.client_frozen = False

    # -- the vCPU (boot-sector guest) ---------------------------------------------

    def _mailbox(self, cpu):
        if not 0 <= cpu < self.smp:
            raise ValueError(f'cpu {cpu}: the guest has {self.smp} vCPU')
        return Mailbox.addr(cpu)

    def mailbox_readl(self, field, cpu=0, timeout=None):
        """A u32 of CPU's mailbox (e.g. Mailbox.OUTS), read through qtest
        with a bounded wait (a blocked main loop also blocks the read)."""
        a = self._mailbox(cpu) + field
        return int(self.qt.cmd(f'readl 0x{a:x}', timeout=timeout), 0)

    def guest_post(self, port, value=0, count=1, intaddr=0, intmask=0,
                   waitlim=400_000_000, gap=0, cpu=0):
        """Post a request: COUNT x `outb VALUE, PORT` from vCPU CPU (after
        each, poll INTADDR for INTMASK if INTADDR, then spin GAP TSC ticks).
        Returns a handle for guest_wait().  The BSP picks it up within
        about 1 ms, an AP (polling) at once."""
        if count > Mailbox.MAX_SAMPLES:
            raise ValueError('count too large')
        mb = self._mailbox(cpu)
        qt = self.qt
        if qt.readl(mb + Mailbox.ACK) != self.seqs[cpu]:
            raise HarnessError(f'guest CPU {cpu} busy with an earlier request')
        qt.writel(mb + Mailbox.COUNT, count)
        qt.writel(mb + Mailbox.PORT, port)
        qt.writel(mb + Mailbox.VALUE, value)
        qt.writel(mb + Mailbox.INTADDR, intaddr)
        qt.writel(mb + Mailbox.INTMASK, intmask)
        qt.writel(mb + Mailbox.WAITLIM, waitlim)
        qt.writel(mb + Mailbox.GAP, gap)
        self.seqs[cpu] += 1
        seq = self.seqs[cpu]
        t = time.monotonic()
        qt.writel(mb + Mailbox.SEQ, seq)
        return {'seq': seq, 't_post': t, 'count': count, 'port': port, 'cpu': cpu}

    def guest_busy(self, op):
        """True once the vCPU has started OP (reads the mailbox via qtest,
        so this blocks while the main loop is blocked)."""
        mb = self._mailbox(op.get('cpu', 0))
        return self.qt.readl(mb + Mailbox.BUSY) == op['seq']

    def guest_wait(self, op, timeout=None, samples=True, cpu=None):
        """Wait (bounded) for OP to finish; returns its results: tsc0/tsc1,
        last (ticks of the last write), timeouts, outs (writes that
        returned), samples (ticks).  CPU: the vCPU OP was posted to
        (default: the one guest_post() recorded in OP)."""
        cpu = op.get('cpu', 0) if cpu is None else cpu
        if cpu != op.get('cpu', 0):
            raise ValueError(f'request {op["seq"]} was posted to CPU '
                             f'{op.get("cpu", 0)}, not {cpu}')
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        mb = self._mailbox(cpu)
        qt = self.qt
        while True:
            self._check_alive('while the guest works')
            left = deadline - time.monotonic()
            if left <= 0:
                raise HarnessError(f'guest request {op["seq"]} (port {op["port"]:#x}, '
                                   f'CPU {cpu}) not done after {timeout} s')
            # a blocked main loop also blocks this read: bound it
            ack = int(qt.cmd(f'readl 0x{mb + Mailbox.ACK:x}', timeout=max(left, 1)), 0)
            if ack == op['seq']:
                break
            time.sleep(0.002)
        t_seen = time.monotonic()
        raw = qt.read(mb, Mailbox.SIZE)
        tsc0, tsc1, last = struct.unpack_from('<QQQ', raw, Mailbox.TSC0)
        outs, sbase = struct.unpack_from('<II', raw, Mailbox.OUTS)
        res = dict(op, t_seen=t_seen, tsc0=tsc0, tsc1=tsc1, last=last, outs=outs,
                   timeouts=struct.unpack_from('<I', raw, Mailbox.TIMEOUTS)[0])
        if samples and op['count']:
            data = qt.read(sbase, 4 * op['count'])
            res['samples'] = list(struct.unpack(f'<{op["count"]}I', data))
        return res

    def guest_run(self, *args, timeout=None, **kw):
        return self.guest_wait(self.guest_post(*args, **kw), timeout=timeout)

    def _tsc_point(self, cpu=0):
        op = self.guest_post(0x80, count=0, cpu=cpu)    # no write: timestamps only
        res = self.guest_wait(op, timeout=10, samples=False)
        return (res['tsc0'], op['t_post'], res['t_seen'])

    def calibrate_tsc(self, min_span=1.0, cpu=0):
        """Guest TSC frequency from two timestamps of vCPU CPU MIN_SPAN
        seconds apart or more (the first one taken at start()).  Error:
        ~1 ms / span.  QEMU gives all vCPUs one TSC (TCG: the virtual
        clock, an INIT zeroes the offset; KVM: synchronized at creation),
        so CPU 0's calibration serves the others; CPU=K maps K's own."""
        points = self.tsc_points if cpu == 0 else self._ap_tsc_points[cpu]
        first = points[0]
        wait = first[1] + min_span - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        p = self._tsc_point(cpu)
        points.append(p)
        # The guest reads its TSC between t_post and t_seen; take t_post
        # (+ a half tick of the 1 kHz PIT the idle BSP wakes up with; an
        # AP polls, it starts at once).
        self.tsc_hz = (p[0] - first[0]) / (p[1] - first[1])
        ref = (p[0], p[1] + (0.0005 if cpu == 0 else 0))
        if cpu == 0:
            self._tsc_ref = ref
        else:
            self._ap_tsc_refs[cpu] = ref
        self.log(f'guest TSC {self.tsc_hz / 1e6:.1f} MHz (CPU {cpu})')
        return self.tsc_hz

    def ticks_to_ms(self, ticks):
        return ticks * 1e3 / self.tsc_hz

    def tsc_to_mono(self, tsc, cpu=0):
        """Guest TSC value of vCPU CPU -> host time.monotonic() (after
        calibrate_tsc(); CPU 0's mapping unless CPU's own was made)."""
        ref_tsc, ref_t = self._ap_tsc_refs[cpu] if cpu in self._ap_tsc_refs \
            else self._tsc_ref
        return ref_t + (tsc - ref_tsc) / self.tsc_hz

    def op_window(self, res, cpu=None):
        """(start, end) of a finished request in host monotonic seconds
        (CPU: the vCPU that ran it, default the one recorded in RES)."""
        cpu = res.get('cpu', 0) if cpu is None else cpu
        return self.tsc_to_mono(res['tsc0'], cpu), self.tsc_to_mono(res['tsc1'], cpu)

    # -- measurements -----------------------------------------------------------

    def port_write_latency(self, n=200, rounds=5, gap_us=200):
        """vCPU-side latency of QXL_IO_UPDATE_AREA_ASYNC (a 64x64 area; each
        waits for its IO_CMD, then GAP_US, before the next) against the no-op
        QXL_IO_UPDATE_IRQ, and, as a reference for "one message to the
        spice worker", QXL_IO_NOTIFY_CMD on an empty ring (spice_qxl_wakeup:
        one dispatcher message, no reply).  ROUNDS rounds of N writes of
        each kind, GAP_US apart: the gap lets the main loop finish with the
        previous completion, so a write is not timed waiting for the BQL.
        Needs calibrate_tsc() and an empty command ring."""
        self.set_update_area(0, 0, 64, 64)
        gap = int(gap_us * 1e-6 * self.tsc_hz)
        samples = {'noop': [], 'wakeup': [], 'async': []}
        timeouts = 0
        for _ in range(rounds):
            r = self.guest_run(self.io_base + QXL_IO_UPDATE_IRQ, count=n, gap=gap,
                               timeout=60)
            samples['noop'] += r['samples']
            r = self.guest_run(self.io_base + QXL_IO_NOTIFY_CMD, count=n, gap=gap,
                               timeout=60)
            samples['wakeup'] += r['samples']
            r = self.guest_run(self.io_base + QXL_IO_UPDATE_AREA_ASYNC, count=n,
                               intaddr=self.int_pending, intmask=QXL_INTERRUPT_IO_CMD,
                               gap=gap, timeout=120)
            samples['async'] += r['samples']
            timeouts += r['timeouts']
        if timeouts:
            raise HarnessError(f'{timeouts} UPDATE_AREA_ASYNC without IO_CMD')
        if self.qt.readl(self.int_pending) & QXL_INTERRUPT_ERROR:
            raise HarnessError(f'QXL_INTERRUPT_ERROR (guest bug) during the '
                               f'port-write measurement; log {self.qemu_log}')

        def stats(ticks):
            us = sorted(t * 1e6 / self.tsc_hz for t in ticks)
            return {'n': len(us), 'median_us': percentile(us, 50),
                    'p90_us': percentile(us, 90), 'min_us': us[0],
                    'mean_us': sum(us) / len(us), 'max_us': us[-1]}
        res = {k: stats(v) for k, v in samples.items()}
        res['gap_us'] = gap_us
        res['ratio_median'] = res['async']['median_us'] / res['noop']['median_us']
        res['ratio_median_wakeup'] = \
            res['async']['median_us'] / res['wakeup']['median_us']
        return res

    def start_probe(self, seconds, interval=0.010):
        p = QmpProbe(self.probe_path, seconds, interval)
        p.start()
        p.wait_ready()
        return p

    def qmp_idle(self, seconds, interval=0.010):
        p = self.start_probe(seconds, interval)
        p.join(seconds + 60)
        p.stop()
        return p.result()

    def stall(self, seconds=40.0, lead=2.0, interval=0.010, ack_timeout=120.0,
              thaw_after=None):
        """The scenario, after freeze_client() and fill_ring(): probe QMP for
        SECONDS; LEAD seconds in, ask the vCPU for one synchronous
        QXL_IO_UPDATE_AREA over the whole primary.  With THAW_AFTER, the
        client gets SIGCONT that many seconds after the write was posted, so
        the write can end before spice-server's 30 s timeout (short tests).
        Returns the probe result, the write's duration (guest rdtsc) and
        how many query-status were answered while it was pending."""
        self.set_update_area()
        probe = self.start_probe(seconds, interval)
        time.sleep(lead)
        op = self.guest_post(self.io_base + QXL_IO_UPDATE_AREA)
        if thaw_after is not None:
            time.sleep(thaw_after)
            self.thaw_client()
        probe.join(seconds + ack_timeout)
        if probe.is_alive():
            probe.stop()
            raise HarnessError('QMP probe did not finish')
        res = self.guest_wait(op, timeout=ack_timeout)
        self.calibrate_tsc()      # a long span now: a precise time mapping
        self.last_probe = probe
        start, end = self.op_window(res)
        out = {'qmp': probe.result(),
               'sync_write_ms': self.ticks_to_ms(res['last']),
               'write_window_s': [start - probe.started_at, end - probe.started_at]}
        out.update(self.answered_during(probe, start, end))
        return out

    @staticmethod
    def answered_during(probe, start, end, margin=0.05):
        """How many query-status were sent after START + MARGIN and answered
        before END - MARGIN (host monotonic seconds): > 0 means QMP was
        served while the vCPU was inside the port write."""
        lo, hi = start + margin, end - margin
        return {'qmp_answered_during_write': sum(
                    1 for ts, tr in probe.samples if lo < ts and tr < hi),
                'qmp_longest_during_write_ms': max(
                    [(min(tr, hi) - max(ts, lo)) * 1e3 for ts, tr in probe.samples
                     if ts < hi and tr > lo] or [0])}


def main(argv):
    """stall.py QEMU [--seconds N] [--thaw-after S]: one stall scenario,
    JSON on stdout."""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument('qemu')
    ap.add_argument('--seconds', type=float, default=40)
    ap.add_argument('--thaw-after', type=float,
                    help='SIGCONT the client this long after the write')
    ap.add_argument('--workdir')
    a = ap.parse_args(argv)
    install_signal_handlers()
    with StallHarness(a.qemu, workdir=a.workdir) as h:
        h.start()
        h.setup_device()
        h.prepare_draws()
        h.start_client()
        h.calibrate_tsc()
        h.freeze_client()
        res = {'fill': h.fill_ring()}
        res.update(h.stall(a.seconds, thaw_after=a.thaw_after))
    print(json.dumps(res, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
