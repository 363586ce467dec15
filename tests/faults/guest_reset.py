#!/usr/bin/python3
"""A guest QXL_IO_RESET while an operation is held by a frozen SPICE client.

    /usr/bin/python3 tests/faults/guest_reset.py QEMU

The setup of tests/faults (fault_tests.py, bench/stall.py): qxl-vga, a SPICE
client connected and frozen, the command ring kept full until the worker
stops taking draws.  The boot-sector guest's vCPU writes
QXL_IO_UPDATE_AREA_ASYNC, which stays in flight behind the frozen client;
then the same vCPU writes QXL_IO_RESET, a synchronous port.

Checks (TAP):

  held    the async operation is in flight (the write returned, no IO_CMD)
          and QMP query-status answers
  waits   the vCPU's QXL_IO_RESET write has reached the device and not
          returned, and QMP query-status answers meanwhile, before the
          client is thawed (docs/specs/qxl-async.rst: a synchronous port
          makes only its own vCPU wait)
  returns after the thaw the reset write returns
  reset   the reset ended the held operation: no IO_CMD for it (trace and
          int_pending), its completion cancelled (trace qxl_io_done where
          the binary has it), QXLRam re-initialised (magic, empty command
          ring, int_pending 0)
  usable  memory slot and primary surface are gone (adding them again is
          no guest bug), a new fill + sync UPDATE_AREA from the vCPU
          returns with the right pixels, an UPDATE_AREA_ASYNC from the vCPU
          raises IO_CMD
  alive   QMP answers, quit exits 0, no assertion/abort in stderr

Waits are bounded as in fault_tests.py (FAULT_TEST_BOUND, FAULT_TEST_TIMEOUT).
Last line "N passed, N failed"; exit status 1 on a failure.
"""

import os
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import fault_tests as ft  # noqa: E402
from fault_tests import stall, HarnessError, AsyncQmp, Tap, diag, fmt_rect  # noqa: E402

ft.WANT_TRACE.append('qxl_guest_reset')
QXL_IO_RESET = 5
KEYS = [
    ('held', 'UPDATE_AREA_ASYNC is held by the frozen client; QMP answers'),
    ('waits', 'the vCPU waits in QXL_IO_RESET; QMP answers before the thaw'),
    ('returns', 'after the thaw the QXL_IO_RESET write returns'),
    ('reset', 'no IO_CMD for the held operation; QXLRam re-initialised'),
    ('usable', 'slots and surfaces gone, the device works again'),
    ('alive', 'no crash: QMP answers, quit exits 0, no assert/abort in stderr'),
]


class ResetCell(ft.Cell):
    def __init__(self, tap):
        super().__init__(tap, 'async', 'guest-reset')
        self.keys = [k for k, _ in KEYS]

    def title(self, key):
        return f'guest-reset: {dict(KEYS)[key]}'


def run(c, r):
    h = r.h = r.harness(r.name)
    h.start()
    h.setup_device()
    h.prepare_draws(n_bitmaps=8)
    h.start_client()
    h.freeze_client()
    r.log(f'fill: {h.fill_ring(stall_after=1.5, timeout=ft.TIMEOUT)}')
    h.last_draw_to_fill(*ft.FILL_RECT, ft.FILL_COLOR)
    r.q = AsyncQmp(h.probe_path, tag='p')
    r.q2 = AsyncQmp(qmp=h.qmp, tag='c')
    h.set_update_area()
    r.ack_before = h.ack()
    r.mark = h.log_mark()
    r.op = h.guest_post(h.io_base + r.port)
    r.deadline = time.monotonic() + ft.BOUND
    if not h.wait_log(ft.write_re(r.port), r.left(), r.mark):
        raise HarnessError('the vCPU\'s UPDATE_AREA_ASYNC never reached the device')
    ft.check_held(c, r)

    # the vCPU writes QXL_IO_RESET
    mark2 = h.log_mark()
    rst = h.guest_post(h.io_base + QXL_IO_RESET)
    reached = h.wait_log(ft.write_re(QXL_IO_RESET), r.left(), mark2)
    q = r.q
    i = q.send('query-status')
    answered = q.wait(lambda: q.answered(i), r.left())
    st = q.result(i) if answered else {}
    ack = h.ack() if answered else None
    pending = ack is not None and ack != rst['seq']
    r.log(f'reset: reached {reached}, query-status answered {answered}, ack {ack}')
    c.check('waits', reached and answered and pending and
            st.get("status") == "running" and h.client_frozen,
            ('the write reached the device' if reached else 'the write never reached the device')
            + (f'; query-status: {st.get("status")} with the client frozen' if answered
               else f'; query-status not answered within {ft.BOUND} s (main loop blocked)')
            + (f'; ack {ack}: the write has not returned' if pending else
               f'; ack {ack}: the write had returned already' if answered else ''))

    r.thaw()
    try:
        h.guest_wait(rst, timeout=ft.TIMEOUT, samples=False)
        returned = True
    except HarnessError as e:
        r.log(f'reset wait: {e}')
        returned = False
    c.check('returns', returned, 'the write returned' if returned else
            f'the write did not return within {ft.TIMEOUT} s')

    log = h.log_text()
    io_cmd = ft.io_cmds(log, r.mark)
    bits = h.int_bits()
    prod, cons = h.ring_state()
    magic = h.qt.readl(h.ram)
    ok = io_cmd == 0 and not bits & ft.IO_CMD and prod == cons and \
        magic == stall.QXL_RAM_MAGIC and bits == 0
    what = f'IO_CMD trace lines since the async write {io_cmd}; int_pending {bits:#x}; ' \
        f'cmd ring prod {prod} cons {cons}; QXLRam magic {magic:#x}'
    if r.has_done:
        done = h.count(ft.done_re(r.port, False), r.mark)
        canc = h.count(ft.done_re(r.port, True), r.mark)
        ok = ok and done == 0 and canc == 1
        what += f'; qxl_io_done for UPDATE_AREA_ASYNC: {done} done, {canc} cancelled'
    if 'qxl_guest_reset' in r.events:
        what += f'; qxl_guest_reset trace lines {h.count(ft.re.compile("^qxl_guest_reset ", ft.re.M), mark2)}'
    c.check('reset', ok, what)

    # usable: setup_device adds slot 0 and creates the primary again - a
    # guest bug (QXL_INTERRUPT_ERROR, HarnessError) if they had survived
    h.qt.writel(h.int_pending, 0)
    h.setup_device()
    h.push_fill(ft.RECT_A, ft.COLOR_A)
    h.set_update_area()
    ra = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA, timeout=ft.TIMEOUT)
    rows_a = h.read_surface_rect(*ft.RECT_A)
    h.qt.writel(h.int_pending, 0)
    h.push_fill(ft.RECT_B, ft.COLOR_B)
    rb = h.guest_run(h.io_base + stall.QXL_IO_UPDATE_AREA_ASYNC, intaddr=h.int_pending,
                     intmask=ft.IO_CMD, timeout=ft.TIMEOUT)
    rows_b = h.read_surface_rect(*ft.RECT_B)
    ok = ft.rect_is(rows_a, ft.COLOR_A) and \
        rb['timeouts'] == 0 and ft.rect_is(rows_b, ft.COLOR_B)
    c.check('usable', ok, f'slot and primary added again; sync UPDATE_AREA returned, '
            f'rect A {fmt_rect(rows_a)}; UPDATE_AREA_ASYNC: '
            + ('the guest saw IO_CMD' if rb['timeouts'] == 0 else 'no IO_CMD')
            + f', rect B {fmt_rect(rows_b)}')

    st = q.run('query-status', timeout=ft.TIMEOUT)
    timeout = h.spice_timeout()
    rc = ft.quit_qemu(h, q)
    bad = h.bad_lines()
    c.check('alive', rc == 0 and not bad and not timeout,
            f'QEMU: {st.get("status")}, exit status {rc}'
            + (f', stderr: {bad[:3]}' if bad else '')
            + (f'; spice-server: {timeout!r}' if timeout else ''))


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    qemu = os.path.abspath(argv[0])
    stall.install_signal_handlers()
    outdir = os.environ.get('FAULT_TEST_DIR') or os.path.join(
        ft.TOP, 'build', 'fault-tests', os.path.basename(os.path.dirname(qemu)),
        'guest-reset')
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    tap = Tap()
    c = ResetCell(tap)
    r = ft.Run(qemu, outdir, 'async', 'resume')
    r.name = 'async-guest-reset'
    diag(f'{qemu}; trace {",".join(r.events)}; logs {outdir}')
    t0 = time.monotonic()
    err = None
    try:
        run(c, r)
    except Exception as e:
        err = f'{type(e).__name__}: {e}'
        r.log(traceback.format_exc())
    finally:
        r.close()
    c.finish(err)
    if err:
        diag(f'error: {err}; logs in {outdir}')
    diag(f'{time.monotonic() - t0:.1f} s')
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
