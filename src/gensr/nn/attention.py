"""SA-GAN self-attention as BigGAN uses it (the released SA-GAN code, not the paper's description).

For x (N, C, H, W) with C divisible by 8 and even H, W:

* theta = 1x1 conv C -> C/8 on x; phi = 2x2 max-pool of a 1x1 conv C -> C/8; g = 2x2 max-pool of a 1x1
  conv C -> C/2 (all spectrally normalised, no bias);
* beta = softmax over the N/4 keys of theta^T phi, an (HW) x (HW/4) attention map per sample;
* o = 1x1 conv C/2 -> C of (g beta^T) reshaped to (N, C/2, H, W);
* out = gamma * o + x, gamma a learned scalar initialised to 0 (the layer starts as the identity).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gensr.nn.norm import DEFAULT_SN_EPS, SNConv2d


def self_attention(
    x: torch.Tensor, theta: nn.Module, phi: nn.Module, g: nn.Module, o: nn.Module, gamma: torch.Tensor
) -> torch.Tensor:
    """The SA-GAN attention forward with the four 1x1 convs given as modules. (N, C, H, W) -> same shape."""
    n, c, h, w = x.shape
    if c % 8 or h % 2 or w % 2:
        raise ValueError(f"self-attention needs channels divisible by 8 and even H, W; got {tuple(x.shape)}")
    q = theta(x).reshape(n, c // 8, h * w)
    k = F.max_pool2d(phi(x), 2).reshape(n, c // 8, h * w // 4)
    val = F.max_pool2d(g(x), 2).reshape(n, c // 2, h * w // 4)
    beta = torch.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (n, hw, hw/4): queries x keys
    attended = torch.bmm(val, beta.transpose(1, 2)).reshape(n, c // 2, h, w)
    return gamma * o(attended) + x


class SelfAttention(nn.Module):
    """BigGAN-PyTorch ``layers.Attention``: parameters ``theta``, ``phi``, ``g``, ``o`` (SN 1x1 convs without
    bias) and ``gamma`` (0-d, init 0). (N, C, H, W) -> (N, C, H, W); the identity at initialisation."""

    def __init__(self, channels: int, *, sn_eps: float = DEFAULT_SN_EPS, n_power_iterations: int = 1) -> None:
        super().__init__()
        if channels % 8:
            raise ValueError(f"self-attention channels must be divisible by 8, got {channels}")
        self.channels = channels
        sn = {"eps": sn_eps, "n_power_iterations": n_power_iterations}
        self.theta = SNConv2d(channels, channels // 8, 1, bias=False, **sn)
        self.phi = SNConv2d(channels, channels // 8, 1, bias=False, **sn)
        self.g = SNConv2d(channels, channels // 2, 1, bias=False, **sn)
        self.o = SNConv2d(channels // 2, channels, 1, bias=False, **sn)
        self.gamma = nn.Parameter(torch.tensor(0.0))

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """``y`` is ignored (the attention is unconditional; the argument lets G blocks share one call)."""
        return self_attention(x, self.theta, self.phi, self.g, self.o, self.gamma)
