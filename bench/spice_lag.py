#!/usr/bin/python3
"""make bench, second table: the spice-server series behind a frozen client.

    spice_lag.py [QEMU] [--debian-spice PATH] [--bound S] [--fps-seconds S]
                 [--samples N] [--out DIR]       (normally through bench.py)

The patched QEMU (build/patched/qemu-system-x86_64) runs once with Debian's
libspice-server (LD_LIBRARY_PATH set to its directory, which overrides the
binary's RUNPATH) and once with build/spice's patched one (LD_LIBRARY_PATH
unset: the RUNPATH).  Which library each QEMU actually mapped is read from
/proc/PID/maps; a run that mapped another one than asked for fails.

Every row is a QEMU of its own, per library (rows alternate between the
libraries): the boot-sector guest of bench/stall.py, qxl-vga with a
1024x768 primary, two SPICE clients (QEMU runs with SPICE_DEBUG_ALLOW_MC=1;
tests/spice/lagging_tests.py's Client).  Client A is frozen with SIGSTOP
and the command ring is kept full of 256x256 QXL_DRAW_COPY until A's pipe
is full: Debian's worker stops taking commands (nothing taken for 2 s), or
the patched library says A lags (G_MESSAGES_DEBUG=Spice).  Then:

  fps                    for --fps-seconds the ring is kept full; the
                         display updates (spice-gtk's display-invalidate)
                         client B receives, per second, and the draws the
                         worker takes;
  UPDATE_AREA            the vCPU writes the synchronous QXL_IO_UPDATE_AREA
                         (whole primary): time until the write returns;
  UPDATE_AREA_ASYNC      the vCPU writes QXL_IO_UPDATE_AREA_ASYNC and polls
  DESTROY_PRIMARY_ASYNC  int_pending: time until QXL_INTERRUPT_IO_CMD.

Times are the guest's rdtsc.  A wait is bounded by --bound seconds (past
spice-server's 30 s timeout); an operation not done by then is reported as
">= BOUND".  An operation is repeated in the same QEMU (a ring of draws
before each, the primary created again before each DESTROY_PRIMARY_ASYNC)
up to --samples times while it completes with A still stopped and no
client given up on: with the patched library the median of those is shown
(the first, like Debian's, is in results.json); with Debian's library the
first one times out and closes the display channel, so it is the only one.
Also recorded: spice-server's timeout warnings in the QEMU log, whether
B's display channel was closed, whether A was still stopped at the end, how
often A and B lagged and caught up (B: a client other than the first to lag
after A was frozen).
"""

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'spice'))
import stall  # noqa: E402
import lagging_tests as lt  # noqa: E402  (Client, LAG_RE, CATCH_UP_RE)
from stall_tests import Scenario  # noqa: E402  (read_log)

LIBS = ('debian', 'patched')
ROWS = (
    ('UPDATE_AREA', 'sync QXL_IO_UPDATE_AREA (the vCPU\'s write returns)'),
    ('UPDATE_AREA_ASYNC', 'QXL_IO_UPDATE_AREA_ASYNC (QXL_INTERRUPT_IO_CMD raised)'),
    ('DESTROY_PRIMARY_ASYNC', 'QXL_IO_DESTROY_PRIMARY_ASYNC (QXL_INTERRUPT_IO_CMD raised)'),
    ('fps', 'display updates per second client B receives'),
)
PATCHED_LIB_DIR = os.path.join(TOP, 'build', 'spice', 'lib', 'x86_64-linux-gnu')
# spice-server giving up on a client, in QEMU's log: "qemu-system-x86_64:
# warning: Spice: ../server/red-worker.cpp:289:flush_commands: flush timeout"
# (or "Spice-WARNING **: ...: ../server/..." without QEMU's log handler)
SPICE_TIMEOUT_RE = re.compile(r'(?:warning: Spice|Spice-WARNING)[^\n]*?'
                              r'\.cpp:\d+:(\w+: [^\n]*timeout[^\n]*)')


def debian_library():
    """Debian's libspice-server.so.1, as ldconfig knows it."""
    out = subprocess.run(['ldconfig', '-p'], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.strip().startswith('libspice-server.so.1 '):
            return line.rsplit('=>', 1)[1].strip()
    return None


def loadavg1():
    with open('/proc/loadavg') as f:
        return float(f.read().split()[0])


def mapped_library(pid):
    """The libspice-server file process PID has mapped (None: none)."""
    with open(f'/proc/{pid}/maps') as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and 'libspice-server' in parts[5]:
                return parts[5].strip()
    return None


def library_version(lib, path):
    if lib == 'debian':
        r = subprocess.run(['dpkg-query', '-S', path], capture_output=True, text=True)
        pkg = r.stdout.split(':', 1)[0] if r.returncode == 0 else ''
        if pkg:
            v = subprocess.run(['dpkg-query', '-W', '-f', '${Version}', pkg],
                               capture_output=True, text=True).stdout
            return f'{pkg} {v}'
        return ''
    try:
        for line in open(os.path.join(PATCHED_LIB_DIR, 'pkgconfig', 'spice-server.pc')):
            if line.startswith('Version:'):
                return f'spice-server {line.split(":", 1)[1].strip()} + spice/patches'
    except OSError:
        pass
    return ''


@contextlib.contextmanager
def qemu_environ(lib, debian_dir):
    """The environment QEMU starts in: a second client allowed, spice-server's
    debug lines (lag, caught up) on, and LD_LIBRARY_PATH = Debian's library
    directory (lib 'debian') or unset (lib 'patched': the binary's RUNPATH).
    Restored afterwards (the clients start without it)."""
    keys = ('LD_LIBRARY_PATH', 'SPICE_DEBUG_ALLOW_MC', 'G_MESSAGES_DEBUG')
    saved = {k: os.environ.get(k) for k in keys}
    os.environ['SPICE_DEBUG_ALLOW_MC'] = '1'
    os.environ['G_MESSAGES_DEBUG'] = 'Spice'
    if lib == 'debian':
        os.environ['LD_LIBRARY_PATH'] = debian_dir
    else:
        os.environ.pop('LD_LIBRARY_PATH', None)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def env_label(lib, debian_dir):
    return f'LD_LIBRARY_PATH={debian_dir}' if lib == 'debian' else 'LD_LIBRARY_PATH unset'


def display_lost(c):
    """Client C lost its display channel (or the whole session)."""
    return bool(c.disconnected() or c.count('channel-closed', type='display') or
                c.count('channel-error', type='display'))


class LagRun:
    """One QEMU with the library LIB, clients A (to be frozen) and B."""

    def __init__(self, qemu, lib, what, opts, log):
        self.qemu, self.lib, self.what, self.opts = qemu, lib, what, opts
        self.log = log
        self.workdir = os.path.join(opts.out, f'spice-{lib}-{what}')
        os.makedirs(self.workdir, exist_ok=True)
        self.h = None
        self.clients = []
        self.a_ptr = None        # spice-server's pointer of A's display client

    def start(self):
        o = self.opts
        self.h = h = stall.StallHarness(self.qemu, workdir=self.workdir, name=self.lib,
                                        log=self.log, timeout=60.0)
        with qemu_environ(self.lib, o.debian_dir):
            h.start(boot_image=o.boot_image)
        self.mapped = mapped_library(h.proc.pid)
        want = o.expected[self.lib]
        if not self.mapped or os.path.realpath(self.mapped) != want:
            raise stall.HarnessError(f'QEMU mapped {self.mapped}, not {want} '
                                     f'({env_label(self.lib, o.debian_dir)})')
        h.setup_device()
        # room for every drawable of the fps window (blocks are not reused)
        n_bitmaps = 8
        space = h.free_end - ((h.free_start + 0xfff) & ~0xfff) - \
            n_bitmaps * h.BITMAP_W * h.BITMAP_H * 4
        h.prepare_draws(n_bitmaps=n_bitmaps, max_draws=space // h.DRAWABLE_BLOCK - 1)
        for name in ('A', 'B'):
            c = lt.Client(h, name)
            self.clients.append(c)
            c.wait('primary-create', 60, width=h.width)
        h.calibrate_tsc()
        return self

    def _log_text(self):
        return Scenario.read_log(self.h)

    def lag_lines(self):
        """(lag lines, caught-up lines) so far, A's and B's (B: every
        client but the first that lagged after A was frozen, which is
        taken to be A)."""
        t = self._log_text()
        lags, ups = lt.LAG_RE.findall(t), lt.CATCH_UP_RE.findall(t)
        if self.a_ptr is None and lags:
            self.a_ptr = lags[0]
        a = self.a_ptr
        return {'a_lags': lags.count(a), 'a_caught_up': ups.count(a),
                'b_lags': len(lags) - lags.count(a),
                'b_caught_up': len(ups) - ups.count(a)}

    def spice_timeouts(self):
        return SPICE_TIMEOUT_RE.findall(self._log_text())

    def fill(self, stall_after=2.0, timeout=60.0):
        """Freeze A; keep the ring full until A's pipe is full: the worker
        took nothing for STALL_AFTER s (Debian's library), or spice-server
        said a client lags (the patched one)."""
        h, (a, _) = self.h, self.clients
        a.freeze()
        t0 = time.monotonic()
        last_cons, last_change = None, t0
        while True:
            h.push_draws(stall.RING_SIZE)
            prod, cons = h.ring_state()
            now = time.monotonic()
            if self.lag_lines()['a_lags']:
                how = 'A lags'
                break
            if cons != last_cons:
                last_cons, last_change = cons, now
            elif (prod - cons) % 2**32 == stall.RING_SIZE and now - last_change >= stall_after:
                how = 'worker stopped'
                break
            if now - t0 > timeout:
                raise stall.HarnessError(f'A\'s pipe not full after {timeout} s '
                                         f'(prod {prod}, cons {cons})')
            time.sleep(0.01)
        return {'how': how, 'taken': cons, 'pushed': h.draws_pushed,
                'seconds': round(time.monotonic() - t0, 2)}

    def updates(self, c):
        """(display updates client C got so far, when it said so)."""
        with c.cv:
            n = len(c.events)
        c.proc.send_signal(signal.SIGUSR2)
        ev = c.wait('count', 30, after=n)
        return ev['invalidate'], time.monotonic()

    def fps(self, seconds):
        h, (a, b) = self.h, self.clients
        _, cons0 = h.ring_state()
        u0, t0 = self.updates(b)
        lags0 = self.lag_lines()
        exhausted = False
        while time.monotonic() < t0 + seconds:
            if not h.push_draws(stall.RING_SIZE):
                prod, cons = h.ring_state()
                if h.draws_pushed >= h.max_draws and prod == cons:
                    exhausted = True
                    break
            time.sleep(0.002)
        u1, t1 = self.updates(b)
        _, cons1 = h.ring_state()
        lags1 = self.lag_lines()
        dt = t1 - t0
        return {'seconds': round(dt, 3), 'updates': u1 - u0,
                'updates_per_s': (u1 - u0) / dt,
                'draws_taken': (cons1 - cons0) % 2**32,
                'draws_per_s': ((cons1 - cons0) % 2**32) / dt,
                'draws_exhausted': exhausted,
                **{f'{k}_during': lags1[k] - lags0[k] for k in lags1}}

    def ops(self, name, bound, samples):
        """op() up to SAMPLES times, while it completes and nothing gave up
        on a client (with Debian's library the first one disconnects the
        display channel: one sample).  Before each further
        DESTROY_PRIMARY_ASYNC the primary is created again."""
        out = []
        for i in range(samples):
            if i and name == 'DESTROY_PRIMARY_ASYNC':
                self.h.io_async(stall.QXL_IO_CREATE_PRIMARY_ASYNC, 0, timeout=bound)
            if i:
                self.h.push_draws(stall.RING_SIZE)
                time.sleep(0.1)
            lag = self.lag_lines()
            o = self.op(name, bound)
            o['a_lagging'] = lag['a_lags'] > lag['a_caught_up']
            out.append(o)
            if not o['done'] or not self.clients[0].stopped() or \
               self.spice_timeouts() or display_lost(self.clients[1]):
                break
        return out

    def op(self, name, bound):
        """The vCPU writes port NAME; its time until done (bounded)."""
        h = self.h
        is_async = name.endswith('_ASYNC')
        h.push_draws(stall.RING_SIZE)       # draws waiting, as a guest has
        h.set_update_area()
        h.qt.writel(h.int_pending, 0)
        op = h.guest_post(h.io_base + getattr(stall, f'QXL_IO_{name}'), 0, count=1,
                          intaddr=h.int_pending if is_async else 0,
                          intmask=stall.QXL_INTERRUPT_IO_CMD if is_async else 0,
                          waitlim=0xffffffff)
        try:
            r = h.guest_wait(op, timeout=bound, samples=False)
        except (stall.HarnessError, OSError) as e:
            # not done by the bound; or the main loop, blocked, did not
            # answer the qtest read of the mailbox (QEMU holding the BQL
            # across the wait): qtest is not used again
            h._check_alive('during the operation')
            return {'done': False, 'at_least_ms': (time.monotonic() - op['t_post']) * 1e3,
                    'why': f'not done after the {bound:g} s bound' +
                           (' (qtest blocked)' if isinstance(e, OSError) else '')}
        ticks = (r['tsc1'] - r['tsc0']) if is_async else r['last']
        res = {'done': not r['timeouts'], 'ms': h.ticks_to_ms(ticks),
               'host_ms': (r['t_seen'] - op['t_post']) * 1e3}
        if r['timeouts']:
            res.update(at_least_ms=res.pop('ms'), why='the guest stopped polling')
        return res

    def close(self):
        for c in self.clients:
            c.close()
        if self.h:
            self.h.close()


def run_one(qemu, lib, what, opts, log):
    t0 = time.monotonic()
    res = {'ok': False}
    r = LagRun(qemu, lib, what, opts, lambda m: log(f'[spice {lib} {what}] {m}'))
    try:
        r.start()
        res['mapped'] = r.mapped
        res['fill'] = r.fill()
        r.log(f'A\'s pipe full ({res["fill"]["how"]}) after {res["fill"]["taken"]} '
              f'draws taken')
        if what == 'fps':
            res['fps'] = r.fps(opts.fps_seconds)
            r.log(f'B: {res["fps"]["updates_per_s"]:.1f} updates/s')
        else:
            res['samples'] = r.ops(what, opts.bound, opts.samples)
            res['op'] = o = summary(res['samples'])
            r.log(f'{what}: {_ms(o)}')
        a, b = r.clients
        time.sleep(0.2)      # a disconnection the operation caused reaches B
        # (A, stopped, reports nothing: spice-server's log tells)
        res.update(a_stopped=a.stopped(), b_display_lost=display_lost(b))
        res.update(r.lag_lines())
        res['spice_timeouts'] = r.spice_timeouts()[:4]
        res['ok'] = True
    except Exception as e:
        res['error'] = f'{type(e).__name__}: {e}'
        log(f'[spice {lib} {what}] FAILED: {res["error"]}')
        traceback.print_exc()
    finally:
        r.close()
        res['qemu_log'] = os.path.relpath(r.h.qemu_log, TOP) if r.h else None
        res['runtime_s'] = round(time.monotonic() - t0, 1)
    return res


def run(qemu, opts, log):
    """Every row with both libraries.  OPTS: debian_lib (path), bound,
    fps_seconds, out, boot_image.  Returns the results (JSON-able)."""
    t0 = time.monotonic()
    opts.debian_dir = os.path.dirname(opts.debian_lib)
    opts.expected = {'debian': os.path.realpath(opts.debian_lib),
                     'patched': os.path.realpath(os.path.join(PATCHED_LIB_DIR,
                                                              'libspice-server.so.1'))}
    res = {'qemu': os.path.relpath(qemu, TOP), 'bound_s': opts.bound,
           'fps_seconds': opts.fps_seconds, 'samples': opts.samples,
           'libs': {}, 'rows': {}, 'loadavg_before': loadavg1()}
    for lib in LIBS:
        res['libs'][lib] = {'env': env_label(lib, opts.debian_dir),
                            'expected': opts.expected[lib],
                            'version': library_version(lib, opts.expected[lib])}
    failed = 0
    for what, _ in ROWS:
        res['rows'][what] = {}
        for lib in LIBS:
            log(f'[spice {lib} {what}]')
            r = run_one(qemu, lib, what, opts, log)
            res['rows'][what][lib] = r
            failed += not r['ok']
    for lib in LIBS:
        seen = sorted({r[lib].get('mapped') for r in res['rows'].values()
                       if r[lib].get('mapped')})
        res['libs'][lib]['mapped'] = seen
    res['failed'] = failed
    res['loadavg_after'] = loadavg1()
    res['runtime_s'] = round(time.monotonic() - t0, 1)
    return res


def summary(samples):
    """The first sample if it did not complete, else the median of those
    that did (with n, min, max)."""
    done = sorted(o['ms'] for o in samples if o['done'])
    if not samples[0]['done']:
        return dict(samples[0], n=1)
    return {'done': True, 'ms': stall.percentile(done, 50), 'n': len(done),
            'min_ms': done[0], 'max_ms': done[-1]}


def _t(v):
    return f'{v / 1e3:.2f} s' if v >= 1000 else f'{v:.2f} ms' if v < 10 else f'{v:.1f} ms'


def _ms(o):
    """An operation's time: '12.3 ms', '30.02 s', '>= 40 s', '1.20 ms
    (median of 5, 0.90 to 2.10)'."""
    if not o.get('done'):
        return f'>= {o["at_least_ms"] / 1e3:.0f} s'
    if o.get('n', 1) > 1:
        return f"{_t(o['ms'])} (median of {o['n']}, {_t(o['min_ms'])} to {_t(o['max_ms'])})"
    return _t(o['ms'])


def _x(v):
    if v >= 100:
        return f'{v:,.0f}x'
    return f'{v:.2f}x' if v >= 0.1 or v == 0 else f'{v:.2g}x'


def _notes(r):
    n = []
    if r.get('spice_timeouts'):
        n.append('spice-server: ' + '; '.join(sorted(set(r['spice_timeouts']))))
    if r.get('b_display_lost'):
        n.append("B's display channel closed")
    f = r.get('fps')
    if f and f['b_lags_during']:
        n.append(f"B lagged {f['b_lags_during']} times")
    if r.get('ok') and not r.get('a_stopped'):
        n.append('A not stopped at the end!')
    return ', '.join(n)


def table(res):
    """The second table, as markdown lines."""
    L = []
    L.append(f"The spice-server series: `{res['qemu']}` with Debian's libspice-server "
             f"and with build/spice's (the series), each row and library a QEMU of its "
             f"own: client A frozen with SIGSTOP and its pipe full, client B healthy; "
             f"the vCPU's port write to completion (guest rdtsc), repeated up to "
             f"{res.get('samples', 1)} times while nobody gave up on a client; waits "
             f"bounded at {res['bound_s']:g} s.")
    L.append('')
    for lib, label in (('debian', "Debian's"), ('patched', 'patched')):
        li = res['libs'][lib]
        mapped = ', '.join(li.get('mapped') or []) or 'n/a'
        L.append(f"- {label} library: {li['env']}; QEMU mapped `{mapped}`"
                 + (f" ({li['version']})" if li.get('version') else ''))
    L.append('')
    L.append("| A frozen, pipe full | Debian's libspice-server | patched libspice-server "
             "| Debian's / patched | Debian's: notes | patched: notes |")
    L.append('|---|---:|---:|---:|---|---|')
    for what, label in ROWS:
        rows = res['rows'].get(what) or {}
        d, p = rows.get('debian') or {}, rows.get('patched') or {}
        cells, ratio = [], ''
        if what == 'fps':
            label = f"{label} ({res['fps_seconds']:g} s, ring kept full)"
            for r in (d, p):
                f = r.get('fps')
                cells.append(f"{f['updates_per_s']:,.1f}" if f else
                             f"FAILED: {r.get('error', '?')}")
            if d.get('fps') and p.get('fps') and p['fps']['updates_per_s']:
                ratio = _x(d['fps']['updates_per_s'] / p['fps']['updates_per_s'])
        else:
            for r in (d, p):
                cells.append(_ms(r['op']) if r.get('op') else f"FAILED: {r.get('error', '?')}")
            do, po = d.get('op'), p.get('op')
            if do and po and po.get('done') and po['ms'] > 0:
                v = do.get('ms') if do.get('done') else do['at_least_ms']
                ratio = ('' if do.get('done') else '>= ') + _x(v / po['ms'])
        L.append(f"| {label} | {cells[0]} | {cells[1]} | {ratio} | {_notes(d)} | {_notes(p)} |")
    L.append('')
    fills = []
    for lib in LIBS:
        fs = [r[lib]['fill'] for r in res['rows'].values() if r.get(lib, {}).get('fill')]
        if fs:
            fills.append(f"{lib}: {fs[0]['how']} after {min(f['taken'] for f in fs)} to "
                         f"{max(f['taken'] for f in fs)} draws taken")
    if fills:
        L.append("A's pipe full (" + '; '.join(fills) + ').')
    f = [(lib, (res['rows'].get('fps') or {}).get(lib, {}).get('fps')) for lib in LIBS]
    f = [(lib, x) for lib, x in f if x]
    if f:
        L.append('During the fps window: ' + '; '.join(
            f"{lib}: B got {x['updates']} updates, the worker took {x['draws_taken']} draws "
            f"({x['draws_per_s']:,.1f}/s); A lagged {x['a_lags_during']} and caught up "
            f"{x['a_caught_up_during']} times, B {x['b_lags_during']} and "
            f"{x['b_caught_up_during']}" for lib, x in f) + '.')
    L.append(f"Second table: {res['runtime_s']:.0f} s; load average (1 min) "
             f"{res['loadavg_before']:.1f} -> {res['loadavg_after']:.1f}.")
    return L


def main(argv):
    import argparse
    import types
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('qemu', nargs='?',
                    default=os.path.join(TOP, 'build', 'patched', 'qemu-system-x86_64'))
    ap.add_argument('--debian-spice', default=debian_library())
    ap.add_argument('--bound', type=float, default=40.0)
    ap.add_argument('--fps-seconds', type=float, default=10.0)
    ap.add_argument('--samples', type=int, default=5)
    ap.add_argument('--out', default=os.path.join(TOP, 'build', 'bench'))
    a = ap.parse_args(argv)
    stall.install_signal_handlers()
    opts = types.SimpleNamespace(debian_lib=a.debian_spice, bound=a.bound,
                                 fps_seconds=a.fps_seconds, out=a.out,
                                 samples=a.samples,
                                 boot_image=stall.build_bootsector(os.path.join(a.out, 'guest')))
    res = run(os.path.abspath(a.qemu), opts,
              lambda m: print(m, file=sys.stderr, flush=True))
    print('\n'.join(table(res)))
    return 1 if res['failed'] else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
