"""BigGAN-deep generator as ported from TF-Hub by ``huggingface/pytorch-pretrained-BigGAN`` (ppb), inference only.

Module and parameter names are ppb's (``embeddings``, ``generator.gen_z``, ``generator.layers.{k}``,
``generator.bn``, ``generator.conv_to_rgb``), and spectral norm is ``torch.nn.utils.spectral_norm``
(``weight_orig``/``weight_u``/``weight_v``; no power iteration in eval mode), so ppb's ``pytorch_model.bin``
loads without renaming and computes the same function.

``G(z, y, truncation)``: z (N, z_dim) (TF-Hub/ppb sample ``truncation * truncnorm(-2, 2)``), y int labels (N,)
or float class weights (N, n_classes), truncation in [0, 1] -> images (N, 3, R, R) in [-1, 1].

* class embedding = ``embeddings`` (a bias-free Linear on the one-hot class vector, weight (embed, n_classes));
  condition ``c = [z, embedding]`` (z first) feeds ``gen_z`` (SN linear -> 4x4x16ch, laid out NHWC as in TF,
  then permuted to NCHW) and every conditional BN;
* GenBlock (bottleneck, ratio 4): ``BN-ReLU-1x1 (C -> C/4) -> BN-ReLU -> [nearest x2] -> 3x3 -> BN-ReLU-3x3 ->
  BN-ReLU-1x1 (-> C_out)``; the skip keeps the first C_out channels of x and is upsampled likewise;
* self-attention (SA-GAN, 64x64) before block ``attention_position``; output ``BN -> ReLU -> conv_to_rgb``
  (a ch -> ch SN conv of which the first 3 channels are kept) ``-> tanh``. Only those 3 output channels are
  computed (the others are discarded by ppb anyway).

Batch norms hold ``n_stats`` (51) sets of standing statistics, one per truncation 0, 0.02, ..., 1. For a
truncation t, ``p = t * (n_stats - 1)``; if p is within 1e-6 of an integer i the set i is used, else the sets
``i = floor(p)`` and ``i + 1`` are mixed as ``(1 - f) m[i] + f m[i+1]`` with ``f = p - i``. (ppb uses
``modf(t / step)`` and the weights the other way round, so t = 0.14 gets set 8 instead of 7, t = 0.58 set 28
instead of 29, and t = 0.404 gets 0.2 m[20] + 0.8 m[21]; see biggan_ragan.md section 1.8.) The BNs never update their
statistics (train mode only changes spectral norm's power iteration).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import check_bounds, check_positive
from gensr.models.biggan import ClassImageSizes, upsample_nearest2x
from gensr.nn.attention import self_attention

# resolution -> GenBlocks as (upsample, in multiplier, out multiplier) of ch (ppb's BigGAN128/256/512 configs)
DEEP_LAYERS: dict[int, tuple[tuple[bool, int, int], ...]] = {
    128: (
        (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8),
        (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
    ),
    256: (
        (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
        (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
    ),
    512: (
        (False, 16, 16), (True, 16, 16), (False, 16, 16), (True, 16, 8), (False, 8, 8), (True, 8, 8),
        (False, 8, 8), (True, 8, 4), (False, 4, 4), (True, 4, 2), (False, 2, 2), (True, 2, 1),
        (False, 1, 1), (True, 1, 1),
    ),
}  # fmt: skip


@dataclass
class BigGANDeepConfig:
    """Hyper-parameters of :class:`BigGANDeepGenerator`; defaults = ppb/TF-Hub ``biggan-deep-128``.

    ``attention_position``: index of the GenBlock that the attention layer precedes (8 = at 64x64 for all
    three released models). ``eps`` serves the BNs and spectral norm (1e-4 in the TF-Hub models).
    """

    resolution: int = 128
    ch: int = 128
    z_dim: int = 128
    class_embed_dim: int = 128
    n_classes: int = 1000
    attention_position: int = 8
    eps: float = 1e-4
    n_stats: int = 51

    def __post_init__(self) -> None:
        check_bounds(
            self,
            {
                "resolution": (4, 1024),
                "ch": (1, 512),
                "z_dim": (1, 4096),
                "class_embed_dim": (1, 4096),
                "n_classes": (1, 100_000),
                "n_stats": (1, 1000),
            },
        )
        if self.resolution not in DEEP_LAYERS:
            raise ValueError(f"resolution must be one of {sorted(DEEP_LAYERS)}, got {self.resolution!r}")
        check_positive(self, "ch", "z_dim", "class_embed_dim", "n_classes")
        if not isinstance(self.n_stats, int) or self.n_stats < 2:
            raise ValueError(f"n_stats must be an integer >= 2, got {self.n_stats!r}")
        n = len(DEEP_LAYERS[self.resolution])
        if not isinstance(self.attention_position, int) or not 0 <= self.attention_position < n:
            raise ValueError(f"attention_position must be in 0..{n - 1}, got {self.attention_position!r}")
        if (self.ch * DEEP_LAYERS[self.resolution][self.attention_position][1]) % 8:
            raise ValueError("the attention layer's channels (ch x its block's input multiplier) must divide by 8")
        if not isinstance(self.eps, (int, float)) or not self.eps > 0:
            raise ValueError(f"eps must be a positive number, got {self.eps!r}")

    @property
    def layers(self) -> tuple[tuple[bool, int, int], ...]:
        return DEEP_LAYERS[self.resolution]

    @property
    def cond_dim(self) -> int:
        return self.z_dim + self.class_embed_dim


def _sn(module: nn.Module, eps: float) -> nn.Module:
    return nn.utils.spectral_norm(module, eps=eps)


def _sn_weight(module: nn.Module) -> torch.Tensor:
    """The weight a torch-spectral-norm module's forward would use (runs its pre-hook: power iteration if training)."""
    for hook in module._forward_pre_hooks.values():
        hook(module, ())
    return module.weight


def prime_spectral_norm(model: nn.Module, iterations: int = 5) -> None:
    """Run ``iterations`` power-iteration steps on every torch-spectral-norm layer of ``model`` (no grad).

    A fresh layer's random ``weight_u``/``weight_v`` give a meaningless sigma in eval mode (torch's SN does not
    iterate there); ppb's TF converter likewise ran one step before saving.
    """
    with torch.no_grad():
        for module in model.modules():
            if hasattr(module, "weight_orig") and hasattr(module, "weight_u") and not module.weight_orig.is_meta:
                was_training = module.training
                module.train()
                for _ in range(iterations):
                    _sn_weight(module)
                module.train(was_training)


def stats_at_truncation(table: torch.Tensor, truncation: float) -> torch.Tensor:
    """Row of ``table`` (n_stats, C) for ``truncation`` in [0, 1], linearly mixing the two nearest rows."""
    t = float(truncation)
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"truncation must be in [0, 1], got {truncation!r}")
    pos = t * (table.shape[0] - 1)
    nearest = round(pos)
    if abs(pos - nearest) <= 1e-6:
        return table[nearest]
    i = math.floor(pos)
    f = pos - i
    return table[i] * (1.0 - f) + table[i + 1] * f


class TruncationBatchNorm(nn.Module):
    """ppb ``BigGANBatchNorm``: BN with ``n_stats`` stored statistics sets selected by truncation.

    Conditional: ``BN(x) * (1 + scale(c)) + offset(c)`` with bias-free SN linears; else affine ``weight``/``bias``.
    """

    def __init__(self, num_features: int, cond_dim: int | None, n_stats: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.register_buffer("running_means", torch.zeros(n_stats, num_features))
        self.register_buffer("running_vars", torch.ones(n_stats, num_features))
        self.conditional = cond_dim is not None
        if cond_dim is not None:
            self.scale = _sn(nn.Linear(cond_dim, num_features, bias=False), eps)
            self.offset = _sn(nn.Linear(cond_dim, num_features, bias=False), eps)
        else:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor, truncation: float, cond: torch.Tensor | None = None) -> torch.Tensor:
        mean = stats_at_truncation(self.running_means, truncation)
        var = stats_at_truncation(self.running_vars, truncation)
        if not self.conditional:
            return F.batch_norm(x, mean, var, self.weight, self.bias, False, 0.0, self.eps)
        out = F.batch_norm(x, mean, var, None, None, False, 0.0, self.eps)
        n, c = x.shape[:2]
        gain = 1.0 + self.scale(cond)
        return torch.addcmul(self.offset(cond).view(n, c, 1, 1), out, gain.view(n, c, 1, 1))


class GenBlock(nn.Module):
    """Bottleneck up-block: (N, in, H, W) -> (N, out, H or 2H, ...). Names ``bn_0..3``, ``conv_0..3`` as ppb."""

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, upsample: bool, n_stats: int, eps: float) -> None:
        super().__init__()
        if out_ch > in_ch:
            raise ValueError(f"GenBlock drops channels in its skip; out {out_ch} > in {in_ch} is not supported")
        mid = in_ch // 4
        self.upsample = upsample
        self.out_ch = out_ch
        self.bn_0 = TruncationBatchNorm(in_ch, cond_dim, n_stats, eps)
        self.conv_0 = _sn(nn.Conv2d(in_ch, mid, 1), eps)
        self.bn_1 = TruncationBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_1 = _sn(nn.Conv2d(mid, mid, 3, padding=1), eps)
        self.bn_2 = TruncationBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_2 = _sn(nn.Conv2d(mid, mid, 3, padding=1), eps)
        self.bn_3 = TruncationBatchNorm(mid, cond_dim, n_stats, eps)
        self.conv_3 = _sn(nn.Conv2d(mid, out_ch, 1), eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        h = self.conv_0(F.relu(self.bn_0(x, truncation, cond)))
        h = F.relu(self.bn_1(h, truncation, cond))
        if self.upsample:
            h = upsample_nearest2x(h)
        h = self.conv_1(h)
        h = self.conv_2(F.relu(self.bn_2(h, truncation, cond)))
        h = self.conv_3(F.relu(self.bn_3(h, truncation, cond)))
        skip = x[:, : self.out_ch]
        if self.upsample:
            skip = upsample_nearest2x(skip)
        return h + skip


class DeepSelfAttention(nn.Module):
    """ppb ``SelfAttn``: the SA-GAN layer with names ``snconv1x1_{theta,phi,g,o_conv}`` and ``gamma`` of shape (1,)."""

    def __init__(self, channels: int, eps: float) -> None:
        super().__init__()
        self.snconv1x1_theta = _sn(nn.Conv2d(channels, channels // 8, 1, bias=False), eps)
        self.snconv1x1_phi = _sn(nn.Conv2d(channels, channels // 8, 1, bias=False), eps)
        self.snconv1x1_g = _sn(nn.Conv2d(channels, channels // 2, 1, bias=False), eps)
        self.snconv1x1_o_conv = _sn(nn.Conv2d(channels // 2, channels, 1, bias=False), eps)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self_attention(
            x, self.snconv1x1_theta, self.snconv1x1_phi, self.snconv1x1_g, self.snconv1x1_o_conv, self.gamma
        )


class DeepGeneratorTrunk(nn.Module):
    """ppb ``Generator``: condition (N, cond_dim), truncation -> (N, 3, R, R) in [-1, 1]."""

    def __init__(self, c: BigGANDeepConfig) -> None:
        super().__init__()
        self.ch = c.ch
        self.gen_z = _sn(nn.Linear(c.cond_dim, 4 * 4 * 16 * c.ch), c.eps)
        layers: list[nn.Module] = []
        for i, (up, m_in, m_out) in enumerate(c.layers):
            if i == c.attention_position:
                layers.append(DeepSelfAttention(c.ch * m_in, c.eps))
            layers.append(GenBlock(c.ch * m_in, c.ch * m_out, c.cond_dim, up, c.n_stats, c.eps))
        self.layers = nn.ModuleList(layers)
        self.bn = TruncationBatchNorm(c.ch, None, c.n_stats, c.eps)
        self.conv_to_rgb = _sn(nn.Conv2d(c.ch, c.ch, 3, padding=1), c.eps)

    def forward(self, cond: torch.Tensor, truncation: float) -> torch.Tensor:
        h = self.gen_z(cond).view(-1, 4, 4, 16 * self.ch).permute(0, 3, 1, 2).contiguous()  # TF's NHWC rows
        for layer in self.layers:
            h = layer(h, cond, truncation) if isinstance(layer, GenBlock) else layer(h)
        h = F.relu(self.bn(h, truncation))
        weight = _sn_weight(self.conv_to_rgb)[:3]
        bias = self.conv_to_rgb.bias[:3]
        return torch.tanh(F.conv2d(h, weight, bias, padding=1))


class BigGANDeepGenerator(ClassImageSizes, nn.Module):
    """BigGAN-deep G (TF-Hub port, ppb layout). ``forward(z, y, truncation=1.0)`` -> (N, 3, R, R) in [-1, 1]."""

    kind = "generator"

    def __init__(self, config: BigGANDeepConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or BigGANDeepConfig()
        self.embeddings = nn.Linear(c.n_classes, c.class_embed_dim, bias=False)
        self.generator = DeepGeneratorTrunk(c)
        prime_spectral_norm(self)

    @property
    def dim_z(self) -> int:
        return self.config.z_dim

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """Class embedding (N, class_embed_dim) of int labels (N,) or float class weights (N, n_classes)."""
        if not y.is_floating_point():
            y = F.one_hot(y.long(), self.config.n_classes).to(self.embeddings.weight.dtype)
        if y.dim() != 2 or y.shape[1] != self.config.n_classes:
            n = self.config.n_classes
            raise ValueError(f"y must be labels (N,) or class weights (N, {n}), got {tuple(y.shape)}")
        return self.embeddings(y)

    def forward(self, z: torch.Tensor, y: torch.Tensor, truncation: float = 1.0) -> torch.Tensor:
        if z.dim() != 2 or z.shape[1] != self.config.z_dim:
            raise ValueError(f"z must have shape (N, {self.config.z_dim}), got {tuple(z.shape)}")
        return self.generator(torch.cat([z, self.embed(y)], dim=1), truncation)
