"""MATLAB-exact bicubic ``imresize`` (antialiased Keys cubic, a = -0.5).

Rules (MATLAB ``imresize(img, scale, 'bicubic')``): for each dimension, output length ``ceil(in * scale)``;
output pixel x (1-based) maps to ``u = x / scale + 0.5 * (1 - 1 / scale)``; when shrinking with antialiasing
the kernel is stretched to ``4 / scale`` taps and scaled by ``scale``; weight rows are normalised to sum 1;
borders are mirrored (``symmetric``, MATLAB's default) or clamped (``replicate``, the SelfExSR variant).
The dimension with the smaller scale is resized first (ties: rows, i.e. height, first).

Two paths share the same weight matrices:

* numpy uint8/uint16 (H, W[, C]): MATLAB's integer path, rounding half away from zero and saturating after each
  1-D pass. Reproduces MATLAB's output bit-exactly.
* torch float (..., H, W): batched, differentiable, any device and dtype; no rounding or clamping.

numpy float inputs are computed in float64 without rounding.
"""

from __future__ import annotations

import math
import sys
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

if TYPE_CHECKING:
    import torch

Padding = Literal["symmetric", "replicate"]
ArrayT = TypeVar("ArrayT", np.ndarray, "torch.Tensor")


def _is_tensor(x: Any) -> bool:
    """True for a torch tensor, without importing torch (numpy-only callers stay fast to start)."""
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(x, torch_mod.Tensor)


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's 'bicubic')."""
    ax = np.abs(x)
    ax2, ax3 = ax**2, ax**3
    return (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1) + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * (
        (ax > 1) & (ax <= 2)
    )


@lru_cache(maxsize=256)
def _weight_matrix(in_len: int, out_len: int, scale: float, antialias: bool, padding: str) -> np.ndarray:
    """Dense (out_len, in_len) float64 matrix M with ``out = M @ in`` along one dimension."""
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based source positions
    dist = u[:, None] - idx
    weights = scale * cubic(scale * dist) if shrink else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    idx0 = idx.astype(np.int64) - 1  # 0-based
    if padding == "symmetric":
        period = 2 * in_len
        m = np.mod(idx0, period)
        src = np.where(m < in_len, m, period - 1 - m)
    elif padding == "replicate":
        src = np.clip(idx0, 0, in_len - 1)
    else:
        raise ValueError(f"padding must be 'symmetric' or 'replicate', got {padding!r}")
    matrix = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps), src.ravel()), weights.ravel())
    matrix.setflags(write=False)
    return matrix


def _plan(
    in_hw: tuple[int, int], scale: float | tuple[float, float] | None, size: tuple[int, int] | None
) -> tuple[tuple[float, float], tuple[int, int]]:
    """Per-dimension (scale, output length) from either a scale or an output size."""
    h, w = in_hw
    if size is not None:
        oh, ow = int(size[0]), int(size[1])
        if oh < 1 or ow < 1:
            raise ValueError(f"output size must be positive, got {size}")
        return (oh / h, ow / w), (oh, ow)
    if scale is None:
        raise ValueError("give either scale or size")
    sh, sw = (float(scale), float(scale)) if np.isscalar(scale) else (float(scale[0]), float(scale[1]))
    if sh <= 0 or sw <= 0:
        raise ValueError(f"scale must be positive, got {scale}")
    return (sh, sw), (int(math.ceil(h * sh - 1e-9)), int(math.ceil(w * sw - 1e-9)))


def _round_saturate(x: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """MATLAB's float -> integer cast: round half away from zero, then saturate to the type's range."""
    info = np.iinfo(dtype)
    return np.clip(np.sign(x) * np.floor(np.abs(x) + 0.5), info.min, info.max)


def imresize(
    img: ArrayT,
    scale: float | tuple[float, float] | None = None,
    size: tuple[int, int] | None = None,
    *,
    antialias: bool = True,
    padding: Padding = "symmetric",
) -> ArrayT:
    """Resize like MATLAB's ``imresize(img, scale, 'bicubic')``.

    Args:
        img: numpy (H, W) or (H, W, C) uint8/uint16/float, or a torch float tensor (..., H, W).
        scale: factor (or (fy, fx)); output side ``ceil(side * scale)``. Mutually exclusive with ``size``.
        size: output (H, W).
        antialias: stretch the kernel when shrinking (MATLAB default True).
        padding: 'symmetric' (MATLAB) or 'replicate' border handling.

    Returns:
        Same container type. Integer numpy input gives the same integer dtype (rounded after each pass);
        float numpy input gives float64; torch input gives a tensor of its dtype (unrounded, unclamped).
    """
    if _is_tensor(img):
        return _imresize_torch(img, scale, size, antialias, padding)
    return _imresize_numpy(np.asarray(img), scale, size, antialias, padding)


def _order(scales: tuple[float, float]) -> list[int]:
    # MATLAB: dimensions sorted by scale, smaller first; stable, so equal scales do rows first.
    return [0, 1] if scales[0] <= scales[1] else [1, 0]


def _imresize_numpy(img: np.ndarray, scale, size, antialias: bool, padding: str) -> np.ndarray:
    if img.ndim not in (2, 3):
        raise ValueError(f"expected an (H, W) or (H, W, C) array, got shape {img.shape}")
    in_dtype = img.dtype
    integer = np.issubdtype(in_dtype, np.integer)
    if img.dtype == np.bool_:
        raise ValueError("boolean images are not supported")
    scales, out_hw = _plan(img.shape[:2], scale, size)
    x = img.astype(np.float64)
    for dim in _order(scales):
        if x.shape[dim] == out_hw[dim] and scales[dim] == 1.0:
            continue
        m = _weight_matrix(x.shape[dim], out_hw[dim], scales[dim], antialias, padding)
        x = np.tensordot(m, x, axes=([1], [0])) if dim == 0 else np.moveaxis(np.tensordot(m, x, axes=([1], [1])), 0, 1)
        if integer:
            x = _round_saturate(x, in_dtype)
    return x.astype(in_dtype) if integer else x


def _imresize_torch(img: torch.Tensor, scale, size, antialias: bool, padding: str) -> torch.Tensor:
    import torch

    if img.dim() < 2:
        raise ValueError(f"expected a tensor (..., H, W), got shape {tuple(img.shape)}")
    if not img.is_floating_point():
        raise ValueError(f"the torch path needs a float tensor, got {img.dtype}")
    scales, out_hw = _plan(tuple(img.shape[-2:]), scale, size)
    x = img
    for dim in _order(scales):
        axis = x.dim() - 2 + dim
        if x.shape[axis] == out_hw[dim] and scales[dim] == 1.0:
            continue
        m = torch.from_numpy(np.array(_weight_matrix(x.shape[axis], out_hw[dim], scales[dim], antialias, padding))).to(
            device=x.device, dtype=x.dtype
        )
        if dim == 0:
            x = torch.matmul(m, x)  # (out_h, H) @ (..., H, W)
        else:
            x = torch.matmul(x, m.t())  # (..., H, W) @ (W, out_w)
    return x


def modcrop(img: ArrayT, scale: int) -> ArrayT:
    """Crop the top-left ``H - H % scale`` x ``W - W % scale`` region (numpy (H, W[, C]) or torch (..., H, W))."""
    if _is_tensor(img):
        h, w = img.shape[-2:]
        return img[..., : h - h % scale, : w - w % scale]
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]
