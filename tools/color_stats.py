#!/usr/bin/python3
"""The color correlation that the spectral parameterization of feature
visualizations decorrelates (src/viz/param.c): the 3x3 covariance of the
(R, G, B) values of photos, pixels in [0, 1], and its symmetric square root
scaled so that its largest column has unit length. Prints the matrix as C.

    /usr/bin/python3 tools/color_stats.py ../shared/imagenet/images/*.jpg

Not part of the build; param.c keeps the printed numbers and says which
photos they came from."""
import sys

import numpy as np
from PIL import Image


def main(paths):
    px = []
    for p in paths:
        a = np.asarray(Image.open(p).convert("RGB"), dtype=np.float64) / 255.0
        px.append(a.reshape(-1, 3))
    px = np.concatenate(px)
    cov = np.cov(px, rowvar=False)
    vals, vecs = np.linalg.eigh(cov)
    root = vecs @ np.diag(np.sqrt(vals)) @ vecs.T
    root /= np.max(np.linalg.norm(root, axis=0))
    print(f"/* {len(paths)} photos, {len(px)} pixels; covariance eigenvalues {vals} */")
    for r in root:
        print("    {" + ", ".join(f"{v:.6f}f" for v in r) + "},")


if __name__ == "__main__":
    main(sys.argv[1:])
