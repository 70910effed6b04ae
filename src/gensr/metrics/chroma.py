"""Invented colour: chroma that a GAN output has and neither a reference output nor the ground truth has.

ESRGAN-style generators trained briefly can paint saturated colour speckle on fine achromatic texture (stripes,
fur, fabric). This module measures it on the BT.601 chroma plane of MATLAB's ``rgb2ycbcr`` (Cb, Cr in [16, 240]
for 8-bit RGB): :func:`chroma_deviation` is the per-pixel Euclidean (Cb, Cr) distance between two images, and
:func:`invented_chroma_fraction` the fraction of pixels where the output's chroma is more than ``threshold``
levels away from BOTH a reference output (the PSNR model's, which keeps the LR's colours) and the ground truth:
colour that the reference did not put there and the scene does not have. Real chroma detail that the PSNR model
blurs away (a mandrill's fur) is not counted, because the output then agrees with the ground truth.
"""

from __future__ import annotations

import numpy as np

from gensr.metrics.fidelity import to_float255

__all__ = ["chroma_deviation", "invented_chroma_fraction", "rgb_to_cbcr"]

# MATLAB rgb2ycbcr, Cb and Cr rows, for RGB in [0, 1] (offset 128 dropped: only differences are used)
_CBCR = np.array([[-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]], dtype=np.float64)


def rgb_to_cbcr(img: np.ndarray) -> np.ndarray:
    """(H, W, 2) float64 chroma (Cb - 128, Cr - 128; 8-bit levels) of an (H, W, 3) RGB image (uint8, uint16 or
    float on the 0..255 scale, as :func:`gensr.metrics.fidelity.to_float255` reads it)."""
    x = to_float255(img)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"chroma needs an (H, W, 3) RGB image, got shape {x.shape}")
    return (x / 255.0) @ _CBCR.T


def chroma_deviation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(H, W) Euclidean distance between the (Cb, Cr) of two RGB images of the same size, in 8-bit levels."""
    if a.shape[:2] != b.shape[:2]:
        raise ValueError(f"images differ in size: {a.shape[:2]} vs {b.shape[:2]}")
    d = rgb_to_cbcr(a) - rgb_to_cbcr(b)
    return np.hypot(d[..., 0], d[..., 1])


def invented_chroma_fraction(
    output: np.ndarray, reference: np.ndarray, gt: np.ndarray, threshold: float = 30.0, crop_border: int = 0
) -> float:
    """Fraction of pixels whose chroma in ``output`` is more than ``threshold`` levels from both ``reference``
    (e.g. the PSNR model's output for the same LR) and ``gt``; ``crop_border`` pixels are shaved per side."""
    if threshold <= 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    new = (chroma_deviation(output, reference) > threshold) & (chroma_deviation(output, gt) > threshold)
    if crop_border:
        new = new[crop_border:-crop_border, crop_border:-crop_border]
    return float(new.mean())
