"""Overlap-blended tiled inference that streams tiles from CPU memory.

The low-resolution image and the float32 output accumulator stay in CPU memory; only a batch of
``batch_size`` tiles (and their outputs) is on the device at a time, so device memory is bounded by the
tile size, not by the image size (unlike Real-ESRGAN, whose tiled path keeps the whole image on the GPU).

Tiles are ``tile`` x ``tile`` LR pixels (smaller only when the image itself is smaller). Along each axis the
first tile starts at 0, the last one ends at the border, and the ones between are spread evenly so that
neighbours overlap by at least ``overlap`` LR pixels; every tile has the same size, so tiles run in batches.
Each tile's output is weighted by a separable feathered window: a linear ramp over ``overlap * scale`` output
pixels on every side that faces a neighbour (weight 1 on sides at the image border), and the result is
``sum(weight * tile) / sum(weight)``. The blend is continuous across tile edges, so there are no hard seams,
and it is exact for a model that maps each pixel on its own (a nearest upsample, a 1x1 conv).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from gensr.errors import GensrError
from gensr.nn.padding import pad_to_multiple

__all__ = ["tile_starts", "feather_window", "tile_count", "tiled_forward"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of the tiles along one axis of ``length`` pixels.

    A single start 0 when ``tile >= length``; otherwise the fewest tiles whose neighbours overlap by at least
    ``overlap`` pixels, the first at 0 and the last ending exactly at ``length``, spread evenly between.
    """
    if tile <= 0 or tile >= length:
        return [0]
    if not 0 <= overlap < tile:
        raise GensrError(f"tile overlap must be between 0 and tile size - 1 ({tile - 1}), got {overlap}")
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    span = length - tile
    # Evenly spread: the actual stride is span / (n - 1) <= stride, so every overlap is >= ``overlap``.
    return [(i * span) // (n - 1) for i in range(n)]


def tile_count(height: int, width: int, tile: int, overlap: int, align: int = 1) -> int:
    """Number of tiles :func:`tiled_forward` runs for an ``height`` x ``width`` LR image."""
    if tile <= 0 or (tile >= height and tile >= width):
        return 1
    if align > 1:
        height, width = height + (-height) % align, width + (-width) % align
        tile = max(align, tile - tile % align)
    th, tw = min(tile, height), min(tile, width)
    return len(_aligned_starts(height, th, overlap, align)) * len(_aligned_starts(width, tw, overlap, align))


def feather_window(size: int, ramp: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D blending weights of one tile's output: a linear ramp of ``ramp`` pixels at each flagged end.

    Weights are in (0, 1]: ``(i + 0.5) / ramp`` on a ramp, 1 elsewhere; where the two ramps meet (ramp longer
    than half the tile) the smaller weight wins.
    """
    w = torch.ones(size, dtype=torch.float32)
    if ramp <= 0:
        return w
    rising = ((torch.arange(size, dtype=torch.float32) + 0.5) / ramp).clamp_(max=1.0)
    if ramp_start:
        w = torch.minimum(w, rising)
    if ramp_end:
        w = torch.minimum(w, rising.flip(0))
    return w


def _axis_weights(tile: int, n: int, scale: int, overlap: int) -> list[torch.Tensor]:
    """Windows of the ``n`` tiles along one axis: no ramp on the sides at the image border."""
    return [feather_window(tile * scale, overlap * scale, ramp_start=i > 0, ramp_end=i < n - 1) for i in range(n)]


@torch.no_grad()
def tiled_forward(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    scale: int | None,
    tile: int,
    overlap: int,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    progress: Callable[[int, int], None] | None = None,
    align: int = 1,
) -> torch.Tensor:
    """Run ``model_fn`` on ``lr`` (1, C, H, W) tile by tile; returns (1, C_out, s*H, s*W) float32 on the CPU.

    ``model_fn`` takes a (B, C, th, tw) batch on ``device`` (cast to ``dtype``) and returns
    (B, C_out, s*th, s*tw).
    ``scale`` None means: infer it from the first output. ``tile`` <= 0, or at least the image size on both
    axes, runs a single forward of the whole image. ``progress(done, total)`` is called after each batch.

    ``align``: tile offsets and sizes are multiples of it, and the image is first padded (reflect, right and
    bottom) to a multiple of it; for models that pixel-unshuffle their input (RRDBNet x2: 2, x1: 4), whose
    output changes when the input is shifted by an amount that is not a multiple of the factor.
    """
    if lr.dim() != 4 or lr.shape[0] != 1:
        raise GensrError(f"tiled_forward expects a (1, C, H, W) tensor, got shape {tuple(lr.shape)}")
    if batch_size < 1:
        raise GensrError(f"batch size must be at least 1, got {batch_size}")
    if overlap < 0:
        raise GensrError(f"tile overlap must be >= 0, got {overlap}")
    device = torch.device(device)
    _, _, h, w = lr.shape
    if tile <= 0 or (tile >= h and tile >= w):
        out = model_fn(lr.to(device=device, dtype=dtype))
        if progress is not None:
            progress(1, 1)
        out = out.float().cpu()
        if scale is not None:
            _check_shape(out, h, w, scale)
        return out

    if overlap >= tile:
        raise GensrError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    if align < 1:
        raise GensrError(f"tile alignment must be >= 1, got {align}")
    out_h, out_w = h, w
    if align > 1:
        lr = pad_to_multiple(lr.detach().to("cpu"), align)[0]
        h, w = lr.shape[-2:]
        tile = max(align, tile - tile % align)
    th, tw = min(tile, h), min(tile, w)  # an axis shorter than the tile is one tile of the image's size
    ys, xs = _aligned_starts(h, th, overlap, align), _aligned_starts(w, tw, overlap, align)
    positions = [(iy, ix) for iy in range(len(ys)) for ix in range(len(xs))]
    total = len(positions)

    lr_cpu = lr.detach().to("cpu")
    pin = device.type == "cuda" and torch.cuda.is_available()
    acc: torch.Tensor | None = None
    wy: list[torch.Tensor] = []
    wx: list[torch.Tensor] = []
    done = 0
    for b0 in range(0, total, batch_size):
        chunk = positions[b0 : b0 + batch_size]
        batch = torch.cat([lr_cpu[:, :, ys[i] : ys[i] + th, xs[j] : xs[j] + tw] for i, j in chunk], dim=0)
        if pin:
            batch = batch.pin_memory()
        out = model_fn(batch.to(device=device, dtype=dtype, non_blocking=pin))
        if scale is None:
            if out.shape[-2] % th or out.shape[-1] % tw or out.shape[-2] // th != out.shape[-1] // tw:
                raise GensrError(
                    f"model output {tuple(out.shape[-2:])} is not an integer multiple of its input ({th}, {tw})"
                )
            scale = out.shape[-2] // th
        _check_shape(out, th, tw, scale, n=len(chunk))
        out = out.to(device="cpu", dtype=torch.float32)
        if acc is None:
            acc = torch.zeros(1, out.shape[1], h * scale, w * scale, dtype=torch.float32)
            wy = _axis_weights(th, len(ys), scale, overlap)
            wx = _axis_weights(tw, len(xs), scale, overlap)
        for k, (i, j) in enumerate(chunk):
            y, x = ys[i], xs[j]
            weight = wy[i][:, None] * wx[j][None, :]
            acc[:, :, y * scale : (y + th) * scale, x * scale : (x + tw) * scale].addcmul_(out[k : k + 1], weight)
        done += len(chunk)
        if progress is not None:
            progress(done, total)

    assert acc is not None and scale is not None
    # The window is separable and the tiles form a grid, so the weight sum is the outer product of 1-D sums.
    wsum_y = torch.zeros(h * scale)
    for y, wgt in zip(ys, wy, strict=True):
        wsum_y[y * scale : (y + th) * scale] += wgt
    wsum_x = torch.zeros(w * scale)
    for x, wgt in zip(xs, wx, strict=True):
        wsum_x[x * scale : (x + tw) * scale] += wgt
    acc /= wsum_y[:, None] * wsum_x[None, :]
    if (out_h, out_w) != (h, w):
        acc = acc[:, :, : out_h * scale, : out_w * scale].contiguous()
    return acc


def _aligned_starts(length: int, tile: int, overlap: int, align: int) -> list[int]:
    """:func:`tile_starts` on a grid of ``align`` pixels (``length`` and ``tile`` are multiples of it)."""
    if align == 1:
        return tile_starts(length, tile, overlap)
    units = min(-(-overlap // align), tile // align - 1)
    return [s * align for s in tile_starts(length // align, tile // align, units)]




def _check_shape(out: torch.Tensor, th: int, tw: int, scale: int, n: int = 1) -> None:
    if out.dim() != 4 or out.shape[0] != n or out.shape[-2] != th * scale or out.shape[-1] != tw * scale:
        raise GensrError(
            f"model returned shape {tuple(out.shape)} for a ({n}, C, {th}, {tw}) input; expected "
            f"({n}, C, {th * scale}, {tw * scale}) at scale {scale}"
        )
