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

Every wait is bounded (STALL_TEST_BOUND, default 20 s, under spice-server's
30 s timeout, for what must happen while A is frozen; STALL_TEST_TIMEOUT,
default 120 s, otherwise); nothing is timed.  "Frozen" is proven, not
assumed: A's process state is 'T' (stopped) when each check is made.

Output: TAP lines, "#" diagnostics, last line "N passed, N failed"; exit
status 1 on a failure.  Logs: STALL_TEST_DIR (default
build/spice-tests/<binary's directory name>).
"""

import os
import re
import shutil
import signal
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
WIDTH, HEIGHT = 640, 480


class Client:
    """bench/spice_client.py as a process: its events, SIGSTOP/SIGCONT,
    and its decoded primary surface (--dump, on SIGUSR1)."""

    def __init__(self, h, name):
        self.name = name
        self.dump_path = os.path.join(h.workdir, f'{name}.raw')
        self.events = []
        self.cv = threading.Condition()
        self.logf = open(os.path.join(h.workdir, f'{name}-client.log'), 'w')
        self.proc = subprocess.Popen(
            stall._pdeathsig_prefix() +
            [stall.PYTHON, os.path.join(TOP, 'bench', 'spice_client.py'),
             '127.0.0.1', str(h.spice_port), '--timeout', '3600',
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

    def start(self):
        self.h = h = stall.StallHarness(
            self.qemu, workdir=self.workdir, name=self.name, extra_args=st.TRACE,
            log=self.log, timeout=TIMEOUT, memory_mb=st.MEMORY_MB)
        h.start()
        h.setup_device(WIDTH, HEIGHT)
        h.prepare_draws(n_bitmaps=8, max_draws=4096)
        for name in ('A', 'B'):
            c = Client(h, name)
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

    def start_lagging(self):
        """start(), freeze A, draw until spice-server says a client lags
        (bounded).  Returns (harness, A, B, B's invalidate events so far,
        whether a client lags)."""
        h = self.start()
        a, b = self.clients
        a.freeze()
        seen_b = b.count('invalidate')
        deadline = time.monotonic() + BOUND
        while not self.lags() and time.monotonic() < deadline:
            self.push_until_taken(stall.RING_SIZE, a)
        self.log('lag lines: ' + '; '.join(LAG_RE.findall(self.read_log(h))))
        return h, a, b, seen_b, self.lags() > 0

    def close(self):
        for c in self.clients:
            c.close()
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
    s.push_until_taken(stall.RING_SIZE, a)
    h.push_fill(*FILL_RECT, FILL_COLOR)
    s.push_until_taken(0, a)
    r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=BOUND)
    filled = st.rect_is_fill(h.read_surface_rect(*FILL_RECT))
    frozen = a.stopped()
    # (a client that caught up while frozen, its socket not full yet, gets
    # drawing again: draw until it lags for sure, the fill left in place)
    caught_up = s.lag_then_thaw(a)
    ok_a, why_a = converge(a, h, TIMEOUT)
    ok_b, why_b = converge(b, h, TIMEOUT)
    for cl in (a, b):
        s.log(f'client {cl.name} primary events: ' + str(
            [(e['event'], e.get('width')) for e in cl.events
             if 'primary' in e['event']]))
    c.check('picture', r['outs'] == 1 and filled and frozen and caught_up and ok_a
            and ok_b and not a.disconnected() and not b.disconnected(),
            f'final UPDATE_AREA returned while A was stopped: {frozen}, fill in the '
            f'framebuffer: {filled}; after the thaw spice-server said A caught up: '
            f'{caught_up}; A\'s picture vs the framebuffer: {why_a}; B\'s: {why_b}')


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
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
