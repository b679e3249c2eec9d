#!/usr/bin/env python3
"""png-colors.py FILE.png [MIN_COLORS MIN_FOREGROUND_PERCENT]: prints the number of distinct
colours of a PNG image and the share of its pixels that differ from the most common colour
(the background), as "colors N foreground F%". With the two limits, exits 1 unless the image
has more than MIN_COLORS colours and at least MIN_FOREGROUND_PERCENT foreground. Reads 8-bit RGB and RGBA images, as headless Chromium writes
screenshots, with the standard library only (zlib and the five PNG row filters)."""
import struct
import sys
import zlib


def pixels(path):
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, color, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or color not in (2, 6) or interlace:
                raise ValueError(f"{path}: only 8-bit RGB/RGBA without interlacing is read")
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        elif kind == b"IEND":
            break
    if width is None:
        raise ValueError(f"{path}: no IHDR chunk")
    raw = zlib.decompress(idat)
    stride = width * bpp
    prev = bytearray(stride)
    for y in range(height):
        at = y * (stride + 1)
        kind, line = raw[at], bytearray(raw[at + 1:at + 1 + stride])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        prev = line
        for x in range(0, stride, bpp):
            yield bytes(line[x:x + 3])


def main():
    if len(sys.argv) not in (2, 4):
        sys.exit(__doc__)
    counts = {}
    for p in pixels(sys.argv[1]):
        counts[p] = counts.get(p, 0) + 1
    total = sum(counts.values())
    background = max(counts.values()) if counts else 0
    foreground = 100.0 * (total - background) / max(total, 1)
    print(f"colors {len(counts)} foreground {foreground:.2f}%")
    if len(sys.argv) == 4 and not (len(counts) > int(sys.argv[2]) and foreground >= float(sys.argv[3])):
        sys.exit(1)


if __name__ == "__main__":
    main()
