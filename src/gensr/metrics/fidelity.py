"""Full-reference fidelity metrics with the conventions of SR papers: PSNR, SSIM, LR-PSNR.

Conventions (see ``docs`` and the ESRGAN/SRFlow notes):

* Inputs are numpy arrays (H, W) or (H, W, C), C = 1 or 3, RGB order. ``uint8`` is used as is; ``uint16`` is
  brought to the 8-bit scale by dividing by 257 (65535 -> 255), so PSNR keeps ``peak=255`` and SSIM keeps its
  8-bit constants; float arrays are taken to be in [0, 255] already. Everything is computed in float64.
* ``y_channel=True`` scores the BT.601 luma of MATLAB's ``rgb2ycbcr`` (Y in [16, 235]); by default Y stays
  float (BasicSR), ``round_y=True`` rounds it to integers like MATLAB does on uint8. Single-channel (gray)
  images have no colour to convert: they are scored as they are, with or without ``y_channel``; a gray image
  scored against an RGB one is treated as RGB with three equal channels.
* ``crop_border`` shaves that many pixels from every side before scoring (papers use the scale factor).
* SSIM is the MATLAB ``ssim_index`` / BasicSR one: 11x11 Gaussian window (sigma 1.5), 'valid' filtering,
  C1 = (0.01 * 255)^2, C2 = (0.03 * 255)^2, mean over the SSIM map, mean over channels for RGB,
  no downsampling.
* Identical images have PSNR ``math.inf`` (never a made-up cap).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "rgb_to_y",
    "to_float255",
    "psnr",
    "ssim",
    "mse",
    "lr_psnr",
    "lr_consistency_target",
    "gaussian_window",
]

# MATLAB rgb2ycbcr, Y row, for RGB in [0, 1] giving Y in [16, 235].
_Y_COEFFS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def to_float255(img: np.ndarray) -> np.ndarray:
    """``img`` as float64 (H, W, C) on the 8-bit scale: uint8 as is, uint16 / 257, float taken as 0..255."""
    a = np.asarray(img)
    if a.dtype == np.bool_ or not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"unsupported image dtype {a.dtype}")
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W), (H, W, 1) or (H, W, 3) image, got shape {a.shape}")
    if a.dtype == np.uint16:
        return a.astype(np.float64) / 257.0
    if np.issubdtype(a.dtype, np.integer) and a.dtype != np.uint8:
        raise ValueError(f"integer images must be uint8 or uint16, got {a.dtype}")
    return a.astype(np.float64)


def rgb_to_y(img: np.ndarray, round_y: bool = False) -> np.ndarray:
    """BT.601 luma as MATLAB's ``rgb2ycbcr``: ``Y = 16 + (65.481 R + 128.553 G + 24.966 B) / 255``.

    Args:
        img: (H, W, 3) RGB, uint8 / uint16 (see :func:`to_float255`) or float in [0, 255]. A gray image
            ((H, W) or (H, W, 1)) is returned unchanged (as float64), since it has no chroma to remove.
        round_y: round Y to integers, half away from zero, as MATLAB's ``rgb2ycbcr`` does on uint8 input.

    Returns:
        float64 (H, W, 1) on the [16, 235] scale of 255.
    """
    a = to_float255(img)
    if a.shape[2] == 1:
        y = a
    else:
        y = 16.0 + (a @ _Y_COEFFS)[:, :, None] / 255.0
    if round_y:
        y = np.floor(y + 0.5)  # Y >= 0 here, so this is MATLAB's round-half-away-from-zero
    return y


def _prepare(a: np.ndarray, b: np.ndarray, crop_border: int, y_channel: bool, round_y: bool):
    a = to_float255(a)
    b = to_float255(b)
    if a.shape[2] != b.shape[2]:  # gray vs RGB: score the gray one as RGB with three equal channels
        a, b = np.broadcast_to(a, a.shape[:2] + (3,)), np.broadcast_to(b, b.shape[:2] + (3,))
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {a.shape[1]}x{a.shape[0]} vs {b.shape[1]}x{b.shape[0]} (WxH)")
    if crop_border < 0:
        raise ValueError(f"crop_border must be >= 0, got {crop_border}")
    if crop_border:
        if a.shape[0] <= 2 * crop_border or a.shape[1] <= 2 * crop_border:
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {a.shape[0]}x{a.shape[1]} image")
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        a = rgb_to_y(a, round_y)
        b = rgb_to_y(b, round_y)
    return a, b


def mse(a: np.ndarray, b: np.ndarray, crop_border: int = 0, y_channel: bool = False, round_y: bool = False) -> float:
    """Mean squared error on the 8-bit scale, over all pixels and channels (same options as :func:`psnr`)."""
    a, b = _prepare(a, b, crop_border, y_channel, round_y)
    return float(np.mean((a - b) ** 2))


def psnr(
    a: np.ndarray,
    b: np.ndarray,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
    peak: float = 255.0,
) -> float:
    """PSNR in dB: ``10 log10(peak^2 / MSE)``, MSE over all pixels and channels; ``math.inf`` if identical."""
    err = mse(a, b, crop_border, y_channel, round_y)
    if err == 0.0:
        return math.inf
    return float(10.0 * math.log10(peak * peak / err))


def gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """Normalised 1-D Gaussian (MATLAB ``fspecial('gaussian')`` is its outer product with itself)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    g = np.exp(-(x * x) / (2.0 * sigma * sigma))
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Separable 'valid' correlation of a 2-D array with ``outer(g, g)`` (g is symmetric: a convolution)."""
    k = g.size
    h, w = x.shape
    rows = np.zeros((h - k + 1, w), dtype=np.float64)
    for i in range(k):
        rows += g[i] * x[i : i + h - k + 1, :]
    out = np.zeros((h - k + 1, w - k + 1), dtype=np.float64)
    for j in range(k):
        out += g[j] * rows[:, j : j + w - k + 1]
    return out


def _ssim_2d(x: np.ndarray, y: np.ndarray, g: np.ndarray) -> float:
    c1 = (0.01 * 255.0) ** 2
    c2 = (0.03 * 255.0) ** 2
    mu1 = _filter_valid(x, g)
    mu2 = _filter_valid(y, g)
    mu1_sq, mu2_sq, mu1_mu2 = mu1 * mu1, mu2 * mu2, mu1 * mu2
    sigma1_sq = _filter_valid(x * x, g) - mu1_sq
    sigma2_sq = _filter_valid(y * y, g) - mu2_sq
    sigma12 = _filter_valid(x * y, g) - mu1_mu2
    ssim_map = ((2.0 * mu1_mu2 + c1) * (2.0 * sigma12 + c2)) / ((mu1_sq + mu2_sq + c1) * (sigma1_sq + sigma2_sq + c2))
    return float(ssim_map.mean())


def ssim(
    a: np.ndarray,
    b: np.ndarray,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
) -> float:
    """MATLAB-style SSIM (11x11 Gaussian, sigma 1.5, 'valid', no downsampling); mean over channels."""
    a, b = _prepare(a, b, crop_border, y_channel, round_y)
    if a.shape[0] < 11 or a.shape[1] < 11:
        raise ValueError(f"SSIM needs at least 11x11 pixels after cropping, got {a.shape[0]}x{a.shape[1]}")
    g = gaussian_window(11, 1.5)
    return float(np.mean([_ssim_2d(a[:, :, c], b[:, :, c], g) for c in range(a.shape[2])]))


def _downscale(img: np.ndarray, scale: int, padding: str = "symmetric") -> np.ndarray:
    from gensr.imresize import imresize

    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"LR-PSNR expects uint8 or uint16 images (MATLAB integer path), got {a.dtype}")
    return imresize(a, 1.0 / scale, padding=padding)


def lr_consistency_target(gt: np.ndarray, scale: int, padding: str = "symmetric") -> np.ndarray:
    """The LR an SR result should map back to: MATLAB-bicubic ``imresize(modcrop(gt, scale), 1/scale)``."""
    from gensr.imresize import modcrop

    return _downscale(modcrop(np.asarray(gt), scale), scale, padding)


def lr_psnr(
    sr: np.ndarray,
    lr: np.ndarray,
    scale: int,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
    padding: str = "symmetric",
) -> float:
    """LR consistency: PSNR of MATLAB-bicubic ``imresize(sr, 1/scale)`` (integer path) against ``lr``.

    RGB by default, whole image (the SRFlow / NTIRE "Learning the SR space" convention); ``lr`` is either the
    LR input or :func:`lr_consistency_target` of the GT. ``crop_border`` is in LR pixels.
    """
    down = _downscale(sr, scale, padding)
    lr = np.asarray(lr)
    if lr.ndim == 2:
        lr = lr[:, :, None]
    if down.shape[:2] != lr.shape[:2]:
        raise ValueError(
            f"SR downscaled by {scale} is {down.shape[1]}x{down.shape[0]}, but the LR is {lr.shape[1]}x{lr.shape[0]}"
        )
    return psnr(down, lr, crop_border=crop_border, y_channel=y_channel, round_y=round_y)


def lr_psnr_torch(sr: torch.Tensor, lr: torch.Tensor, scale: int) -> float:
    """PSNR (dB, [0, 1] range, RGB, whole image) of the MATLAB-bicubic (torch float path, no uint8 rounding)
    downscale of ``sr`` (1, 3, H, W) against ``lr`` (1, 3, h, w); ``sr`` is cropped to ``scale`` x the LR size
    first. The tensor counterpart of :func:`lr_psnr` (which rounds to uint8 like NTIRE's ``measure.py``), for
    checks on model outputs before they are written."""
    from gensr.imresize import imresize

    h, w = lr.shape[-2:]
    down = imresize(sr[..., : h * scale, : w * scale].double(), 1.0 / scale)
    mse = float(((down - lr.double()) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)
