"""Aligned random crops and the 8 dihedral transforms, on numpy HWC arrays."""

from __future__ import annotations

import numpy as np


def random_aligned_crop(
    lr: np.ndarray, hr: np.ndarray, lr_patch: int, scale: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``lr_patch`` LR crop and the HR crop at ``scale`` times the same position. Arrays are HWC."""
    h, w = lr.shape[:2]
    if h < lr_patch or w < lr_patch:
        raise ValueError(f"LR image {w}x{h} is smaller than the LR patch {lr_patch}")
    top = int(rng.integers(0, h - lr_patch + 1))
    left = int(rng.integers(0, w - lr_patch + 1))
    lr_crop = lr[top : top + lr_patch, left : left + lr_patch]
    hr_crop = hr[top * scale : (top + lr_patch) * scale, left * scale : (left + lr_patch) * scale]
    return lr_crop, hr_crop


def dihedral(img: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 dihedral transforms of an HWC array: bit 0 hflip, bit 1 vflip, bit 2 transpose."""
    if code & 1:
        img = img[:, ::-1]
    if code & 2:
        img = img[::-1, :]
    if code & 4:
        img = img.transpose(1, 0, 2)
    return img
