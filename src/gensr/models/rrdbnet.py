"""RRDBNet: the ESRGAN generator (Wang et al., ECCV-W 2018), with Real-ESRGAN's x1/x2 pixel-unshuffle input.

Input and output are RGB in [0, 1] (N, 3, H, W) -> (N, 3, s*H, s*W); the net does not clamp. Scales 1 and 2
feed a pixel-unshuffled input (factor 4 or 2) into the x4 body; scales 4 and 8 use two or three
nearest-x2 + conv stages. Parameter names follow BasicSR v1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import check_bounds, check_positive
from gensr.nn.padding import pad_to_multiple
from gensr.nn.rrdb import RRDB, conv_lrelu, kaiming_scaled_


@dataclass
class RRDBNetConfig:
    """Hyper-parameters of :class:`RRDBNet`. The paper's x4 model: nf 64, nb 23, gc 32 (16,697,987 parameters)."""

    scale: int = 4
    in_ch: int = 3
    out_ch: int = 3
    nf: int = 64
    nb: int = 23
    gc: int = 32
    # Initialisation of a fresh net: "rdb" = BasicSR v1 (Kaiming x0.1 for the RDB convs, PyTorch default for the
    # others; converges much faster from scratch), "all" = the 2018 code (Kaiming x0.1 for every conv).
    init: str = "rdb"

    def __post_init__(self) -> None:
        check_bounds(self, {"in_ch": (1, 64), "out_ch": (1, 64), "nf": (1, 1024), "nb": (1, 256), "gc": (1, 1024)})
        if self.init not in ("rdb", "all"):
            raise ValueError(f"init must be 'rdb' or 'all', got {self.init!r}")
        if self.scale not in (1, 2, 4, 8):
            raise ValueError(f"scale must be 1, 2, 4 or 8, got {self.scale}")
        check_positive(self, "in_ch", "out_ch", "nf", "nb", "gc")

    @property
    def unshuffle(self) -> int:
        """Pixel-unshuffle factor of the input: 4 for x1, 2 for x2, 1 otherwise."""
        return {1: 4, 2: 2}.get(self.scale, 1)

    @property
    def num_upsample(self) -> int:
        """Number of nearest-x2 + conv stages: 3 for x8, 2 otherwise."""
        return 3 if self.scale == 8 else 2


class RRDBNet(nn.Module):
    """ESRGAN generator. (N, in_ch, H, W) in [0, 1] -> (N, out_ch, scale*H, scale*W), unclamped."""

    kind = "sr"
    # Convolutions, nearest interpolation and pointwise ops only: with bfloat16 weights it computes what bf16
    # autocast computes, and bf16 pays on CPUs with native bf16 (gensr.inference.precision).
    cpu_bf16 = True

    def __init__(self, config: RRDBNetConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or RRDBNetConfig()
        self.conv_first = nn.Conv2d(c.in_ch * c.unshuffle**2, c.nf, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(c.nf, c.gc) for _ in range(c.nb)])
        self.conv_body = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        if c.num_upsample == 3:
            self.conv_up3 = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.conv_hr = nn.Conv2d(c.nf, c.nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(c.nf, c.out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        # ESRGAN's "smaller initialisation": Kaiming x0.1, for the RDB convs only (BasicSR v1) or every conv (2018).
        kaiming_scaled_(self.body if c.init == "rdb" else self, 0.1)

    @property
    def scale(self) -> int:
        return self.config.scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        f = self.config.unshuffle
        if f > 1:
            x = F.pixel_unshuffle(pad_to_multiple(x, f)[0], f)
        fea = self.conv_first(x)
        fea = fea + self.conv_body(self.body(fea))
        fea = conv_lrelu(self.conv_up1, F.interpolate(fea, scale_factor=2, mode="nearest"))
        fea = conv_lrelu(self.conv_up2, F.interpolate(fea, scale_factor=2, mode="nearest"))
        if self.config.num_upsample == 3:
            fea = conv_lrelu(self.conv_up3, F.interpolate(fea, scale_factor=2, mode="nearest"))
        out = self.conv_last(conv_lrelu(self.conv_hr, fea))
        if f > 1:
            out = out[..., : h * self.scale, : w * self.scale]
        return out
