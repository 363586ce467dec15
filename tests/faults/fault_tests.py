#!/usr/bin/python3
"""A fault matrix for QXL operations a real vCPU has in flight.

    tests/faults/fault_tests.py QEMU [CASE ...]      (see tests/faults/run.sh)

Every cell builds the situation of tests/stall with bench/stall.py: QEMU
(TCG, or KVM where it works) with qxl-vga, a SPICE client connected and
frozen with SIGSTOP, the command ring kept full until the spice worker stops
taking draws (the last one turned into an opaque fill of a known colour).
Then the boot-sector guest's vCPU writes an UPDATE_AREA port for the whole
primary; spice-server cannot finish it while the client is frozen, so the
operation stays in flight.  Then a fault hits it:

  operation  sync    QXL_IO_UPDATE_AREA: the vCPU's write returns when done
             async   QXL_IO_UPDATE_AREA_ASYNC: the write returns at once, the
                     device sets QXL_INTERRUPT_IO_CMD in int_pending when done
  fault      resume      SIGCONT the client (the normal case)
             disconnect  SIGKILL the frozen client
             stopcont    QMP stop, then (after the thaw) cont
             reset       QMP system_reset
             migrate     live migration to a second QEMU (unix socket)
             quit        QMP quit

Checks of a cell, reported in this order ("op/fault: ..."):

  held    the operation is in flight behind the frozen client (sync: the
          write has not returned, the mailbox ack counter is unchanged;
          async: the write returned, no IO_CMD yet) and QMP query-status
          answers meanwhile
  fault   the fault is taken up while the client is frozen and carried out
          (within bounds; some complete only after the thaw, as
          docs/specs/qxl-async.rst says: a stop, reset or migration
          switchover waits for a vCPU inside a synchronous write); the
          operation was still in flight when the client was thawed or
          killed (trace: no IO_CMD, no qxl_io_done for it yet)
  once    the completion is delivered exactly once: sync - the vCPU's write
          returns, the port was written once (not again on a migration
          destination), the device finished it once (trace qxl_io_done,
          where the binary has it); async - IO_CMD appears in int_pending
          (qtest), one qxl_send_events IO_CMD trace line in all (source and
          destination), none dropped (qxl_send_events_vm_stopped), and not
          again after a later synchronous round trip through the worker.
          The operation's fill is in the surface.  reset: the spec says a
          reset ends the operation in flight and the guest gets no IO_CMD
          for it - for async: no IO_CMD before the device reset began
          (trace qxl_hard_reset; the vCPUs are paused from there on) nor
          after QXLRam was re-initialised (qxl_soft_reset), none in
          int_pending after the reboot; one set in between is wiped by the
          reset and reported as a diagnostic.  For sync the spec says the
          reset takes effect only once the write returned: the write
          completes once (qxl_io_done before qxl_hard_reset)
  usable  the device works afterwards (on the destination after a
          migration): a new fill draw, then a sync UPDATE_AREA from the
          vCPU returns and the pixels are the fill's; for async cells also
          an UPDATE_AREA_ASYNC from the vCPU, whose IO_CMD the guest sees
          in int_pending, with the pixels right
  alive   no crash: QEMU (both, after a migration) answers QMP, exits with
          status 0 on quit, and its stderr has no assertion, abort or core
          dump
  quit cells instead: held, "quit" (exit status 0, bounded) and "stderr"
  (no "core dumped"/assert/abort/sanitizer report).

No check measures a duration; waits are bounded.  FAULT_TEST_BOUND (15 s,
well under spice-server's 30 s flush timeout, counted from the port write)
bounds everything expected while the client is frozen; when it runs out the
client is thawed and the cell goes on (the failure is reported).
FAULT_TEST_TIMEOUT (120 s) bounds every other wait.  FAULT_TEST_GRACE (1 s)
is how long a diagnostic waits to see whether QMP answers while a fault is
being processed (not a check).  Every cell also checks that spice-server's
flush timeout did not fire.

Output: TAP lines, "#" diagnostics, last line "N passed, N failed"; exit
status 1 on a failure, 2 on a usage error.  Logs: FAULT_TEST_DIR, default
build/fault-tests/<binary's directory name>/<op>-<fault>/.
"""

import os
import re
import shutil
import sys
import time
import traceback
import subprocess
import ctypes

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, 'bench'))
sys.path.insert(0, os.path.join(TOP, 'tests', 'stall'))
import stall  # noqa: E402
from stall import StallHarness, HarnessError, Mailbox  # noqa: E402
from stall_tests import AsyncQmp, Tap, diag, now_order, fmt_rect  # noqa: E402

BOUND = float(os.environ.get('FAULT_TEST_BOUND', 15))
TIMEOUT = float(os.environ.get('FAULT_TEST_TIMEOUT', 120))
GRACE = float(os.environ.get('FAULT_TEST_GRACE', 1))
# 128 MiB: see MEMORY_MB in tests/stall/stall_tests.py (TCG migration with
# a pc.ram smaller than the qxl VRAM aborts QEMU 10.0).
MEMORY_MB = 128

IO_CMD = stall.QXL_INTERRUPT_IO_CMD
OPS = {'sync': stall.QXL_IO_UPDATE_AREA, 'async': stall.QXL_IO_UPDATE_AREA_ASYNC}
FAULTS = ['resume', 'disconnect', 'stopcont', 'reset', 'migrate', 'quit']
MATRIX = [(op, fault) for op in OPS for fault in FAULTS]

# The held operation's fill, and the fills of the "usable" checks.
FILL_RECT, FILL_COLOR = (40, 40, 72, 56), 0x00c0ffee
RECT_A, COLOR_A = (100, 100, 164, 132), 0x0012a5e7
RECT_B, COLOR_B = (200, 100, 264, 132), 0x00e75a12

WANT_TRACE = ['qxl_io_write', 'qxl_io_done', 'qxl_send_events',
              'qxl_send_events_vm_stopped', 'qxl_hard_reset', 'qxl_soft_reset',
              'runstate_set', 'migrate_set_state', 'monitor_qmp_cmd_in_band']

SPICE_TIMEOUT_RE = re.compile(r'flush timeout|pending out messages exist')
BAD_RE = re.compile(r'core dumped|Assertion|assertion failed|\babort|Aborted|'
                    r'Segmentation fault|AddressSanitizer|UndefinedBehaviorSanitizer|'
                    r'runtime error:|\*\*\s*ERROR|-CRITICAL|spice-server bug', re.I)
IO_CMD_RE = re.compile(r'^qxl_send_events \d+ (\d+)$', re.M)
VM_STOPPED_RE = re.compile(r'^qxl_send_events_vm_stopped \d+ (\d+)$', re.M)
PAUSED_RE = re.compile(r'runstate_set .*new_state \d+ \(paused\)')
FINISH_MIGRATE_RE = re.compile(r'runstate_set .*new_state \d+ \(finish-migrate\)')
SOFT_RESET_RE = re.compile(r'^qxl_soft_reset ', re.M)
HARD_RESET_RE = re.compile(r'^qxl_hard_reset ', re.M)


def io_cmds(text, start=0, end=None):
    """qxl_send_events trace lines with QXL_INTERRUPT_IO_CMD in TEXT[START:END]."""
    end = len(text) if end is None else end
    return sum(1 for m in IO_CMD_RE.finditer(text, start, end) if int(m.group(1)) & IO_CMD)


def write_re(port):
    return re.compile(rf'^qxl_io_write \d+ \S+ addr={port} \(', re.M)


def done_re(port, cancelled=None):
    c = r'\d' if cancelled is None else str(int(cancelled))
    return re.compile(rf'^qxl_io_done \d+ port={port} guest=\d cancelled={c}$', re.M)


def in_band_re(i):
    return re.compile(rf'monitor_qmp_cmd_in_band "{re.escape(i)}"')


_trace_cache = {}


def trace_events(qemu):
    """The trace events of WANT_TRACE that QEMU has."""
    if qemu not in _trace_cache:
        out = subprocess.run([qemu, '-trace', 'help'], capture_output=True,
                             text=True, timeout=60).stdout.split()
        _trace_cache[qemu] = [e for e in WANT_TRACE if e in out]
    return _trace_cache[qemu]


def rect_is(rows, color):
    return bool(rows) and all((v & 0xffffff) == color for r in rows for v in r)


# ---------------------------------------------------------------------------


class FaultHarness(StallHarness):
    """StallHarness plus what the matrix needs: single fill draws, the
    QEMU log as trace, int_pending and the mailbox counter."""

    def push_fill(self, rect, color, timeout=TIMEOUT):
        """Put one opaque solid fill of COLOR over RECT (left, top, right,
        bottom) on the command ring and notify the worker."""
        left, top, right, bottom = rect
        i = self.draws_pushed
        if i >= self.max_draws:
            raise HarnessError('no room for another draw')
        blk = self.draw_base + i * self.DRAWABLE_BLOCK
        d = stall.QXLDrawable()
        d.release_info = blk
        d.surface_id = 0
        d.effect = stall.QXL_EFFECT_OPAQUE
        d.type = stall.QXL_DRAW_FILL
        d.bbox = stall.QXLRect(top=top, left=left, bottom=bottom, right=right)
        d.clip = stall.QXLClip(type=stall.SPICE_CLIP_TYPE_NONE, data=0)
        for k in range(3):
            d.surfaces_dest[k] = -1
        f = stall.QXLFill()
        f.brush.type = stall.SPICE_BRUSH_TYPE_SOLID
        f.brush.color = color
        f.rop_descriptor = stall.SPICE_ROPD_OP_PUT
        buf = bytearray(bytes(d))
        off = stall.QXLDrawable.copy.offset
        buf[off:off + ctypes.sizeof(f)] = bytes(f)
        deadline = time.monotonic() + timeout
        while True:
            prod, cons = self.ring_state()
            if (prod - cons) % 2**32 < stall.RING_SIZE:
                break
            self._check_alive('waiting for room in the command ring')
            if time.monotonic() > deadline:
                raise HarnessError(f'command ring full for {timeout} s')
            time.sleep(0.01)
        self.qt.write(blk, bytes(buf))
        self.qt.write(self.ram + stall.RING_ITEMS + (prod % stall.RING_SIZE) * 16,
                      bytes(stall.QXLCommand(data=self.phys(blk), type=stall.QXL_CMD_DRAW)))
        self.qt.writel(self.ram + stall.RING_PROD, (prod + 1) % 2**32)
        self.draws_pushed += 1
        self.qt.outb(self.io_base + stall.QXL_IO_NOTIFY_CMD, 0)

    def adopt_draws(self, src):
        for k in ('draw_base', 'max_draws', 'draws_pushed', 'bitmaps'):
            setattr(self, k, getattr(src, k))

    def int_bits(self):
        return self.qt.readl(self.int_pending)

    def ack(self, timeout=None):
        return int(self.qt.cmd(f'readl 0x{Mailbox.ADDR + Mailbox.ACK:x}',
                               timeout=timeout or self.timeout), 0)

    def log_text(self):
        try:
            with open(self.qemu_log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def log_mark(self):
        """An offset in the log after its last complete line."""
        return self.log_text().rfind('\n') + 1

    def count(self, regex, start=0, end=None):
        return len(regex.findall(self.log_text()[start:end]))

    def find(self, regex, start=0):
        """Offset of REGEX's first match at or after START, or None."""
        m = regex.search(self.log_text(), start)
        return m.start() if m else None

    def wait_log(self, regex, timeout, start=0, count=1):
        deadline = time.monotonic() + max(timeout, 0)
        while self.count(regex, start) < count:
            self._check_alive('while waiting for a trace line')
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def wait_int(self, mask, timeout):
        """Poll int_pending (qtest) until a bit of MASK is set."""
        deadline = time.monotonic() + max(timeout, 0)
        while True:
            self._check_alive('while waiting for an interrupt')
            if self.int_bits() & mask:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)

    def spice_timeout(self):
        m = SPICE_TIMEOUT_RE.search(self.log_text())
        return m.group(0) if m else None

    def bad_lines(self):
        return [ln for ln in self.log_text().splitlines()
                if BAD_RE.search(ln) and not ln.startswith(tuple(WANT_TRACE))]


class Cell:
    """A cell's checks, reported in a fixed order; checks not reached
    (the cell stopped on an error) are reported as failed."""

    def __init__(self, tap, op, fault):
        self.tap = tap
        self.op = op
        self.fault = fault
        self.keys = ['held', 'quit', 'stderr'] if fault == 'quit' else \
            ['held', 'fault', 'once', 'usable', 'alive']
        self.done = {}

    def title(self, key):
        return f'{self.op}/{self.fault}: {check_desc(self.op, self.fault, key)}'

    def check(self, key, ok, detail=''):
        assert key in self.keys and key not in self.done, key
        # report what comes before it, if skipped, as failed
        for k in self.keys[:self.keys.index(key)]:
            if k not in self.done:
                self.check(k, False, 'not reached')
        self.done[key] = bool(ok)
        self.tap.report(bool(ok), self.title(key), detail)
        return bool(ok)

    def finish(self, error=None):
        for k in self.keys:
            if k not in self.done:
                self.done[k] = False
                self.tap.report(False, self.title(k),
                                f'not reached: {error or "cell ended early"}')


CHECKS = [
    ('held', 'the operation is held by the frozen client; QMP answers meanwhile'),
    ('usable', 'a new UPDATE_AREA from the vCPU completes, pixels right'),
    ('alive', 'no crash: QMP answers, quit exits 0, no assert/abort in stderr'),
    ('quit', 'quit while the operation is held: QEMU exits with status 0'),
    ('stderr', 'no "core dumped", assertion or abort in stderr'),
]
FAULT_DESC = {
    'resume': 'SIGCONT: the client draws again, the operation completes',
    'disconnect': 'SIGKILL of the frozen client: spice drops it, the operation completes',
    'stopcont': 'stop is taken up while frozen, paused after the thaw, cont runs the guest',
    'reset': 'system_reset is taken up while frozen; RESET follows, the guest reboots',
    'migrate': 'migrate is taken up while frozen, completes after the thaw, '
               'the destination runs',
}


def check_desc(op, fault, key):
    if key == 'fault':
        return FAULT_DESC[fault]
    if key == 'once':
        if fault == 'reset':
            return ('the reset ends the operation while the client is frozen: '
                    'cancelled once, the held vCPU let go' if op == 'sync'
                    else 'the reset ends the operation: the guest gets no IO_CMD for it')
        return ('the vCPU\'s write returns exactly once' if op == 'sync'
                else 'QXL_INTERRUPT_IO_CMD delivered exactly once')
    d = dict(CHECKS)[key]
    if key == 'usable' and fault == 'migrate':
        d += ' on the destination'
    return d


class Run:
    """One cell's QEMU(s), client, QMP connections and the held operation."""

    def __init__(self, qemu, workdir, op, fault):
        self.qemu = qemu
        self.workdir = workdir
        self.op_name = op
        self.port = OPS[op]
        self.sync = op == 'sync'
        self.fault = fault
        self.name = f'{op}-{fault}'
        self.events = trace_events(qemu)
        self.has_done = 'qxl_io_done' in self.events
        self.logf = open(os.path.join(workdir, 'harness.log'), 'w')
        self.h = self.d = None
        self.q = self.q2 = self.dq = None
        self.thaw_order = None
        self.t_thaw = None
        self.target = None        # where the guest lives afterwards

    def log(self, msg):
        self.logf.write(f'{time.monotonic():.3f} {msg}\n')
        self.logf.flush()

    def harness(self, name):
        trace = []
        for e in self.events:
            trace += ['-trace', e]
        return FaultHarness(self.qemu, workdir=self.workdir, name=name,
                            extra_args=trace, log=self.log, timeout=TIMEOUT,
                            memory_mb=MEMORY_MB)

    def left(self):
        return max(0.0, self.deadline - time.monotonic())

    def note_release(self, how):
        """Just before the client is thawed or killed: is the operation
        still in flight?  Read from the trace only (the main loop may be
        busy): async - no IO_CMD since the port write; sync - no
        qxl_io_done for it (where the binary has that trace)."""
        h = self.h
        if self.sync:
            n = h.count(done_re(self.port), self.mark) if self.has_done else None
        else:
            n = io_cmds(h.log_text(), self.mark)
        self.release = (n in (0, None), how, n)
        self.log(f'release ({how}): completions so far {n}')

    def flight(self):
        """(ok, text) for a check: was the operation in flight until the
        client was released?"""
        if not hasattr(self, 'release'):
            return True, ''
        ok, how, n = self.release
        if n is None:
            return True, ''
        return ok, (f'; in flight until the client was {how}' if ok else
                    f'; already completed ({n}) before the client was {how}')

    def thaw(self):
        if self.thaw_order is None:
            self.note_release('thawed')
            self.thaw_order = now_order()
            self.t_thaw = time.monotonic()
            self.log(f'thaw (order {self.thaw_order})')
            self.h.thaw_client()

    def grace_diag(self, what):
        """Does the other monitor answer while WHAT is processed with the
        client frozen?  (A diagnostic: the spec lets some faults wait.)"""
        q2 = self.q2
        j = q2.send('query-status')
        q2.wait(lambda: q2.answered(j), GRACE)
        diag(f'{what}, client frozen: query-status on the other monitor '
             + ('answered' if q2.answered(j) else f'not answered within {GRACE} s'))

    def close(self):
        for q in (self.q, self.dq):
            if q:
                try:
                    q.close()
                except Exception:
                    pass
        for h in (self.h, self.d):
            if h:
                h.close()
        self.logf.close()


# ---------------------------------------------------------------------------
# the cell


def run_cell(c, r):
    h = r.h = r.harness(r.name)
    h.start()
    h.setup_device()
    h.prepare_draws(n_bitmaps=8)
    if r.fault == 'migrate':
        r.d = r.harness(r.name + '-dst')
        r.mig = os.path.join(r.d.sock_dir, 'mig.sock')
        r.d.start(boot_image=h.boot_image, incoming=f'unix:{r.mig}')
        r.dq = AsyncQmp(r.d.probe_path, tag='dst-')
    h.start_client()
    h.freeze_client()
    r.log(f'fill: {h.fill_ring(stall_after=1.5, timeout=TIMEOUT)}')
    h.last_draw_to_fill(*FILL_RECT, FILL_COLOR)
    r.before = h.read_surface_rect(*FILL_RECT)
    r.q = AsyncQmp(h.probe_path, tag='p')
    r.q2 = AsyncQmp(qmp=h.qmp, tag='c')
    if r.fault == 'reset':
        h.clear_guest_ready()        # only a rebooted guest writes it again
    h.set_update_area()
    r.ack_before = h.ack()
    r.mark = h.log_mark()
    r.op = h.guest_post(h.io_base + r.port)
    r.deadline = time.monotonic() + BOUND
    if not h.wait_log(write_re(r.port), r.left(), r.mark):
        raise HarnessError(f'the vCPU\'s port {r.port} write never reached the device')
    r.log(f'op in the device (order {now_order()})')
    check_held(c, r)
    FAULT_FN[r.fault](c, r)
    if r.fault != 'quit':
        finish(c, r)


def check_held(c, r):
    h, q = r.h, r.q
    i = q.send('query-status')
    answered = q.wait(lambda: q.answered(i), r.left())
    st = q.result(i) if answered else {}
    if not answered:
        c.check('held', False, f'query-status not answered within {BOUND} s of the '
                'port write (the main loop is blocked); thawing the client later')
        return
    ack = h.ack()
    if r.sync:
        held = ack == r.ack_before != r.op['seq']
        what = f'ack counter {ack} (request {r.op["seq"]}: ' + \
            ('pending)' if held else 'the write had returned)')
    else:
        while ack != r.op['seq'] and r.left() > 0:
            time.sleep(0.01)
            ack = h.ack()
        bits = h.int_bits()
        lines = io_cmds(h.log_text(), r.mark)
        held = ack == r.op['seq'] and not bits & IO_CMD and lines == 0
        what = (f'the write returned (ack {ack}, request {r.op["seq"]})' if ack == r.op['seq']
                else f'the write did not return (ack {ack})') + \
            f'; int_pending {bits:#x}; IO_CMD trace lines {lines}'
    timeout = h.spice_timeout()
    c.check('held', held and st.get('status') == 'running' and not timeout,
            f'query-status: {st.get("status")}; {what}'
            + (f'; spice-server: {timeout!r}' if timeout else ''))


def wait_done(r, h, timeout=TIMEOUT):
    """The held operation completed (on harness H): sync - the guest's
    ack counter; async - IO_CMD in int_pending, then cleared; the device's
    qxl_io_done line where the binary has it."""
    if r.sync:
        try:
            h.guest_wait(r.op, timeout=timeout, samples=False)
            ok = True
        except HarnessError as e:
            r.log(f'wait_done: {e}')
            ok = False
    else:
        ok = h.wait_int(IO_CMD, timeout)
        if ok:
            h.qt.writel(h.int_pending, 0)
    if r.has_done and h is r.h:
        h.wait_log(done_re(r.port), TIMEOUT if ok else 0, r.mark)
    return ok


def once_counts(r, upto):
    """Counts since the port write: on the source from r.mark, on the
    destination (if any) all of its log.  UPTO: source offset before the
    usable phase (for the sync counts)."""
    h, d = r.h, r.d
    dl = d.log_text() if d else ''
    dupto = r.dupto if d else None
    dst_writes = len(write_re(r.port).findall(dl[:dupto]))
    res = {
        'writes': h.count(write_re(r.port), r.mark, upto) + dst_writes,
        'dst_writes': dst_writes,
        'io_cmd': io_cmds(h.log_text(), r.mark) + io_cmds(dl),
        'dst_io_cmd': io_cmds(dl),
        'dropped': h.count(VM_STOPPED_RE, r.mark) + len(VM_STOPPED_RE.findall(dl)),
    }
    if r.has_done:
        res['done'] = h.count(done_re(r.port, False), r.mark, upto) + \
            len(done_re(r.port, False).findall(dl[:dupto]))
        res['cancelled'] = h.count(done_re(r.port, True), r.mark, upto) + \
            len(done_re(r.port, True).findall(dl[:dupto]))
    return res


def finish(c, r):
    """once (unless the fault handler reported it), usable, alive."""
    t = r.target or r.h
    upto = r.h.log_mark()
    if r.d:
        r.dupto = r.d.log_mark()
    fill = t.read_surface_rect(*FILL_RECT)
    # usable, part 1: a fill and a sync UPDATE_AREA from the vCPU (for async
    # cells also the round trip through the worker after which a duplicate
    # IO_CMD would have shown)
    t.push_fill(RECT_A, COLOR_A)
    t.set_update_area()
    ra = t.guest_run(t.io_base + stall.QXL_IO_UPDATE_AREA, timeout=TIMEOUT)
    rows_a = t.read_surface_rect(*RECT_A)
    if 'once' not in c.done:
        n = once_counts(r, upto)
        timeout = r.h.spice_timeout()
        dev_ok = not r.has_done or (n['done'] == 1 and n['cancelled'] == 0)
        dev = f'; qxl_io_done {n["done"]} done, {n["cancelled"]} cancelled' \
            if r.has_done else ''
        if r.sync:
            ok = r.done_ok and n['writes'] == 1 and n['dst_writes'] == 0 and dev_ok
            what = ('the write returned' if r.done_ok else 'the write did not return') + \
                f'; port written {n["writes"]} time(s)' + \
                (f' ({n["dst_writes"]} on the destination)' if r.d else '') + dev
        else:
            again = t.int_bits() & IO_CMD
            ok = r.done_ok and n['io_cmd'] == 1 and not again and not n['dropped'] and dev_ok
            what = ('IO_CMD seen' if r.done_ok else 'IO_CMD never seen') + ' in int_pending' + \
                f'; IO_CMD trace lines {n["io_cmd"]}' + \
                (f' ({n["dst_io_cmd"]} on the destination)' if r.d else '') + \
                f'; dropped (vm stopped) {n["dropped"]}' + \
                ('; IO_CMD set again after a sync round trip' if again else '') + dev
        ok = ok and rect_is(fill, FILL_COLOR) and not timeout
        c.check('once', ok, what + f'; fill rect {fmt_rect(fill)}'
                + (f'; spice-server: {timeout!r}' if timeout else ''))
    ok = ra['seq'] == t.seq and rect_is(rows_a, COLOR_A)
    what = f'sync UPDATE_AREA returned, rect A {fmt_rect(rows_a)} (want {COLOR_A:#08x})'
    if not r.sync:
        t.qt.writel(t.int_pending, 0)
        t.push_fill(RECT_B, COLOR_B)
        rb = t.guest_run(t.io_base + stall.QXL_IO_UPDATE_AREA_ASYNC, intaddr=t.int_pending,
                         intmask=IO_CMD, timeout=TIMEOUT)
        rows_b = t.read_surface_rect(*RECT_B)
        ok = ok and rb['timeouts'] == 0 and rect_is(rows_b, COLOR_B)
        what += ('; UPDATE_AREA_ASYNC: the guest saw IO_CMD' if rb['timeouts'] == 0 else
                 '; UPDATE_AREA_ASYNC: the guest never saw IO_CMD') + \
            f', rect B {fmt_rect(rows_b)} (want {COLOR_B:#08x})'
    c.check('usable', ok, ('on the destination: ' if r.d else '') + what)
    check_alive(c, r)


def quit_qemu(h, q, timeout=TIMEOUT):
    """QMP quit on Q; returns QEMU's exit status (None: still running)."""
    q.send('quit')
    try:
        return h.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


def check_alive(c, r):
    parts, ok = [], True
    for tag, h, q in (('source', r.h, r.q), ('destination', r.d, r.dq)):
        if h is None:
            continue
        st = q.run('query-status', timeout=TIMEOUT)
        rc = quit_qemu(h, q)
        bad = h.bad_lines()
        ok = ok and rc == 0 and not bad
        parts.append(f'{tag if r.d else "QEMU"}: {st.get("status")}, exit status {rc}'
                     + (f', stderr: {bad[:3]}' if bad else ''))
    c.check('alive', ok, '; '.join(parts))


# ---------------------------------------------------------------------------
# the faults


def fault_resume(c, r):
    h, q = r.h, r.q
    r.thaw()
    try:
        ev = h.wait_client_event(lambda ev: ev['t'] > r.t_thaw and
                                 ev['event'] in ('invalidate', 'mark'), TIMEOUT)
    except HarnessError as e:
        ev = None
        r.log(f'client: {e}')
    r.done_ok = wait_done(r, h)
    st = q.run('query-status', timeout=TIMEOUT)
    fl, fl_text = r.flight()
    c.check('fault', ev is not None and r.done_ok and st.get('status') == 'running' and fl,
            ('the client draws again' if ev else 'the client did not draw after SIGCONT')
            + f'; the operation {"completed" if r.done_ok else "did not complete"}; '
            f'status {st.get("status")}' + fl_text)


def fault_disconnect(c, r):
    h, q = r.h, r.q
    r.note_release('killed')
    h.client.kill()                  # SIGKILL works on a stopped process
    h.client.wait(timeout=10)
    r.log(f'client killed (order {now_order()})')
    t_kill = time.monotonic()
    r.done_ok = wait_done(r, h)
    diag(f'the operation {"completed" if r.done_ok else "did not complete"} '
         f'{time.monotonic() - t_kill:.2f} s after the client was killed')
    # spice-server dropped the client's channels
    deadline = time.monotonic() + TIMEOUT
    while True:
        sp = q.run('query-spice', timeout=TIMEOUT)
        if not sp.get('channels') or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    st = q.run('query-status', timeout=TIMEOUT)
    timeout = h.spice_timeout()
    fl, fl_text = r.flight()
    c.check('fault', r.done_ok and not sp.get('channels') and st.get('status') == 'running'
            and not timeout and fl,
            f'client killed; the operation {"completed" if r.done_ok else "did not complete"}; '
            f'spice channels left {len(sp.get("channels") or [])}; status {st.get("status")}'
            + fl_text + (f'; spice-server: {timeout!r}' if timeout else ''))


def fault_stopcont(c, r):
    h, q = r.h, r.q
    i = q.send('stop')
    if r.sync:
        # stop sets the run state, then waits for the vCPU to pause
        taken = h.wait_log(PAUSED_RE, r.left(), r.mark)
    else:
        # the worker keeps running in a paused VM: stop need not wait
        taken = q.wait(lambda: q.answered(i) and q.event('STOP'), r.left())
    q.pump(0)
    early = q.answered(i)
    diag(f'stop {"answered" if early else "not answered"} before the thaw')
    if taken:
        r.grace_diag('stop taken up')
    r.thaw()
    q.wait(lambda: q.answered(i) and q.event('STOP'), TIMEOUT)
    st = q.run('query-status', timeout=TIMEOUT)
    paused = st.get('status') == 'paused'
    extra = ''
    if r.sync:
        ack = h.ack()
        diag(f'while paused: ack {ack} (request {r.op["seq"]})')
    else:
        # completes while the VM is stopped: IO_CMD in int_pending
        r.done_ok = wait_done(r, h)
        st2 = q.run('query-status', timeout=TIMEOUT)
        extra = f'; IO_CMD {"set" if r.done_ok else "not set"} while ' \
            f'{st2.get("status")}'
        paused = paused and st2.get('status') == 'paused'
    q.run('cont', timeout=TIMEOUT)
    st3 = q.run('query-status', timeout=TIMEOUT)
    if r.sync:
        r.done_ok = wait_done(r, h)
    fl, fl_text = r.flight()
    c.check('fault', taken and paused and st3.get('status') == 'running' and q.event('RESUME')
            and (r.sync or early) and r.done_ok and fl,
            ('stop taken up while frozen' if taken else 'stop not taken up while frozen')
            + (f' ({"answered" if early else "not answered"} before the thaw)')
            + f'; after the thaw: {st.get("status")}' + extra
            + f'; after cont: {st3.get("status")}; the operation '
            + ('completed' if r.done_ok else 'did not complete') + fl_text)


def fault_reset(c, r):
    h, q = r.h, r.q
    i = q.send('system_reset')
    taken = h.wait_log(in_band_re(i), r.left(), r.mark)
    q.pump(0)
    diag('system_reset ' + ('dispatched' if taken else 'not dispatched')
         + ' while frozen; RESET event ' + ('before' if q.event('RESET') else 'not before')
         + ' the thaw')
    if taken:
        r.grace_diag('system_reset dispatched')
    answered_frozen = False
    if taken:
        # Is system_reset answered while the client is still frozen, i.e.
        # does the device reset without waiting for the worker?  (sync: the
        # spec says the reset ends the operation and lets the held vCPU
        # go, so it must; async: a diagnostic.)  Waits at most until the
        # cell's bound.
        t0 = time.monotonic()
        q.wait(lambda: q.answered(i), r.left())
        q.pump(0)
        answered_frozen = q.answered(i)
        diag('system_reset ' + (f'answered {time.monotonic() - t0:.2f} s after dispatch'
                                if q.answered(i) else 'not answered')
             + ' before the thaw; RESET event '
             + ('before' if q.event('RESET') else 'not before') + ' the thaw')
    r.thaw()
    got = q.wait(lambda: q.answered(i) and q.event('RESET'), TIMEOUT)
    st = q.run('query-status', timeout=TIMEOUT)
    try:
        h.wait_guest_ready(TIMEOUT)
        rebooted = True
    except HarnessError as e:
        r.log(str(e))
        rebooted = False
    fl, fl_text = r.flight()
    c.check('fault', taken and got and st.get('status') == 'running' and rebooted and fl,
            f'system_reset {"answered" if q.answered(i) else "not answered"}, RESET event '
            f'{"seen" if q.event("RESET") else "missing"}; status {st.get("status")}; '
            f'the guest {"rebooted" if rebooted else "did not reboot"}' + fl_text)
    # once, as the spec has it
    reset_at = h.find(SOFT_RESET_RE, r.mark)
    timeout = h.spice_timeout()
    if r.sync:
        # the spec: a reset ends the operation and lets the held vCPU go;
        # it is answered while the client is still frozen, and the
        # operation completes once, cancelled
        writes = h.count(write_re(r.port), r.mark)
        if r.has_done:
            h.wait_log(done_re(r.port), TIMEOUT, r.mark)
            done = h.count(done_re(r.port, False), r.mark)
            canc = h.count(done_re(r.port, True), r.mark)
            ok = done == 0 and canc == 1 and writes == 1 and answered_frozen
            what = (f'qxl_io_done: {done} done, {canc} cancelled; system_reset '
                    f'{"answered" if answered_frozen else "not answered"} with the client frozen')
        else:
            ok = False
            what = 'no qxl_io_done trace in this binary'
        c.check('once', ok and not timeout, what + f'; port written {writes} time(s) '
                'before the guest rebooted' + (f'; spice-server: {timeout!r}' if timeout else ''))
    else:
        # the spec: the guest gets no IO_CMD for an operation a reset ended.
        # The vCPUs are paused from the start of the device reset
        # (qxl_hard_reset) on; what the device sets in int_pending before
        # the reset re-initialises QXLRam (qxl_soft_reset comes after that)
        # no guest can see.
        settled = ''
        if r.has_done:
            h.wait_log(done_re(r.port), TIMEOUT, r.mark)
            m = done_re(r.port).search(h.log_text(), r.mark)
            settled = f'; device: {m.group(0) if m else "no qxl_io_done line"}'
        text = h.log_text()
        hard = h.find(HARD_RESET_RE, r.mark)
        end = len(text)
        before = io_cmds(text, r.mark, hard if hard is not None else end)
        during = io_cmds(text, hard, reset_at) if hard is not None and reset_at is not None else 0
        after = io_cmds(text, reset_at) if reset_at is not None else 0
        bits = h.int_bits()
        ok = hard is not None and reset_at is not None and before == 0 and after == 0 \
            and not bits & IO_CMD
        if r.has_done:
            ok = ok and h.count(done_re(r.port), r.mark) == 1
        c.check('once', ok and not timeout,
                f'IO_CMD trace lines: {before} before the reset, {during} during it '
                f'(the vCPUs paused, QXLRam re-initialised after), {after} after it; '
                f'int_pending {bits:#x} after the reboot' + settled
                + (f'; spice-server: {timeout!r}' if timeout else ''))
        if during:
            diag('the device finished the operation inside the reset, before '
                 'qxl_async_reset (a synchronous worker call of the reset delivered its '
                 'answer), and the reset then cleared int_pending')
    h.setup_device()


def fault_migrate(c, r):
    h, q, d, dq = r.h, r.q, r.d, r.dq
    i = q.send('migrate', {'uri': f'unix:{r.mig}'})
    answered = q.wait(lambda: q.answered(i), r.left())
    if answered:
        q.result(i)
    if r.sync:
        # the migration cannot complete while the vCPU is inside the write
        if answered:
            mst = q.run('query-migrate', timeout=max(r.left(), 1)).get('status')
            ack = h.ack()
            taken = mst in ('setup', 'active') and ack == r.ack_before
            what = f'migration {mst}, ack {ack} (request {r.op["seq"]})'
        else:
            taken, what = False, f'migrate not answered within {BOUND} s'
    else:
        # the switchover stops the VM, which waits for the worker
        taken = answered and h.wait_log(FINISH_MIGRATE_RE, r.left(), r.mark)
        what = 'migrate answered, the switchover began (finish-migrate)' if taken else \
            f'migrate {"answered" if answered else "not answered"}, no switchover ' \
            f'within {BOUND} s'
    if taken:
        r.grace_diag('migration under way')
    r.thaw()
    if not answered:
        q.wait(lambda: q.answered(i), TIMEOUT)
    deadline = time.monotonic() + TIMEOUT
    while True:
        mst = q.run('query-migrate', timeout=TIMEOUT)
        if mst.get('status') in ('completed', 'failed', 'cancelled') or \
                time.monotonic() > deadline:
            break
        time.sleep(0.05)
    dst, src = {}, {}
    deadline = time.monotonic() + TIMEOUT
    while mst.get('status') == 'completed':
        dst = dq.run('query-status', timeout=TIMEOUT)
        if dst.get('status') != 'inmigrate' or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    src = q.run('query-status', timeout=TIMEOUT)
    fl, fl_text = r.flight()
    c.check('fault', taken and mst.get('status') == 'completed' and fl
            and dst.get('status') == 'running' and src.get('status') == 'postmigrate',
            f'while frozen: {what}; after the thaw: migration {mst.get("status")} '
            f'(downtime {mst.get("downtime")} ms), destination {dst.get("status")}, '
            f'source {src.get("status")}' + fl_text)
    d.adopt_device(h)
    d.adopt_draws(h)
    r.target = d
    r.done_ok = wait_done(r, d)


def fault_quit(c, r):
    h, q = r.h, r.q
    q.send('quit')
    # does QEMU exit with the client still frozen?
    try:
        rc = h.proc.wait(timeout=min(max(r.left(), 0.1), GRACE))
    except subprocess.TimeoutExpired:
        rc = None
    diag('QEMU ' + ('exited' if rc is not None else f'still running {GRACE} s after quit')
         + ' with the client frozen')
    r.thaw()
    if r.flight()[1]:
        diag(r.flight()[1].lstrip('; '))
    if rc is None:
        try:
            rc = h.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            rc = None
    c.check('quit', rc == 0, f'exit status {rc}' if rc is not None
            else f'QEMU still running {TIMEOUT} s after quit and the thaw')
    bad = h.bad_lines()
    c.check('stderr', rc is not None and rc >= 0 and not bad,
            f'stderr: {bad[:5]}' if bad else
            ('killed by a signal' if rc is not None and rc < 0 else 'clean'))


FAULT_FN = {'resume': fault_resume, 'disconnect': fault_disconnect,
            'stopcont': fault_stopcont, 'reset': fault_reset,
            'migrate': fault_migrate, 'quit': fault_quit}


# ---------------------------------------------------------------------------


def select_cells(wants):
    """CASE: a cell number (1-12), op/fault or op-fault, an op or a fault."""
    if not wants:
        return list(MATRIX)
    out = []
    for w in wants:
        hits = []
        if w.isdigit() and 1 <= int(w) <= len(MATRIX):
            hits = [MATRIX[int(w) - 1]]
        else:
            for op, fault in MATRIX:
                if w in (f'{op}/{fault}', f'{op}-{fault}', op, fault):
                    hits.append((op, fault))
        if not hits:
            raise ValueError(w)
        out += [x for x in hits if x not in out]
    return out


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('qemu')
    ap.add_argument('cases', nargs='*', metavar='CASE',
                    help='1-12, op/fault, op or fault (default: all)')
    a = ap.parse_args(argv)
    qemu = os.path.abspath(a.qemu)
    if not os.access(qemu, os.X_OK):
        print(f'{a.qemu}: not an executable', file=sys.stderr)
        return 2
    try:
        cells = select_cells(a.cases)
    except ValueError as e:
        print(f'unknown case {e}; cells: ' + ' '.join(f'{o}/{f}' for o, f in MATRIX),
              file=sys.stderr)
        return 2
    stall.install_signal_handlers()
    outdir = os.environ.get('FAULT_TEST_DIR') or os.path.join(
        TOP, 'build', 'fault-tests', os.path.basename(os.path.dirname(qemu)))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    tap = Tap()
    diag(f'{qemu}; accel {stall.choose_accel()}; bound {BOUND} s; '
         f'trace {",".join(trace_events(qemu))}; artifacts {outdir}')
    t_all = time.monotonic()
    for op, fault in cells:
        c = Cell(tap, op, fault)
        workdir = os.path.join(outdir, f'{op}-{fault}')
        os.makedirs(workdir)
        r = Run(qemu, workdir, op, fault)
        t0 = time.monotonic()
        err = None
        try:
            run_cell(c, r)
        except Exception as e:    # the cell's remaining checks fail
            err = f'{type(e).__name__}: {e}'
            r.log(traceback.format_exc())
        finally:
            r.close()
        c.finish(err)
        if err or not all(c.done.values()):
            diag(f'{op}/{fault}: ' + (f'error: {err}' if err else 'failed')
                 + f'; logs in {workdir}')
        diag(f'{op}/{fault}: {time.monotonic() - t0:.1f} s')
    diag(f'total {time.monotonic() - t_all:.1f} s')
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
