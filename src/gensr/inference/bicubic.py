"""MATLAB-bicubic upscaling of image arrays without torch, and the argument checks every upscaler shares.

``gensr upscale --model bicubic`` runs through :class:`BicubicUpscaler`, so it never imports torch (about three
quarters of that command's time used to be the torch import). The numbers are those of
:class:`gensr.inference.upscale.Upscaler` with ``model="bicubic"`` up to float rounding: one resize straight to
the output size (``scale`` x the input, or ``round(outscale * side)``), clipped to [0, 1]; computed here in
float64 from the integer pixels (the Upscaler resizes float32 tensors), so an 8-bit result can differ from
the Upscaler's by one level where a value falls within float32 rounding of a half.
"""

from __future__ import annotations

import math

import numpy as np

from gensr.errors import GensrError
from gensr.io import float_to_pixels
from gensr.io.limits import check_output_size

__all__ = ["BicubicUpscaler", "check_upscale_args", "output_size"]

DEFAULT_TILE_OVERLAP = 32


def check_upscale_args(tile: int, tile_overlap: int | None, batch_size: int, scale: int | None) -> int:
    """GensrError for a bad tile / overlap / batch size / scale; returns the overlap to use (default: 32 LR px,
    or ``tile // 4`` for tiles under 128 px)."""
    if tile < 0:
        raise GensrError(f"tile must be >= 0 (0 = no tiling), got {tile}")
    if tile_overlap is None:  # also used by automatic tiling when tile is 0
        tile_overlap = DEFAULT_TILE_OVERLAP if tile <= 0 else min(DEFAULT_TILE_OVERLAP, tile // 4)
    if tile_overlap < 0:
        raise GensrError(f"tile_overlap must be >= 0, got {tile_overlap}")
    if tile and tile_overlap >= tile:
        raise GensrError(f"tile_overlap ({tile_overlap}) must be smaller than the tile ({tile})")
    if batch_size < 1:
        raise GensrError(f"batch_size must be >= 1, got {batch_size}")
    if scale is not None and (not float(scale).is_integer() or scale < 1):
        raise GensrError(f"scale must be a positive integer, got {scale}")
    return int(tile_overlap)


def output_size(height: int, width: int, scale: int | None, outscale: float | None) -> tuple[int, int] | None:
    """The checked final size of an ``height`` x ``width`` input: None for the plain ``scale`` x output (checked
    too), ``(round(outscale * H), round(outscale * W))`` with ``outscale``."""
    if outscale is not None and not (math.isfinite(outscale) and outscale > 0):
        raise GensrError(f"outscale must be a positive finite number, got {outscale}")
    if scale is not None:
        check_output_size(height * scale, width * scale, f"x{scale} output of a {width}x{height} image")
    if outscale is None:
        return None
    return check_output_size(max(1, round(outscale * height)), max(1, round(outscale * width)), "outscale output")


class BicubicUpscaler:
    """MATLAB bicubic by an integer ``scale`` (default 4) on (H, W, C) uint8 / uint16 pixel arrays."""

    def __init__(self, scale: int | None = None) -> None:
        check_upscale_args(0, None, 1, scale)
        self.scale = int(scale) if scale is not None else 4

    def _resize(self, a: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        from gensr.imresize import imresize

        x = a.astype(np.float64) / (65535.0 if a.dtype == np.uint16 else 255.0)
        if tuple(x.shape[:2]) == tuple(size):
            return x
        return imresize(x, size=size)

    def run(self, pixels: np.ndarray, outscale: float | None = None, bit_depth: int = 8) -> np.ndarray:
        """(H, W, C) integer pixels -> the upscaled (H', W', C) pixels of ``bit_depth`` (8 or 16)."""
        h, w = pixels.shape[:2]
        size = output_size(h, w, self.scale, outscale) or (h * self.scale, w * self.scale)
        out = self._resize(pixels, size)
        return float_to_pixels(out.reshape(*size, -1), bit_depth)

    def run_alpha(self, alpha: np.ndarray, size: tuple[int, int], bit_depth: int = 8) -> np.ndarray:
        """(H, W) integer alpha -> (size) alpha of ``bit_depth``."""
        return float_to_pixels(self._resize(alpha, tuple(size)), bit_depth)
