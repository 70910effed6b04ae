"""Test helpers: small synthetic training images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_smooth_images(folder: Path, seed: int, count: int = 6) -> Path:
    """``count`` smooth random 48x40 RGB PNGs (sums of sinusoids: structure a tiny net can learn)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:40, 0:48] / 8.0
    for i in range(count):
        f = rng.random((3, 3)) * 2
        img = np.stack([np.sin(xx * f[c, 0] + yy * f[c, 1] + f[c, 2]) for c in range(3)], -1)
        Image.fromarray(((img + 1) * 127.5).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder
