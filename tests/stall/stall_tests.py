#!/usr/bin/python3
"""QEMU keeps working while a vCPU waits in a synchronous QXL port write.

    tests/stall/stall_tests.py QEMU [CASE ...]      (see tests/stall/run.sh)

Every case builds the same situation with bench/stall.py: QEMU (TCG, or KVM
where it works) with qxl-vga, a SPICE client connected and frozen with
SIGSTOP, the command ring kept full of draws until the spice worker stops
taking them (the last draw turned into an opaque fill of a known colour),
and then the boot-sector guest's vCPU writes QXL_IO_UPDATE_AREA (the
synchronous port) for the whole primary.  spice-server cannot finish that
update while the client is frozen, so the write cannot return until the
test thaws the client (SIGCONT) - or until spice-server's 30 s flush
timeout, which every case rules out by checking the QEMU log for it.

  1 qmp        query-status and HMP "info status" answer while the write has
               not returned (the mailbox ack counter is unchanged after both
               answers); after the thaw the write returns and the primary
               surface holds the fill.
  2 reset      system_reset (QMP) is answered, with its RESET event, while
               the vCPU is held and the client frozen; the reset lets the
               vCPU go and the guest reboots before the thaw; then the
               device still works.
  3 stopcont   stop is answered while the vCPU is held (the VM paused, the
               write not returned); cont runs the VM again with the vCPU
               still held (the write has not returned, info registers
               answers); after the thaw the write returns with the fill
               rendered and the guest answers a new request.
  4 migrate    migrate is answered while the vCPU waits; the migration does
               not complete while the write has not returned (under TCG it
               waits in setup, its first dirty sync needing the vCPU; under
               KVM the switchover stops the source, run state
               finish-migrate, and waits in vm_stop) and QMP keeps
               answering; after the thaw it completes, the destination
               runs, its guest finishes the request without writing the
               port again and answers a new request; the fill migrated.

The assertions are about ORDER (what was seen before or after the thaw,
what the guest's counter said when an answer arrived), never about how long
something took.  Waits are bounded: STALL_TEST_BOUND seconds (default 20,
well under spice-server's 30 s flush timeout) for what should happen while
the client is frozen - on a QEMU that holds the BQL across the write, the
test gives up waiting then, thaws the client and reports the failure - and
STALL_TEST_TIMEOUT (default 120) for everything else.

Output: TAP lines ("ok N - ..." / "not ok N - ..."), "#" diagnostics, and
a last line "N passed, N failed".  Exit status 1 if anything failed, 2 on a
usage error.  QEMU and the client are killed at the end of every case and
on any exit (see bench/stall.py).  Artifacts (QEMU and client logs of each
case): STALL_TEST_DIR, default build/stall-tests/<binary's directory name>.
"""

import itertools
import json
import os
import re
import select
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, 'bench'))
import stall  # noqa: E402
from stall import StallHarness, HarnessError, Mailbox  # noqa: E402
from qmp import QMP  # noqa: E402

BOUND = float(os.environ.get('STALL_TEST_BOUND', 20))
TIMEOUT = float(os.environ.get('STALL_TEST_TIMEOUT', 120))

# The fill the last draw becomes, and what the guest's write must render.
FILL_RECT = (40, 40, 72, 56)          # left, top, right, bottom
FILL_COLOR = 0x00c0ffee

# Trace events the cases look at (written to the QEMU log, stderr).
TRACE = ['-trace', 'qxl_io_write', '-trace', 'runstate_set',
         '-trace', 'migrate_set_state', '-trace', 'monitor_qmp_cmd_in_band']
UPDATE_AREA_RE = re.compile(r'qxl_io_write .*addr=2 \(QXL_IO_UPDATE_AREA\)')
SPICE_TIMEOUT_RE = re.compile(r'flush timeout|pending out messages exist')

# Guest RAM: 128 MiB, not the bench's 32.  QEMU 10.0's
# cpu_physical_memory_sync_dirty_bitmap() hands a RAMBlock-relative offset
# to tlb_reset_dirty_range_all() (TCG only), which asserts that
# [offset, offset + block length) lies in one RAMBlock: with 32 MiB of
# pc.ram at ram_addr 0, a migration's dirty sync that finds dirty pages in
# the qxl VRAM (64 MiB) aborts the source ("tlb_reset_dirty_range_all:
# Assertion `block == qemu_get_ram_block(end - 1)' failed", upstream and
# patched alike).  With pc.ram larger than every other RAMBlock the
# assertion holds.
MEMORY_MB = 128

# Case 4: how long to watch the migration's states while the client is
# frozen before checking that it has not completed.
SWITCHOVER_WINDOW = float(os.environ.get('STALL_TEST_SWITCHOVER_WINDOW', 3))

_order = itertools.count(1)


def now_order():
    """A position in the run's single order of observations."""
    return next(_order)


def diag(msg):
    for line in str(msg).splitlines() or ['']:
        print(f'# {line}', flush=True)


class AsyncQmp:
    """A QMP connection on which commands are sent without waiting for
    them.  Replies and events are read only by pump()/wait() in the calling
    thread, so "not answered yet" means: nothing QEMU had sent by then."""

    def __init__(self, path=None, qmp=None, tag='a'):
        # a new connection, or one QMP already set up (and not used by
        # anything else from now on)
        self._q = qmp or QMP(path, timeout=30, connect_wait=10)
        self._own = qmp is None
        self.sock = self._q.sock
        self._buf = self._q._buf
        self._tag = tag
        self._n = itertools.count(1)
        self.replies = {}    # id -> (order, monotonic time, message)
        self.events = []     # (order, monotonic time, message)

    def close(self):
        if self._own:
            self._q.close()

    def send(self, command, arguments=None):
        """Send COMMAND; returns its id (a string, unique within the case:
        the trace line monitor_qmp_cmd_in_band shows it in quotes)."""
        i = f'{self._tag}{next(self._n)}'
        msg = {'execute': command, 'id': i}
        if arguments:
            msg['arguments'] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b'\n')
        return i

    def pump(self, timeout=0.0):
        """Read what has arrived, waiting up to TIMEOUT for something."""
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return
        self.sock.settimeout(5)
        data = self.sock.recv(1 << 16)
        if not data:
            raise HarnessError('QMP connection closed')
        self._buf += data
        while b'\n' in self._buf:
            line, self._buf = self._buf.split(b'\n', 1)
            msg = json.loads(line)
            stamp = (now_order(), time.monotonic(), msg)
            if 'event' in msg:
                self.events.append(stamp)
            elif 'id' in msg:
                self.replies[msg['id']] = stamp

    def wait(self, pred, timeout):
        """Pump until PRED() is true or TIMEOUT; returns PRED()."""
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0:
                return pred()
            self.pump(min(left, 0.5))
        return True

    def answered(self, i):
        return i in self.replies

    def result(self, i):
        msg = self.replies[i][2]
        if 'error' in msg:
            raise HarnessError(f'QMP error: {msg["error"]}')
        return msg.get('return')

    def event(self, name):
        for ev in self.events:
            if ev[2].get('event') == name:
                return ev
        return None

    def run(self, command, arguments=None, timeout=TIMEOUT):
        i = self.send(command, arguments)
        if not self.wait(lambda: self.answered(i), timeout):
            raise HarnessError(f'QMP {command}: no answer after {timeout} s')
        return self.result(i)


class Case:
    """A case's checks, reported in a fixed order; checks a case did not
    reach (it stopped on an error) are reported as failed."""

    def __init__(self, tap, num, name, checks):
        self.tap = tap
        self.num = num
        self.name = name
        self.checks = list(checks)       # (key, description)
        self.done = {}

    def check(self, key, ok, detail='', todo=None):
        assert key in dict(self.checks) and key not in self.done, key
        self.done[key] = (bool(ok) or bool(todo), detail)
        self.tap.report(bool(ok), f'case {self.num} ({self.name}): {dict(self.checks)[key]}',
                        detail, todo)
        return bool(ok)

    def finish(self, error=None):
        for key, desc in self.checks:
            if key not in self.done:
                self.done[key] = (False, 'not reached')
                self.tap.report(False, f'case {self.num} ({self.name}): {desc}',
                                f'not reached: {error or "case ended early"}')


class Tap:
    def __init__(self):
        self.n = 0
        self.passed = 0
        self.failed = 0
        self.todo = 0

    def report(self, ok, desc, detail='', todo=None):
        """TODO: a known bug (the issue that tracks it); the check runs and
        is reported as TAP "# TODO", counted neither as passed nor failed."""
        self.n += 1
        if todo:
            self.todo += 1
            desc = f'{desc} # TODO {todo}'
        elif ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f'{"ok" if ok else "not ok"} {self.n} - {desc}', flush=True)
        if detail:
            diag(detail)


# ---------------------------------------------------------------------------


class Scenario:
    """One QEMU whose vCPU sits in a synchronous QXL_IO_UPDATE_AREA behind
    a frozen SPICE client."""

    def __init__(self, qemu, workdir, name):
        self.qemu = qemu
        self.workdir = workdir
        self.name = name
        self.logf = open(os.path.join(workdir, f'{name}-harness.log'), 'w')
        self.h = None
        self.q = None
        self.q2 = None
        self.op = None
        self.thaw_order = None
        self.extra = []

    def log(self, msg):
        self.logf.write(f'{time.monotonic():.3f} {msg}\n')
        self.logf.flush()

    def harness(self, name, **kw):
        return StallHarness(self.qemu, workdir=self.workdir, name=name,
                            extra_args=TRACE, log=self.log, timeout=TIMEOUT,
                            memory_mb=MEMORY_MB, **kw)

    def setup(self, before_write=None):
        """QEMU, device, client, frozen client, stuck ring; then the
        vCPU's synchronous UPDATE_AREA, and the trace line that says the
        device got it.  BEFORE_WRITE(self) runs just before the write."""
        self.h = h = self.harness(self.name)
        h.start()
        h.setup_device()
        h.prepare_draws(n_bitmaps=8)
        h.start_client()
        h.freeze_client()
        fill = h.fill_ring(stall_after=1.5, timeout=TIMEOUT)
        self.log(f'fill: {fill}')
        h.last_draw_to_fill(*FILL_RECT, FILL_COLOR)
        self.before = h.read_surface_rect(*FILL_RECT)
        self.q = AsyncQmp(h.probe_path, tag='probe-')
        self.q2 = AsyncQmp(qmp=h.qmp, tag='ctl-')     # the other monitor
        if before_write:
            before_write(self)
        h.set_update_area()
        self.ack_before = h.qt.readl(Mailbox.ADDR + Mailbox.ACK)
        self.op = h.guest_post(h.io_base + stall.QXL_IO_UPDATE_AREA)
        # The device has the write: its trace line is in the log.  (Only
        # the vCPU writes this port; the harness uses the _ASYNC ones.)
        if not self.wait_log(h, UPDATE_AREA_RE, TIMEOUT):
            raise HarnessError('the vCPU\'s UPDATE_AREA never reached the device')
        self.log(f'UPDATE_AREA in the device (order {now_order()})')
        return self

    @staticmethod
    def read_log(h):
        try:
            with open(h.qemu_log, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    def wait_log(self, h, regex, timeout, count=1):
        deadline = time.monotonic() + timeout
        while len(regex.findall(self.read_log(h))) < count:
            h._check_alive('while waiting for a trace line')
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def thaw(self):
        self.thaw_order = now_order()
        self.log(f'thaw (order {self.thaw_order})')
        self.h.thaw_client()

    def ack(self, h=None, timeout=TIMEOUT):
        h = h or self.h
        return int(h.qt.cmd(f'readl 0x{Mailbox.ADDR + Mailbox.ACK:x}', timeout=timeout), 0)

    def spice_timeout(self, h=None):
        m = SPICE_TIMEOUT_RE.search(self.read_log(h or self.h))
        return m.group(0) if m else None

    def close(self):
        if self.q:
            self.q.close()
        self.q2 = None
        for h in [self.h] + self.extra:
            if h:
                h.close()
        self.logf.close()


def fmt_rect(rows):
    vals = sorted({v for r in rows for v in r})
    return f'{len(vals)} distinct value(s): ' + ', '.join(f'{v:#010x}' for v in vals[:4]) + \
        (' ...' if len(vals) > 4 else '')


def rect_is_fill(rows):
    return all((v & 0xffffff) == FILL_COLOR for r in rows for v in r)


# ---------------------------------------------------------------------------
# Case 1


def case_qmp(c, s):
    s.setup()
    h, q, op = s.h, s.q, s.op
    i_status = q.send('query-status')
    i_hmp = q.send('human-monitor-command', {'command-line': 'info status'})
    both = q.wait(lambda: q.answered(i_status) and q.answered(i_hmp), BOUND)
    if not both:
        diag(f'no answer within {BOUND} s with the client frozen: thawing it')
        s.thaw()
        q.wait(lambda: q.answered(i_status) and q.answered(i_hmp), TIMEOUT)
    # After both answers (and before any thaw on a working QEMU): has the
    # write returned?  A blocked main loop also blocks this read.
    ack = s.ack()
    timeout = s.spice_timeout()
    still = ack == s.ack_before and ack != op['seq']
    st = q.result(i_status) if q.answered(i_status) else None
    hmp = q.result(i_hmp) if q.answered(i_hmp) else None
    pending = (f'ack counter {ack} when read after the answers '
               f'(request {op["seq"]}; {"still pending" if still else "the write had returned"})')
    for key, i, res, want in (('status', i_status, st, st and st.get('status') == 'running'),
                              ('hmp', i_hmp, hmp, hmp and 'running' in hmp)):
        before_thaw = q.answered(i) and (s.thaw_order is None or q.replies[i][0] < s.thaw_order)
        c.check(key, before_thaw and still and not timeout and want,
                f'answer {res!r}; '
                f'{"answered before the thaw" if before_thaw else "answered only after the thaw"}; '
                f'{pending}' + (f'; spice-server: {timeout!r}' if timeout else ''))
    if still:
        now = h.read_surface_rect(*FILL_RECT)
        diag(f'fill rect while the write is pending: {fmt_rect(now)}')
    if s.thaw_order is None:
        s.thaw()
    res = h.guest_wait(op, timeout=TIMEOUT)
    timeout = s.spice_timeout()
    c.check('returned', res['seq'] == op['seq'] and s.ack() == op['seq'] and not timeout,
            'the write returned after the thaw' if not timeout else f'spice-server: {timeout!r}')
    rows = h.read_surface_rect(*FILL_RECT)
    c.check('pixels', rect_is_fill(rows) and not rect_is_fill(s.before),
            f'fill rect {FILL_RECT} before the write: {fmt_rect(s.before)}; '
            f'after: {fmt_rect(rows)}; want {FILL_COLOR:#08x}')


# ---------------------------------------------------------------------------
# Case 2


def case_reset(c, s):
    # Only the rebooted boot sector writes the mailbox magic again.
    s.setup(before_write=lambda s: s.h.clear_guest_ready())
    h, q, op = s.h, s.q, s.op
    i = q.send('system_reset')
    # The vCPU is held outside the port write, where pausing it does not
    # wait for the worker: the reset is carried out and answered while the
    # client is still frozen, and it ends the operation (the vCPU is reset).
    done = q.wait(lambda: q.answered(i) and q.event('RESET'), BOUND)
    timeout = s.spice_timeout()
    c.check('taken', done and not timeout,
            'system_reset answered and RESET event seen while the client was frozen'
            if done else f'no answer or no RESET event within {BOUND} s with the client frozen'
            + (f'; spice-server: {timeout!r}' if timeout else ''))
    # The guest reboots while the client is still frozen: the reset let
    # the held vCPU go.  (Only reads through qtest here: a port write
    # through qtest would wait in the main loop for the device's reset.)
    try:
        h.wait_guest_ready(BOUND)
        rebooted = s.thaw_order is None
    except HarnessError as e:
        diag(f'guest not ready within {BOUND} s: {e}')
        rebooted = False
    q2 = s.q2
    j = q2.send('query-status')
    q2.wait(lambda: q2.answered(j), BOUND)
    st = q2.result(j) if q2.answered(j) else {}
    c.check('after', rebooted and st.get('status') == 'running' and not s.spice_timeout(),
            f'guest rebooted (mailbox magic again) before the thaw: {rebooted}; '
            f'status {st.get("status")} on the other monitor')
    s.thaw()
    # QEMU runs, the device works.
    st = q.run('query-status')
    h.setup_device()                          # BARs, QXLRom magic, memslot, primary
    magic = h.qt.readl(h.bar2)
    h.qt.outb(h.io_base + stall.QXL_IO_RESET, 0)   # through qtest (main loop)
    h.setup_device()
    h.set_update_area(0, 0, 64, 64)
    r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=TIMEOUT)
    st2 = q.run('query-status')
    c.check('works', st.get('status') == 'running' and st2.get('status') == 'running'
            and magic == stall.QXL_ROM_MAGIC and r['seq'] == h.seq,
            f'status {st.get("status")}/{st2.get("status")}, QXLRom magic {magic:#x}, '
            f'rebooted guest: QXL_IO_RESET through qtest, memslot + primary again, '
            f'then its vCPU\'s sync UPDATE_AREA returned')


# ---------------------------------------------------------------------------
# Case 3


def case_stopcont(c, s):
    s.setup()
    h, q, op = s.h, s.q, s.op
    i = q.send('stop')
    # The held vCPU counts as stopped: stop completes while the client is
    # frozen, and the write has not returned.
    done = q.wait(lambda: q.answered(i) and q.event('STOP'), BOUND)
    st = q.run('query-status') if done else {}
    ack = s.ack()
    held = ack == s.ack_before and ack != op['seq']
    timeout = s.spice_timeout()
    c.check('blocks', done and held and st.get('status') == 'paused' and not timeout,
            (f'stop answered before the thaw, status {st.get("status")}; mailbox ack {ack} '
             f'(request {op["seq"]}): ' + ('the write has not returned' if held else
                                          'the write returned: nothing was held'))
            if done else f'stop not answered within {BOUND} s with the client frozen'
            + (f'; spice-server: {timeout!r}' if timeout else ''))
    # cont while the client is still frozen: the VM runs, the vCPU stays
    # held (the write has still not returned).
    q.run('cont')
    st = q.run('query-status')
    r_hmp = q.run('human-monitor-command', {'command-line': 'info registers'})
    ack = s.ack()
    held = ack == s.ack_before and ack != op['seq']
    c.check('paused', s.thaw_order is None and st.get('status') == 'running' and held
            and q.event('RESUME') and 'EIP=' in (r_hmp or ''),
            f'after cont with the client frozen: status {st.get("status")}, mailbox ack {ack} '
            f'({"still held" if held else "the write returned before the work was done"}); '
            f'info registers answered: {"EIP=" in (r_hmp or "")}')
    s.thaw()
    res = h.guest_wait(op, timeout=TIMEOUT)
    r = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_IRQ, timeout=TIMEOUT)
    rows = h.read_surface_rect(*FILL_RECT)
    c.check('cont', res['seq'] == op['seq'] and r['seq'] == h.seq and rect_is_fill(rows)
            and not s.spice_timeout(),
            f'after the thaw: the request finished with the fill rendered '
            f'({fmt_rect(rows)}), a new request (QXL_IO_UPDATE_IRQ) answered')


# ---------------------------------------------------------------------------
# Case 4


def case_migrate(c, s):
    s.setup()
    h, q, op = s.h, s.q, s.op
    d = s.harness(s.name + '-dst')
    s.extra.append(d)
    mig = os.path.join(d.sock_dir, 'mig.sock')
    d.start(boot_image=h.boot_image, incoming=f'unix:{mig}')
    dq = AsyncQmp(d.probe_path)
    try:
        _case_migrate(c, s, h, q, op, d, dq, mig)
    finally:
        dq.close()


def _case_migrate(c, s, h, q, op, d, dq, mig):
    i = q.send('migrate', {'uri': f'unix:{mig}'})
    answered = q.wait(lambda: q.answered(i), BOUND)
    timeout = s.spice_timeout()
    c.check('answered', answered and not timeout,
            'migrate answered while the client was frozen' if answered else
            f'no answer within {BOUND} s with the client frozen'
            + (f'; spice-server: {timeout!r}' if timeout else ''))
    # While the write is pending the migration cannot finish.  Under TCG
    # its first dirty-bitmap sync (setup) already waits for the vCPU
    # (tcg_log_global_after_sync() is a run_on_cpu()); under KVM it copies
    # the RAM and stops the VM for the switchover (run state
    # finish-migrate), and then waits for the vCPU to pause.  Watch the
    # states for a while (a window for seeing them, not a pass criterion),
    # then check: not completed, the write still pending, QMP answering.
    states = []
    if answered:
        q.result(i)
        deadline = time.monotonic() + SWITCHOVER_WINDOW
        while True:
            st = q.run('query-status', timeout=BOUND)['status']
            mst = q.run('query-migrate', timeout=BOUND).get('status')
            if not states or states[-1] != (st, mst):
                states.append((st, mst))
            if st == 'finish-migrate' or mst not in ('setup', 'active') \
                    or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        ack = s.ack()
        mst2 = q.run('query-migrate', timeout=BOUND).get('status')
        timeout = s.spice_timeout()
        seen = ', '.join(f'{a}/{b}' for a, b in states)
        c.check('waits', ack == s.ack_before and mst2 in ('setup', 'active') and not timeout,
                f'client frozen: run state/migration status seen {seen}, then '
                f'migration {mst2}; ack counter {ack} (request {op["seq"]}: '
                f'{"pending" if ack == s.ack_before else "returned"})'
                + (f'; spice-server: {timeout!r}' if timeout else ''))
        diag('the switchover had begun (the migration thread waits in vm_stop for the vCPU)'
             if states[-1][0] == 'finish-migrate' else
             f'the migration stayed in {states[-1][1]!r} while the vCPU waited')
    else:
        c.check('waits', False, 'migrate was not even answered while the client was frozen')
    if s.thaw_order is None:
        s.thaw()
    if not answered:
        q.wait(lambda: q.answered(i), TIMEOUT)
        q.result(i)
    deadline = time.monotonic() + TIMEOUT
    while True:
        mst = q.run('query-migrate')
        if mst.get('status') in ('completed', 'failed', 'cancelled'):
            break
        if time.monotonic() > deadline:
            raise HarnessError(f'migration not finished after {TIMEOUT} s: {mst}')
        time.sleep(0.05)
    completed_order = now_order()
    dst = {}
    deadline = time.monotonic() + TIMEOUT
    while mst.get('status') == 'completed':
        dst = dq.run('query-status')
        if dst.get('status') != 'inmigrate' or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    c.check('completed', mst.get('status') == 'completed' and completed_order > s.thaw_order
            and dst.get('status') == 'running',
            f'migration {mst.get("status")} after the thaw'
            f' ({mst.get("total-time")} ms in all, downtime {mst.get("downtime")} ms);'
            f' destination {dst.get("status")}')
    d.adopt_device(h)
    res = d.guest_wait(op, timeout=TIMEOUT)
    rewrites = len(UPDATE_AREA_RE.findall(s.read_log(d)))
    r = d.guest_run(d.io_base + stall.QXL_IO_UPDATE_IRQ, timeout=TIMEOUT)
    rows = d.read_surface_rect(*FILL_RECT)
    c.check('dest', res['seq'] == op['seq'] and rewrites == 0 and r['seq'] == d.seq
            and rect_is_fill(rows),
            f'destination: the guest finished request {op["seq"]} with '
            f'{rewrites} UPDATE_AREA write(s) there (the one write returned on the source), '
            f'answered a new request; fill rect {fmt_rect(rows)}')


CASES = [
    ('qmp', case_qmp, [
        ('status', 'QMP query-status answers while the vCPU\'s sync UPDATE_AREA has not returned'),
        ('hmp', 'HMP "info status" answers while the vCPU\'s sync UPDATE_AREA has not returned'),
        ('returned', 'the write returns after the client is thawed'),
        ('pixels', 'after the write the primary surface holds the last draw (an opaque fill)')]),
    ('reset', case_reset, [
        ('taken', 'system_reset is answered, RESET event included, while the vCPU is held'),
        ('after', 'the reset lets the held vCPU go: the guest reboots before the thaw'),
        ('works', 'QEMU runs after the reset, the guest reboots, the device works')]),
    ('stopcont', case_stopcont, [
        ('blocks', 'stop completes while the vCPU is held; the VM is paused, the write not returned'),
        ('paused', 'cont with the client still frozen: the VM runs, the vCPU stays held'),
        ('cont', 'after the thaw the write returns with the work done; the guest answers')]),
    ('migrate', case_migrate, [
        ('answered', 'migrate is answered while the vCPU waits'),
        ('waits', 'the migration does not complete while the write has not returned; '
                  'QMP keeps answering'),
        ('completed', 'the migration completes after the thaw; the destination runs'),
        ('dest', 'the write returned on the source; the destination guest answers; '
                 'the fill migrated')]),
]


def run_case(tap, n, name, checks, fn, s, workdir, label=''):
    """Run case N: FN(Case, S); an exception fails the checks not reached.
    S (a Scenario) is closed afterwards."""
    c = Case(tap, n, name, checks)
    t0 = time.monotonic()
    err = None
    try:
        fn(c, s)
    except Exception as e:   # the case's remaining checks fail
        err = f'{type(e).__name__}: {e}'
        s.log(traceback.format_exc())
    finally:
        s.close()
    c.finish(err)
    if err or not all(ok for ok, _ in c.done.values()):
        diag(f'case {n}: error: {err}' if err else f'case {n} failed')
        diag(f'logs in {workdir}')
    diag(f'case {n} ({name}{label}): {time.monotonic() - t0:.1f} s')


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('qemu')
    ap.add_argument('cases', nargs='*', metavar='CASE',
                    help='case numbers or names (default: all)')
    a = ap.parse_args(argv)
    qemu = os.path.abspath(a.qemu)
    if not os.access(qemu, os.X_OK):
        print(f'{a.qemu}: not an executable', file=sys.stderr)
        return 2
    selected = []
    for want in a.cases or [str(n) for n in range(1, len(CASES) + 1)]:
        for n, (name, fn, checks) in enumerate(CASES, 1):
            if want in (str(n), name):
                selected.append((n, name, fn, checks))
                break
        else:
            print(f'unknown case {want!r}', file=sys.stderr)
            return 2
    stall.install_signal_handlers()
    outdir = os.environ.get('STALL_TEST_DIR') or os.path.join(
        TOP, 'build', 'stall-tests', os.path.basename(os.path.dirname(qemu)))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    tap = Tap()
    diag(f'{qemu}; accel {stall.choose_accel()}; bound {BOUND} s; artifacts {outdir}')
    t_all = time.monotonic()
    for n, name, fn, checks in selected:
        workdir = os.path.join(outdir, f'{n}-{name}')
        os.makedirs(workdir)
        run_case(tap, n, name, checks, fn, Scenario(qemu, workdir, name), workdir)
    diag(f'total {time.monotonic() - t_all:.1f} s')
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
