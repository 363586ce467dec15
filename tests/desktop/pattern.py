#!/usr/bin/python3
"""Pictures of the desktop tests (tests/desktop/run.sh): made, read, compared.

    pattern.py files DIR
        Write the pictures the guest image carries (scripts/desktop-image.sh
        installs them in /usr/local/share/desktop): tile.xbm (a 32x32 bitmap
        for xsetroot -bitmap) and photo.xwd (a 256x192 TrueColor XWD image
        for xwud, which puts it with PutImage).
    pattern.py check IMAGE SPEC [SPEC ...]
        Does IMAGE (PPM or PNG: python3-pil; XWD; or RAW:W:H:STRIDE:PATH, a
        spice client's xRGB dump) show every SPEC?  Exit 0 yes, 1 no (why on stdout).
        SPEC is one of
          size=WxH                      the picture's size
          tile=FG,BG[@X,Y,W,H]          the tile.xbm pattern as xsetroot
                                        -bitmap -fg FG -bg BG paints it
                                        (origin 0,0), in the rectangle
                                        (default: the whole picture)
          photo@X,Y                     photo.xwd with its top left at X,Y
          solid=RRGGBB[@X,Y,W,H]        one colour
          same=PATH                     the picture at PATH (any of these
                                        forms), every pixel
        Every pixel of each rectangle is compared, exactly.
    pattern.py same IMAGE IMAGE
        Are the two pictures (any of the forms above) the same size and the
        same, every pixel?  Exit 0 yes, 1 no (why, and how many pixels
        differ, on stdout).
    pattern.py xwd-from-serial LOG ID OUT
        Decode the base64 lines "DESKTOP-OUT ID: ..." of the serial LOG
        (gzip'ed XWD, as the guest's "xwd | gzip | base64" prints it) to OUT.
"""

import base64
import gzip
import os
import struct
import sys
import zlib

TILE_W = TILE_H = 32
PHOTO_W, PHOTO_H = 256, 192


def tile_bit(x, y):
    """1 where tile.xbm has its foreground: no symmetry a shift could hide."""
    x %= TILE_W
    y %= TILE_H
    return int((x < 12 and y < 20) or x == y or (x + 2 * y) % 29 == 0
               or (x > 24 and y > 26))


def photo_pixel(x, y):
    return (x & 0xff, (y * 255) // (PHOTO_H - 1), ((x >> 3) ^ (y >> 2)) * 7 & 0xff)


def write_xbm(path):
    out = []
    for y in range(TILE_H):
        for xb in range(0, TILE_W, 8):
            byte = 0
            for i in range(8):
                byte |= tile_bit(xb + i, y) << i     # xbm: LSB first
            out.append(f'0x{byte:02x}')
    rows = [', '.join(out[i:i + 12]) for i in range(0, len(out), 12)]
    with open(path, 'w') as f:
        f.write(f'#define tile_width {TILE_W}\n#define tile_height {TILE_H}\n'
                'static unsigned char tile_bits[] = {\n   '
                + ',\n   '.join(rows) + '};\n')


def xwd_bytes(w, h, pixel, name=b'photo'):
    """A 24-bit TrueColor ZPixmap XWD (what xwd writes for such a screen)."""
    name += b'\0'
    header_size = 100 + len(name)
    fields = [header_size, 7, 2, 24, w, h, 0,
              1, 32, 1, 32, 32, w * 4,       # MSBFirst, unit 32, pad 32, 32 bpp
              4, 0xff0000, 0xff00, 0xff, 8, 256, 0,   # TrueColor, masks, 0 colours
              w, h, 0, 0, 0]
    data = bytearray()
    for y in range(h):
        for x in range(w):
            r, g, b = pixel(x, y)
            data += bytes((0, r, g, b))
    return struct.pack('>25I', *fields) + name + bytes(data)


def files(d):
    os.makedirs(d, exist_ok=True)
    write_xbm(os.path.join(d, 'tile.xbm'))
    with open(os.path.join(d, 'photo.xwd'), 'wb') as f:
        f.write(xwd_bytes(PHOTO_W, PHOTO_H, photo_pixel))


class Picture:
    """width, height and row(y, x, w) -> RGB bytes of a PPM, PNG, XWD or a
    raw xRGB dump."""

    def __init__(self, spec):
        if spec.startswith('RAW:'):
            _, w, h, stride, path = spec.split(':', 4)
            self.width, self.height, stride = int(w), int(h), int(stride)
            with open(path, 'rb') as f:
                data = f.read()
            if len(data) < stride * self.height:
                raise ValueError(f'{path}: {len(data)} bytes, want {stride * self.height}')
            # little-endian xRGB: B G R x
            self._xrgb(data, 0, stride, (2, 1, 0))
            return
        with open(spec, 'rb') as f:
            data = f.read()
        if data[:2] == b'P6' or data[:4] == b'\x89PNG':
            from PIL import Image
            im = Image.open(spec).convert('RGB')
            self.width, self.height = im.size
            raw = im.tobytes()
            self._rows = [raw[y * self.width * 3:(y + 1) * self.width * 3]
                          for y in range(self.height)]
        else:
            self._xwd(data)

    def _xrgb(self, data, pos, stride, order):
        """rows of 4-byte pixels, R G B at byte indices ORDER, as RGB"""
        w = self.width
        self._rows = []
        for y in range(self.height):
            px = data[pos + y * stride:pos + y * stride + w * 4]
            rgb = bytearray(w * 3)
            for i in range(3):
                rgb[i::3] = px[order[i]::4]
            self._rows.append(bytes(rgb))

    def _xwd(self, data):
        f = struct.unpack('>25I', data[:100])
        if f[1] != 7:        # header written little-endian?
            f = struct.unpack('<25I', data[:100])
        if f[1] != 7 or f[2] != 2 or f[11] != 32:
            raise ValueError(f'unsupported XWD (version {f[1]}, format {f[2]}, bpp {f[11]})')
        hsize, w, h, byte_order, bpl, ncolors = f[0], f[4], f[5], f[7], f[12], f[19]
        pos = hsize + ncolors * 12
        if len(data) < pos + bpl * h:
            raise ValueError(f'XWD truncated: {len(data)} bytes, want {pos + bpl * h}')
        self.width, self.height = w, h

        def index(mask):     # byte index of a channel in each 4-byte pixel
            shift = {0xff0000: 2, 0xff00: 1, 0xff: 0}[mask]
            return 3 - shift if byte_order == 1 else shift
        self._xrgb(data, pos, bpl, tuple(index(m) for m in f[14:17]))

    def row(self, y, x, w):
        return self._rows[y][x * 3:(x + w) * 3]


def parse_colour(s):
    s = s.lstrip('#')
    return tuple(int(s[i:i + 2], 16) for i in (0, 2, 4))


def parse_rect(s, pic):
    if not s:
        return 0, 0, pic.width, pic.height
    x, y, w, h = (int(v) for v in s.split(','))
    return x, y, w, h


def check_spec(pic, spec):
    """None if PIC shows SPEC, else why not."""
    if spec.startswith('same='):
        return same(pic, Picture(spec[5:]))
    if spec.startswith('size='):
        want = spec[5:]
        got = f'{pic.width}x{pic.height}'
        return None if got == want else f'size {got}, want {want}'
    if spec.startswith('tile='):
        colours, _, rect = spec[5:].partition('@')
        fg, bg = (bytes(parse_colour(c)) for c in colours.split(','))
        x0, y0, w, h = parse_rect(rect, pic)
        tiles = [b''.join(fg if tile_bit(x, y) else bg for x in range(TILE_W))
                 for y in range(TILE_H)]

        def expect(y):
            t = tiles[y % TILE_H] * ((x0 % TILE_W + w) // TILE_W + 2)
            return t[(x0 % TILE_W) * 3:(x0 % TILE_W + w) * 3]
    elif spec.startswith('photo@'):
        x0, y0 = (int(v) for v in spec[6:].split(','))
        w, h = PHOTO_W, PHOTO_H

        def expect(y):
            return bytes(c for x in range(w) for c in photo_pixel(x, y - y0))
    elif spec.startswith('solid='):
        colour, _, rect = spec[6:].partition('@')
        c = bytes(parse_colour(colour))
        x0, y0, w, h = parse_rect(rect, pic)

        def expect(y):
            return c * w
    else:
        return f'unknown spec {spec}'
    if x0 < 0 or y0 < 0 or x0 + w > pic.width or y0 + h > pic.height:
        return f'{spec}: rectangle outside the {pic.width}x{pic.height} picture'
    bad, first = 0, None
    for y in range(y0, y0 + h):
        got, want = pic.row(y, x0, w), expect(y)
        if got == want:
            continue
        for i in range(w):
            if got[i * 3:i * 3 + 3] != want[i * 3:i * 3 + 3]:
                bad += 1
                if first is None:
                    first = (x0 + i, y, got[i * 3:i * 3 + 3], want[i * 3:i * 3 + 3])
    if bad:
        x, y, got, want = first
        return (f'{spec}: {bad} of {w * h} pixels differ; first at {x},{y}: '
                f'#{got.hex()} for #{want.hex()}')
    return None


def check(path, specs):
    try:
        pic = Picture(path)
    except Exception as e:     # half-written or missing dump
        return f'cannot read {path}: {type(e).__name__}: {e}'
    whys = [w for w in (check_spec(pic, s) for s in specs) if w]
    return '; '.join(whys) or None


def xwd_from_serial(log, ident, out):
    prefix = f'DESKTOP-OUT {ident}: '
    chunks = []
    with open(log, 'rb') as f:
        for line in f:
            line = line.decode('latin-1').rstrip('\r\n')
            i = line.find(prefix)
            if i >= 0:
                chunks.append(line[i + len(prefix):].strip())
    data = gzip.decompress(base64.b64decode(''.join(chunks)))
    with open(out, 'wb') as f:
        f.write(data)
    return len(data)


def same(pa, pb):
    """None if Pictures PA and PB are equal pixel for pixel, else why not."""
    if (pa.width, pa.height) != (pb.width, pb.height):
        return f'sizes differ: {pa.width}x{pa.height} and {pb.width}x{pb.height}'
    bad, rows, first = 0, 0, None
    for y in range(pa.height):
        ra, rb = pa.row(y, 0, pa.width), pb.row(y, 0, pb.width)
        if ra == rb:
            continue
        rows += 1
        for i in range(pa.width):
            if ra[i * 3:i * 3 + 3] != rb[i * 3:i * 3 + 3]:
                bad += 1
                if first is None:
                    first = (i, y, ra[i * 3:i * 3 + 3], rb[i * 3:i * 3 + 3])
    if bad:
        x, y, ca, cb = first
        return (f'{bad} of {pa.width * pa.height} pixels differ in {rows} rows; '
                f'first at {x},{y}: #{ca.hex()} and #{cb.hex()}')
    return None


def main(argv):
    if len(argv) == 2 and argv[0] == 'files':
        files(argv[1])
        return 0
    if len(argv) >= 3 and argv[0] == 'check':
        why = check(argv[1], argv[2:])
        if why:
            print(why)
            return 1
        print(f'{argv[1]}: ' + ', '.join(argv[2:]))
        return 0
    if len(argv) == 3 and argv[0] == 'same':
        try:
            why = same(Picture(argv[1]), Picture(argv[2]))
        except Exception as e:     # half-written or missing dump
            why = f'cannot read: {type(e).__name__}: {e}'
        if why:
            print(why)
            return 1
        print(f'{argv[1]} and {argv[2]}: the same, every pixel')
        return 0
    if len(argv) == 4 and argv[0] == 'xwd-from-serial':
        try:
            n = xwd_from_serial(*argv[1:])
        except (OSError, ValueError, EOFError, zlib.error) as e:
            print(f'cannot decode the XWD of {argv[2]}: {type(e).__name__}: {e}')
            return 1
        print(f'{argv[3]}: {n} bytes')
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
