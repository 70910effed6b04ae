"""Padding images at the bottom and right, the one way gensr does it (networks that need sides of a multiple)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_bottom_right(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """(N, C, H, W) padded by ``pad_h`` rows and ``pad_w`` columns: reflect when both pads are smaller than
    their side (what reflection needs), else replicate. Unchanged when both are 0."""
    if not (pad_h or pad_w):
        return x
    h, w = x.shape[-2:]
    mode = "reflect" if pad_h < h and pad_w < w else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """(N, C, H, W) padded at the bottom/right to sides that are multiples of ``multiple``; also (H, W)."""
    h, w = x.shape[-2:]
    return pad_bottom_right(x, (-h) % multiple, (-w) % multiple), (h, w)
