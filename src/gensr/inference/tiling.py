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
from dataclasses import dataclass

import torch

from gensr.errors import GensrError
from gensr.nn.padding import pad_to_multiple

__all__ = ["TileBlender", "TileGrid", "feather_window", "tile_count", "tile_grid", "tile_starts", "tiled_forward"]


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


@dataclass
class TileGrid:
    """The tiles covering an image: tile height/width, start rows/columns, and the overlap (all in input px)."""

    th: int
    tw: int
    ys: list[int]
    xs: list[int]
    overlap: int

    @property
    def positions(self) -> list[tuple[int, int]]:
        """(y, x) start of every tile, row by row."""
        return [(y, x) for y in self.ys for x in self.xs]

    def __len__(self) -> int:
        return len(self.ys) * len(self.xs)


def tile_grid(height: int, width: int, tile: int, overlap: int, align: int = 1) -> TileGrid:
    """Tiles of at most ``tile`` px with overlaps of at least ``overlap`` over an ``height`` x ``width`` image whose
    sides are multiples of ``align`` (starts, sizes and overlap are multiples of it too). ``tile`` <= 0, or at
    least the image on both axes: one tile, the whole image."""
    if tile <= 0 or (tile >= height and tile >= width):
        return TileGrid(height, width, [0], [0], 0)
    if align < 1:
        raise GensrError(f"tile alignment must be >= 1, got {align}")
    tile = max(align, tile - tile % align)
    units = max(0, min(-(-overlap // align), tile // align - 1))
    th, tw = min(tile, height), min(tile, width)  # an axis shorter than the tile is one tile of the image's size

    def starts(length: int, size: int) -> list[int]:
        return [v * align for v in tile_starts(length // align, size // align, min(units, max(size // align - 1, 0)))]

    return TileGrid(th, tw, starts(height, th), starts(width, tw), units * align)


def tile_count(height: int, width: int, tile: int, overlap: int, align: int = 1) -> int:
    """Number of tiles :func:`tiled_forward` runs for an ``height`` x ``width`` LR image."""
    height, width = height + (-height) % align, width + (-width) % align
    return len(tile_grid(height, width, tile, overlap, align))


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


class TileBlender:
    """Feather-blends overlapping tile outputs of a :class:`TileGrid` into (batch, channels, s*H, s*W) CPU float32.

    Each tile's output is weighted by the outer product of 1-D :func:`feather_window` ramps over its inner
    overlaps (no ramp at the image border) and the sum is divided by the summed weights, which factor into
    row and column sums because the window is separable and the tiles form a grid. A single tile gets weight 1:
    its output comes back unchanged.
    """

    def __init__(self, grid: TileGrid, scale: int, channels: int, batch: int = 1) -> None:
        self.grid, self.s = grid, scale
        h = (grid.ys[-1] + grid.th) * scale
        w = (grid.xs[-1] + grid.tw) * scale
        self.acc = torch.zeros(batch, channels, h, w, dtype=torch.float32)
        ny, nx = len(grid.ys), len(grid.xs)
        ramp = grid.overlap * scale
        self.wy = {y: feather_window(grid.th * scale, ramp, i > 0, i < ny - 1) for i, y in enumerate(grid.ys)}
        self.wx = {x: feather_window(grid.tw * scale, ramp, j > 0, j < nx - 1) for j, x in enumerate(grid.xs)}

    def add(self, out: torch.Tensor, y: int, x: int, k: int = 0) -> None:
        """Add tile (y, x)'s output ``out`` (C, s*th, s*tw) to batch item ``k``."""
        s, g = self.s, self.grid
        weight = self.wy[y][:, None] * self.wx[x][None, :]
        self.acc[k, :, y * s : (y + g.th) * s, x * s : (x + g.tw) * s].addcmul_(out.float().cpu(), weight)

    def result(self) -> torch.Tensor:
        s, g = self.s, self.grid
        wsum_y = torch.zeros(self.acc.shape[-2])
        for y in g.ys:
            wsum_y[y * s : (y + g.th) * s] += self.wy[y]
        wsum_x = torch.zeros(self.acc.shape[-1])
        for x in g.xs:
            wsum_x[x * s : (x + g.tw) * s] += self.wx[x]
        return self.acc.div_(wsum_y[:, None] * wsum_x[None, :])


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
        out = model_fn(lr.to(device=device, dtype=dtype)).float().cpu()
        if progress is not None:
            progress(1, 1)
        if scale is not None:
            _check_shape(out, h, w, scale)
        return out
    if overlap >= tile:
        raise GensrError(f"tile overlap ({overlap}) must be smaller than the tile size ({tile})")
    lr = pad_to_multiple(lr.detach().to("cpu"), align)[0]
    grid = tile_grid(lr.shape[-2], lr.shape[-1], tile, overlap, align)
    blender = _run_tiles(model_fn, lr, grid, scale, batch_size, device, dtype, progress)
    return blender.result()[:, :, : h * blender.s, : w * blender.s].contiguous()


def _run_tiles(
    model_fn: Callable[[torch.Tensor], torch.Tensor],
    lr: torch.Tensor,
    grid: TileGrid,
    scale: int | None,
    batch_size: int,
    device: torch.device,
    dtype: torch.dtype,
    progress: Callable[[int, int], None] | None,
) -> TileBlender:
    """Run the tiles of ``grid`` through ``model_fn`` in batches and blend their outputs."""
    th, tw, positions = grid.th, grid.tw, grid.positions
    pin = device.type == "cuda" and torch.cuda.is_available()
    blender: TileBlender | None = None
    for b0 in range(0, len(positions), batch_size):
        chunk = positions[b0 : b0 + batch_size]
        batch = torch.cat([lr[:, :, y : y + th, x : x + tw] for y, x in chunk], dim=0)
        out = model_fn((batch.pin_memory() if pin else batch).to(device=device, dtype=dtype, non_blocking=pin))
        if scale is None:
            if out.shape[-2] % th or out.shape[-1] % tw or out.shape[-2] // th != out.shape[-1] // tw:
                raise GensrError(
                    f"model output {tuple(out.shape[-2:])} is not an integer multiple of its input ({th}, {tw})"
                )
            scale = out.shape[-2] // th
        _check_shape(out, th, tw, scale, n=len(chunk))
        if blender is None:
            blender = TileBlender(grid, scale, out.shape[1])
        for k, (y, x) in enumerate(chunk):
            blender.add(out[k], y, x)
        if progress is not None:
            progress(b0 + len(chunk), len(positions))
    assert blender is not None
    return blender


def _check_shape(out: torch.Tensor, th: int, tw: int, scale: int, n: int = 1) -> None:
    if out.dim() != 4 or out.shape[0] != n or out.shape[-2] != th * scale or out.shape[-1] != tw * scale:
        raise GensrError(
            f"model returned shape {tuple(out.shape)} for a ({n}, C, {th}, {tw}) input; expected "
            f"({n}, C, {th * scale}, {tw * scale}) at scale {scale}"
        )
