"""Pixel losses between an output and its target, reduction mean, computed in float32.

- ``l1``: mean |x - y|  (ESRGAN stage 1 and the pixel term of stage 2)
- ``mse`` (alias ``l2``): mean (x - y)^2
- ``charbonnier``: mean sqrt((x - y)^2 + eps^2), eps 1e-3 (the LapSRN convention; BasicSR instead adds
  eps = 1e-12 under the square root without squaring it)

and :func:`chroma_l1_loss`, the L1 distance of the BT.601 chroma planes only (a GAN's colour term: it ties the
output's colour to the target's and leaves its luma free for texture).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError

PIXEL_LOSSES: tuple[str, ...] = ("l1", "mse", "charbonnier")


def _check(x: torch.Tensor, y: torch.Tensor) -> None:
    if x.shape != y.shape:
        raise ValueError(f"pixel loss: output {tuple(x.shape)} and target {tuple(y.shape)} differ in shape")


def l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean |x - y| in float32."""
    _check(x, y)
    return F.l1_loss(x.float(), y.float())


def mse_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean (x - y)^2 in float32."""
    _check(x, y)
    return F.mse_loss(x.float(), y.float())


def charbonnier_loss(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """mean sqrt((x - y)^2 + eps^2) in float32 (a smooth L1; equals ``eps`` for identical inputs)."""
    _check(x, y)
    d = x.float() - y.float()
    return torch.sqrt(d * d + eps * eps).mean()


# MATLAB rgb2ycbcr's Cb and Cr rows for RGB in [0, 1], giving chroma on the same [0, 1] scale (offsets dropped)
_CBCR_ROWS = torch.tensor([[-37.797, -74.203, 112.0], [112.0, -93.786, -18.214]]) / 255.0


def chroma_l1_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """mean |CbCr(x) - CbCr(y)| in float32 over (N, 3, H, W) RGB images in [0, 1] (BT.601 chroma, [0, 1] scale)."""
    _check(x, y)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"chroma loss: expected (N, 3, H, W) RGB, got {tuple(x.shape)}")
    rows = _CBCR_ROWS.to(x.device)
    d = torch.einsum("kc,nchw->nkhw", rows, x.float() - y.float())
    return d.abs().mean()


def pixel_loss_fn(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The loss function called ``name`` (l1, mse/l2, charbonnier); GensrError listing the names otherwise."""
    key = str(name).strip().lower()
    key = {"l2": "mse"}.get(key, key)
    fns = {"l1": l1_loss, "mse": mse_loss, "charbonnier": charbonnier_loss}
    if key not in fns:
        raise GensrError(f"unknown pixel loss {name!r}; known: {', '.join(PIXEL_LOSSES)} (alias l2=mse)")
    return fns[key]


class PixelLoss(nn.Module):
    """``PixelLoss("l1")(output, target)`` -> scalar; ``eps`` is used by charbonnier only."""

    def __init__(self, name: str = "l1", eps: float = 1e-3) -> None:
        super().__init__()
        self.fn = pixel_loss_fn(name)
        self.name = {"l2": "mse"}.get(str(name).strip().lower(), str(name).strip().lower())
        self.eps = float(eps)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.fn is charbonnier_loss:
            return charbonnier_loss(x, y, self.eps)
        return self.fn(x, y)

    def extra_repr(self) -> str:
        return repr(self.name)
