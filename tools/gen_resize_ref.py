#!/usr/bin/env python3
"""Prints the PIL reference table of tests/test_image.c (test_resize_matches_pil):
CRC-32s of Pillow's resize(BILINEAR) of a synthetic RGB image, for several
sizes. Run with a python that has Pillow (Debian's /usr/bin/python3 with
python3-pil); needed only to regenerate the table, never to build or test."""
import zlib

import numpy as np
from PIL import Image, __version__

W, H = 61, 47
SIZES = [(30, 20), (122, 94), (17, 83), (61, 10), (200, 13), (1, 1), (7, 47), (60, 46), (183, 141)]

def pattern(w, h, c):
    y, x, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(c), indexing="ij")
    return ((x * 37 + y * 11 + k * 91) & 255).astype(np.uint8)

src = Image.fromarray(pattern(W, H, 3), "RGB")
gray = Image.fromarray(pattern(W, H, 1)[:, :, 0], "L")
print(f"/* Pillow {__version__}: {W}x{H} pattern(), resize(BILINEAR) */")
for (w, h) in SIZES:
    rgb = zlib.crc32(np.asarray(src.resize((w, h), Image.BILINEAR)).tobytes())
    g = zlib.crc32(np.asarray(gray.resize((w, h), Image.BILINEAR)).tobytes())
    print(f"    {{{w}, {h}, 0x{rgb:08x}u, 0x{g:08x}u}},")
