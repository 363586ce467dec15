#!/usr/bin/python3
"""The boot-sector guest on several vCPUs: each serves its own mailbox.

    /usr/bin/python3 tests/stall/smp_selftest.py QEMU_BINARY [SMP ...]

For each SMP (default: 1 2 4) one QEMU (TCG unless BENCH_ACCEL says
otherwise) boots bench/bootsector.S with -smp SMP through bench/stall.py,
and the checks are:

  up          every vCPU wrote its magic, its APIC ID and its default
              sample base into mailbox 0x1000 + 0x100 * APIC ID
  cpu K       a request of a few `outb` to port 0x80 posted to CPU K is
              acked by K alone (every other mailbox's busy/ack unchanged),
              its `outs` counter equals the count, one sample per write
  tsc         requests run on CPU 0, the last CPU, CPU 0 again see an
              increasing TSC, the last CPU's own calibration agrees with
              CPU 0's, and op_window() puts its request between posting
              and seeing the ack
  outs        during a request of slow writes (a gap after each) the
              counter is seen between 0 and the count: it is stored after
              every write, not at the end
  together    requests posted to every CPU are all seen started and none
              finished at one moment, and their TSC windows overlap
  qxl         with the device set up, two vCPUs write QXL_IO_UPDATE_IRQ
              2000 times each at the same time; both finish, no
              QXL_INTERRUPT_ERROR, QEMU runs
  reset       after QMP system_reset every vCPU comes up again (the BSP
              starts the APs anew) and the last one serves a request

With SMP 1 only "up", "cpu 0", "tsc" and "reset" apply (and the command line has no
-smp): the single-vCPU guest works as before.  Every wait is bounded
(SMP_SELFTEST_TIMEOUT, default 60 s each).  Output: TAP lines, "#"
diagnostics, last line "N passed, N failed"; exit status 1 on a failure,
2 on a usage error.  Logs: SMP_SELFTEST_DIR, default
build/stall-tests/smp-<binary's directory name>/smpN.
"""

import os
import shutil
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(TOP, 'bench'))
import stall  # noqa: E402
from stall import StallHarness, HarnessError, Mailbox  # noqa: E402

TIMEOUT = float(os.environ.get('SMP_SELFTEST_TIMEOUT', 60))
ACCEL = os.environ.get('BENCH_ACCEL') or 'tcg'
QXL_WRITES = 2000


def diag(msg):
    for line in str(msg).splitlines() or ['']:
        print(f'# {line}', flush=True)


class Tap:
    def __init__(self):
        self.n = 0
        self.passed = 0
        self.failed = 0

    def report(self, ok, desc, detail=''):
        self.n += 1
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        print(f'{"ok" if ok else "not ok"} {self.n} - {desc}', flush=True)
        if detail:
            diag(detail)
        return ok


def checks_for(smp):
    names = ['up'] + [f'cpu {k}' for k in range(smp)] + ['tsc']
    if smp > 1:
        names += ['outs', 'together', 'qxl']
    return names + ['reset']


def mailboxes(h):
    """(busy, ack) of every vCPU's mailbox."""
    return [(h.mailbox_readl(Mailbox.BUSY, c), h.mailbox_readl(Mailbox.ACK, c))
            for c in range(h.smp)]


def wait_all(h, ops):
    return [h.guest_wait(op, timeout=TIMEOUT) for op in ops]


def run_smp(tap, qemu, smp, workdir):
    label = f'smp {smp}'
    todo = checks_for(smp)

    def report(name, ok, detail=''):
        todo.remove(name)
        return tap.report(ok, f'{label}: {name}', detail)

    logf = open(os.path.join(workdir, 'harness.log'), 'w')
    h = StallHarness(qemu, workdir=workdir, name='qemu', accel=ACCEL, smp=smp,
                     timeout=TIMEOUT, memory_mb=128,
                     log=lambda m: (logf.write(f'{time.monotonic():.3f} {m}\n'),
                                    logf.flush()))
    err = None
    try:
        # up: start() waits for every magic and checks each mailbox's APIC ID
        h.start()
        args = h.qemu_args(h.boot_image)
        sbases = [h.mailbox_readl(Mailbox.SBASE, c) for c in range(smp)]
        ok = (sbases == [Mailbox.samples(c) for c in range(smp)]
              and ('-smp' in args) == (smp > 1)
              and (smp == 1 or args[args.index('-smp') + 1] == str(smp)))
        report('up', ok, f'sample bases {[hex(b) for b in sbases]}; '
                         f'-smp in the command line: {"-smp" in args}')

        # cpu K: a different count on each, so a request served twice or
        # by the wrong vCPU shows in outs too
        for k in range(smp):
            count = 3 + k
            before = mailboxes(h)
            r = h.guest_run(0x80, value=k, count=count, cpu=k, timeout=TIMEOUT)
            after = mailboxes(h)
            others = all(after[c] == before[c] for c in range(smp) if c != k)
            ok = (after[k] == (r['seq'], r['seq']) and others
                  and r['outs'] == count and len(r['samples']) == count
                  and all(s > 0 for s in r['samples']) and r['timeouts'] == 0)
            report(f'cpu {k}', ok, f'busy/ack before {before} after {after}; '
                                   f'outs {r["outs"]} of {count}; samples {r["samples"]}')

        # tsc: one TSC for all vCPUs, and each one's mapping to host time
        last = smp - 1
        r0 = h.guest_run(0x80, count=0, cpu=0, timeout=TIMEOUT)
        rl = h.guest_run(0x80, count=0, cpu=last, timeout=TIMEOUT)
        r0b = h.guest_run(0x80, count=0, cpu=0, timeout=TIMEOUT)
        hz0 = h.calibrate_tsc(min_span=0.5)
        hzl = h.calibrate_tsc(min_span=0.5, cpu=last) if last else hz0
        r = h.guest_run(0x80, count=1, cpu=last, timeout=TIMEOUT)
        start, end = h.op_window(r)
        slack = 0.005           # the BSP's pick-up, host scheduling
        ok = (r0['tsc1'] <= rl['tsc0'] and rl['tsc1'] <= r0b['tsc0']
              and abs(hzl / hz0 - 1) < 0.05
              and r['t_post'] - slack <= start <= end <= r['t_seen'] + slack)
        report('tsc', ok, f'tsc0 {r0["tsc0"]} / {rl["tsc0"]} / {r0b["tsc0"]}; '
                          f'CPU 0 {hz0 / 1e6:.1f} MHz, CPU {last} {hzl / 1e6:.1f} MHz; '
                          f'window {start - r["t_post"]:+.4f}..{end - r["t_post"]:+.4f} s '
                          f'after posting, ack seen {r["t_seen"] - r["t_post"]:.4f} s')

        if smp > 1:
            concurrent_checks(h, report, hz0)

        # reset: the mailboxes keep their contents, so clear every magic
        h.clear_guest_ready()
        h.qmp.execute('system_reset')
        h.wait_guest_ready(TIMEOUT)
        acks = [h.mailbox_readl(Mailbox.ACK, c) for c in range(smp)]
        r = h.guest_run(0x80, count=2, cpu=last, timeout=TIMEOUT)
        ok = acks == [0] * smp and r['outs'] == 2 and r['seq'] == 1
        report('reset', ok, f'acks after the reboot {acks}; CPU {last}: request '
                            f'{r["seq"]}, outs {r["outs"]}')
    except Exception as e:      # the remaining checks fail
        err = f'{type(e).__name__}: {e}'
        logf.write(traceback.format_exc())
    finally:
        h.close()
        for name in list(todo):
            report(name, False, f'not reached: {err or "interrupted"}')
        logf.close()


def concurrent_checks(h, report, hz):
    """outs, together, qxl (HZ: the guest TSC frequency)."""
    last = h.smp - 1

    # outs: 5 writes 0.2 s apart; watch the counter from the host
    count, gap = 5, int(0.2 * hz)
    op = h.guest_post(0x80, count=count, gap=gap, cpu=last)
    seen = []
    deadline = time.monotonic() + TIMEOUT
    while h.mailbox_readl(Mailbox.ACK, last) != op['seq']:
        if time.monotonic() > deadline:
            raise HarnessError(f'outs: request not done after {TIMEOUT} s')
        v = h.mailbox_readl(Mailbox.OUTS, last)
        if not seen or seen[-1] != v:
            seen.append(v)
        time.sleep(0.01)
    r = h.guest_wait(op, timeout=TIMEOUT)
    ok = (any(0 < v < count for v in seen) and seen == sorted(seen)
          and r['outs'] == count)
    report('outs', ok, f'outs seen during the request: {seen}; at the end {r["outs"]}')

    # together: every vCPU busy at one moment, none finished
    count, gap = 4, int(0.25 * hz)
    ops = [h.guest_post(0x80, count=count, gap=gap, cpu=c) for c in range(h.smp)]
    moment = None
    deadline = time.monotonic() + TIMEOUT
    while moment is None and time.monotonic() < deadline:
        mb = mailboxes(h)
        if all(mb[op['cpu']] == (op['seq'], op['seq'] - 1) for op in ops):
            moment = mb
        elif any(mb[op['cpu']][1] == op['seq'] for op in ops):
            break           # one finished before all had started
        time.sleep(0.005)
    res = wait_all(h, ops)
    overlap = max(r['tsc0'] for r in res) < min(r['tsc1'] for r in res)
    ok = moment is not None and overlap and all(r['outs'] == count for r in res)
    report('together', ok, f'all busy, none done, at once: {moment}; TSC windows '
                           f'{[(r["tsc0"], r["tsc1"]) for r in res]} overlap: {overlap}')

    # qxl: two vCPUs on the device's ports at the same time; a gap spreads
    # each one's writes over ~1 s so that the requests overlap
    h.setup_device()
    port = h.io_base + stall.QXL_IO_UPDATE_IRQ
    gap = int(0.0005 * hz)
    ops = [h.guest_post(port, count=QXL_WRITES, gap=gap, cpu=c) for c in (0, last)]
    res = wait_all(h, ops)
    overlap = max(r['tsc0'] for r in res) < min(r['tsc1'] for r in res)
    pending = h.qt.readl(h.int_pending)
    h._check_alive('after the concurrent QXL writes')
    ok = (overlap and all(r['outs'] == QXL_WRITES for r in res)
          and not pending & stall.QXL_INTERRUPT_ERROR)
    med = [sorted(r['samples'])[QXL_WRITES // 2] * 1e6 / hz for r in res]
    report('qxl', ok, f'CPUs 0 and {last}: outs {[r["outs"] for r in res]}, '
                      f'windows overlap: {overlap}, int_pending {pending:#x}, '
                      f'median write {med[0]:.2f} / {med[1]:.2f} us')


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('qemu')
    ap.add_argument('smp', nargs='*', type=int, metavar='SMP',
                    help='vCPU counts to test (default: 1 2 4)')
    a = ap.parse_args(argv)
    qemu = os.path.abspath(a.qemu)
    if not os.access(qemu, os.X_OK):
        print(f'{a.qemu}: not an executable', file=sys.stderr)
        return 2
    smps = a.smp or [1, 2, 4]
    if not all(1 <= n <= Mailbox.MAX_CPUS for n in smps):
        print(f'SMP: 1 to {Mailbox.MAX_CPUS}', file=sys.stderr)
        return 2
    stall.install_signal_handlers()
    outdir = os.environ.get('SMP_SELFTEST_DIR') or os.path.join(
        TOP, 'build', 'stall-tests', 'smp-' + os.path.basename(os.path.dirname(qemu)))
    shutil.rmtree(outdir, ignore_errors=True)
    os.makedirs(outdir)
    tap = Tap()
    diag(f'{qemu}; accel {ACCEL}; logs {outdir}')
    t_all = time.monotonic()
    for smp in smps:
        workdir = os.path.join(outdir, f'smp{smp}')
        os.makedirs(workdir, exist_ok=True)
        t0 = time.monotonic()
        run_smp(tap, qemu, smp, workdir)
        diag(f'smp {smp}: {time.monotonic() - t0:.1f} s')
    diag(f'total {time.monotonic() - t_all:.1f} s')
    print(f'{tap.passed} passed, {tap.failed} failed', flush=True)
    return 1 if tap.failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
