#!/usr/bin/python3
"""Check the qxl test guest's four-quadrant patterns in a screendump.

    pattern.py check IMAGE PATTERN [WxH]
        Does IMAGE (PNG or PPM) show PATTERN (a name in tests/guest/patterns),
        at size WxH if given?  Exit 0 yes, 1 no (the reason on stdout).
    pattern.py wait SOCKET IMAGE PATTERN WxH TIMEOUT [--format png|ppm] [--device ID]
        QMP screendump to IMAGE over SOCKET until the check passes or TIMEOUT
        seconds pass (--device: screendump of that display device's head,
        e.g. a secondary -device qxl,id=ID).  The guest's drawing reaches the device asynchronously,
        so a dump taken right after the guest said "drawn" can show an older
        frame: retry rather than sleep.  Exit 0 on a match, 1 on timeout.
    pattern.py nonblank IMAGE
        Exit 0 if IMAGE has more than one colour.
    pattern.py console SOCKET IMAGE TIMEOUT
        QMP screendump to IMAGE until it shows a text console (one dominant
        background colour with text on it, no test pattern), or TIMEOUT.
    pattern.py raw PATTERN WxH STRIDE OUT
        Write PATTERN as a raw xRGB8888 frame (what the guest writes to
        /dev/fb0), for the guest image.

PNG needs python3-pil; PPM is read without it.
"""

import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

TOLERANCE = 8      # per channel
GRID = 6           # samples per quadrant and axis
MARGIN = 8         # pixels kept away from the quadrant borders


def load_patterns(path=os.path.join(HERE, 'patterns')):
    pats = {}
    with open(path) as f:
        for line in f:
            line = line.split('#', 1)[0].split()
            if len(line) == 5:
                pats[line[0]] = [tuple(int(c[i:i + 2], 16) for i in (0, 2, 4))
                                 for c in line[1:]]
    return pats


class Image:
    """width, height and pixel(x, y) -> (r, g, b) of a PNG or PPM file."""

    def __init__(self, path):
        with open(path, 'rb') as f:
            head = f.read(2)
        if head == b'P6':
            self._load_ppm(path)
        else:
            from PIL import Image as PILImage
            im = PILImage.open(path).convert('RGB')
            self.width, self.height = im.size
            self._px = im.load()
            self.pixel = lambda x, y: self._px[x, y]

    def _load_ppm(self, path):
        with open(path, 'rb') as f:
            data = f.read()
        fields, pos = [], 0
        while len(fields) < 4:
            while data[pos:pos + 1].isspace():
                pos += 1
            if data[pos:pos + 1] == b'#':
                pos = data.index(b'\n', pos) + 1
                continue
            end = pos
            while not data[end:end + 1].isspace():
                end += 1
            fields.append(data[pos:end])
            pos = end
        pos += 1
        if fields[0] != b'P6' or int(fields[3]) != 255:
            raise ValueError(f'{path}: unsupported PPM')
        self.width, self.height = int(fields[1]), int(fields[2])
        self._data, self._off = data, pos
        self.pixel = self._ppm_pixel

    def _ppm_pixel(self, x, y):
        i = self._off + (y * self.width + x) * 3
        return tuple(self._data[i:i + 3])

    def colours(self, step=7):
        return {self.pixel(x, y) for y in range(0, self.height, step)
                for x in range(0, self.width, step)}


def check(path, name, size=None):
    """None if the image at PATH shows pattern NAME (at SIZE), else why not."""
    pats = load_patterns()
    if name not in pats:
        return f'unknown pattern {name!r}'
    try:
        img = Image(path)
    except Exception as e:      # unreadable or half-written dump
        return f'cannot read {path}: {e}'
    w, h = img.width, img.height
    if size and (w, h) != size:
        return f'size {w}x{h}, want {size[0]}x{size[1]}'
    quads = [(0, 0, w // 2, h // 2), (w // 2, 0, w, h // 2),
             (0, h // 2, w // 2, h), (w // 2, h // 2, w, h)]
    names = ['top-left', 'top-right', 'bottom-left', 'bottom-right']
    bad = []
    for (x0, y0, x1, y1), want, qname in zip(quads, pats[name], names):
        x0, y0, x1, y1 = x0 + MARGIN, y0 + MARGIN, x1 - 1 - MARGIN, y1 - 1 - MARGIN
        for j in range(GRID):
            for i in range(GRID):
                x = x0 + (x1 - x0) * i // (GRID - 1)
                y = y0 + (y1 - y0) * j // (GRID - 1)
                got = img.pixel(x, y)
                if any(abs(a - b) > TOLERANCE for a, b in zip(got, want)):
                    bad.append(f'{qname} ({x},{y}) is #{bytes(got).hex()}, '
                               f'want #{bytes(want).hex()}')
    if bad:
        return f'{len(bad)}/{4 * GRID * GRID} samples wrong, first: {bad[0]}'
    return None


def check_console(path):
    """None if the image at PATH looks like a text console, else why not."""
    try:
        img = Image(path)
    except Exception as e:
        return f'cannot read {path}: {e}'
    counts = {}
    for y in range(0, img.height, 2):
        for x in range(0, img.width, 2):
            p = img.pixel(x, y)
            counts[p] = counts.get(p, 0) + 1
    total = sum(counts.values())
    bg, n_bg = max(counts.items(), key=lambda kv: kv[1])
    text = total - n_bg
    if n_bg < total * 0.7:
        return f'no dominant background colour ({100 * n_bg // total}% #{bytes(bg).hex()})'
    if text < total // 1000:
        return f'almost blank ({text} of {total} samples differ from the background)'
    return None


def raw_frame(name, w, h, stride):
    """PATTERN as xRGB8888 little-endian rows of STRIDE bytes."""
    tl, tr, bl, br = (bytes((b, g, r, 0)) for r, g, b in load_patterns()[name])
    pad = bytes(stride - 4 * w)
    top = tl * (w // 2) + tr * (w - w // 2) + pad
    bottom = bl * (w // 2) + br * (w - w // 2) + pad
    return top * (h // 2) + bottom * (h - h // 2)


def parse_size(s):
    w, h = s.lower().split('x')
    return int(w), int(h)


def wait(sock, path, name, size, timeout, fmt='png', log=print, device=None):
    """Screendump until PATH shows pattern NAME; (ok, attempts, seconds, why)."""
    from qmp import QMP
    path = os.path.abspath(path)
    start = time.monotonic()
    deadline = start + timeout
    attempts, why = 0, 'no screendump taken'
    args = {'device': device} if device else {}
    with QMP(sock, timeout=max(10.0, timeout)) as q:
        while True:
            attempts += 1
            tmp = path + '.tmp'
            try:
                q.execute('screendump', filename=tmp, format=fmt, **args)
                os.replace(tmp, path)
                why = check(path, name, size)
            except Exception as e:
                why = f'screendump failed: {e}'
            if why is None:
                return True, attempts, time.monotonic() - start, None
            if time.monotonic() >= deadline:
                return False, attempts, time.monotonic() - start, why
            time.sleep(min(0.25 * attempts, 1.0))


def main(argv):
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd = argv[0]
    if cmd == 'check' and len(argv) in (3, 4):
        why = check(argv[1], argv[2], parse_size(argv[3]) if len(argv) == 4 else None)
        print(why or f'{argv[1]} shows pattern {argv[2]}')
        return 1 if why else 0
    if cmd == 'wait' and len(argv) >= 6:
        fmt = 'png'
        if '--format' in argv:
            fmt = argv[argv.index('--format') + 1]
        device = None
        if '--device' in argv:
            device = argv[argv.index('--device') + 1]
        ok, n, secs, why = wait(argv[1], argv[2], argv[3], parse_size(argv[4]),
                                float(argv[5]), fmt, device=device)
        if ok:
            print(f'{argv[2]} shows pattern {argv[3]} at {argv[4]} '
                  f'after {n} screendump(s), {secs:.1f} s')
            return 0
        print(f'{argv[2]}: no pattern {argv[3]} at {argv[4]} after {n} '
              f'screendump(s), {secs:.1f} s: {why}')
        return 1
    if cmd == 'raw' and len(argv) == 5:
        w, h = parse_size(argv[2])
        with open(argv[4], 'wb') as f:
            f.write(raw_frame(argv[1], w, h, int(argv[3])))
        return 0
    if cmd == 'console' and len(argv) == 4:
        from qmp import QMP
        path, deadline = os.path.abspath(argv[2]), time.monotonic() + float(argv[3])
        why = 'no screendump taken'
        with QMP(argv[1], timeout=max(10.0, float(argv[3]))) as q:
            while True:
                try:
                    q.execute('screendump', filename=path + '.tmp', format='png')
                    os.replace(path + '.tmp', path)
                    why = check_console(path)
                except Exception as e:
                    why = f'screendump failed: {e}'
                if why is None:
                    print(f'{argv[2]} shows a text console')
                    return 0
                if time.monotonic() >= deadline:
                    print(f'{argv[2]}: {why}')
                    return 1
                time.sleep(0.5)
    if cmd == 'nonblank' and len(argv) == 2:
        n = len(Image(argv[1]).colours())
        print(f'{argv[1]}: {n} colour(s)')
        return 0 if n > 1 else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
