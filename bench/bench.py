#!/usr/bin/python3
"""make bench: patched vs. unpatched QEMU with a frozen SPICE client.

    bench.py [--seconds N] [--idle-seconds N] [--only upstream|patched]
             [--port-writes N] [--rounds N] [--out DIR]
             [--only-spice | --no-spice] [--spice-bound S] [--spice-fps-seconds S]
             [--spice-samples N]
             [--debian-spice PATH]

For each QEMU binary (build/upstream, build/patched; a missing one is skipped
with a note), in one QEMU process (see bench/stall.py):

 1. boot the boot-sector guest (-accel tcg, or kvm where it is not nested
    PVM), set up qxl-vga through qtest, connect a headless SPICE client;
 2. port writes: vCPU-side latency (rdtsc in the guest) of
    QXL_IO_UPDATE_AREA_ASYNC against the no-op QXL_IO_UPDATE_IRQ;
 3. idle: QMP query-status round trips every 10 ms, nothing else going on;
 4. stall: freeze the client (SIGSTOP), keep the command ring full of
    256x256 random QXL_DRAW_COPY until the worker stops taking them, then
    the vCPU issues one synchronous QXL_IO_UPDATE_AREA while query-status
    is measured for --seconds.

Prints a table and writes build/bench/results.json and results.md.  The
targets (patched QMP p99 within 2x of idle, max under 100 ms, async port
write within 1.2x of the no-op one) are shown, not asserted: the exit
status is 0 when every scenario ran, 1 otherwise.

Then, for each binary: drawing (BENCH_DRAWS draws through the worker with
the client reading: draws/s and CPU time per 1000 draws, QEMU's and the
spice worker's), and three management commands (stop, migrate, info
registers) issued while the vCPU is held in a synchronous UPDATE_AREA
behind the frozen client, each in a QEMU of its own (how long the command
took, whether it returned before the thaw, QMP latency meanwhile).

The QEMUs of these rows run with whatever libspice-server the environment
gives them (bench/run.sh: Debian's, through LD_LIBRARY_PATH); the table
says which one each mapped.

Second table (bench/spice_lag.py; with build/patched, unless --no-spice;
--only-spice: this table alone): the patched QEMU with Debian's
libspice-server and with build/spice's, one SPICE client frozen and its
pipe full, a second one healthy: how long a synchronous UPDATE_AREA,
UPDATE_AREA_ASYNC and DESTROY_PRIMARY_ASYNC take, and the display updates
per second the healthy client receives.

Environment: BENCH_SECONDS (default 40), BENCH_IDLE_SECONDS (20),
BENCH_DRAWS (4000), BENCH_HOLD_SECONDS (8: when the client is thawed in
the management rows), BENCH_ACCEL (tcg|kvm, default: automatic),
BENCH_SPICE_BOUND (40: the longest wait for one operation of the second
table), BENCH_SPICE_FPS_SECONDS (10), BENCH_SPICE_SAMPLES (5).
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import stall  # noqa: E402
import spice_lag  # noqa: E402

BINARIES = (('upstream', 'build/upstream/qemu-system-x86_64'),
            ('patched', 'build/patched/qemu-system-x86_64'))


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def loadavg():
    try:
        return [float(x) for x in open('/proc/loadavg').read().split()[:3]]
    except OSError:
        return None


def host_info(accel):
    cpu = ''
    try:
        for line in open('/proc/cpuinfo'):
            if line.startswith('model name'):
                cpu = line.split(':', 1)[1].strip()
                break
    except OSError:
        pass
    osname = ''
    try:
        for line in open('/etc/os-release'):
            if line.startswith('PRETTY_NAME='):
                osname = line.split('=', 1)[1].strip().strip('"')
    except OSError:
        pass
    return {'hostname': platform.node(), 'os': osname,
            'kernel': platform.release(), 'cpu': cpu,
            'cpus': os.cpu_count(), 'accel': accel,
            'kvm_pvm': os.path.exists('/sys/module/kvm_pvm')}


def qemu_version(path):
    try:
        out = subprocess.run([path, '--version'], capture_output=True,
                             text=True, timeout=20).stdout
        return out.splitlines()[0] if out else ''
    except (OSError, subprocess.TimeoutExpired):
        return ''


def _cpu_ticks(path):
    try:
        f = open(path).read().rsplit(')', 1)[1].split()
        return int(f[11]) + int(f[12])       # utime + stime
    except (OSError, IndexError, ValueError):
        return None


def _worker_tid(pid):
    """The spice-server worker thread of QEMU PID (by its name)."""
    for tid in os.listdir(f'/proc/{pid}/task'):
        try:
            comm = open(f'/proc/{pid}/task/{tid}/comm').read().strip()
        except OSError:
            continue
        if 'spice' in comm.lower() or 'worker' in comm.lower():
            return tid
    return None


def draw_throughput(h, n):
    """With the client reading: push N draws (QXL_DRAW_COPY of 256x256
    bitmaps, through qtest) and wait until the worker took them all.  QEMU's
    CPU time and the spice worker thread's, per 1000 draws: what checking,
    copying, parsing, rendering and sending a draw costs."""
    hz = os.sysconf('SC_CLK_TCK')
    pid = h.proc.pid
    tid = _worker_tid(pid)
    _, cons0 = h.ring_state()
    p0 = _cpu_ticks(f'/proc/{pid}/stat')
    w0 = _cpu_ticks(f'/proc/{pid}/task/{tid}/stat') if tid else None
    t0 = time.monotonic()
    pushed = 0
    deadline = t0 + 300
    while True:
        if pushed < n:
            pushed += h.push_draws(min(32, n - pushed))
        prod, cons = h.ring_state()
        if pushed >= n and (cons - cons0) % 2**32 >= n:
            break
        if time.monotonic() > deadline:
            raise stall.HarnessError(f'draws not taken: {(cons - cons0) % 2**32} of {n}')
        time.sleep(0.001)
    dt = time.monotonic() - t0
    p1 = _cpu_ticks(f'/proc/{pid}/stat')
    w1 = _cpu_ticks(f'/proc/{pid}/task/{tid}/stat') if tid else None
    res = {'draws': n, 'seconds': round(dt, 3), 'draws_per_s': round(n / dt, 1),
           'qemu_cpu_ms_per_1000': round((p1 - p0) * 1e3 / hz * 1000 / n, 1)
           if p0 is not None and p1 is not None else None,
           'worker_cpu_ms_per_1000': round((w1 - w0) * 1e3 / hz * 1000 / n, 1)
           if w0 is not None and w1 is not None else None,
           'worker_thread': tid is not None}
    return res


def run_binary(name, path, args, outdir):
    """All phases against one binary; returns its result dict."""
    res = {'path': path, 'version': qemu_version(path), 'ok': False,
           'loadavg_before': loadavg()}
    t0 = time.monotonic()
    workdir = os.path.join(outdir, name)
    os.makedirs(workdir, exist_ok=True)
    h = stall.StallHarness(path, workdir=workdir, name=name,
                           log=lambda m: log(f'[{name}] {m}'))
    try:
        h.start(boot_image=args.boot_image)
        res['spice_library'] = spice_lag.mapped_library(h.proc.pid)
        h.setup_device()
        h.prepare_draws(max_draws=args.draws + 2048)
        h.start_client()
        h.calibrate_tsc()
        res['tsc_mhz'] = h.tsc_hz / 1e6
        log(f'[{name}] port writes: {args.rounds} x {args.port_writes} '
            'no-op / async')
        res['port_writes'] = h.port_write_latency(args.port_writes, args.rounds)
        log(f'[{name}] idle: QMP query-status every 10 ms for '
            f'{args.idle_seconds:g} s')
        res['idle'] = h.qmp_idle(args.idle_seconds)
        if args.draws:
            # after the port writes: a worker still busy with the draws
            # would slow the writes that message it
            log(f'[{name}] drawing: {args.draws} draws with the client reading')
            res['draw'] = draw_throughput(h, args.draws)
        h.freeze_client()
        log(f'[{name}] client frozen; filling the command ring')
        res['fill'] = h.fill_ring()
        log(f'[{name}] stall: sync QXL_IO_UPDATE_AREA from the vCPU, QMP '
            f'for {args.seconds:g} s')
        res['stall'] = h.stall(args.seconds)
        res['ok'] = True
    except Exception as e:
        res['error'] = f'{type(e).__name__}: {e}'
        log(f'[{name}] FAILED: {res["error"]}')
        traceback.print_exc()
    finally:
        h.close()
        res['runtime_s'] = round(time.monotonic() - t0, 1)
        res['loadavg_after'] = loadavg()
        res['qemu_log'] = os.path.relpath(h.qemu_log, TOP)
        try:
            tail = open(h.qemu_log, errors='replace').read().splitlines()
            res['qemu_warnings'] = [l for l in tail if 'warning' in l or 'error' in l][-10:]
        except OSError:
            pass
    return res


# Management commands issued while the vCPU is held in a synchronous
# QXL_IO_UPDATE_AREA behind the frozen client (issue 11): what they cost the
# rest of QEMU.  Each runs in a QEMU of its own; the command goes to the
# control monitor while the probe measures query-status on the other one.
MGMT_COMMANDS = (
    ('stop', 'stop', None, 'cont'),
    # slowed down so that it is still running when cancelled: what it costs
    # while it runs, not its switchover (which the series holds back while
    # the vCPU is held)
    ('migrate', 'migrate', {'uri': 'exec:cat >/dev/null'}, 'migrate_cancel'),
    ('info registers', 'human-monitor-command',
     {'command-line': 'info registers'}, None),
)


def run_mgmt(name, path, args, outdir, label, cmd, cmd_args, undo):
    """One QEMU: freeze, fill, the vCPU's sync UPDATE_AREA; LEAD s later
    CMD on the control monitor; thaw HOLD s after the write.  Returns the
    probe's figures over the whole window, how long CMD took and whether
    it returned before the thaw."""
    res = {'command': label}
    workdir = os.path.join(outdir, f'{name}-mgmt-{label.replace(" ", "-")}')
    os.makedirs(workdir, exist_ok=True)
    # 128 MiB: QEMU 10.0's TCG aborts migrating a guest whose RAM is
    # smaller than the qxl VRAM (tests/stall/README.md)
    h = stall.StallHarness(path, workdir=workdir, name=name, memory_mb=128,
                           log=lambda m: log(f'[{name} {label}] {m}'))
    lead, hold = 2.0, args.hold_seconds
    try:
        h.start(boot_image=args.boot_image)
        h.setup_device()
        h.prepare_draws()
        h.start_client()
        h.freeze_client()
        h.fill_ring()
        h.set_update_area()
        if cmd == 'migrate':
            h.qmp.execute('migrate-set-parameters',
                          {'max-bandwidth': 1 << 20}, timeout=30)
        probe = h.start_probe(lead + hold + 4.0)
        op = h.guest_post(h.io_base + stall.QXL_IO_UPDATE_AREA)
        time.sleep(lead)
        t_thaw = time.monotonic() + hold - lead
        t0 = time.monotonic()
        done = {}

        def issue():
            try:
                h.qmp.execute(cmd, cmd_args, timeout=120)
                done['t'] = time.monotonic()
            except Exception as e:   # noqa: BLE001 - reported, not raised
                done['error'] = f'{type(e).__name__}: {e}'
        import threading
        th = threading.Thread(target=issue, daemon=True)
        th.start()
        while time.monotonic() < t_thaw and th.is_alive():
            th.join(0.05)
        if time.monotonic() < t_thaw:
            time.sleep(t_thaw - time.monotonic())
        h.thaw_client()
        thaw_at = time.monotonic()
        th.join(120)
        probe.join(lead + hold + 120)
        if probe.is_alive():
            probe.stop()
        if undo:
            try:
                h.qmp.execute(undo, timeout=120)
            except Exception:   # noqa: BLE001 - cont after a finished stop etc.
                pass
        h.guest_wait(op, timeout=120)
        res['qmp'] = probe.result()
        res['command_ms'] = round((done['t'] - t0) * 1e3, 2) if 't' in done else None
        res['returned_before_thaw'] = 't' in done and done['t'] < thaw_at
        if 'error' in done:
            res['error'] = done['error']
        res['ok'] = 't' in done
    except Exception as e:
        res['error'] = f'{type(e).__name__}: {e}'
        log(f'[{name} {label}] FAILED: {res["error"]}')
        traceback.print_exc()
    finally:
        h.close()
    return res


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


def fmt_ms(v):
    if v is None:
        return 'n/a'
    if v >= 1000:
        return f'{v:,.0f}'
    if v >= 10:
        return f'{v:.1f}'
    return f'{v:.2f}'


def fmt_x(v):
    if v is None:
        return 'n/a'
    return f'{v:.2f}x' if v >= 0.1 else f'{v:.2g}x'


def fmt_us(v):
    return 'n/a' if v is None else f'{v:.2f}'


def summarize(results):
    b = results['binaries']
    up, pa = b.get('upstream', {}), b.get('patched', {})

    def g(r, *keys):
        for k in keys:
            if not isinstance(r, dict) or k not in r:
                return None
            r = r[k]
        return r
    cmp = {
        'p50_patched_over_upstream': ratio(g(pa, 'stall', 'qmp', 'p50_ms'), g(up, 'stall', 'qmp', 'p50_ms')),
        'p99_patched_over_upstream': ratio(g(pa, 'stall', 'qmp', 'p99_ms'), g(up, 'stall', 'qmp', 'p99_ms')),
        'max_patched_over_upstream': ratio(g(pa, 'stall', 'qmp', 'max_ms'), g(up, 'stall', 'qmp', 'max_ms')),
        'p50_patched_over_idle': ratio(g(pa, 'stall', 'qmp', 'p50_ms'), g(pa, 'idle', 'p50_ms')),
        'p99_patched_over_idle': ratio(g(pa, 'stall', 'qmp', 'p99_ms'), g(pa, 'idle', 'p99_ms')),
        'max_patched_over_idle': ratio(g(pa, 'stall', 'qmp', 'max_ms'), g(pa, 'idle', 'max_ms')),
        'async_write_patched_over_upstream': ratio(
            g(pa, 'port_writes', 'async', 'median_us'), g(up, 'port_writes', 'async', 'median_us')),
        'sync_write_patched_over_upstream': ratio(
            g(pa, 'stall', 'sync_write_ms'), g(up, 'stall', 'sync_write_ms')),
    }
    targets = {}
    if g(pa, 'stall', 'qmp', 'p99_ms') is not None and g(pa, 'idle', 'p99_ms'):
        targets['patched QMP p99 within 2x of idle'] = cmp['p99_patched_over_idle'] <= 2.0
        targets['patched QMP max under 100 ms'] = g(pa, 'stall', 'qmp', 'max_ms') < 100
    if g(pa, 'port_writes', 'ratio_median') is not None:
        targets['patched async port write within 1.2x of the no-op one'] = \
            g(pa, 'port_writes', 'ratio_median') <= 1.2
    results['comparison'] = cmp
    results['targets'] = targets
    return cmp, targets


def tables(results):
    """The result tables, as markdown (also printed on the terminal)."""
    md = ''
    if results['binaries']:
        md = qmp_tables(results)
    if results.get('spice'):
        h = results['host']
        if not md:
            md = (f"{results['date']}, {h['cpu']} ({h['cpus']} CPUs), {h['os']}, "
                  f"kernel {h['kernel']}, -accel {h['accel']}.\n")
        md += '\n' + '\n'.join(spice_lag.table(results['spice'])) + '\n'
    return md


def qmp_tables(results):
    """The first table (both QEMUs, QMP latency) and the rows after it."""
    b = results['binaries']
    lines = []
    h = results['host']
    lines.append(f"QMP `query-status` round trip every 10 ms; stall = frozen SPICE "
                 f"client, full command ring, one synchronous QXL_IO_UPDATE_AREA from "
                 f"the vCPU {results['lead_s']:g} s into a {results['seconds']:g} s "
                 f"window; idle = {results['idle_seconds']:g} s with nothing going on.")
    lines.append('')
    lines.append(f"{results['date']}, {h['cpu']} ({h['cpus']} CPUs), {h['os']}, "
                 f"kernel {h['kernel']}, -accel {h['accel']}.")
    libs = [f"{n} `{r['spice_library']}`" for n, r in b.items() if r.get('spice_library')]
    if libs:
        lines.append('')
        lines.append(f"libspice-server as each QEMU mapped it (LD_LIBRARY_PATH="
                     f"{os.environ.get('LD_LIBRARY_PATH', '')}): " + ', '.join(libs) + '.')
    lines.append('')
    lines.append('| QEMU | phase | QMP samples | p50 ms | p99 ms | max ms | '
                 'sync UPDATE_AREA returned after | QMP answers during it | '
                 'longest QMP wait during it, ms |')
    lines.append('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for name, r in b.items():
        if r.get('skipped'):
            lines.append(f'| {name} | skipped: {r["skipped"]} | | | | | | | |')
            continue
        if not r.get('ok') and 'idle' not in r:
            lines.append(f'| {name} | FAILED: {r.get("error", "?")} | | | | | | | |')
            continue
        for phase in ('idle', 'stall'):
            q = r.get(phase)
            if phase == 'stall':
                q = (q or {}).get('qmp')
            if not q:
                lines.append(f'| {name} | {phase}: FAILED ({r.get("error", "?")}) | | | | | | | |')
                continue
            sw = during = longest = ''
            if phase == 'stall':
                sw = f"{r['stall']['sync_write_ms'] / 1e3:.2f} s"
                during = str(r['stall']['qmp_answered_during_write'])
                longest = fmt_ms(r['stall']['qmp_longest_during_write_ms'])
            lines.append(f"| {name} | {phase} | {q['samples']} | {fmt_ms(q.get('p50_ms'))} | "
                         f"{fmt_ms(q.get('p99_ms'))} | {fmt_ms(q.get('max_ms'))} | {sw} | "
                         f"{during} | {longest} |")
    lines.append('')
    if any(r.get('mgmt') for r in b.values()):
        lines.append(f"Management commands while the vCPU is held in a synchronous "
                     f"UPDATE_AREA behind the frozen client (command 2 s after the write, "
                     f"client thawed {results.get('hold_s', 0):g} s after it); QMP "
                     f"query-status every 10 ms on the other monitor:")
        lines.append('')
        lines.append('| QEMU | command | returned after, ms | before the thaw | '
                     'QMP p50 ms | p99 ms | max ms |')
        lines.append('|---|---|---:|---|---:|---:|---:|')
        for name, r in b.items():
            for label, m in (r.get('mgmt') or {}).items():
                q = m.get('qmp') or {}
                lines.append(f"| {name} | {label} | {fmt_ms(m.get('command_ms'))} | "
                             f"{'yes' if m.get('returned_before_thaw') else 'no'} | "
                             f"{fmt_ms(q.get('p50_ms'))} | {fmt_ms(q.get('p99_ms'))} | "
                             f"{fmt_ms(q.get('max_ms'))} |")
        up, pa = b.get('upstream', {}).get('mgmt') or {}, b.get('patched', {}).get('mgmt') or {}
        rows = [f"{k} {fmt_x(ratio((pa[k].get('qmp') or {}).get('max_ms'), (up[k].get('qmp') or {}).get('max_ms')))}"
                for k in pa if k in up]
        if rows:
            lines.append('')
            lines.append('QMP max, patched / upstream: ' + ', '.join(rows) + '.')
        lines.append('')
    if any(r.get('draw') for r in b.values()):
        lines.append('Drawing with a SPICE client reading: QXL_DRAW_COPY of 256x256 '
                     'bitmaps pushed through qtest until the worker took them all.')
        lines.append('')
        lines.append('| QEMU | draws | draws/s | QEMU CPU ms per 1000 | '
                     'spice worker CPU ms per 1000 |')
        lines.append('|---|---:|---:|---:|---:|')
        for name, r in b.items():
            d = r.get('draw')
            if d:
                lines.append(f"| {name} | {d['draws']} | {d['draws_per_s']} | "
                             f"{d['qemu_cpu_ms_per_1000']} | {d['worker_cpu_ms_per_1000']} |")
        up, pa = b.get('upstream', {}).get('draw'), b.get('patched', {}).get('draw')
        if up and pa:
            lines.append('')
            lines.append('Patched / upstream: draws/s '
                         f"{fmt_x(ratio(pa['draws_per_s'], up['draws_per_s']))}, "
                         'worker CPU per draw '
                         f"{fmt_x(ratio(pa['worker_cpu_ms_per_1000'], up['worker_cpu_ms_per_1000']))}.")
        lines.append('')
    c = results['comparison']
    lines.append('| ratio | p50 | p99 | max |')
    lines.append('|---|---:|---:|---:|')
    lines.append(f"| patched / upstream (stall) | {fmt_x(c['p50_patched_over_upstream'])} | "
                 f"{fmt_x(c['p99_patched_over_upstream'])} | {fmt_x(c['max_patched_over_upstream'])} |")
    lines.append(f"| patched stall / patched idle | {fmt_x(c['p50_patched_over_idle'])} | "
                 f"{fmt_x(c['p99_patched_over_idle'])} | {fmt_x(c['max_patched_over_idle'])} |")
    lines.append('')
    lines.append('| QEMU | vCPU port write | median µs | p90 µs | min µs | n |')
    lines.append('|---|---|---:|---:|---:|---:|')
    for name, r in b.items():
        pw = r.get('port_writes')
        if not pw:
            continue
        for key, label in (('noop', 'QXL_IO_UPDATE_IRQ (no-op)'),
                           ('wakeup', 'QXL_IO_NOTIFY_CMD (one worker message)'),
                           ('async', 'QXL_IO_UPDATE_AREA_ASYNC')):
            s = pw.get(key)
            if s:
                lines.append(f"| {name} | {label} | {fmt_us(s['median_us'])} | "
                             f"{fmt_us(s['p90_us'])} | {fmt_us(s['min_us'])} | {s['n']} |")
        lines.append(f"| {name} | async / no-op (medians) | {fmt_x(pw['ratio_median'])} | | | |")
        if pw.get('ratio_median_wakeup') is not None:
            lines.append(f"| {name} | async / NOTIFY_CMD (medians) | "
                         f"{fmt_x(pw['ratio_median_wakeup'])} | | | |")
    if c['async_write_patched_over_upstream'] is not None:
        lines.append('')
        lines.append('UPDATE_AREA_ASYNC port write, patched / upstream (medians): '
                     f"{fmt_x(c['async_write_patched_over_upstream'])}.")
    lines.append('')
    fills = [f"{n}: {r['fill']['pushed']} draws pushed, {r['fill']['consumed']} taken"
             for n, r in b.items() if r.get('fill')]
    if fills:
        lines.append('Ring filled until the worker stopped taking commands (' +
                     '; '.join(fills) + ').')
        lines.append('')
    if results['targets']:
        lines.append('Targets (shown, not asserted):')
        lines.append('')
        for k, v in results['targets'].items():
            lines.append(f"- {k}: {'met' if v else 'NOT met'}")
    else:
        lines.append('Targets: not evaluated (no patched result).')
    lines.append('')
    loads = [f"{n} {r['loadavg_before'][0]:.1f} -> {r['loadavg_after'][0]:.1f}"
             for n, r in b.items() if r.get('loadavg_before') and r.get('loadavg_after')]
    if loads:
        lines.append('Load average (1 min) during the runs: ' + ', '.join(loads) +
                     '. QMP latencies include whatever else the machine was doing.')
    return '\n'.join(lines) + '\n'


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--seconds', type=float,
                    default=float(os.environ.get('BENCH_SECONDS', 40)),
                    help='QMP measurement window of the stall (default 40)')
    ap.add_argument('--idle-seconds', type=float,
                    default=float(os.environ.get('BENCH_IDLE_SECONDS', 20)),
                    help='QMP measurement of the idle baseline (default 20)')
    ap.add_argument('--only', choices=[n for n, _ in BINARIES])
    ap.add_argument('--port-writes', type=int, default=200,
                    help='port writes per round (default 200)')
    ap.add_argument('--rounds', type=int, default=5,
                    help='alternating no-op/async rounds (default 5)')
    ap.add_argument('--hold-seconds', type=float,
                    default=float(os.environ.get('BENCH_HOLD_SECONDS', 8)),
                    help='management rows: thaw the client this long after the '
                         'sync write (default 8)')
    ap.add_argument('--draws', type=int,
                    default=int(os.environ.get('BENCH_DRAWS', 4000)),
                    help='draws through the worker for the drawing row '
                         '(default 4000, 0: none)')
    ap.add_argument('--no-mgmt', action='store_true',
                    help='skip the management-command rows')
    ap.add_argument('--only-spice', action='store_true',
                    help='only the second table (spice-server series)')
    ap.add_argument('--no-spice', action='store_true',
                    help='skip the second table')
    ap.add_argument('--spice-bound', type=float,
                    default=float(os.environ.get('BENCH_SPICE_BOUND', 40)),
                    help='second table: the longest wait for one operation '
                         '(default 40 s; past it: ">= N s")')
    ap.add_argument('--spice-fps-seconds', type=float,
                    default=float(os.environ.get('BENCH_SPICE_FPS_SECONDS', 10)),
                    help='second table: the healthy client\'s window (default 10)')
    ap.add_argument('--spice-samples', type=int,
                    default=int(os.environ.get('BENCH_SPICE_SAMPLES', 5)),
                    help='second table: samples of each operation while they '
                         'complete (default 5)')
    ap.add_argument('--debian-spice', default=None,
                    help="Debian's libspice-server.so.1 (default: from ldconfig)")
    ap.add_argument('--out', default=os.path.join(TOP, 'build', 'bench'))
    args = ap.parse_args(argv)
    if args.only_spice and (args.no_spice or args.only):
        ap.error('--only-spice goes with neither --no-spice nor --only')
    stall.install_signal_handlers()
    os.makedirs(args.out, exist_ok=True)
    t0 = time.monotonic()
    accel = stall.choose_accel()
    args.boot_image = stall.build_bootsector(os.path.join(args.out, 'guest'))
    results = {
        'date': datetime.datetime.now().astimezone().strftime('%Y-%m-%d %H:%M %Z'),
        'host': host_info(accel), 'seconds': args.seconds,
        'idle_seconds': args.idle_seconds, 'lead_s': 2.0,
        'port_writes_per_round': args.port_writes, 'rounds': args.rounds,
        'hold_s': args.hold_seconds,
        'binaries': {},
    }
    ran = failed = 0
    for name, rel in BINARIES:
        if args.only_spice or args.only and name != args.only:
            continue
        path = os.path.join(TOP, rel)
        if not os.access(path, os.X_OK):
            note = f'{rel} does not exist (build it: make ' + \
                ('upstream' if name == 'upstream' else 'build') + ')'
            log(f'[{name}] skipped: {note}')
            results['binaries'][name] = {'path': path, 'skipped': note}
            continue
        log(f'[{name}] {path}')
        r = run_binary(name, path, args, args.out)
        if not args.no_mgmt:
            r['mgmt'] = {}
            for label, cmd, cmd_args, undo in MGMT_COMMANDS:
                log(f'[{name}] {label} while the vCPU is held')
                m = run_mgmt(name, path, args, args.out, label, cmd, cmd_args, undo)
                r['mgmt'][label] = m
                failed += not m.get('ok')
        results['binaries'][name] = r
        ran += 1
        failed += not r['ok']
    if not args.no_spice and args.only in (None, 'patched'):
        path = os.path.join(TOP, BINARIES[1][1])
        debian = args.debian_spice or spice_lag.debian_library()
        if not os.access(path, os.X_OK):
            log(f'[spice] skipped: {BINARIES[1][1]} does not exist (make build)')
        elif not debian:
            log("[spice] skipped: Debian's libspice-server1 is not installed")
            failed += 1
        else:
            opts = argparse.Namespace(debian_lib=debian, bound=args.spice_bound,
                                      fps_seconds=args.spice_fps_seconds,
                                      samples=args.spice_samples,
                                      out=args.out, boot_image=args.boot_image)
            results['spice'] = spice_lag.run(path, opts, log)
            ran += 1
            failed += results['spice']['failed']
    if ran == 0:
        log('no QEMU binary to benchmark; results left as they were')
        return 1
    results['runtime_s'] = round(time.monotonic() - t0, 1)
    if results['binaries']:
        summarize(results)
    md = tables(results)
    with open(os.path.join(args.out, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1)
        f.write('\n')
    with open(os.path.join(args.out, 'results.md'), 'w') as f:
        f.write(md)
    print()
    print(md)
    print(f'Written {os.path.relpath(os.path.join(args.out, "results.json"), TOP)} and '
          f'results.md; total {results["runtime_s"]:.0f} s.')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
