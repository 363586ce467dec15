#!/usr/bin/python3
"""make bench, desktop table: x11perf in the desktop guest, unpatched vs patched.

    desktop.py [--rounds N] [--repeat N] [--time S] [--out DIR] [--tests T,...]
               [--smp N] [--append ARGS] [--perf] [--cmdlog]

The Debian desktop guest of tests/desktop (scripts/desktop-image.sh; built
if missing) boots on each binary in turn, in rounds A, B, A, B, ... (the
machine is shared with other jobs: interleaving spreads their load over
both binaries).  In each boot: a spice-client-glib client (bench/
spice_client.py) connects and consumes; for each x11perf test (-repeat R
-time S, fixed set) the guest's operations per second, QEMU's CPU time
(utime + stime of /proc/PID/stat), that of its spice worker thread alone
and the drawing commands the device
handed to spice-server (the trace event qxl_ring_command_get, -D file, the
same on both binaries) over the test; then the client is frozen (SIGSTOP),
the guest draws until the client is behind, and x11perf -getimage10 runs
behind it (bounded by `timeout`, since a spice-server that waits for its
clients holds each GetImage's UPDATE_AREA), and the client is resumed.

The guest boots with tsc=reliable (--append): see GUEST_CLOCK.  Each boot
records the guest's clocksource and what its kernel said of its clocks.

The worker thread's CPU time per 1000 commands is the figure that
attributes cost: it is where both series spend theirs (the device's
checked copy of each command, spice-server's queueing), apart from the
vCPU threads, whose time and the guest's operations per second depend on
how the host schedules them (a binary's own boots differ by up to 2x).
--perf records a perf profile of QEMU over each test.

QEMU runs as make check runs it: build/upstream with Debian's
libspice-server, build/patched with the spice-server series' (build/spice,
its RUNPATH; LD_LIBRARY_PATH is cleared for it).  Writes DIR/desktop.json
and DIR/desktop.md (default build/bench) and prints the table.  Exit 0 when
every boot ran.
"""

import argparse
import datetime
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'tests', 'desktop'))
import census  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(TOP, 'tests', 'guest'))
from qmp import QMP  # noqa: E402

# name: (binary, libspice-server: 'debian' through LD_LIBRARY_PATH, or
# 'own': what the binary links, LD_LIBRARY_PATH cleared)
CONFIGS = {'upstream': ('build/upstream/qemu-system-x86_64', 'debian'),
           'patched': ('build/patched/qemu-system-x86_64', 'own'),
           'patched-debian': ('build/patched/qemu-system-x86_64', 'debian')}
LIBS = {'upstream': "Debian's libspice-server",
        'patched': 'build/spice (the spice-server series)',
        'patched-debian': "Debian's libspice-server"}
# The guest keeps its TSC clock: under TCG with -smp 2, Linux finds the
# vCPUs' TSCs unsynchronized and falls back to the HPET, every read of which
# is an MMIO exit that takes the BQL; Xorg and x11perf read the clock all
# the time, so the rates then measure how the host schedules threads
# contending for the BQL (a binary's own boots differed by 2x) more than the
# device.  A KVM guest reads kvm-clock without an exit.
GUEST_CLOCK = 'tsc=reliable'
TESTS = ('copywinwin100', 'putimage10', 'getimage10', 'rect10', 'f8text',
         'scroll10')
RATE_RE = re.compile(r'^\s*(\d+) (?:reps|trep) @\s*([0-9.]+) msec \(\s*([0-9.]+)/sec\): (.*)$')


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def cpu_ticks(pid):
    f = open(f'/proc/{pid}/stat').read().rsplit(')', 1)[1].split()
    return int(f[11]) + int(f[12])


def worker_ticks(pid):
    """CPU ticks of QEMU's spice worker thread: where the device hands
    commands over (its checked copies) and spice-server draws and queues
    them, apart from the vCPUs that run the guest"""
    n = 0
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            if open(f'/proc/{pid}/task/{tid}/comm').read().strip() == 'SPICE Worker':
                n += cpu_ticks(f'{pid}/task/{tid}')
        except OSError:
            pass
    return n


class Guest:
    """One QEMU with the desktop guest; commands over its ttyS1."""

    def __init__(self, qemu, img, workdir, env, cmdlog=False, smp=2, append=''):
        os.makedirs(workdir, exist_ok=True)
        self.dir = workdir
        self.sockdir = tempfile.mkdtemp(prefix='qxl-bench-desk.')
        self.qmp_path = os.path.join(self.sockdir, 'qmp.sock')
        ctl = os.path.join(self.sockdir, 'ctl')
        os.mkfifo(ctl + '.in')
        os.mkfifo(ctl + '.out')
        self.ctl = ctl + '.in'
        self.serial = os.path.join(workdir, 'serial.log')
        self.trace = os.path.join(workdir, 'trace.log')
        open(self.serial, 'w').close()
        import socket
        s = socket.socket()
        s.bind(('127.0.0.1', 0))
        self.port = s.getsockname()[1]
        s.close()
        cmdline = open(os.path.join(img, 'cmdline')).read().strip()
        if append:
            cmdline += ' ' + append
        self.argv = [
            qemu, '-nodefaults', '-machine', 'pc', '-accel', 'tcg',
            '-m', '1024', '-smp', str(smp), '-no-reboot',
            '-kernel', os.path.join(img, 'vmlinuz'),
            '-initrd', os.path.join(img, 'initramfs.cpio.gz'),
            '-append', cmdline, '-vga', 'qxl', '-display', 'none',
            '-spice', f'port={self.port},addr=127.0.0.1,disable-ticketing=on,'
                      'image-compression=off',
            '-serial', f'file:{self.serial}', '-serial', f'pipe:{ctl}',
            '-qmp', f'unix:{self.qmp_path},server=on,wait=off',
            '-drive', f'file={img}/rootfs.ext4,if=virtio,format=raw,snapshot=on',
            '-trace', 'qxl_ring_command_get', '-D', self.trace]
        if cmdlog:
            self.argv += ['-global', 'qxl-vga.cmdlog=1']
        self.stderr = os.path.join(workdir, 'qemu.stderr')
        self.proc = subprocess.Popen(
            self.argv, stdin=subprocess.DEVNULL,
            stdout=open(os.path.join(workdir, 'qemu.stdout'), 'w'),
            stderr=open(os.path.join(workdir, 'qemu.stderr'), 'w'),
            # the patched spice-server says "display client ... lags" at
            # this level: counted per test (Guest.lags())
            env=dict(env, G_MESSAGES_DEBUG='Spice'))
        self.seq = 0
        self.pos = {'trace': 0, 'stderr': 0, 'lags': 0}
        self.client = None

    def wait_serial(self, regex, timeout):
        r = re.compile(regex)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with open(self.serial, 'rb') as f:
                data = f.read()
            # complete lines only: the guest may be half-way through one
            for line in data[:data.rfind(b'\n') + 1].decode('latin-1').splitlines():
                if r.search(line):
                    return line.strip()
            if self.proc.poll() is not None:
                raise RuntimeError(f'QEMU exited ({self.proc.returncode})')
            time.sleep(0.2)
        raise RuntimeError(f'no {regex} on serial within {timeout} s')

    def cmd(self, command, timeout=300):
        """Run COMMAND in the guest's X session: (rc, guest seconds, output)."""
        self.seq += 1
        ident = f'b{self.seq}'
        with open(self.ctl, 'w') as f:
            f.write(f'{ident} {command}\n')
        line = self.wait_serial(rf'^DESKTOP-DONE {ident} ', timeout)
        m = re.search(r'rc=(\d+) t=([0-9.]+)', line)
        prefix = f'DESKTOP-OUT {ident}: '
        with open(self.serial, 'rb') as f:
            out = [ln[len(prefix):] for ln in f.read().decode('latin-1').replace('\r', '').splitlines()
                   if ln.startswith(prefix)]
        return int(m.group(1)), float(m.group(2)), out

    def _new_lines(self, path, pos):
        """The complete lines of PATH written since the last call for POS."""
        with open(path, 'rb') as f:
            f.seek(self.pos[pos])
            data = f.read()
        end = data.rfind(b'\n') + 1
        self.pos[pos] += end
        return data[:end]

    def cmdlog(self):
        """The command log (qxl-vga.cmdlog) since the last call, as counters."""
        return census.count(self._new_lines(self.stderr, 'stderr').splitlines())

    def lags(self):
        """How often the patched spice-server said a client lags, since the last call."""
        return self._new_lines(self.stderr, 'lags').count(b' lags')

    def commands(self):
        """Drawing commands taken from the ring since the last call."""
        return self._new_lines(self.trace, 'trace').count(b'qxl_ring_command_get')

    def start_client(self):
        self.client_log = os.path.join(self.dir, 'client.log')
        self.client = subprocess.Popen(
            ['/usr/bin/python3', os.path.join(HERE, 'spice_client.py'), '127.0.0.1',
             str(self.port), '--timeout', '3600'],
            stdin=subprocess.DEVNULL, stdout=open(self.client_log, 'w'),
            stderr=open(os.path.join(self.dir, 'client.stderr'), 'w'))
        end = time.monotonic() + 60
        while time.monotonic() < end:
            if '"primary-create", "width": 1024' in open(self.client_log).read():
                return
            time.sleep(0.1)
        raise RuntimeError('spice client got no 1024x768 primary surface')

    def client_events(self, what):
        return open(self.client_log).read().count(what)

    def stop(self):
        if self.client:
            try:
                self.client.send_signal(signal.SIGCONT)
                self.client.kill()
                self.client.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            try:
                with QMP(self.qmp_path, timeout=10) as q:
                    q.execute('quit')
                self.proc.wait(20)
            except Exception:
                self.proc.kill()
                self.proc.wait()
        subprocess.run(['rm', '-rf', self.sockdir])


def parse_rate(out):
    """ops/s of x11perf's output: the trep line (average over -repeat), else
    the mean of the rep lines"""
    reps, trep = [], None
    for line in out:
        m = RATE_RE.match(line)
        if m:
            if ' trep ' in line:
                trep = float(m.group(3))
            else:
                reps.append(float(m.group(3)))
            desc = m.group(4)
    if trep is None and not reps:
        return None, None
    return (trep if trep is not None else sum(reps) / len(reps)), desc


class Perf:
    """perf record of QEMU over one test (--perf), into DIR/perf-TEST.data"""

    def __init__(self, args, pid, workdir, test):
        self.proc = None
        if args.perf:
            self.proc = subprocess.Popen(
                ['perf', 'record', '-q', '-g', '-F', '499', '-p', str(pid),
                 '-o', os.path.join(workdir, f'perf-{test}.data')],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGINT)
            self.proc.wait(timeout=60)


def guest_clock(g):
    """The guest kernel's clocksource and what it said of its clocks (under
    TCG a loaded host can make its watchdog declare the TSC unstable, and the
    fallback, the HPET, costs an exit per read)"""
    _, _, cur = g.cmd('cat /sys/devices/system/clocksource/clocksource0/current_clocksource')
    _, _, msgs = g.cmd("dmesg | grep -i -E 'clocksource|tsc' | grep -v -i 'calibrat' | tail -n 8")
    return {'clocksource': cur[0].strip() if cur else None,
            'kernel': [m.split('] ', 1)[-1].strip() for m in msgs if 'unstable' in m or 'Switched' in m]}


def one_boot(name, qemu, img, args, workdir, env):
    res = {'tests': {}, 'frozen_getimage': None}
    g = Guest(qemu, img, workdir, env, cmdlog=args.cmdlog, smp=args.smp,
              append=args.append)
    try:
        g.wait_serial(r'^DESKTOP-READY', 300)
        g.start_client()
        g.cmd('true')
        res['clock_start'] = guest_clock(g)
        hz = os.sysconf('SC_CLK_TCK')
        for t in args.tests:
            g.commands()
            g.lags()
            if args.cmdlog:
                g.cmdlog()
            perf = Perf(args, g.proc.pid, workdir, t)
            c0, w0, t0 = cpu_ticks(g.proc.pid), worker_ticks(g.proc.pid), time.monotonic()
            rc, gt, out = g.cmd(f'x11perf -repeat {args.repeat} -time {args.time} -{t} 2>&1')
            c1, w1, t1 = cpu_ticks(g.proc.pid), worker_ticks(g.proc.pid), time.monotonic()
            perf.stop()
            n = g.commands()
            lags = g.lags()
            rate, desc = parse_rate(out)
            reps = [float(m.group(3)) for m in map(RATE_RE.match, out)
                    if m and ' trep ' not in m.group(0)]
            res['tests'][t] = {'reps': reps,
                'rc': rc, 'ops_per_s': rate, 'what': desc, 'commands': n, 'lags': lags,
                'cpu_s': round((c1 - c0) / hz, 2), 'wall_s': round(t1 - t0, 2),
                'worker_cpu_s': round((w1 - w0) / hz, 2),
                'cpu_ms_per_1000_cmds': round((c1 - c0) * 1000 / hz / n * 1000, 1) if n else None}
            log(f'[{name}] {t}: {rate} ops/s (reps {", ".join(f"{r:g}" for r in reps)}), '
                f'{n} commands, {lags} lag(s), '
                f'{(c1 - c0) / hz:.2f} s CPU, worker {(w1 - w0) / hz:.2f} s ({t1 - t0:.1f} s)')
            if args.cmdlog:
                counts = g.cmdlog()
                res['tests'][t]['cmdlog'] = {k: dict(c) for k, c in counts.items()}
                for line in census.summary(counts):
                    log(f'[{name}] {t} command log: {line}')
        # GetImage behind a frozen client: freeze, make it fall behind, read
        g.lags()
        g.client.send_signal(signal.SIGSTOP)
        try:
            g.cmd('x11perf -repeat 1 -reps 5 -rect10 -copywinwin10 >/dev/null 2>&1')
            perf = Perf(args, g.proc.pid, workdir, 'frozen-getimage10')
            t0 = time.monotonic()
            rc, gt, out = g.cmd(f'timeout {args.frozen_bound} x11perf -repeat 1 -time 2 -getimage10 2>&1',
                                timeout=args.frozen_bound + 60)
            wall = time.monotonic() - t0
            perf.stop()
        finally:
            g.client.send_signal(signal.SIGCONT)
        rate, _ = parse_rate(out)
        lags = g.lags()
        res['frozen_getimage'] = {'rc': rc, 'ops_per_s': rate, 'guest_s': gt,
                                  'wall_s': round(wall, 2), 'lag_lines': lags,
                                  'bounded_out': rc == 124}
        log(f'[{name}] getimage10 behind a frozen client: {rate} ops/s (rc {rc}, {gt:.1f} s)')
        time.sleep(2)
        res['clock_end'] = guest_clock(g)
        log(f'[{name}] guest clocksource: {res["clock_start"]["clocksource"]} at the start, '
            f'{res["clock_end"]["clocksource"]} at the end'
            + ''.join(f'; {ln}' for ln in res['clock_end']['kernel']))
        res['client_disconnected'] = g.client_events('"disconnected"') + g.client_events('"channel-closed"') > 0
    finally:
        g.stop()
    return res


def mean(xs):
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def fmt(x, nd=0):
    if x is None:
        return '-'
    return f'{x:,.{nd}f}'


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--rounds', type=int, default=3)
    ap.add_argument('--smp', type=int, default=2)
    ap.add_argument('--append', default=GUEST_CLOCK,
                    help='more kernel command line for the guest (default '
                    f'{GUEST_CLOCK!r}; \'\' boots it as tests/desktop does)')
    ap.add_argument('--repeat', type=int, default=1)
    ap.add_argument('--time', type=int, default=1)
    ap.add_argument('--frozen-bound', type=int, default=20,
                    help='timeout for x11perf -getimage10 behind the frozen client')
    ap.add_argument('--tests', default=','.join(TESTS))
    ap.add_argument('--perf', action='store_true',
                    help='perf record QEMU over each test, into '
                    'OUT/desktop/NAME-ROUND/perf-TEST.data')
    ap.add_argument('--binaries', default='upstream,patched',
                    help='two of ' + ', '.join(CONFIGS) + ' (the first is the base '
                    'of the ratios; patched-debian: build/patched with Debian\'s '
                    'libspice-server)')
    ap.add_argument('--out', default=os.path.join(TOP, 'build', 'bench'))
    ap.add_argument('--cmdlog', action='store_true',
                    help='QEMU logs every command (qxl-vga.cmdlog=1): print what '
                    'each test hands the device (tests/desktop/census.py); '
                    'the log costs time, so the rates are not comparable')
    args = ap.parse_args()
    args.tests = args.tests.split(',')
    img = os.path.join(TOP, 'build', 'desktop')
    log(f'guest kernel command line: + {args.append!r}')
    r = subprocess.run([os.path.join(TOP, 'scripts', 'desktop-image.sh'), img],
                       capture_output=True, text=True)
    if r.returncode:
        log(r.stdout[-2000:] + r.stderr[-2000:])
        return 1
    os.makedirs(args.out, exist_ok=True)
    names = args.binaries.split(',')
    if len(names) != 2 or any(n not in CONFIGS for n in names):
        log(f'desktop bench: --binaries takes two of {", ".join(CONFIGS)}')
        return 2
    bins = [(n, os.path.join(TOP, CONFIGS[n][0])) for n in names]
    missing = [p for _, p in bins if not os.path.exists(p)]
    if missing:
        log(f'desktop bench: missing {", ".join(missing)}')
        return 1
    debian = subprocess.run(['ldconfig', '-p'], capture_output=True, text=True).stdout
    debian = next((ln.split()[-1] for ln in debian.splitlines()
                   if 'libspice-server.so.1 ' in ln), None)
    if not debian:
        log("desktop bench: Debian's libspice-server1 is not installed")
        return 1
    own_env = {k: v for k, v in os.environ.items() if k != 'LD_LIBRARY_PATH'}
    debian_env = dict(own_env, LD_LIBRARY_PATH=os.path.dirname(debian))
    t_start = time.monotonic()
    runs = {n: [] for n, _ in bins}
    ok = True
    for rnd in range(args.rounds):
        for n, p in bins:
            log(f'[{n}] round {rnd + 1}/{args.rounds}')
            try:
                runs[n].append(one_boot(n, p, img, args,
                                        os.path.join(args.out, 'desktop', f'{n}-{rnd + 1}'),
                                        own_env if CONFIGS[n][1] == 'own' else debian_env))
            except Exception as e:
                log(f'[{n}] round {rnd + 1} failed: {type(e).__name__}: {e}')
                ok = False
    summary = {}
    for n, _ in bins:
        s = {}
        for t in args.tests:
            rows = [b['tests'].get(t, {}) for b in runs[n]]
            cpu = sum(r.get('cpu_s', 0) for r in rows)
            wcpu = sum(r.get('worker_cpu_s', 0) for r in rows)
            cmds = sum(r.get('commands', 0) for r in rows)
            s[t] = {'ops_per_s': mean([r.get('ops_per_s') for r in rows]),
                    'per_round': [r.get('ops_per_s') for r in rows],
                    'what': next((r.get('what') for r in rows if r.get('what')), t),
                    'commands': cmds, 'cpu_s': round(cpu, 2),
                    'lags': sum(r.get('lags', 0) for r in rows),
                    'cpu_ms_per_1000_cmds': round(cpu * 1e6 / cmds, 1) if cmds else None,
                    'worker_ms_per_1000_cmds': round(wcpu * 1e6 / cmds, 1) if cmds else None}
        fz = [b['frozen_getimage'] for b in runs[n] if b.get('frozen_getimage')]
        s['frozen_getimage10'] = {
            'ops_per_s': mean([f['ops_per_s'] for f in fz]),
            'per_round': [f['ops_per_s'] for f in fz],
            'timed_out': sum(1 for f in fz if f['bounded_out']),
            'lag_lines': [f['lag_lines'] for f in fz]}
        s['client_disconnected'] = [b.get('client_disconnected') for b in runs[n]]
        summary[n] = s
    a, b = names
    libs = {n: LIBS[n] for n in names}
    lines = [f'| x11perf test | {a} ops/s | {b} ops/s | ratio | {a} QEMU CPU ms / 1000 cmds | '
             f'{b} QEMU CPU ms / 1000 cmds | ratio | worker thread CPU ms / 1000 cmds ({a} / {b}) '
             f'| ratio | commands a run ({a} / {b}) |',
             '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|']
    up, pa = summary[a], summary[b]
    for t in args.tests:
        u, p = up[t], pa[t]
        ratio = p['ops_per_s'] / u['ops_per_s'] if u['ops_per_s'] and p['ops_per_s'] else None
        cr = (p['cpu_ms_per_1000_cmds'] / u['cpu_ms_per_1000_cmds']
              if u['cpu_ms_per_1000_cmds'] and p['cpu_ms_per_1000_cmds'] else None)
        wr = (p['worker_ms_per_1000_cmds'] / u['worker_ms_per_1000_cmds']
              if u['worker_ms_per_1000_cmds'] and p['worker_ms_per_1000_cmds'] else None)
        mark = '**' if ratio is not None and ratio < 0.95 else ''
        lines.append(f'| `-{t}` ({u["what"]}) | {fmt(u["ops_per_s"])} | {fmt(p["ops_per_s"])} | '
                     f'{mark}{fmt(ratio, 2)}x{mark} | {fmt(u["cpu_ms_per_1000_cmds"], 1)} | '
                     f'{fmt(p["cpu_ms_per_1000_cmds"], 1)} | {fmt(cr, 2)}x | '
                     f'{fmt(u["worker_ms_per_1000_cmds"], 1)} / {fmt(p["worker_ms_per_1000_cmds"], 1)} | '
                     f'{fmt(wr, 2)}x | '
                     f'{fmt(u["commands"] / max(1, len(runs[a])))} / '
                     f'{fmt(p["commands"] / max(1, len(runs[b])))} |')
    fu, fp = up['frozen_getimage10'], pa['frozen_getimage10']
    fr = fp['ops_per_s'] / fu['ops_per_s'] if fu['ops_per_s'] and fp['ops_per_s'] else None
    def rounds(f):      # each round's rate; a run cut by the bound shows as such
        return ', '.join(f'not done in {args.frozen_bound} s' if r is None else fmt(r)
                         for r in f['per_round'])
    lines.append(f'| `-getimage10` behind a frozen client (each round) | {rounds(fu)} | '
                 f'{rounds(fp)} | {fmt(fr, 2)}x | | | | | | |')
    # A consuming client that lags gets images of the areas it missed
    # instead of the drawing (only the patched spice-server lags clients)
    lag_note = '; '.join(f'{n}: ' + ', '.join(f'{t}={summary[n][t]["lags"]}' for t in args.tests)
                         for n in names)
    lines.append('')
    lines.append(f'"display client ... lags" lines of the consuming client, all rounds: {lag_note}.')
    total = time.monotonic() - t_start
    head = (f'Desktop table ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, '
            f'TCG, -smp {args.smp}, guest kernel + {args.append or "nothing"!r}, '
            f'{os.cpu_count()} host CPUs shared; {args.rounds} rounds A,B interleaved, '
            f'x11perf -repeat {args.repeat} -time {args.time}; {a} with {libs[a]}, '
            f'{b} with {libs[b]}; {total:.0f} s)')
    md = head + '\n\n' + '\n'.join(lines) + '\n'
    print(md)
    stem = 'desktop' if names == ['upstream', 'patched'] else 'desktop-' + '-'.join(names)
    with open(os.path.join(args.out, stem + '.md'), 'w') as f:
        f.write(md)
    with open(os.path.join(args.out, stem + '.json'), 'w') as f:
        json.dump({'args': vars(args), 'seconds': round(total, 1), 'libraries': libs,
                   'summary': summary, 'runs': runs}, f, indent=1)
    return 0 if ok else 1


if __name__ == '__main__':
    sys.exit(main())
