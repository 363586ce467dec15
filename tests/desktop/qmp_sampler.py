#!/usr/bin/python3
"""QMP query-status every 100 ms until a file appears (tests/desktop/).

    qmp_sampler.py SOCKET STOPFILE OUT.json

One QMP connection; each sample waits for its answer (at most 10 s) before
the next is sent.  When STOPFILE exists it writes OUT.json:
    {"sent": N, "answered": N, "running": N, "in_order": N,
     "median_ms": F, "max_ms": F, "errors": [...]}
The caller asserts sent == answered == running == in_order >= 1 (latencies
are information only).
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                '..', 'guest'))
from qmp import QMP  # noqa: E402


def main(sock, stop, out):
    sent = answered = running = in_order = last_id = 0
    lat, errors = [], []
    q = None
    nxt = time.monotonic()
    while not os.path.exists(stop):
        sent += 1
        ts = time.monotonic()
        try:
            if q is None:
                q = QMP(sock, timeout=10)
            r = q.execute_raw({'execute': 'query-status', 'id': sent})
            lat.append(time.monotonic() - ts)
            answered += 1
            if sent > last_id:
                in_order += 1
            last_id = sent
            if r.get('status') == 'running' and r.get('running'):
                running += 1
        except Exception as e:
            errors.append(f'sample {sent}: {type(e).__name__}: {e}')
            if q is not None:
                q.close()
            q = None
        nxt += 0.1
        pause = nxt - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        else:
            nxt = time.monotonic()
    if q is not None:
        q.close()
    lat.sort()
    res = {'sent': sent, 'answered': answered, 'running': running,
           'in_order': in_order,
           'median_ms': round(lat[len(lat) // 2] * 1000, 1) if lat else None,
           'max_ms': round(lat[-1] * 1000, 1) if lat else None,
           'errors': errors[:3]}
    with open(out + '.tmp', 'w') as f:
        json.dump(res, f)
    os.replace(out + '.tmp', out)


if __name__ == '__main__':
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    main(*sys.argv[1:])
