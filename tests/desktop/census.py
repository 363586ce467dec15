#!/usr/bin/env python3
"""Count what a QXL guest handed the device, from QEMU's command log.

    census.py QEMU_STDERR

QEMU_STDERR is the stderr of a QEMU run with -global qxl-vga.cmdlog=1
(tests/desktop/run.sh does that with DESKTOP_CMDLOG=1): hw/display/
qxl-logger.c writes one line per command the spice worker takes from the
rings.  Prints one line per category: commands by ring and type, draw
types, image types of QXL_DRAW_COPY, surface commands and formats,
cursor commands and shape types.
"""
import collections
import re
import sys

# spice-protocol's SpiceImageType (enums.h)
IMAGE_TYPES = {0: 'bitmap', 1: 'quic', 100: 'lz-plt', 101: 'lz-rgb',
               102: 'glz-rgb', 103: 'from-cache', 104: 'surface',
               105: 'jpeg', 106: 'from-cache-lossless',
               107: 'zlib-glz-rgb', 108: 'jpeg-alpha', 109: 'lz4'}

LINE = re.compile(r'^\d+ qxl-\d+/(\w+): cmd @ 0x[0-9a-f]+ (\w+)(\(compat\))?(.*)')


def count(lines):
    """Counters by category for the command-log LINES (bytes or str)."""
    counts = {k: collections.Counter() for k in
              ('commands', 'draw', 'image', 'surface', 'cursor')}
    for raw in lines:
        if isinstance(raw, bytes):
            raw = raw.decode('utf-8', 'replace')
        m = LINE.match(raw)
        if not m:
            continue
        ring, kind, compat, rest = m.groups()
        counts['commands'][f'{ring}/{kind}{compat or ""}'] += 1
        if kind == 'draw':
            d = re.search(r'type (\S+) effect', rest)
            if d:
                counts['draw'][d.group(1)] += 1
            i = re.search(r'\(id [0-9a-f]+ type (\d+) ', rest)
            if i:
                t = int(i.group(1))
                counts['image'][IMAGE_TYPES.get(t, str(t))] += 1
        elif kind == 'surface':
            s = re.match(r': (\S+) id \d+(?:.* format (\S+))?', rest)
            if s:
                counts['surface'][s.group(1) + (f' {s.group(2)}' if s.group(2) else '')] += 1
        elif kind == 'cursor':
            c = re.match(r': (\S+)(?:.* type (\S+) size)?', rest)
            if c:
                counts['cursor'][c.group(1) + (f' {c.group(2)}' if c.group(2) else '')] += 1
    return counts


def summary(counts):
    """One line per category, the first with the total."""
    out = [f'{sum(counts["commands"].values())} commands logged']
    for k, c in counts.items():
        out.append(f'{k}: ' + (', '.join(f'{n}={v}' for n, v in c.most_common()) or 'none'))
    return out


def main():
    with open(sys.argv[1], 'rb') as f:
        counts = count(f)
    print('\n'.join(summary(counts)))
    return 0 if sum(counts['commands'].values()) else 1


if __name__ == '__main__':
    sys.exit(main())
