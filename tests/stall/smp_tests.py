#!/usr/bin/python3
"""A vCPU held in a synchronous QXL port, and the other vCPUs of an SMP guest.

    tests/stall/smp_tests.py QEMU [CASE ...]        (see tests/stall/run.sh)

The situation of tests/stall/stall_tests.py (a SPICE client frozen with
SIGSTOP, the command ring kept full until the spice worker stops taking
draws, the last draw an opaque fill of a known colour), on a boot-sector
guest with several vCPUs (bench/bootsector.S serves one mailbox per vCPU).
A vCPU writes a synchronous port and is *held*: the write cannot be over
until the client is thawed.  What the series promises (docs/specs/
qxl-async.rst, "Held vCPUs"), checked by order, never by duration:

  1 io        -smp 2.  vCPU 0 is held in QXL_IO_UPDATE_AREA.  Meanwhile
              vCPU 1's QXL_IO_UPDATE_IRQ raises the interrupt line (PCI
              status), its QXL_IO_NOTIFY_CMD and a VGA register write take
              effect (the device traces the port, qtest reads the register
              back), and its own synchronous QXL_IO_UPDATE_AREA holds vCPU
              1 too.  After the thaw both writes return, vCPU 0's first,
              with the fill rendered.  QEMU never says "Blocked re-entrant
              IO".
  2-9 ports   vCPU 1 is held in QXL_IO_UPDATE_AREA (it keeps the worker
              busy); then vCPU 0 writes one synchronous port (UPDATE_AREA,
              DESTROY_SURFACE_WAIT, MEMSLOT_ADD, DESTROY_ALL_SURFACES,
              DESTROY_PRIMARY, RESET, CREATE_PRIMARY after a
              DESTROY_PRIMARY_ASYNC through qtest) and is held behind it
              until the thaw, or NOTIFY_OOM, which does not wait for the
              worker and returns at once.  While vCPU 0 is held in one of
              the others but RESET (-smp 3), vCPU 2 writes UPDATE_IRQ,
              NOTIFY_CMD and a VGA register, each with its effect, then a
              synchronous port of its own (UPDATE_AREA, or CREATE_PRIMARY
              after a destruction), which holds it too and is no guest bug.
              RESET ends vCPU 1's operation: vCPU 1 goes on before the thaw,
              vCPU 0 after (writes during a reset are held over: cases
              11 and 12).  The device lets the vCPUs go in the order of
              their writes (trace cpu_release); when they then run is the
              host's business.
  10-11 smp4  -smp 4: the same for UPDATE_AREA and RESET, while vCPUs 2
              and 3 write QXL_IO_UPDATE_IRQ and QXL_IO_NOTIFY_CMD: they
              return at once, or, during the reset, are held over and carried
              out after it (the device lets the vCPUs go in the order the
              writes came: trace cpu_release).
  12 replay-sync  -smp 2: vCPU 1 held in UPDATE_AREA, vCPU 0 writes RESET
              (vCPU 1 let go), vCPU 1 then writes MEMSLOT_ADD: held over
              the reset, carried out after it on vCPU 1's behalf, where the
              operation it starts holds vCPU 1 again.
  13 mgmt     -smp 2, vCPU 0 held: query-cpus-fast, "info registers",
              stop, cont, migrate and migrate_cancel, system_reset, each
              answered while the client is still frozen and vCPU 0 still
              held (its mailbox's `outs`, stored right after the OUT, still
              0); vCPU 1 runs a request after cont; system_reset lets vCPU
              0 go (the guest reboots) before the thaw.  A QMP prober on
              the other monitor (query-status every 10 ms) runs throughout;
              its maximum is printed, not asserted (make bench has it).
  14 unplug   -smp 2, a secondary qxl: vCPU 0 held in its UPDATE_AREA;
              device_del is answered, the slot is ejected (ACPI PCI
              hotplug, through qtest), DEVICE_DELETED comes, vCPU 0 is let
              go once and runs on; no sanitizer report (run it on the ASan
              build: make check-asan does).  Removing the spice-server
              instance waits for its worker (spice-server's own flush), so
              the eject is over only after the thaw.

"Held" is proven, never assumed: the device traced the port write, the
vCPU started the request (mailbox busy) and its `outs` is 0 when the
check is made, and spice-server's flush timeout did not fire.

Output: TAP lines, "#" diagnostics, last line "N passed, N failed"; exit
status 1 on a failure.  Logs: STALL_TEST_DIR (default
build/stall-tests/smp-<binary's directory name>).
"""

import os
import re
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, 'bench'))
import stall  # noqa: E402
from stall import HarnessError, Mailbox, ram_off  # noqa: E402
import stall_tests as st  # noqa: E402
from stall_tests import (AsyncQmp, Case, Tap, diag, rect_is_fill,  # noqa: E402
                         fmt_rect, BOUND, TIMEOUT, FILL_RECT, FILL_COLOR)

# the QXL I/O ports (spice-protocol's qxl_dev.h)
PORTS = {
    'UPDATE_AREA': 2, 'UPDATE_IRQ': 3, 'NOTIFY_OOM': 4, 'RESET': 5,
    'MEMSLOT_ADD': 8, 'CREATE_PRIMARY': 12, 'DESTROY_PRIMARY': 13,
    'DESTROY_SURFACE_WAIT': 14, 'DESTROY_ALL_SURFACES': 15, 'NOTIFY_CMD': 0,
    'DESTROY_PRIMARY_ASYNC': 19,
}
TRACE = st.TRACE + ['-trace', 'qxl_io_done', '-trace', 'qxl_defer_write',
                    '-trace', 'qxl_replay_write', '-trace', 'cpu_release']
# the last release of a held vCPU (system/cpus.c)
RELEASE_RE = re.compile(r'cpu_release cpu (\d+) held 1 times before')
REENTRANT_RE = re.compile(r'Blocked re-entrant IO')
PCI_STATUS_INTERRUPT = 1 << 3       # PCI_STATUS_INTERRUPT, in the dword at 0x04
VGA_SEQ_INDEX = 0x3c4


def write_re(port):
    return re.compile(rf'qxl_io_write .*addr={port} ')


class SmpScenario(st.Scenario):
    def __init__(self, qemu, workdir, name, smp):
        super().__init__(qemu, workdir, name)
        self.smp = smp

    def harness(self, name, **kw):
        return stall.StallHarness(self.qemu, workdir=self.workdir, name=name,
                                  extra_args=TRACE, log=self.log, timeout=TIMEOUT,
                                  memory_mb=st.MEMORY_MB, smp=self.smp, **kw)

    def start(self):
        """QEMU, device, client, frozen client, stuck ring (no write yet)."""
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
        self.q2 = AsyncQmp(qmp=h.qmp, tag='ctl-')
        h.set_update_area()
        return h

    def writes(self, port):
        return len(write_re(port).findall(self.read_log(self.h)))

    def post(self, cpu, port, value=0, deferred=False):
        """The vCPU writes PORT; returns once the device traced the write
        (DEFERRED: traced it as held over by a reset) and the vCPU is busy
        with the request."""
        h = self.h
        regex = (re.compile(rf'qxl_defer_write \d+ cpu={cpu} write=1 ') if deferred
                 else write_re(port))
        n = len(regex.findall(self.read_log(h)))
        op = h.guest_post(h.io_base + port, value=value, cpu=cpu)
        if not self.wait_log(h, regex, BOUND, count=n + 1):
            raise HarnessError(f'vCPU {cpu}: port {port} never reached the device'
                               + (' (held over by the reset)' if deferred else ''))
        deadline = time.monotonic() + TIMEOUT
        while not h.guest_busy(op):
            if time.monotonic() > deadline:
                raise HarnessError(f'vCPU {cpu} never started its request')
            time.sleep(0.005)
        self.log(f'vCPU {cpu} wrote port {port} (request {op["seq"]})')
        return op

    def outs(self, op):
        return self.h.mailbox_readl(Mailbox.OUTS, cpu=op['cpu'])

    def acked(self, op):
        return self.h.mailbox_readl(Mailbox.ACK, cpu=op['cpu']) == op['seq']

    def held(self, op):
        """The vCPU is inside its request and its write has not returned."""
        return self.h.guest_busy(op) and self.outs(op) == 0 and not self.acked(op)

    def returned(self, op, timeout=BOUND):
        """Wait (bounded) until OP's write returned; False if it did not."""
        deadline = time.monotonic() + timeout
        while self.outs(op) == 0:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def clean(self):
        """No refused access, no spice-server flush timeout."""
        text = self.read_log(self.h)
        return not REENTRANT_RE.search(text) and not st.SPICE_TIMEOUT_RE.search(text)

    def released(self):
        """The vCPUs let go so far, in the order the device let them go."""
        return [int(m) for m in RELEASE_RE.findall(self.read_log(self.h))]

    def irq_status(self):
        h = self.h
        return bool(h.pci_cfg_readl(h.pci_dev, 4) >> 16 & PCI_STATUS_INTERRUPT)

    def vga_seq_index(self):
        return int(self.h.qt.cmd(f'inb 0x{VGA_SEQ_INDEX:x}'), 0)


def finish_writes(s, ops):
    """Thaw if not done yet, then every request of OPS completes."""
    if s.thaw_order is None:
        s.thaw()
    return [s.h.guest_wait(op, timeout=TIMEOUT) for op in ops]


def other_vcpu_io(s, cpu, held, sync_port='UPDATE_AREA', sync_value=0):
    """While the requests HELD are held, vCPU CPU writes QXL_IO_UPDATE_IRQ
    (an event pending that the guest asked for), QXL_IO_NOTIFY_CMD, a VGA
    register and the synchronous port SYNC_PORT.  Each must have its
    effect: the interrupt line rises, the device traces the notification,
    the register reads back, and SYNC_PORT holds CPU in turn.  Returns
    (ok, diagnostics, SYNC_PORT's request)."""
    h = s.h
    qt = h.qt
    qt.writel(h.ram + ram_off('int_mask'), 0)
    qt.writel(h.int_pending, 0)
    low = not s.irq_status()
    qt.writel(h.ram + ram_off('int_mask'), stall.QXL_INTERRUPT_DISPLAY)
    qt.writel(h.int_pending, stall.QXL_INTERRUPT_DISPLAY)
    r1 = h.guest_run(h.io_base + PORTS['UPDATE_IRQ'], cpu=cpu, timeout=BOUND)
    high = s.irq_status()
    qt.writel(h.ram + ram_off('int_mask'), 0)
    qt.writel(h.int_pending, 0)

    n = s.writes(PORTS['NOTIFY_CMD'])
    r2 = h.guest_run(h.io_base + PORTS['NOTIFY_CMD'], cpu=cpu, timeout=BOUND)
    notified = s.writes(PORTS['NOTIFY_CMD']) == n + 1
    qt.outb(VGA_SEQ_INDEX, 0)
    r3 = h.guest_run(VGA_SEQ_INDEX, value=0x02, cpu=cpu, timeout=BOUND)
    idx = s.vga_seq_index()
    still = all(s.held(op) for op in held)

    op = s.post(cpu, PORTS[sync_port], sync_value)
    held_too = s.held(op)
    ok = (low and high and notified and idx == 0x02 and still and held_too
          and all(r['outs'] == 1 for r in (r1, r2, r3)))
    return ok, (f'vCPU {cpu}: UPDATE_IRQ raised the line ({int(not low)} -> '
                f'{int(high)}), NOTIFY_CMD traced: {notified}, VGA sequencer '
                f'index {idx:#x} (wrote 0x02), each returned; the held vCPUs '
                f'still held: {still}; its {sync_port} holds it too: {held_too}'), op


# ---------------------------------------------------------------------------
# Case 1


def case_io(c, s):
    h = s.start()
    qt = h.qt
    # the line is low: nothing pending that the guest asked for
    qt.writel(h.ram + ram_off('int_mask'), 0)
    qt.writel(h.int_pending, 0)
    qt.outb(VGA_SEQ_INDEX, 0)
    op0 = s.post(0, PORTS['UPDATE_AREA'])
    held0 = s.held(op0)

    # vCPU 1: UPDATE_IRQ with an event pending that the guest asked for
    qt.writel(h.ram + ram_off('int_mask'), stall.QXL_INTERRUPT_DISPLAY)
    qt.writel(h.int_pending, stall.QXL_INTERRUPT_DISPLAY)
    low = not s.irq_status()
    r = h.guest_run(h.io_base + PORTS['UPDATE_IRQ'], cpu=1, timeout=BOUND)
    high = s.irq_status()
    c.check('irq', held0 and low and high and r['outs'] == 1 and s.held(op0),
            f'vCPU 0 held: {held0}; PCI interrupt status {int(not low)} -> {int(high)} '
            f'after vCPU 1\'s QXL_IO_UPDATE_IRQ, which returned; vCPU 0 still held: '
            f'{s.held(op0)}')
    qt.writel(h.ram + ram_off('int_mask'), 0)
    qt.writel(h.int_pending, 0)

    n = s.writes(PORTS['NOTIFY_CMD'])
    r = h.guest_run(h.io_base + PORTS['NOTIFY_CMD'], cpu=1, timeout=BOUND)
    notified = s.writes(PORTS['NOTIFY_CMD']) == n + 1
    r2 = h.guest_run(VGA_SEQ_INDEX, value=0x02, cpu=1, timeout=BOUND)
    idx = s.vga_seq_index()
    c.check('notify', notified and r['outs'] == 1 and r2['outs'] == 1 and idx == 0x02
            and s.held(op0),
            f'QXL_IO_NOTIFY_CMD traced by the device: {notified}; VGA sequencer index '
            f'after vCPU 1 wrote 0x02: {idx:#x}; vCPU 0 still held: {s.held(op0)}')

    op1 = s.post(1, PORTS['UPDATE_AREA'])
    both = s.held(op0) and s.held(op1)
    c.check('second', both and s.thaw_order is None and s.clean(),
            f'after vCPU 1\'s synchronous UPDATE_AREA reached the device: vCPU 0 held '
            f'{s.held(op0)}, vCPU 1 held {s.held(op1)}; no "Blocked re-entrant IO", '
            f'no flush timeout: {s.clean()}')

    r0, r1 = finish_writes(s, [op0, op1])
    rows = h.read_surface_rect(*FILL_RECT)
    rel = s.released()
    c.check('thaw', r0['outs'] == 1 and r1['outs'] == 1 and rel[-2:] == [0, 1]
            and rect_is_fill(rows) and s.clean(),
            f'after the thaw: both writes returned once; the device let the vCPUs go '
            f'in the order {rel} (want vCPU 0, then vCPU 1: the order of the writes); '
            f'fill rect {fmt_rect(rows)}; QEMU log clean: {s.clean()}')


# ---------------------------------------------------------------------------
# Cases 2-10: vCPU 0 writes a port behind vCPU 1's held UPDATE_AREA


def ports_case(port_name, waits=True, others=(), third=None):
    def case(c, s):
        h = s.start()
        port = PORTS[port_name]
        value = 0
        if port_name == 'MEMSLOT_ADD':
            value = h.slot_id + 1          # QXLRam.mem_slot: slot 0's range
        elif port_name == 'DESTROY_SURFACE_WAIT':
            value = 1
        jam = s.post(1, PORTS['UPDATE_AREA'])
        jam_held = s.held(jam)
        if port_name == 'CREATE_PRIMARY':
            # the primary goes first, behind vCPU 1's operation (an
            # asynchronous port through qtest returns at once); QXLRam
            # still holds the creation request setup_device() wrote
            h.qt.outb(h.io_base + PORTS['DESTROY_PRIMARY_ASYNC'], 0)
        op = s.post(0, port, value)
        if waits:
            ok0 = s.held(op)
            what = f'vCPU 0 held in {port_name}: {ok0}'
        else:
            ok0 = s.returned(op)
            what = f'vCPU 0\'s {port_name} returned at once: {ok0}'
        if port_name == 'RESET':
            # the reset ends vCPU 1's operation: it goes on, frozen client
            jam_ok = s.returned(jam)
            what += f'; vCPU 1 let go by the reset: {jam_ok}'
        else:
            jam_ok = s.held(jam)
            what += f'; vCPU 1 held before: {jam_held}, still: {jam_ok}'
        done_others = []
        deferred = []
        for cpu, oport in others:
            if port_name == 'RESET':
                # written during the reset: held over until it is done
                o = s.post(cpu, PORTS[oport], deferred=True)
                deferred.append(o)
                done_others.append(s.held(o))
                what += f'; vCPU {cpu}\'s {oport} held over the reset: {s.held(o)}'
                continue
            r = h.guest_run(h.io_base + PORTS[oport], cpu=cpu, timeout=BOUND)
            done_others.append(r['outs'] == 1)
            what += f'; vCPU {cpu}\'s {oport} returned: {r["outs"] == 1}'
        third_ops = []
        if third:
            ok3, what3, op3 = other_vcpu_io(s, 2, [jam, op], *third)
            done_others.append(ok3)
            third_ops.append(op3)
            what += '; ' + what3
        if port_name != 'RESET':
            jam_ok = jam_ok and s.held(jam)
        c.check('held', jam_held and ok0 and jam_ok and all(done_others)
                and s.thaw_order is None and s.clean(), what)
        res = finish_writes(s, [jam, op] + deferred + third_ops)
        rel = s.released()
        if port_name == 'RESET':
            # vCPU 1 went first (the reset ended its operation); the writes
            # held over were carried out after the reset, then their vCPUs
            # went on, in the order they came, before vCPU 0 (whose hold
            # is the first entry, released once the queue was replayed)
            replayed = len(re.findall(r'qxl_replay_write .*write=1',
                                      s.read_log(h)))
            want = [1, 0] + [o['cpu'] for o in deferred]
            order_ok = rel == want and replayed == len(deferred)
            order = (f'the device let the vCPUs go in the order {rel} (want {want}); '
                     f'{replayed} held-over write(s) carried out after the reset')
        elif waits:
            want = [1, 0] + [2] * len(third_ops)
            order_ok = rel[-len(want):] == want
            order = (f'the device let the vCPUs go in the order {rel} '
                     f'(want {want}: the order of the writes)')
        else:
            order_ok = rel[-1:] == [1]
            order = f'vCPU 0 was never held; released: {rel}'
        st_ = s.q.run('query-status')
        if third_ops:
            # vCPU 2's port came after vCPU 0's: no guest bug either
            bits = h.qt.readl(h.int_pending)
            order_ok = order_ok and not bits & stall.QXL_INTERRUPT_ERROR
            order += f'; int_pending {bits:#x}'
        c.check('thaw', all(r['outs'] == 1 for r in res) and order_ok and s.clean()
                and st_.get('status') == 'running',
                f'after the thaw: every write returned once; {order}; '
                f'status {st_.get("status")}; QEMU log clean: {s.clean()}')
        if port_name == 'CREATE_PRIMARY':
            # the primary is back: a sync UPDATE_AREA from vCPU 0 returns
            r = h.guest_run(h.io_base + PORTS['UPDATE_AREA'], cpu=0, timeout=TIMEOUT)
            bits = h.qt.readl(h.int_pending)
            c.check('work', r['outs'] == 1 and not bits & stall.QXL_INTERRUPT_ERROR,
                    f'vCPU 0\'s UPDATE_AREA on the new primary returned; '
                    f'int_pending {bits:#x}')
        elif port_name in ('UPDATE_AREA', 'DESTROY_SURFACE_WAIT', 'MEMSLOT_ADD'):
            rows = h.read_surface_rect(*FILL_RECT)
            c.check('work', rect_is_fill(rows), f'fill rect {fmt_rect(rows)}')
        else:
            r = h.guest_run(h.io_base + PORTS['UPDATE_IRQ'], cpu=0, timeout=TIMEOUT)
            c.check('work', r['outs'] == 1, 'vCPU 0 runs a new request')
    return case


# ---------------------------------------------------------------------------
# Case 11


def case_mgmt(c, s):
    h = s.start()
    s.q.close()           # the prober takes the other monitor
    s.q = None
    op = s.post(0, PORTS['UPDATE_AREA'])
    probe = h.start_probe(TIMEOUT)
    q = s.q2
    notes = []

    def still():
        return s.thaw_order is None and s.held(op)

    cpus = q.run('query-cpus-fast', timeout=BOUND)
    regs = q.run('human-monitor-command', {'command-line': 'info registers'},
                 timeout=BOUND)
    ok1 = len(cpus) == 2 and 'EIP=' in regs and still()
    c.check('query', ok1, f'query-cpus-fast: {len(cpus)} CPUs; info registers answered: '
            f'{"EIP=" in regs}; vCPU 0 still held: {still()}')

    q.run('stop', timeout=BOUND)
    paused = q.run('query-status', timeout=BOUND).get('status')
    q.run('cont', timeout=BOUND)
    running = q.run('query-status', timeout=BOUND).get('status')
    r = h.guest_run(h.io_base + PORTS['UPDATE_IRQ'], cpu=1, timeout=BOUND)
    c.check('stopcont', paused == 'paused' and running == 'running' and r['outs'] == 1
            and still(),
            f'stop -> {paused}, cont -> {running}; vCPU 1 ran a request after cont; '
            f'vCPU 0 still held: {still()}')

    # With downtime-limit 0 the migration's threshold stays 0: it switches
    # over as soon as the pending estimate is 0 and never asks for the
    # exact figure (migration_iteration_run()), so the estimate alone must
    # keep it from switching over while the vCPU is held.
    q.run('migrate-set-parameters', {'downtime-limit': 0}, timeout=BOUND)
    q.run('migrate', {'uri': 'exec:cat >/dev/null'}, timeout=BOUND)
    deadline = time.monotonic() + BOUND
    states = []
    while time.monotonic() < deadline:
        m = q.run('query-migrate', timeout=BOUND).get('status')
        if not states or states[-1] != m:
            states.append(m)
        if m == 'active' and len(states) > 1 or m in ('completed', 'failed'):
            break
        time.sleep(0.05)
    # a few iterations with the vCPU held: the migration must not switch over
    t_end = time.monotonic() + 1.0
    while time.monotonic() < t_end:
        m = q.run('query-migrate', timeout=BOUND).get('status')
        if states[-1] != m:
            states.append(m)
        time.sleep(0.05)
    q.run('migrate_cancel', timeout=BOUND)
    deadline = time.monotonic() + BOUND
    while time.monotonic() < deadline:
        m = q.run('query-migrate', timeout=BOUND).get('status')
        if states[-1] != m:
            states.append(m)
        if m in ('cancelled', 'completed', 'failed'):
            break
        time.sleep(0.05)
    status = q.run('query-status', timeout=BOUND).get('status')
    c.check('migrate', states[-1] == 'cancelled' and 'completed' not in states
            and status == 'running' and still(),
            f'migration states {" -> ".join(states)}; VM {status}; '
            f'vCPU 0 still held: {still()}')

    s.h.clear_guest_ready()
    q.run('system_reset', timeout=BOUND)
    try:
        h.wait_guest_ready(BOUND)
        rebooted = s.thaw_order is None
    except HarnessError as e:
        diag(f'no reboot: {e}')
        rebooted = False
    probe.stop()
    probe.join(10)
    pr = probe.result()
    notes.append(f'QMP prober on the other monitor: {pr.get("samples")} samples, '
                 f'max {pr.get("max_ms")} ms, p99 {pr.get("p99_ms")} ms (not asserted)')
    c.check('reset', rebooted and s.clean(),
            f'system_reset answered and the guest rebooted (every vCPU) before the '
            f'thaw: {rebooted}; ' + '; '.join(notes))
    s.thaw()


# ---------------------------------------------------------------------------
# Case 12


def case_replay_sync(c, s):
    """A synchronous port written during a guest reset: held over, carried
    out when the reset ends, on behalf of its vCPU, which is held again by
    the operation it starts (a vCPU held already is held once more)."""
    h = s.start()
    jam = s.post(1, PORTS['UPDATE_AREA'])
    op = s.post(0, PORTS['RESET'])
    let_go = s.returned(jam)
    # the reset re-initialised QXLRam: the slot the guest will add
    h.qt.write(h.ram + ram_off('mem_slot'),
               bytes(stall.QXLMemSlot(h.bar0, h.bar0 + h.rom.ram_header_offset)))
    add = s.post(1, PORTS['MEMSLOT_ADD'], h.slot_id, deferred=True)
    c.check('held', let_go and s.held(op) and s.held(add) and s.thaw_order is None,
            f'vCPU 1 let go by the reset: {let_go}; vCPU 0 held in RESET: {s.held(op)}; '
            f'vCPU 1\'s MEMSLOT_ADD held over the reset: {s.held(add)}')
    res = finish_writes(s, [op, add])
    text = s.read_log(h)
    replayed = len(re.findall(r'qxl_replay_write .*write=1', text))
    bits = h.qt.readl(h.int_pending)
    st_ = s.q.run('query-status')
    c.check('replayed', all(r['outs'] == 1 for r in res) and replayed == 1
            and not bits & stall.QXL_INTERRUPT_ERROR and st_.get('status') == 'running'
            and s.clean(),
            f'after the thaw: both writes returned once; {replayed} held-over write '
            f'carried out; int_pending {bits:#x}; status {st_.get("status")}; '
            f'released {s.released()}')


# ---------------------------------------------------------------------------
# Case 13

SECONDARY_SLOT = 6
ACPI_PCIHP_EJ = 0xae08      # PIIX4 ACPI PCI hotplug: eject slots (bitmap)


class SecondaryHarness(stall.StallHarness):
    """The harness, driving the secondary qxl (PCI slot SECONDARY_SLOT)."""

    def find_qxl(self):
        v = self.pci_cfg_readl(SECONDARY_SLOT, 0)
        if v != (stall.QXL_DEVICE_ID_STABLE << 16 | stall.REDHAT_PCI_VENDOR_ID):
            raise HarnessError(f'no qxl at 00:{SECONDARY_SLOT:02x}.0')
        return SECONDARY_SLOT


def case_unplug(c, s):
    """device_del of the secondary qxl while vCPU 0 is held in its port."""
    s.log('secondary qxl')
    s.h = h = SecondaryHarness(
        s.qemu, workdir=s.workdir, name=s.name, log=s.log, timeout=TIMEOUT,
        memory_mb=st.MEMORY_MB, smp=s.smp,
        extra_args=TRACE + ['-device', f'qxl,id=qxl1,addr={SECONDARY_SLOT:#x}'])
    h.start()
    h.setup_device()
    h.prepare_draws(n_bitmaps=8)
    h.start_client()
    h.freeze_client()
    h.fill_ring(stall_after=1.5, timeout=TIMEOUT)
    h.last_draw_to_fill(*FILL_RECT, FILL_COLOR)
    h.set_update_area()
    s.q2 = AsyncQmp(qmp=h.qmp, tag='ctl-')
    q = s.q2
    op = s.post(0, PORTS['UPDATE_AREA'])
    held = s.held(op)
    q.run('device_del', {'id': 'qxl1'}, timeout=BOUND)
    c.check('request', held and s.held(op) and s.thaw_order is None,
            f'vCPU 0 held in the secondary\'s UPDATE_AREA: {held}; device_del answered '
            f'with the client frozen; vCPU 0 still held: {s.held(op)}')
    # The guest's part of the unplug: eject the slot (ACPI PCI hotplug),
    # written through qtest.  Removing the device's spice-server instance
    # waits for its worker, which spice-server's flush keeps busy until the
    # client reads again: the write returns after the thaw.
    import threading
    ej = {}

    def eject():
        try:
            h.qt.outl(ACPI_PCIHP_EJ, 1 << SECONDARY_SLOT)
            ej['t'] = time.monotonic()
        except Exception as e:   # noqa: BLE001 - reported below
            ej['error'] = f'{type(e).__name__}: {e}'
    th = threading.Thread(target=eject, daemon=True)
    th.start()
    th.join(2.0)
    diag('eject ' + ('done before the thaw' if 't' in ej else
                     'still under way 2 s later: unplug waits for the spice worker '
                     '(spice-server\'s own flush), with the main loop'))
    s.thaw()
    th.join(TIMEOUT)
    q.wait(lambda: q.event('DEVICE_DELETED') is not None, TIMEOUT)
    r = h.guest_wait(op, timeout=TIMEOUT)
    rel = s.released()
    c.check('deleted', 't' in ej and q.event('DEVICE_DELETED') is not None
            and r['outs'] == 1 and rel.count(0) == 1,
            f'eject {"done" if "t" in ej else ej.get("error", "not done")}; DEVICE_DELETED '
            f'{"seen" if q.event("DEVICE_DELETED") else "missing"}; vCPU 0\'s write returned '
            f'once ({r["outs"]}), released {rel.count(0)} time(s)')
    r = h.guest_run(0x80, cpu=0, timeout=TIMEOUT)
    r1 = h.guest_run(0x80, cpu=1, timeout=TIMEOUT)
    stq = q.run('query-status')
    text = s.read_log(h)
    bad = [l for l in text.splitlines()
           if 'AddressSanitizer' in l or 'runtime error' in l or 'Assertion' in l
           or 'Blocked re-entrant' in l]
    c.check('alive', r['outs'] == 1 and r1['outs'] == 1 and stq.get('status') == 'running'
            and not bad,
            f'both vCPUs run new requests; status {stq.get("status")}; '
            f'sanitizer/assertion lines: {bad[:3]}')


CASES = [
    ('io', 2, case_io, [
        ('irq', 'vCPU 1\'s UPDATE_IRQ raises the interrupt line while vCPU 0 is held'),
        ('notify', 'vCPU 1\'s NOTIFY_CMD and a VGA register write take effect meanwhile'),
        ('second', 'vCPU 1\'s own synchronous UPDATE_AREA holds vCPU 1 too; '
                   'nothing is refused'),
        ('thaw', 'after the thaw both writes return once, in order, the work done')]),
]
# (port, held, the third vCPU's synchronous port: one the device takes
# after PORT, so it is held, not a guest bug)
for _p, _w, _t in (('UPDATE_AREA', True, ('UPDATE_AREA',)),
                   ('DESTROY_SURFACE_WAIT', True, ('UPDATE_AREA',)),
                   ('MEMSLOT_ADD', True, ('UPDATE_AREA',)),
                   ('DESTROY_ALL_SURFACES', True, ('CREATE_PRIMARY',)),
                   ('DESTROY_PRIMARY', True, ('CREATE_PRIMARY',)),
                   ('RESET', True, None), ('NOTIFY_OOM', False, None),
                   ('CREATE_PRIMARY', True, ('UPDATE_AREA',))):
    CASES.append((f'{_p.lower().replace("_", "-")}', 3 if _t else 2,
                  ports_case(_p, _w, third=_t), [
        ('held', f'{_p} from vCPU 0 while vCPU 1 is held: '
                 + ('vCPU 0 is held too' if _w else 'it returns at once')
                 + (f'; meanwhile vCPU 2\'s UPDATE_IRQ, NOTIFY_CMD and VGA write '
                    f'take effect, its {_t[0]} holds it too' if _t else '')),
        ('thaw', 'after the thaw every write returned once, in order'),
        ('work', 'the work is done and the vCPUs run')]))
for _p, _o in (('UPDATE_AREA', 'write ports and go on'),
               ('RESET', 'write ports, held over until the reset is done')):
    CASES.append((f'smp4-{_p.lower().replace("_", "-")}', 4,
                  ports_case(_p, True, ((2, 'UPDATE_IRQ'), (3, 'NOTIFY_CMD'))), [
        ('held', f'-smp 4: {_p} from vCPU 0 held behind vCPU 1; vCPUs 2 and 3 {_o}'),
        ('thaw', 'after the thaw every write returned once, in order'),
        ('work', 'the work is done and the vCPUs run')]))
CASES.append(('replay-sync', 2, case_replay_sync, [
    ('held', 'a MEMSLOT_ADD during vCPU 0\'s RESET is held over, its vCPU held'),
    ('replayed', 'when the reset ends it is carried out and holds its vCPU again; '
                 'both writes return once, no guest bug')]))
CASES.append(('mgmt', 2, case_mgmt, [
    ('query', 'query-cpus-fast and info registers answer while vCPU 0 is held'),
    ('stopcont', 'stop and cont complete while it is held; vCPU 1 runs; vCPU 0 stays held'),
    ('migrate', 'a migration does not switch over while it is held; migrate_cancel works'),
    ('reset', 'system_reset lets the held vCPU go: the guest reboots before the thaw')]))
CASES.append(('unplug', 2, case_unplug, [
    ('request', 'device_del of the secondary qxl while vCPU 0 is held in its port'),
    ('deleted', 'the device goes; vCPU 0 is let go exactly once'),
    ('alive', 'QEMU runs, every vCPU runs; no sanitizer report, no assertion')]))


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
        for n, (name, smp, fn, checks) in enumerate(CASES, 1):
            if want in (str(n), name):
                selected.append((n, name, smp, fn, checks))
                break
        else:
            print(f'unknown case {want!r}', file=sys.stderr)
            return 2
    stall.install_signal_handlers()
    outdir = os.environ.get('STALL_TEST_DIR') or os.path.join(
        TOP, 'build', 'stall-tests', 'smp-' + os.path.basename(os.path.dirname(qemu)))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    tap = Tap()
    accel = stall.choose_accel()
    diag(f'{qemu}; accel {accel}'
         + (' (no usable /dev/kvm: the held vCPU is tested under TCG only)'
            if accel == 'tcg' else '')
         + f'; bound {BOUND} s; artifacts {outdir}')
    t_all = time.monotonic()
    for n, name, smp, fn, checks in selected:
        workdir = os.path.join(outdir, f'{n}-{name}')
        os.makedirs(workdir)
        st.run_case(tap, n, name, checks, fn, SmpScenario(qemu, workdir, name, smp),
                    workdir, f', -smp {smp}')
    diag(f'total {time.monotonic() - t_all:.1f} s')
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
