"""Likelihood bookkeeping for normalising flows on images: dequantisation, NLL in nats, bits per pixel/dim.

Images are float tensors in [0, 1]. A flow gives a *continuous* log-density ``logp = log p(y~ | x)`` (nats,
per sample) of the dequantised image ``y~ = y + u``, ``u ~ U(-1/2, 1/2)^D / quant`` (D = 3*H*W dimensions).
Two summaries are derived from it:

* **bpp** -- SRFlow's official number ("nll" in its code): ``(-logp + [H*W*ln(quant)]) / (ln 2 * H * W)``,
  normalised by *pixels* H*W (not dimensions). The bracketed constant is added only when noise was added, and
  it uses H*W rather than 3*H*W, exactly as the official code does; so it is not a discrete likelihood, only a
  number comparable to the official logs. (The released training loop adds neither noise nor the constant;
  pass ``quant=None`` to reproduce that.)
* **bpd** -- proper discrete bits per dimension for data on a grid of bin width ``1/quant``:
  ``(-logp + D*ln(quant)) / (ln 2 * D)`` with D = 3*H*W. With uniform dequantisation this is an upper bound on
  ``-log2 P(y)`` per dimension for y on that grid (Theis et al. 2016). Relation: for the same ``logp`` with
  noise, ``bpd = bpp / 3 + (2/3) * log2(quant)``.

All reductions are float32 (float64 inputs stay float64).
"""

from __future__ import annotations

import math

import torch

from gensr.nn.flow import dequantize  # noqa: F401 (the flow's dequantisation, part of this API)

LN2 = math.log(2.0)


def bits_per_pixel(logp: torch.Tensor, num_pixels: int, quant: int | None = None) -> torch.Tensor:
    """The official SRFlow NLL: ``(-logp + num_pixels * ln(quant)) / (ln 2 * num_pixels)``.

    ``quant=None`` drops the constant (what the released training loop logs, since it adds no noise).
    """
    nats = -logp.float() if logp.dtype != torch.float64 else -logp
    if quant is not None:
        nats = nats + num_pixels * math.log(quant)
    return nats / (LN2 * num_pixels)


def bits_per_dim(logp: torch.Tensor, num_dims: int, quant: int) -> torch.Tensor:
    """Discrete bits/dim for bin width ``1/quant``: ``(-logp + num_dims * ln(quant)) / (ln 2 * num_dims)``."""
    nats = -logp.float() if logp.dtype != torch.float64 else -logp
    return (nats + num_dims * math.log(quant)) / (LN2 * num_dims)


def likelihood_summary(logp: torch.Tensor, hw: int, quant: int, dequantized: bool) -> dict[str, torch.Tensor]:
    """The likelihood numbers of per-sample ``logp`` (nats, log p(HR~ | LR)) of (3, H, W) images, ``hw = H*W``:

    * ``logp`` and ``nll`` = -logp (nats);
    * ``bpp``: the official SRFlow number, (-logp + [H*W*ln q]) / (ln 2 * H*W), the bracket only when the HR
      was ``dequantized`` (the released training loop adds no noise and logs it without);
    * ``bpd``: discrete bits/dim for bin width 1/q, (-logp + 3HW ln q) / (ln 2 * 3HW) (always with it);
    * ``loss``: mean ``bpp`` (the official training loss; the same gradients as mean nll up to a factor).
    """
    bpp = bits_per_pixel(logp, hw, quant if dequantized else None)
    return {"logp": logp, "nll": -logp, "bpp": bpp, "bpd": bits_per_dim(logp, 3 * hw, quant), "loss": bpp.mean()}
