#!/usr/bin/python3
"""A frozen SPICE client holds nothing up (the spice-server series).

    tests/spice/lagging_tests.py QEMU [CASE ...]      (see tests/spice/run.sh)

QEMU with qxl-vga and the boot-sector guest of bench/stall.py, two SPICE
clients (spice-client-glib, bench/spice_client.py; QEMU runs with
SPICE_DEBUG_ALLOW_MC=1): client A is frozen with SIGSTOP, client B stays
healthy.  The guest's command ring is kept full of draws (256x256 random
bitmaps) from the moment A is frozen.

With Debian's libspice-server the worker stops taking commands once A's
pipe holds 50 items, and every flush the guest asks for waits for A (up to
30 s, then every client of the channel is disconnected).  With the spice
series (spice/patches/) A *lags*: its unsent drawing is dropped and the
area remembered, and when A reads again it gets that area as an image.

  1 frozen   while A is frozen (its process stopped, checked each time):
             the worker takes 4 rings' worth of draws after spice-server
             said A lags (G_MESSAGES_DEBUG=Spice lines in the QEMU log); the
             vCPU's synchronous QXL_IO_UPDATE_AREA returns and an
             UPDATE_AREA_ASYNC written through qtest raises
             QXL_INTERRUPT_IO_CMD; B is never disconnected and keeps getting
             updates; no flush timeout.  Then A is thawed: spice-server says
             it caught up, and A's picture, like B's, equals the guest's
             framebuffer pixel for pixel (read through qtest), after more
             drawing ended by an opaque fill of a known colour.
  2 primary  while A is frozen and lags: synchronous UPDATE_AREA,
             DESTROY_PRIMARY, CREATE_PRIMARY at half the size, again at full
             size (then cleared by a fill), MEMSLOT_ADD, each returns; B is
             updated, never disconnected; after the thaw A catches up.  (No
             picture check here: spice-gtk keeps a primary surface's pixels
             across the server's destruction and creation of one as large.)
  3 stop     while A is frozen and lags, with draws queued: HMP savevm (the
             VM stops, spice-server's stop, and runs again) is answered, the
             snapshot exists; the worker then takes draws and a synchronous
             UPDATE_AREA returns; `quit` makes QEMU exit.  With Debian's
             library spice-server's stop waits for A up to twice 30 s.
  4 surfaces while A is frozen and lags (spice-server's lag line for A's own
             display channel client, the first to connect), the ports that
             cases 1 and 2 leave out, each written by the vCPU and each
             handed to spice-server (the device's trace line): off-screen
             surface 1 created (a QXL_CMD_SURFACE, a fill drawn on it) and
             FLUSH_SURFACES_ASYNC; its destruction (QXL_SURFACE_CMD_DESTROY)
             waited for with the synchronous DESTROY_SURFACE_WAIT, then again
             with DESTROY_SURFACE_ASYNC; synchronous DESTROY_ALL_SURFACES
             (the primary too), CREATE_PRIMARY_ASYNC; DESTROY_ALL_SURFACES_-
             ASYNC; CREATE_PRIMARY_ASYNC at half the size,
             DESTROY_PRIMARY_ASYNC, CREATE_PRIMARY_ASYNC at full size;
             MEMSLOT_ADD_ASYNC.  A synchronous port's write returns; an
             _ASYNC one raises QXL_INTERRUPT_IO_CMD (the guest polls
             int_pending for it).  (There is no synchronous FLUSH_SURFACES
             port; UPDATE_AREA_ASYNC is case 1's.)  No guest bug, no flush
             timeout; B is updated, never disconnected.  After the thaw A's
             and B's pictures equal the guest framebuffer (the last primary
             is of a new size, cleared by a fill: see case 2).
  5 rss      A and B read while the guest draws for RSS_FREEZE_AT (20) s
             after A's main channel opened; then A is frozen and the guest
             draws for LAG_RSS_SECONDS (60) s more, QEMU's VmRSS sampled
             every 0.5 s.  Precondition: A stopped at every sample, lagging
             from at most STALL_TEST_BOUND s after the freeze to the end
             without catching up, never dropped by spice-server, B updated
             in each quarter of the window.  The worker must take draws in
             every 5 s of the window (ring consumption).  The bound: the
             RSS at the freeze (a level reached with both clients reading
             the same drawing) + 20 MiB: a client's queue may hold
             MAX_PIPE_BYTES (8 MiB) of image data before it lags, counted
             as if spice-server held copies, for A and for B (healthy, but
             flooded with 256 KiB images it lags now and then), plus 4 MiB
             for the rest (50 items a client, the catch-up image of a
             640x480 primary, 1.2 MiB, for each, allocator rounding).
             A lagging client holds only its region, so nothing else may
             grow: some 200,000 draws in the window, so keeping 100 bytes a
             draw exceeds the bound.  Timing: spice-server drops a client
             that does not answer a ping (its main channel: pings 15 s
             apart, a connectivity check every 30 s, two checks without an
             answer).  Frozen 20 s after its main channel opened, A has
             answered the ping of 15 s and misses the one sent just after
             the check of 30 s: it is dropped 90 s after the channel opened,
             70 s after the freeze (measured: 70.0 s), after the window.
             (Frozen at once, it would be dropped 60 s after the freeze.)
  6 slow     client S connects through a proxy in this script that lets
             SLOW_RATE (256 KiB/s) through from the server to it (every
             channel, together; its receive buffer small, so what the link
             cannot carry stays in spice-server), B directly; the guest
             draws for 5 s, then an opaque fill of a known colour,
             rendered by a synchronous UPDATE_AREA.  The proxy must have
             held data back and spice-server must have said S lags; then
             S's picture, like B's, equals the framebuffer (bounded wait).

Every wait is bounded (STALL_TEST_BOUND, default 20 s, under spice-server's
30 s timeout, for what must happen while A is frozen; STALL_TEST_TIMEOUT,
default 120 s, otherwise); nothing is timed but case 5's windows.
"Frozen" is proven, not assumed: A's process state is 'T' (stopped) when
each check is made.

Output: TAP lines, "#" diagnostics, last line "N passed, N failed"; exit
status 1 on a failure.  Logs: STALL_TEST_DIR (default
build/spice-tests/<binary's directory name>).
"""

import ctypes
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import json
import time

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, 'tests', 'stall'))
sys.path.insert(0, os.path.join(TOP, 'bench'))
import stall  # noqa: E402
from stall import HarnessError, ram_off  # noqa: E402
import stall_tests as st  # noqa: E402
from stall_tests import Tap, diag, BOUND, TIMEOUT, FILL_RECT, FILL_COLOR  # noqa: E402

LAG_RE = re.compile(r'display client (\S+) lags')
CATCH_UP_RE = re.compile(r'display client (\S+) caught up')
# a display channel client (dcc) is created, in the order clients connect
DCC_NEW_RE = re.compile(r'dcc_new: New display \(client \S+\) dcc (\S+)')
# spice-server's connectivity rule drops a client that answers no ping
UNRESPONSIVE_RE = re.compile(r'unresponsive for more than')
WIDTH, HEIGHT = 640, 480

# spice-protocol's qxl_dev.h, beyond what bench/stall.py has
QXL_IO_DESTROY_SURFACE_WAIT = 14
QXL_IO_DESTROY_ALL_SURFACES = 15
QXL_IO_DESTROY_SURFACE_ASYNC = 20
QXL_IO_DESTROY_ALL_SURFACES_ASYNC = 21
QXL_IO_FLUSH_SURFACES_ASYNC = 22
QXL_CMD_SURFACE = 5
QXL_SURFACE_CMD_CREATE = 0
QXL_SURFACE_CMD_DESTROY = 1


class QXLSurfaceCmd(stall._P):
    # QXLReleaseInfo is a union of two u64: 8 bytes
    _fields_ = [('release_info', ctypes.c_uint64), ('surface_id', ctypes.c_uint32),
                ('type', ctypes.c_uint8), ('flags', ctypes.c_uint32),
                ('format', ctypes.c_uint32), ('width', ctypes.c_uint32),
                ('height', ctypes.c_uint32), ('stride', ctypes.c_int32),
                ('data', ctypes.c_uint64)]


assert ctypes.sizeof(QXLSurfaceCmd) == 41


def vm_rss_kib(pid):
    """VmRSS of process PID, KiB."""
    with open(f'/proc/{pid}/status') as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise HarnessError(f'no VmRSS for {pid}')


class LogWatch:
    """Reads the QEMU log as it grows: spice-server's lag and catch-up
    lines per display client (dcc pointer), in order, each with the time
    it was first seen (poll() time, monotonic), and connectivity drops."""

    def __init__(self, path):
        self.path = path
        self.pos = 0
        self.rest = ''
        self.dccs = []          # in the order clients connected
        self.events = {}        # dcc -> [(t_seen, 'lags' | 'caught up')]
        self.unresponsive = []  # t_seen of each connectivity drop
        self.timeouts = []      # t_seen of each spice flush timeout

    def poll(self):
        with open(self.path, errors='replace') as f:
            f.seek(self.pos)
            data = f.read()
            self.pos = f.tell()
        now = time.monotonic()
        lines = (self.rest + data).split('\n')
        self.rest = lines.pop()
        for line in lines:
            m = DCC_NEW_RE.search(line)
            if m:
                self.dccs.append(m.group(1))
            for regex, what in ((LAG_RE, 'lags'), (CATCH_UP_RE, 'caught up')):
                m = regex.search(line)
                if m:
                    self.events.setdefault(m.group(1), []).append((now, what))
            if UNRESPONSIVE_RE.search(line):
                self.unresponsive.append(now)
            if st.SPICE_TIMEOUT_RE.search(line):
                self.timeouts.append(now)
        return self

    def lagging_since(self, dcc):
        """When DCC started lagging, if it lags now (its last line says
        so), else None."""
        ev = self.events.get(dcc, [])
        return ev[-1][0] if ev and ev[-1][1] == 'lags' else None

    def count(self, dcc, what):
        return sum(1 for _, w in self.events.get(dcc, []) if w == what)


class ThrottleProxy:
    """A TCP proxy on 127.0.0.1 for a SPICE client's connections (every
    channel is a connection of its own): client to server as it comes,
    server to client at RATE bytes/s for all connections together.  The
    proxy reads the server's socket a CHUNK at a time and only as fast as
    it may send (its receive buffer made small), so what the link cannot
    carry stays in spice-server's socket and pipe, as behind a slow link.
    Counts what it forwarded and how long it held data back."""

    CHUNK = 4096
    RCVBUF = 32 * 1024

    def __init__(self, target_port, rate):
        self.target = ('127.0.0.1', target_port)
        self.rate = float(rate)
        self.lock = threading.Lock()
        self.t_next = 0.0           # when the link is free again
        self.bytes_s2c = 0
        self.bytes_c2s = 0
        self.held = 0.0             # seconds spent waiting for the link
        self.t_first = self.t_last = None
        self.channels = {}          # connection number -> [channel type, bytes s2c]
        self.socks = []
        self.closed = False
        self.listener = socket.socket()
        self.listener.bind(('127.0.0.1', 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True, name='proxy').start()

    def _accept(self):
        n = 0
        while True:
            try:
                c, _ = self.listener.accept()
            except OSError:
                return
            u = socket.socket()
            u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.RCVBUF)
            try:
                u.connect(self.target)
            except OSError:
                c.close()
                u.close()
                continue
            n += 1
            with self.lock:
                self.socks += [c, u]
                self.channels[n] = [None, 0]
            threading.Thread(target=self._c2s, args=(c, u, n), daemon=True).start()
            threading.Thread(target=self._s2c, args=(u, c, n), daemon=True).start()

    def _c2s(self, c, u, n):
        first = True
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                if first and len(data) >= 21 and data[:4] == b'REDQ':
                    # SpiceLinkHeader (16 bytes), then SpiceLinkMess:
                    # connection_id (u32), channel_type (u8)
                    self.channels[n][0] = data[20]
                first = False
                with self.lock:
                    self.bytes_c2s += len(data)
                u.sendall(data)
        except OSError:
            pass
        self._shut(u)

    def _s2c(self, u, c, n):
        try:
            while True:
                data = u.recv(self.CHUNK)
                if not data:
                    break
                with self.lock:
                    now = time.monotonic()
                    start = max(now, self.t_next)
                    self.t_next = start + len(data) / self.rate
                    self.held += start - now
                if start > now:
                    time.sleep(start - now)
                c.sendall(data)
                with self.lock:
                    self.bytes_s2c += len(data)
                    self.channels[n][1] += len(data)
                    self.t_last = time.monotonic()
                    if self.t_first is None:
                        self.t_first = start
        except OSError:
            pass
        self._shut(c)

    @staticmethod
    def _shut(sock):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def stats(self):
        with self.lock:
            return {'s2c': self.bytes_s2c, 'c2s': self.bytes_c2s,
                    'held_s': self.held, 'first': self.t_first, 'last': self.t_last,
                    'channels': {k: list(v) for k, v in self.channels.items()}}

    def close(self):
        self.listener.close()
        with self.lock:
            socks, self.socks = self.socks, []
        for sk in socks:
            self._shut(sk)
            sk.close()


class Client:
    """bench/spice_client.py as a process: its events, SIGSTOP/SIGCONT,
    and its decoded primary surface (--dump, on SIGUSR1)."""

    def __init__(self, h, name, port=None):
        self.name = name
        self.dump_path = os.path.join(h.workdir, f'{name}.raw')
        self.events = []
        self.cv = threading.Condition()
        self.logf = open(os.path.join(h.workdir, f'{name}-client.log'), 'w')
        self.proc = subprocess.Popen(
            stall._pdeathsig_prefix() +
            [stall.PYTHON, os.path.join(TOP, 'bench', 'spice_client.py'),
             '127.0.0.1', str(port or h.spice_port), '--timeout', '3600',
             '--dump', self.dump_path],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.logf,
            text=True)
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                ev = {'event': 'garbage', 'line': line.rstrip()}
            ev['t'] = time.monotonic()
            with self.cv:
                self.events.append(ev)
                self.cv.notify_all()
        with self.cv:
            self.events.append({'event': 'exited'})
            self.cv.notify_all()

    def count(self, event, **kw):
        with self.cv:
            return sum(1 for e in self.events if e.get('event') == event and
                       all(e.get(k) == v for k, v in kw.items()))

    def wait(self, event, timeout, after=0, **kw):
        """The first EVENT (with fields KW) after the AFTER first events."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for e in self.events[after:]:
                    if e.get('event') == event and \
                       all(e.get(k) == v for k, v in kw.items()):
                        return e
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HarnessError(f'client {self.name}: no {event} {kw}; '
                                       f'last events {self.events[-4:]}')
                self.cv.wait(min(left, 0.5))

    def wait_count(self, event, n, timeout, **kw):
        """Wait (bounded) until N EVENTs (with fields KW) came."""
        deadline = time.monotonic() + timeout
        while self.count(event, **kw) < n:
            if time.monotonic() > deadline:
                return False
            with self.cv:
                self.cv.wait(0.1)
        return True

    def disconnected(self):
        return self.count('disconnected') + self.count('exited') > 0

    def stopped(self):
        """The process is stopped (state T), read from /proc."""
        with open(f'/proc/{self.proc.pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] == 'T'

    def freeze(self):
        self.proc.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + TIMEOUT
        while not self.stopped():
            if time.monotonic() > deadline:
                raise HarnessError(f'client {self.name} does not stop')
            time.sleep(0.01)

    def thaw(self):
        self.proc.send_signal(signal.SIGCONT)

    def picture(self, timeout=TIMEOUT):
        """Its primary surface: (width, height, rows of u32)."""
        with self.cv:
            n = len(self.events)
        self.proc.send_signal(signal.SIGUSR1)
        ev = self.wait('dump', timeout, after=n)
        if not ev.get('path'):
            return None
        with open(ev['path'], 'rb') as f:
            data = f.read()
        w, hgt, stride = ev['width'], ev['height'], ev['stride']
        return w, hgt, [memoryview(data)[y * stride:y * stride + w * 4].cast('I')
                        for y in range(hgt)]

    def close(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()
        self.logf.close()


def set_primary(h, width, height):
    """QXLRam's primary surface creation request: WIDTHxHEIGHT at BAR0."""
    sc = stall.QXLSurfaceCreate(width=width, height=height, stride=width * 4,
                                format=stall.SPICE_SURFACE_FMT_32_xRGB, position=0,
                                mouse_mode=1, flags=0, type=stall.QXL_SURF_TYPE_PRIMARY,
                                mem=h.phys(h.bar0))
    h.qt.write(h.ram + ram_off('create_surface'), bytes(sc))


def framebuffer(h):
    """The guest's primary surface (xRGB rows), read through qtest."""
    data = h.qt.read(h.bar0, h.width * h.height * 4)
    return [memoryview(data)[y * h.width * 4:(y + 1) * h.width * 4].cast('I')
            for y in range(h.height)]


def same_picture(pic, fb):
    """(equal, how many pixels differ, the first that does)"""
    if pic is None:
        return False, None, 'no primary surface'
    w, hgt, rows = pic
    if (w, hgt) != (len(fb[0]), len(fb)):
        return False, None, f'{w}x{hgt}, want {len(fb[0])}x{len(fb)}'
    bad, first = 0, None
    for y in range(hgt):
        a, b = rows[y], fb[y]
        if a.tobytes() == b.tobytes():
            continue
        for x in range(w):
            if (a[x] ^ b[x]) & 0xffffff:
                bad += 1
                if first is None:
                    first = f'({x},{y}): {a[x]:#010x}, guest {b[x]:#010x}'
    return bad == 0, bad, first


def converge(client, h, timeout):
    """Wait (bounded) until CLIENT's picture is the framebuffer."""
    deadline = time.monotonic() + timeout
    fb = framebuffer(h)
    while True:
        ok, bad, first = same_picture(client.picture(), fb)
        if ok or time.monotonic() > deadline:
            return ok, f'{bad} pixel(s) differ, first {first}' if not ok else \
                'equal'
        time.sleep(0.25)


class LagScenario(st.Scenario):
    def __init__(self, qemu, workdir, name):
        super().__init__(qemu, workdir, name)
        self.clients = []

    def start(self, clients=('A', 'B'), trace=st.TRACE):
        """QEMU, the device, draws prepared; then CLIENTS ((name, port)
        or a name: the spice port), one after the other, each up to its
        primary surface."""
        self.h = h = stall.StallHarness(
            self.qemu, workdir=self.workdir, name=self.name, extra_args=list(trace),
            log=self.log, timeout=TIMEOUT, memory_mb=st.MEMORY_MB)
        h.start()
        h.setup_device(WIDTH, HEIGHT)
        h.prepare_draws(n_bitmaps=8, max_draws=4096)
        for name in clients:
            name, port = (name, None) if isinstance(name, str) else name
            c = Client(h, name, port)
            self.clients.append(c)
            c.wait('primary-create', TIMEOUT, width=WIDTH)
        return h

    def lagging(self):
        """The display clients (spice-server's pointers) that lag now."""
        text = self.read_log(self.h)
        lags, ups = LAG_RE.findall(text), CATCH_UP_RE.findall(text)
        return {p for p in set(lags) if lags.count(p) > ups.count(p)}

    def lag_then_thaw(self, a):
        """Draw until a client lags (A, frozen, will), then thaw A; True if
        every client that lagged caught up then (bounded)."""
        deadline = time.monotonic() + BOUND
        while not self.lagging() and time.monotonic() < deadline:
            self.push_until_taken(stall.RING_SIZE, a)
        behind = self.lagging()
        self.log(f'lagging at the thaw: {behind}')
        a.thaw()
        deadline = time.monotonic() + TIMEOUT
        while self.lagging():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return bool(behind)

    def lags(self):
        return len(LAG_RE.findall(self.read_log(self.h)))

    def dccs(self):
        """spice-server's display channel clients, in the order the
        clients connected (start() connects them one after the other)."""
        return DCC_NEW_RE.findall(self.read_log(self.h))

    def lag_for_sure(self, a, dcc):
        """Draw (bounded) until DCC, frozen client A's, lags: a client
        frozen before its socket filled may catch up once or twice.
        Returns whether it lags."""
        deadline = time.monotonic() + BOUND
        while dcc not in self.lagging() and time.monotonic() < deadline:
            self.push_until_taken(stall.RING_SIZE, a)
        return dcc in self.lagging() and a.stopped()

    def push_until_taken(self, n, a):
        """Push N draws, ring by ring; True if the worker took them all
        within BOUND while A stayed frozen."""
        h = self.h
        deadline = time.monotonic() + BOUND
        target = h.draws_pushed + n
        while True:
            h.push_draws(min(stall.RING_SIZE, target - h.draws_pushed))
            prod, cons = h.ring_state()
            if h.draws_pushed >= target and prod == cons:
                return a.stopped()
            if time.monotonic() > deadline:
                self.log(f'ring stuck: prod {prod} cons {cons}')
                return False
            time.sleep(0.005)

    def start_lagging(self, trace=st.TRACE):
        """start(), freeze A, draw until spice-server says a client lags
        (bounded).  Returns (harness, A, B, B's invalidate events so far,
        whether a client lags)."""
        h = self.start(trace=trace)
        a, b = self.clients
        a.freeze()
        seen_b = b.count('invalidate')
        deadline = time.monotonic() + BOUND
        while not self.lags() and time.monotonic() < deadline:
            self.push_until_taken(stall.RING_SIZE, a)
        self.log('lag lines: ' + '; '.join(LAG_RE.findall(self.read_log(h))))
        return h, a, b, seen_b, self.lags() > 0

    def draw_for(self, seconds, tick=None, every=1.0):
        """Keep the command ring topped up with draws for SECONDS (the
        drawable blocks are used again once every draw has been taken);
        TICK(now, taken) every EVERY seconds.  Returns the draws the worker
        took meanwhile (ring consumption)."""
        h = self.h
        t0 = time.monotonic()
        cons0 = cons = h.ring_state()[1]
        next_tick = t0 + every
        while True:
            now = time.monotonic()
            if tick and now >= next_tick:
                tick(now, (cons - cons0) % 2**32)
                next_tick += every
            if now >= t0 + seconds:
                break
            prod, cons = h.ring_state()
            if prod == cons and h.draws_pushed + stall.RING_SIZE > h.max_draws:
                h.draws_pushed = 0
            if (prod - cons) % 2**32 < stall.RING_SIZE:
                h.push_draws(stall.RING_SIZE)
            else:
                h._check_alive('while drawing')
                time.sleep(0.002)
        return (h.ring_state()[1] - cons0) % 2**32

    def last_fill(self, a):
        """The last drawing: a ring of draws, then an opaque fill of a known
        colour, every one taken (bounded), rendered by the vCPU's
        synchronous UPDATE_AREA over the primary.  A: the client whose
        process state push_until_taken() reports.  Returns (the write
        returned, the fill is in the framebuffer)."""
        h = self.h
        self.push_until_taken(stall.RING_SIZE, a)
        h.push_fill(*FILL_RECT, FILL_COLOR)
        self.push_until_taken(0, a)
        h.set_update_area()
        r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=BOUND)
        return r['outs'] == 1, st.rect_is_fill(h.read_surface_rect(*FILL_RECT))

    def picture_after_thaw(self, a, b):
        """The last fill rendered while A (frozen) lags, then A thawed:
        (whether it caught up and A's and B's pictures equal the
        framebuffer, and the details)."""
        returned, filled = self.last_fill(a)
        frozen = a.stopped()
        # (a client that caught up while frozen, its socket not full yet,
        # gets drawing again: draw until it lags for sure, the fill left in
        # place)
        caught_up = self.lag_then_thaw(a)
        ok_a, why_a = converge(a, self.h, TIMEOUT)
        ok_b, why_b = converge(b, self.h, TIMEOUT)
        prim = {}
        for cl in (a, b):
            prim[cl.name] = [(e['event'][8:], e.get('width')) for e in cl.events
                             if e['event'] in ('primary-create', 'primary-destroy')]
            self.log(f'client {cl.name} primary events: ' + str(
                [(e['event'], e.get('width'), round(e['t'], 3)) for e in cl.events
                 if 'primary' in e['event']]))
        ok = returned and filled and frozen and caught_up and ok_a and ok_b \
            and not a.disconnected() and not b.disconnected()
        return ok, (f'final UPDATE_AREA returned while A was stopped: {frozen}, fill '
                    f'in the framebuffer: {filled}; after the thaw spice-server said A '
                    f'caught up: {caught_up}; A\'s picture vs the framebuffer: {why_a}; '
                    f'B\'s: {why_b}' + ('' if ok_a and ok_b else
                                         f'; primary surface events: {prim}'))

    def push_cmd(self, data, cmd_type):
        """Put a command (DATA, written to a block of its own past the
        drawables) on the ring, which must have room, and notify.  Returns
        the block's guest address."""
        h = self.h
        base = (h.draw_base + h.max_draws * h.DRAWABLE_BLOCK + 0xfff) & ~0xfff
        self.n_cmds = getattr(self, 'n_cmds', 0) + 1
        blk = base + 256 * self.n_cmds
        data = data if isinstance(data, bytes) else data(blk)
        assert self.n_cmds < 128 and len(data) <= 256
        h.qt.write(blk, data)
        prod, cons = h.ring_state()
        if (prod - cons) % 2**32 >= stall.RING_SIZE:
            raise HarnessError('no room in the ring for a command')
        h.qt.write(h.ram + stall.RING_ITEMS + (prod % stall.RING_SIZE) * 16,
                   bytes(stall.QXLCommand(data=h.phys(blk), type=cmd_type)))
        h.qt.writel(h.ram + stall.RING_PROD, (prod + 1) % 2**32)
        h.qt.outb(h.io_base + stall.QXL_IO_NOTIFY_CMD, 0)
        return blk

    def close(self):
        for c in self.clients:
            c.close()
        if getattr(self, 'proxy', None):
            self.proxy.close()
        super().close()


def case_frozen(c, s):
    # the worker keeps taking commands: first until A lags, then 4 rings more
    h, a, b, seen_b, lagged = s.start_lagging()
    h.calibrate_tsc()
    taken = lagged and s.push_until_taken(4 * stall.RING_SIZE, a)
    c.check('taken', lagged and taken and a.stopped(),
            f'spice-server said A lags: {lagged} ({s.lags()} time(s)); then 4 rings '
            f'of draws taken while A is stopped: {taken}; draws pushed '
            f'{h.draws_pushed}, ring {h.ring_state()}')

    # the guest's flushes
    h.set_update_area()
    res = {}
    r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=BOUND)
    res['UPDATE_AREA'] = r['outs'] == 1 and a.stopped()
    # a figure, not a check (guest TSC; make bench has the comparisons)
    diag(f'the vCPU\'s sync UPDATE_AREA behind frozen client A took '
         f'{h.ticks_to_ms(r["last"]):.2f} ms of guest time')
    s.push_until_taken(stall.RING_SIZE, a)
    # B is drawn to meanwhile (an event every 16 updates)
    res['B updated'] = b.wait_count('invalidate', seen_b + 2, BOUND) and a.stopped()
    h.qt.writel(h.int_pending, 0)
    h.io_async(stall.QXL_IO_UPDATE_AREA_ASYNC, 0, timeout=BOUND)
    res['UPDATE_AREA_ASYNC'] = a.stopped()
    bits = h.qt.readl(h.int_pending)
    timeout_line = s.spice_timeout()
    c.check('flushes', all(res.values()) and not bits & stall.QXL_INTERRUPT_ERROR
            and not b.disconnected() and not timeout_line,
            f'returned while A is stopped: {res}; int_pending {bits:#x}; B '
            f'disconnected: {b.disconnected()}; flush timeout: {timeout_line}')

    # more drawing, the last of it a known fill; then A reads again
    c.check('picture', *s.picture_after_thaw(a, b))


def case_primary(c, s):
    h, a, b, seen_b, lagged = s.start_lagging()
    h.set_update_area()
    res = {'A lags': lagged}
    # a primary surface of another size, then back: clients make a new
    # picture each time (spice-gtk keeps one across a destruction and
    # creation of the same size, and with it the pixels the creation
    # cleared on the server)
    steps = (('UPDATE_AREA', 0, None), ('DESTROY_PRIMARY', 0, None),
             ('CREATE_PRIMARY', 0, (WIDTH // 2, HEIGHT // 2)),
             ('DESTROY_PRIMARY', 0, None), ('CREATE_PRIMARY', 0, (WIDTH, HEIGHT)),
             ('MEMSLOT_ADD', h.slot_id + 1, None))
    for i, (port, value, size) in enumerate(steps):
        if port == 'MEMSLOT_ADD':
            slot = stall.QXLMemSlot(h.bar0, h.bar0 + h.rom.ram_header_offset)
            h.qt.write(h.ram + ram_off('mem_slot'), bytes(slot))
        if size:
            set_primary(h, *size)
        r = h.guest_run(h.io_base + getattr(stall, f'QXL_IO_{port}'), value=value,
                        timeout=BOUND)
        res[f'{i} {port}'] = r['outs'] == 1 and a.stopped()
        if size == (WIDTH, HEIGHT):
            # like a driver, clear the new surface before drawing on it
            h.push_fill(0, 0, WIDTH, HEIGHT, 0x000000)
        if port in ('UPDATE_AREA', 'MEMSLOT_ADD') or size == (WIDTH, HEIGHT):
            s.push_until_taken(stall.RING_SIZE, a)
    res['B updated'] = b.wait_count('invalidate', seen_b + 2, BOUND) and a.stopped()
    bits = h.qt.readl(h.int_pending)
    c.check('ports', all(res.values()) and not bits & stall.QXL_INTERRUPT_ERROR
            and not b.disconnected() and not s.spice_timeout(),
            f'returned while A is stopped: {res}; int_pending {bits:#x}; B '
            f'disconnected: {b.disconnected()}; flush timeout: {s.spice_timeout()}')
    caught_up = s.lag_then_thaw(a)
    r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=TIMEOUT)
    c.check('thaw', caught_up and r['outs'] == 1
            and not a.disconnected() and not b.disconnected(),
            f'after the thaw A caught up and stays connected, like B; the guest '
            f'goes on')


def case_stop(c, s):
    h, a, b, _, _ = s.start_lagging()
    # draws queued for B too, and for A's last window before it lagged
    h.push_draws(stall.RING_SIZE)
    q = st.AsyncQmp(h.probe_path, tag='probe-')
    try:
        # savevm stops the VM (spice-server's stop), saves it, runs it again
        out = q.run('human-monitor-command', {'command-line': 'savevm lag1'},
                    timeout=BOUND)
        snaps = q.run('human-monitor-command', {'command-line': 'info snapshots'},
                      timeout=BOUND)
        saved = a.stopped()
        c.check('savevm', s.lags() > 0 and 'lag1' in snaps and not out.strip() and saved
                and not s.spice_timeout(),
                f'A lags: {s.lags() > 0}; savevm answered while A is stopped: {saved} '
                f'(output {out.strip()!r}); snapshot listed: {"lag1" in snaps}; '
                f'spice-server timeout: {s.spice_timeout()}')

        # the VM runs again and the worker takes draws; A still frozen
        taken = s.push_until_taken(stall.RING_SIZE, a)
        r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=BOUND)
        c.check('running', taken and r['outs'] == 1 and a.stopped()
                and not b.disconnected(),
                f'after savevm the worker takes draws: {taken}; a sync UPDATE_AREA '
                f'returned: {r["outs"] == 1}; A stopped: {a.stopped()}; B connected: '
                f'{not b.disconnected()}')

        # quit: QEMU exits while A is frozen
        s.push_until_taken(stall.RING_SIZE, a)
        h.push_draws(stall.RING_SIZE)
        q.send('quit')
        try:
            rc = h.proc.wait(timeout=BOUND)
        except subprocess.TimeoutExpired:
            rc = None
        c.check('quit', rc == 0 and a.stopped(),
                f'QEMU exited with {rc} while A is stopped: {a.stopped()} '
                f'(None: still running after {BOUND} s)')
    finally:
        q.close()


SURF_ID, SURF_W, SURF_H = 1, 128, 128
# what a port asks of spice-server, in the device's trace (upstream's names)
HANDED_RE = {
    QXL_IO_FLUSH_SURFACES_ASYNC: r'qxl_spice_flush_surfaces_async',
    QXL_IO_DESTROY_SURFACE_WAIT: r'qxl_spice_destroy_surface_wait ',
    QXL_IO_DESTROY_SURFACE_ASYNC: r'qxl_spice_destroy_surface_wait ',
    QXL_IO_DESTROY_ALL_SURFACES: r'qxl_spice_destroy_surfaces ',
    QXL_IO_DESTROY_ALL_SURFACES_ASYNC: r'qxl_spice_destroy_surfaces ',
    stall.QXL_IO_CREATE_PRIMARY_ASYNC: r'qxl_create_guest_primary ',
    stall.QXL_IO_DESTROY_PRIMARY_ASYNC: r'qxl_destroy_primary ',
    stall.QXL_IO_MEMSLOT_ADD_ASYNC: r'qxl_memslot_add_guest ',
}
SURFACES_TRACE = st.TRACE + sum((['-trace', t] for t in (
    'qxl_spice_flush_surfaces_async', 'qxl_spice_destroy_surface_wait',
    'qxl_spice_destroy_surfaces', 'qxl_create_guest_primary', 'qxl_destroy_primary',
    'qxl_memslot_add_guest', 'qxl_set_guest_bug')), [])
GUEST_BUG_RE = re.compile(r'qxl_set_guest_bug')


def case_surfaces(c, s):
    h, a, b, seen_b, _ = s.start_lagging(trace=SURFACES_TRACE)
    dcc_a = s.dccs()[0]
    lagged = s.lag_for_sure(a, dcc_a)
    ups_a = len([p for p in CATCH_UP_RE.findall(s.read_log(h)) if p == dcc_a])
    surf_data = ((h.draw_base + h.max_draws * h.DRAWABLE_BLOCK + 0xfff) & ~0xfff) + 0x8000
    if surf_data + SURF_W * SURF_H * 4 > h.free_end:
        raise HarnessError('no room for the off-screen surface in BAR0')
    res_sync, res_async = {'A lags': lagged}, {}
    not_lagging = []     # ops written while A, frozen, had caught up

    def create_surface():
        """Surface SURF_ID created, and a fill drawn on it, through the ring."""
        s.push_until_taken(0, a)
        s.push_cmd(lambda blk: bytes(QXLSurfaceCmd(
            release_info=blk, surface_id=SURF_ID, type=QXL_SURFACE_CMD_CREATE,
            format=stall.SPICE_SURFACE_FMT_32_xRGB, width=SURF_W, height=SURF_H,
            stride=SURF_W * 4, data=h.phys(surf_data))), QXL_CMD_SURFACE)

        def fill(blk):
            d = bytearray(h._fill_bytes(blk, 0, 0, SURF_W, SURF_H, 0x00336699))
            d[8:12] = struct.pack('<I', SURF_ID)       # QXLDrawable.surface_id
            return bytes(d)
        s.push_cmd(fill, stall.QXL_CMD_DRAW)

    def destroy_surface():
        """Surface SURF_ID's destruction queued (the ring), as a driver
        does before it waits for it with DESTROY_SURFACE_WAIT(_ASYNC)."""
        s.push_cmd(lambda blk: bytes(QXLSurfaceCmd(
            release_info=blk, surface_id=SURF_ID, type=QXL_SURFACE_CMD_DESTROY)),
            QXL_CMD_SURFACE)

    def op(name, port, value=0, primary=True):
        """Port PORT from the vCPU while A is frozen, with a ring of draws
        queued before it when there is a primary surface of full size; a
        synchronous port must return, an _ASYNC one raise IO_CMD (the guest
        polls int_pending for it and clears it).  Either way the device
        must have handed it to spice-server (its trace line)."""
        if primary:
            s.push_until_taken(stall.RING_SIZE, a)
            h.push_draws(stall.RING_SIZE)
        handed = re.compile(HANDED_RE[port])
        n = len(handed.findall(s.read_log(h)))
        h.qt.writel(h.int_pending, 0)
        if port < stall.QXL_IO_UPDATE_AREA_ASYNC:
            r = h.guest_run(h.io_base + port, value=value, timeout=BOUND)
            done, res = r['outs'] == 1, res_sync
        else:
            r = h.guest_run(h.io_base + port, value=value, intaddr=h.int_pending,
                            intmask=stall.QXL_INTERRUPT_IO_CMD, waitlim=0xffffffff,
                            timeout=BOUND)
            done, res = r['outs'] == 1 and r['timeouts'] == 0, res_async
        handed_n = len(handed.findall(s.read_log(h))) - n
        name = f'{len(res_sync) + len(res_async)} {name}'
        res[name] = done and handed_n == 1 and a.stopped()
        if dcc_a not in s.lagging():
            not_lagging.append(name)
        s.log(f'{name}: done {done}, handed to spice-server {handed_n}, A stopped '
              f'{a.stopped()}, A lags {dcc_a in s.lagging()}')

    def new_primary(width, height):
        set_primary(h, width, height)
        op(f'CREATE_PRIMARY_ASYNC {width}x{height}', stall.QXL_IO_CREATE_PRIMARY_ASYNC,
           primary=False)
        # like a driver, clear the new surface before drawing on it
        h.push_fill(0, 0, width, height, 0x000000)

    create_surface()
    op('FLUSH_SURFACES_ASYNC', QXL_IO_FLUSH_SURFACES_ASYNC)
    destroy_surface()
    op('DESTROY_SURFACE_WAIT', QXL_IO_DESTROY_SURFACE_WAIT, SURF_ID)
    create_surface()
    destroy_surface()
    op('DESTROY_SURFACE_ASYNC', QXL_IO_DESTROY_SURFACE_ASYNC, SURF_ID)
    create_surface()
    # every surface, the primary too
    op('DESTROY_ALL_SURFACES', QXL_IO_DESTROY_ALL_SURFACES)
    new_primary(WIDTH, HEIGHT)
    create_surface()
    op('DESTROY_ALL_SURFACES_ASYNC', QXL_IO_DESTROY_ALL_SURFACES_ASYNC)
    # then a primary of another size and back (the clients make a new
    # picture each time, see case primary)
    new_primary(WIDTH // 2, HEIGHT // 2)
    op('DESTROY_PRIMARY_ASYNC', stall.QXL_IO_DESTROY_PRIMARY_ASYNC, primary=False)
    new_primary(WIDTH, HEIGHT)
    slot = stall.QXLMemSlot(h.bar0, h.bar0 + h.rom.ram_header_offset)
    h.qt.write(h.ram + ram_off('mem_slot'), bytes(slot))
    op('MEMSLOT_ADD_ASYNC', stall.QXL_IO_MEMSLOT_ADD_ASYNC, h.slot_id + 1)

    s.push_until_taken(stall.RING_SIZE, a)
    res_async['B updated'] = b.wait_count('invalidate', seen_b + 2, BOUND) and a.stopped()
    log = s.read_log(h)
    bugs = len(GUEST_BUG_RE.findall(log))
    ups_a = len([p for p in CATCH_UP_RE.findall(log) if p == dcc_a]) - ups_a
    why = (f'A lags at the end: {dcc_a in s.lagging()} (caught up meanwhile, frozen: '
           f'{ups_a} time(s); ops written while it did not lag: {not_lagging}); '
           f'B disconnected: {b.disconnected()}; flush timeout: '
           f'{s.spice_timeout()}; guest bugs: {bugs}')
    c.check('sync', all(res_sync.values()) and not bugs and not s.spice_timeout(),
            f'returned while A is stopped: {res_sync}; {why}')
    c.check('async', all(res_async.values()) and not bugs and not b.disconnected()
            and not s.spice_timeout(),
            f'IO_CMD while A is stopped: {res_async}; {why}')

    # more drawing, the last of it a known fill; then A reads again.  A
    # client that lags for a moment around DESTROY_ALL_SURFACES (B, now and
    # then) must get the old primary's destruction before the new one's
    # creation, or both clients end without a primary surface (spice-server
    # series before its patch 6: about one run in five).
    c.check('picture', *s.picture_after_thaw(a, b))


# Case rss (see the module docstring for the bound and the timing).
RSS_SECONDS = float(os.environ.get('LAG_RSS_SECONDS', 60))
# A is frozen this long after its main channel opened: then the ping
# spice-server sends it 15 s after the first one has been answered, and
# the next one, unanswered, is sent after the connectivity check of 30 s,
# so the check that drops it comes 90 s after the channel opened, 68 s
# after the freeze.
RSS_FREEZE_AT = 20.0
MAX_PIPE_BYTES = 8 << 20           # spice-server series, dcc.h
RSS_BOUND_KIB = (2 * MAX_PIPE_BYTES + (4 << 20)) >> 10


def case_rss(c, s):
    h = s.start(trace=['-trace', 'runstate_set'])
    a, b = s.clients
    pid = h.proc.pid
    watch = LogWatch(h.qemu_log)
    t_main = a.wait('channel-opened', TIMEOUT, type='main')['t']
    rss_start = vm_rss_kib(pid)
    warm = []
    # both clients read while the guest draws: the RSS QEMU has with them
    taken_warm = s.draw_for(t_main + RSS_FREEZE_AT - time.monotonic(),
                            lambda now, n: warm.append(vm_rss_kib(pid)))
    dcc_a, dcc_b = watch.poll().dccs[:2]
    rss_freeze = vm_rss_kib(pid)
    bound = rss_freeze + RSS_BOUND_KIB
    a.freeze()
    t_freeze = time.monotonic()
    seen_b = b.count('invalidate')
    samples = []     # (seconds since the freeze, RSS, draws taken, A stopped,
    #                   A lags since, B's invalidate events)

    def tick(now, taken):
        watch.poll()
        samples.append((now - t_freeze, vm_rss_kib(pid), taken, a.stopped(),
                        watch.lagging_since(dcc_a), b.count('invalidate')))
        if now - t_freeze > BOUND and not watch.count(dcc_a, 'lags'):
            raise HarnessError(f'spice-server never said frozen client A lags '
                               f'({BOUND} s after the freeze; {taken} draws taken)')
    taken = s.draw_for(RSS_SECONDS, tick, every=0.5)
    watch.poll()
    s.log(f'rss samples: {samples}')

    # the precondition: A frozen throughout, lagging from at most BOUND
    # s after the freeze to the end, never dropped; B connected, updated
    since = watch.lagging_since(dcc_a)
    lag_s = since - t_freeze if since else None
    stopped = all(x[3] for x in samples)
    b_counts = [x[5] for x in samples]
    quarters = [b_counts[int(len(b_counts) * k / 4)] for k in range(4)] + [b_counts[-1]]
    b_updated = all(q1 > q0 for q0, q1 in zip([seen_b] + quarters[1:], quarters[1:]))
    c.check('frozen', stopped and lag_s is not None and lag_s <= BOUND
            and not watch.unresponsive and not watch.timeouts and b_updated
            and not b.disconnected(),
            f'A stopped at all {len(samples)} samples: {stopped}; A lags without '
            f'catching up since {lag_s if lag_s is None else round(lag_s, 1)} s after '
            f'the freeze, its main channel opened {t_freeze - t_main:.1f} s before it (lag/catch-up lines for A: {watch.count(dcc_a, "lags")}/'
            f'{watch.count(dcc_a, "caught up")}, for B: {watch.count(dcc_b, "lags")}/'
            f'{watch.count(dcc_b, "caught up")}); clients dropped as unresponsive: '
            f'{[round(t - t_freeze, 1) for t in watch.unresponsive]} s after the freeze; flush timeouts: {len(watch.timeouts)}; B '
            f'updated in each quarter: {b_updated} (invalidate events '
            f'{[seen_b] + quarters[1:]}), disconnected: {b.disconnected()}')

    # the worker took draws all along: in every 5 s of the window
    ends = [max([0] + [n for t, _, n, *_ in samples if t <= k * 5])
            for k in range(1, int(RSS_SECONDS // 5))] + [taken]
    per_slice = [n1 - n0 for n0, n1 in zip([0] + ends, ends)]
    c.check('drawing', all(n > 0 for n in per_slice),
            f'{taken} draws taken in {RSS_SECONDS:.0f} s behind frozen A '
            f'({taken * 256 // 1024} MiB of 256x256 images), per 5 s: {per_slice}; '
            f'before the freeze, both clients reading: {taken_warm}')

    rss_max, t_max = max((x[1], x[0]) for x in samples)
    c.check('rss', rss_max <= bound,
            f'QEMU VmRSS: {rss_start} KiB with both clients connected, max '
            f'{max(warm or [0])} KiB over {RSS_FREEZE_AT:.0f} s of drawing with both '
            f'reading, {rss_freeze} KiB at the freeze; max {rss_max} KiB '
            f'({(rss_max - rss_freeze) / 1024:+.1f} MiB, {t_max:.1f} s after the '
            f'freeze), last {samples[-1][1]} KiB; bound {bound} KiB (+'
            f'{RSS_BOUND_KIB >> 10} MiB)')


# Case slow: the link's rate (bytes/s, server to client) and how long the
# guest draws before its last fill.
SLOW_RATE = 256 * 1024
SLOW_DRAW_SECONDS = 5.0


def case_slow(c, s):
    # client S through the throttling proxy, B directly; S connects first
    h = s.start(clients=())
    s.proxy = proxy = ThrottleProxy(h.spice_port, SLOW_RATE)
    for name, port in (('S', proxy.port), ('B', None)):
        cl = Client(h, name, port)
        s.clients.append(cl)
        cl.wait('primary-create', TIMEOUT, width=WIDTH)
    slow, b = s.clients
    watch = LogWatch(h.qemu_log).poll()
    dcc_s, dcc_b = watch.dccs[:2]
    before = proxy.stats()
    taken = s.draw_for(SLOW_DRAW_SECONDS)
    returned, filled = s.last_fill(slow)
    t_end = time.monotonic()
    at_end = proxy.stats()
    ok_s, why_s = converge(slow, h, TIMEOUT)
    t_conv = time.monotonic()
    ok_b, why_b = converge(b, h, TIMEOUT)
    after = proxy.stats()
    watch.poll()
    lags_s = watch.count(dcc_s, 'lags')
    display = sum(n for ty, n in after['channels'].values() if ty == 2)
    span = after['last'] - after['first']
    rate = after['s2c'] / span if span > 0 else 0
    s.log(f'proxy: before drawing {before}, at the end of it {at_end}, after {after}')
    c.check('throttled', after['held_s'] > 0 and lags_s > 0 and display > 0
            and not slow.disconnected() and not b.disconnected(),
            f'the proxy forwarded {after["s2c"]} bytes server to client ({display} on the '
            f'display channel) in {span:.1f} s: {rate / 1024:.0f} KiB/s, limit '
            f'{SLOW_RATE >> 10} KiB/s; data waited for the link {after["held_s"]:.1f} s in '
            f'all; {at_end["s2c"] - before["s2c"]} bytes during the {SLOW_DRAW_SECONDS:.0f} s '
            f'of drawing ({taken} draws taken, {taken * 256 // 1024} MiB of images), '
            f'{after["s2c"] - at_end["s2c"]} after it; spice-server said S lags {lags_s} '
            f'time(s) (B: {watch.count(dcc_b, "lags")}); S disconnected: '
            f'{slow.disconnected()}, B: {b.disconnected()}')
    c.check('picture', returned and filled and ok_s and ok_b,
            f'the last fill in the framebuffer: {filled}; S\'s picture vs the framebuffer: '
            f'{why_s} ({t_conv - t_end:.1f} s after the drawing ended); B\'s: {why_b}')


CASES = [
    ('frozen', case_frozen, [
        ('taken', 'the worker keeps taking draws while client A is frozen (A lags)'),
        ('flushes', 'sync UPDATE_AREA and UPDATE_AREA_ASYNC complete while A is frozen; '
                    'B stays connected and is updated'),
        ('picture', 'after the thaw A catches up: A\'s and B\'s pictures equal the '
                    'guest framebuffer')]),
    ('primary', case_primary, [
        ('ports', 'sync UPDATE_AREA, DESTROY_PRIMARY, CREATE_PRIMARY (twice, at two sizes) '
                  'and MEMSLOT_ADD return while client A is frozen (A lags); B is updated'),
        ('thaw', 'after the thaw A catches up; no client is disconnected')]),
    ('stop', case_stop, [
        ('savevm', 'savevm completes while client A is frozen (A lags)'),
        ('running', 'then the VM draws on and a sync UPDATE_AREA returns, A still frozen'),
        ('quit', 'quit: QEMU exits while A is frozen')]),
    ('surfaces', case_surfaces, [
        ('sync', 'sync DESTROY_SURFACE_WAIT and DESTROY_ALL_SURFACES return while client '
                 'A is frozen (A lags)'),
        ('async', 'FLUSH_SURFACES_ASYNC, DESTROY_SURFACE_ASYNC, DESTROY_ALL_SURFACES_ASYNC, '
                  'CREATE_PRIMARY_ASYNC, DESTROY_PRIMARY_ASYNC, MEMSLOT_ADD_ASYNC raise '
                  'IO_CMD while A is frozen; B is updated, never disconnected'),
        ('picture', 'after the thaw A catches up: A\'s and B\'s pictures equal the '
                    'guest framebuffer')]),
    ('rss', case_rss, [
        ('frozen', 'client A stays frozen and lagging for %d s of drawing, never dropped; '
                   'B is updated throughout' % RSS_SECONDS),
        ('drawing', 'the worker takes draws all along'),
        ('rss', 'QEMU\'s RSS stays within RSS at the freeze + %d MiB'
                % (RSS_BOUND_KIB >> 10))]),
    ('slow', case_slow, [
        ('throttled', 'client S behind a %d KiB/s link falls behind (S lags), '
                      'stays connected' % (SLOW_RATE >> 10)),
        ('picture', 'once the drawing ended, S\'s picture, like B\'s, equals the guest '
                    'framebuffer')]),
]


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('qemu')
    ap.add_argument('cases', nargs='*', metavar='CASE')
    a = ap.parse_args(argv)
    qemu = os.path.abspath(a.qemu)
    if not os.access(qemu, os.X_OK):
        print(f'{a.qemu}: not an executable', file=sys.stderr)
        return 2
    # a second client, and spice-server's debug lines (lag, catch up)
    os.environ['SPICE_DEBUG_ALLOW_MC'] = '1'
    os.environ['G_MESSAGES_DEBUG'] = 'Spice'
    stall.install_signal_handlers()
    outdir = os.environ.get('STALL_TEST_DIR') or os.path.join(
        TOP, 'build', 'spice-tests', os.path.basename(os.path.dirname(qemu)))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    tap = Tap()
    diag(f'{qemu}; accel {stall.choose_accel()}; bound {BOUND} s; artifacts {outdir}')
    for n, (name, fn, checks) in enumerate(CASES, 1):
        if a.cases and name not in a.cases and str(n) not in a.cases:
            continue
        workdir = os.path.join(outdir, f'{n}-{name}')
        os.makedirs(workdir)
        st.run_case(tap, n, name, checks, fn, LagScenario(qemu, workdir, name), workdir)
    if tap.todo:
        diag(f'{tap.todo} check(s) of known bugs (TAP TODO), counted neither way')
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
