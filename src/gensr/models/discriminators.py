"""GAN discriminators for super-resolution: ESRGAN's VGG-style D and Real-ESRGAN's U-Net D with spectral norm.

Both take RGB images in [0, 1] (N, in_ch, H, W) and return raw logits (no sigmoid):

- :class:`VGGStyleDiscriminator` -> (N, 1), one logit per image, for a fixed square input size
  (ESRGAN: 128x128, 14,499,401 parameters with nf 64). Parameter names follow BasicSR v1
  (``conv0_0``, ``conv0_1``, ``bn0_1``, ..., ``linear1``, ``linear2``).
- :class:`UNetDiscriminatorSN` -> (N, 1, H, W), one logit per pixel (Real-ESRGAN: 4,376,897 parameters).
  Spectral norm is ``torch.nn.utils.spectral_norm`` (the hook version), whose state-dict keys
  ``convK.weight_orig``, ``convK.weight_u``, ``convK.weight_v`` are exactly the official ones, so
  Real-ESRGAN's ``*_netD.pth`` loads without renaming and the numerics are those of the original code.

``forward(x, return_features=True)`` also returns the list of intermediate activations (for a
feature-matching loss). A wrong input size raises ``ValueError`` naming the expected size.
Official checkpoint layouts map onto these modules in :mod:`gensr.checkpoints.discriminator_official`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import check_bounds, check_positive
from gensr.nn.rrdb import kaiming_scaled_


@dataclass
class VGGDiscriminatorConfig:
    """Hyper-parameters of :class:`VGGStyleDiscriminator`.

    ``input_size`` is the side of the square input; it must be a power of two >= 8. The net has
    ``log2(input_size) - 2`` stride-2 stages so that the last feature map is 4x4 (128 -> 5 stages as in
    ESRGAN, 256 -> 6 stages, BasicSR's 256 variant with ``conv5_0/conv5_1``). Stage i has
    ``nf * min(2**i, 8)`` channels.

    ``conv_bias``: the 2018 ESRGAN code kept a bias in every conv (14,502,281 parameters at 128/nf 64);
    BasicSR v1 drops the biases of the convs followed by BatchNorm (14,499,401). Both compute the same
    function family (BN absorbs the bias); the flag exists so both official layouts load strictly.

    ``init``: "kaiming" = the 2018 ESRGAN init (Kaiming-normal fan_in x1, zero bias, for convs and
    linears); "default" = PyTorch's default init (BasicSR v1).
    """

    in_ch: int = 3
    nf: int = 64
    input_size: int = 128
    conv_bias: bool = False
    init: str = "kaiming"

    def __post_init__(self) -> None:
        check_bounds(self, {"in_ch": (1, 64), "nf": (1, 1024), "input_size": (1, 4096)})
        check_positive(self, "in_ch", "nf", "input_size")
        s = self.input_size
        if s < 8 or s & (s - 1):
            raise ValueError(f"input_size must be a power of two >= 8 (e.g. 128 or 256), got {s}")
        if not isinstance(self.conv_bias, bool):
            raise ValueError(f"conv_bias must be true or false, got {self.conv_bias!r}")
        if self.init not in ("kaiming", "default"):
            raise ValueError(f"init must be 'kaiming' or 'default', got {self.init!r}")

    @property
    def num_stages(self) -> int:
        """Number of stride-2 stages: input_size / 2**num_stages == 4."""
        return self.input_size.bit_length() - 3

    def stage_channels(self, i: int) -> int:
        return self.nf * min(2**i, 8)


class VGGStyleDiscriminator(nn.Module):
    """ESRGAN's VGG-style discriminator. (N, in_ch, S, S) -> (N, 1) logits, S = ``config.input_size``.

    conv0_0 3x3 (bias, no BN) -> LReLU; conv0_1 4x4 s2 -> BN -> LReLU; then for each further stage i:
    conv{i}_0 3x3 -> BN -> LReLU, conv{i}_1 4x4 s2 -> BN -> LReLU; flatten (C*4*4) -> linear1 (100) ->
    LReLU -> linear2 (1). LeakyReLU slope 0.2 everywhere. BN statistics are per forward, so real and
    fake batches should go through separate forwards (the reference behaviour).
    """

    kind = "discriminator"

    def __init__(self, config: VGGDiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or VGGDiscriminatorConfig()
        ch_prev = c.in_ch
        for i in range(c.num_stages):
            ch = c.stage_channels(i)
            if i == 0:
                self.conv0_0 = nn.Conv2d(c.in_ch, ch, 3, 1, 1, bias=True)
            else:
                setattr(self, f"conv{i}_0", nn.Conv2d(ch_prev, ch, 3, 1, 1, bias=c.conv_bias))
                setattr(self, f"bn{i}_0", nn.BatchNorm2d(ch, affine=True))
            setattr(self, f"conv{i}_1", nn.Conv2d(ch, ch, 4, 2, 1, bias=c.conv_bias))
            setattr(self, f"bn{i}_1", nn.BatchNorm2d(ch, affine=True))
            ch_prev = ch
        self.linear1 = nn.Linear(ch_prev * 4 * 4, 100)
        self.linear2 = nn.Linear(100, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=True)
        if c.init == "kaiming":
            kaiming_scaled_(self, 1.0)

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_ch or x.shape[2] != c.input_size or x.shape[3] != c.input_size:
            raise ValueError(
                f"VGG discriminator expects input of shape (N, {c.in_ch}, {c.input_size}, {c.input_size}), "
                f"got {tuple(x.shape)} (crop GT patches to {c.input_size} or set input_size)"
            )

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Logits (N, 1); with ``return_features`` also the output of every stage (after its LReLU)."""
        self._check_input(x)
        features: list[torch.Tensor] = []
        feat = self.lrelu(self.conv0_0(x))
        for i in range(self.config.num_stages):
            if i > 0:
                feat = self.lrelu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)))
            feat = self.lrelu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)))
            features.append(feat)
        out = self.linear2(self.lrelu(self.linear1(feat.flatten(1))))
        return (out, features) if return_features else out


@dataclass
class UNetDiscriminatorConfig:
    """Hyper-parameters of :class:`UNetDiscriminatorSN` (Real-ESRGAN: in_ch 3, nf 64, skips on)."""

    in_ch: int = 3
    nf: int = 64
    skip_connection: bool = True

    def __post_init__(self) -> None:
        check_bounds(self, {"in_ch": (1, 64), "nf": (1, 1024)})
        check_positive(self, "in_ch", "nf")
        if not isinstance(self.skip_connection, bool):
            raise ValueError(f"skip_connection must be true or false, got {self.skip_connection!r}")


class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm. (N, in_ch, H, W) -> (N, 1, H, W) logits.

    H and W must be divisible by 8. conv0 3x3 (bias, no SN); three 4x4 s2 SN convs (nf -> 2nf -> 4nf -> 8nf);
    three (bilinear x2, 3x3 SN conv) up stages adding the encoder maps of the same size; two 3x3 SN convs;
    conv9 3x3 -> 1 (bias, no SN). LeakyReLU 0.2 after every conv but the last. Init: PyTorch default.
    """

    kind = "discriminator"

    def __init__(self, config: UNetDiscriminatorConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or UNetDiscriminatorConfig()
        sn = nn.utils.spectral_norm
        nf = c.nf
        self.conv0 = nn.Conv2d(c.in_ch, nf, 3, 1, 1)
        self.conv1 = sn(nn.Conv2d(nf, nf * 2, 4, 2, 1, bias=False))
        self.conv2 = sn(nn.Conv2d(nf * 2, nf * 4, 4, 2, 1, bias=False))
        self.conv3 = sn(nn.Conv2d(nf * 4, nf * 8, 4, 2, 1, bias=False))
        self.conv4 = sn(nn.Conv2d(nf * 8, nf * 4, 3, 1, 1, bias=False))
        self.conv5 = sn(nn.Conv2d(nf * 4, nf * 2, 3, 1, 1, bias=False))
        self.conv6 = sn(nn.Conv2d(nf * 2, nf, 3, 1, 1, bias=False))
        self.conv7 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv8 = sn(nn.Conv2d(nf, nf, 3, 1, 1, bias=False))
        self.conv9 = nn.Conv2d(nf, 1, 3, 1, 1)

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[1] != c.in_ch or x.shape[2] % 8 or x.shape[3] % 8 or x.shape[2] == 0:
            raise ValueError(
                f"U-Net discriminator expects input of shape (N, {c.in_ch}, H, W) with H and W divisible "
                f"by 8, got {tuple(x.shape)}"
            )

    def forward(
        self, x: torch.Tensor, return_features: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, list[torch.Tensor]]:
        """Per-pixel logits (N, 1, H, W); with ``return_features`` also the 9 hidden activations."""
        self._check_input(x)

        def act(t: torch.Tensor) -> torch.Tensor:
            return F.leaky_relu(t, negative_slope=0.2, inplace=True)

        def up(t: torch.Tensor) -> torch.Tensor:
            return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=False)

        skip = self.config.skip_connection
        x0 = act(self.conv0(x))
        x1 = act(self.conv1(x0))
        x2 = act(self.conv2(x1))
        x3 = act(self.conv3(x2))
        x4 = act(self.conv4(up(x3)))
        if skip:
            x4 = x4 + x2
        x5 = act(self.conv5(up(x4)))
        if skip:
            x5 = x5 + x1
        x6 = act(self.conv6(up(x5)))
        if skip:
            x6 = x6 + x0
        x7 = act(self.conv7(x6))
        x8 = act(self.conv8(x7))
        out = self.conv9(x8)
        return (out, [x0, x1, x2, x3, x4, x5, x6, x7, x8]) if return_features else out
