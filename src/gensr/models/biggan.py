"""BigGAN (Brock et al., ICLR 2019): class-conditional generator and projection discriminator.

A faithful restatement of ``ajbrock/BigGAN-PyTorch`` (``BigGAN.py``, ``layers.py``); its parameter and buffer
names are gensr's names, so ``G.pth``/``G_ema.pth``/``D.pth`` load without renaming
(:mod:`gensr.checkpoints.biggan_official`).

Generator ``G(z, y)``: z (N, G.dim_z) float, y int labels (N,) or float class weights (N, n_classes)
-> images (N, 3, R, R) in [-1, 1] (tanh; map with ``(x + 1) / 2`` to gensr's [0, 1]).

* ``linear`` (SN) maps z (or its first chunk with ``hier``) to a 4x4 map with ``16 ch`` channels (``4 ch`` at
  32 px); each GBlock: ``ReLU(CBN1(x)) -> nearest x2 -> conv3x3 -> ReLU(CBN2) -> conv3x3`` plus a 1x1 conv
  skip of the upsampled x; self-attention after the blocks whose output side is in ``g_attn``; output
  ``BN -> ReLU -> SN conv3x3 -> tanh``. The output BN's eps is always 1e-5 (``layers.bn`` default; ``bn_eps``
  applies to the CBNs only), as in BigGAN-PyTorch.
* ``shared``: one plain ``nn.Embedding(n_classes, shared_dim)`` (no SN) feeds every CBN, whose gain/bias are
  bias-free SN linears: ``BN(x) * (1 + W_g c) + W_b c``. Without it (CIFAR script) each CBN has per-class
  ``nn.Embedding(n_classes, C)`` gains/biases (gain still ``1 + e``).
* ``hier``: z is split into ``blocks + 1`` equal chunks; chunk 0 goes to ``linear`` only (no class
  information), chunk i >= 1 is concatenated as ``[emb(y), z_i]`` for both CBNs of block i-1. ``dim_z`` is
  **rounded down** to a multiple of the number of chunks, as BigGAN-PyTorch does (e.g. 128 at 128 px with 6
  chunks -> 126); ``G.dim_z`` is the rounded value and z must have exactly that many columns. ``hier`` needs
  ``shared``.

Discriminator ``D(x, y)``: x (N, 3, R, R) in [-1, 1], y labels (N,) or class weights -> (N, 1) logits.
Wide DBlocks (hidden = out channels): ``[ReLU] -> conv3x3 -> ReLU -> conv3x3 -> [avgpool2]`` plus a skip
(first block: no pre-activation, pool then 1x1 conv; later blocks: out-of-place ReLU, 1x1 conv then pool);
attention after the blocks whose output side is in ``d_attn``; head ``ReLU -> global sum pool -> h``,
``out = linear(h) + <embed(y), h>`` (SN linear, SN embedding). Every conv/linear/embedding of D is SN.

Channel tables (multiples of ``ch`` / ``d_ch``; :data:`G_ARCH`, :data:`D_ARCH`) are BigGAN-PyTorch's
``G_arch``/``D_arch``. There is no 512 px discriminator (BigGAN-PyTorch has none either). In the 32 px D
table every block is listed at side 16, so ``d_attn=[16]`` adds attention after all four blocks (as there).

Init (fresh models): ``ortho`` (orthogonal, ImageNet) or ``N02`` (normal std 0.02, CIFAR script) for the
weight of every conv, linear and embedding; biases keep PyTorch's default init (BigGAN-PyTorch re-initialises
weights only). Parameter counts: 128 px, ch 96, shared 128, hier, dim_z 120, attention 64 -> G 70,433,988 and
D 87,982,370 (1000 classes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import check_bounds, check_positive
from gensr.errors import GensrError
from gensr.nn.attention import SelfAttention
from gensr.nn.norm import (
    BatchNorm2d,
    ClassBatchNorm2d,
    ConditionalBatchNorm2d,
    SNConv2d,
    SNEmbedding,
    SNLinear,
    class_lookup,
)

# resolution -> (G block input multipliers, G block output multipliers); every G block upsamples x2 from 4x4.
G_ARCH: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    32: ((4, 4, 4), (4, 4, 4)),
    64: ((16, 16, 8, 4), (16, 8, 4, 2)),
    128: ((16, 16, 8, 4, 2), (16, 8, 4, 2, 1)),
    256: ((16, 16, 8, 8, 4, 2), (16, 8, 8, 4, 2, 1)),
    512: ((16, 16, 8, 8, 4, 2, 1), (16, 8, 8, 4, 2, 1, 1)),
}
# resolution -> (D block input multipliers (0 = RGB input), output multipliers, downsample flags, listed sides)
D_ARCH: dict[int, tuple[tuple[int, ...], tuple[int, ...], tuple[bool, ...], tuple[int, ...]]] = {
    32: ((0, 4, 4, 4), (4, 4, 4, 4), (True, True, False, False), (16, 16, 16, 16)),
    64: ((0, 1, 2, 4, 8), (1, 2, 4, 8, 16), (True, True, True, True, False), (32, 16, 8, 4, 4)),
    128: ((0, 1, 2, 4, 8, 16), (1, 2, 4, 8, 16, 16), (True,) * 5 + (False,), (64, 32, 16, 8, 4, 4)),
    256: ((0, 1, 2, 4, 8, 8, 16), (1, 2, 4, 8, 8, 16, 16), (True,) * 6 + (False,), (128, 64, 32, 16, 8, 4, 4)),
}
BOTTOM = 4  # side of the first G feature map
OUTPUT_BN_EPS = 1e-5  # BigGAN-PyTorch's output-layer BN ignores BN_eps


def _attn_tuple(value: Any, name: str) -> tuple[int, ...]:
    if value is None:
        return ()
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{name} must be a list of resolutions (e.g. [64], [] for none), got {value!r}")
    return tuple(sorted(set(value)))


@dataclass
class BigGANConfig:
    """Hyper-parameters of :class:`BigGANGenerator` and :class:`BigGANDiscriminator` (one config for the pair).

    Defaults: the BigGAN-PyTorch ImageNet 128 px script (``launch_BigGAN_bs256x8.sh``). CIFAR-10 script:
    ``resolution=32, ch=64, dim_z=128, shared=False, hier=False, n_classes=10, g_attn=[], d_attn=[],
    init="N02", sn_eps=1e-8``.

    ``ch``/``d_ch``: G/D channel multipliers (``d_ch`` None = ``ch``). ``g_attn``/``d_attn``: sides after
    whose blocks self-attention is added ([] = none). ``sn_eps``: spectral-norm eps (1e-6 ImageNet script,
    1e-8 parser default, 1e-4 for TF-Hub ports); ``bn_eps``: CBN eps. ``sn_iters``: power iterations per
    train forward. ``shared_dim`` is ignored without ``shared``.
    """

    resolution: int = 128
    ch: int = 96
    d_ch: int | None = None
    dim_z: int = 120
    shared: bool = True
    shared_dim: int = 128
    hier: bool = True
    n_classes: int = 1000
    g_attn: tuple[int, ...] = (64,)
    d_attn: tuple[int, ...] = (64,)
    init: str = "ortho"
    sn_eps: float = 1e-6
    bn_eps: float = 1e-5
    sn_iters: int = 1

    def __post_init__(self) -> None:
        check_bounds(
            self,
            {
                "resolution": (4, 1024),
                "ch": (1, 512),
                "d_ch": (1, 512),
                "dim_z": (1, 4096),
                "shared_dim": (0, 4096),
                "n_classes": (1, 100_000),
                "sn_iters": (0, 64),
            },
        )
        if self.resolution not in G_ARCH:
            raise ValueError(f"resolution must be one of {sorted(G_ARCH)}, got {self.resolution!r}")
        check_positive(self, "ch", "dim_z", "shared_dim", "n_classes", "sn_iters")
        if self.d_ch is not None and (not isinstance(self.d_ch, int) or self.d_ch < 1):
            raise ValueError(f"d_ch must be a positive integer or null, got {self.d_ch!r}")
        for name in ("shared", "hier"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.hier and not self.shared:
            raise ValueError("hier=true needs shared=true (the z chunks are concatenated to the shared embedding)")
        if self.init not in ("ortho", "N02"):
            raise ValueError(f"init must be 'ortho' or 'N02', got {self.init!r}")
        for name in ("sn_eps", "bn_eps"):
            if not isinstance(getattr(self, name), (int, float)) or not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)!r}")
        self.g_attn = _attn_tuple(self.g_attn, "g_attn")
        self.d_attn = _attn_tuple(self.d_attn, "d_attn")
        bad = [r for r in self.g_attn if r not in self.g_sides]
        if bad:
            raise ValueError(f"g_attn {bad} matches no generator block (block output sides: {list(self.g_sides)})")
        if self.resolution in D_ARCH:
            sides = D_ARCH[self.resolution][3]
            bad = [r for r in self.d_attn if r not in sides]
            if bad:
                raise ValueError(f"d_attn {bad} matches no discriminator block (block sides: {sorted(set(sides))})")
        self._check_attention_channels()
        if self.hier and self.dim_z < self.num_slots:
            raise ValueError(f"dim_z {self.dim_z} is smaller than the {self.num_slots} hierarchical z chunks")

    def _check_attention_channels(self) -> None:
        """Self-attention needs channels divisible by 8 (C/8 keys)."""
        outs = [m * self.ch for m in G_ARCH[self.resolution][1]]
        bad = [f"G {s} px: {c}" for s, c in zip(self.g_sides, outs, strict=True) if s in self.g_attn and c % 8]
        if self.resolution in D_ARCH:
            _, d_outs, _, sides = D_ARCH[self.resolution]
            widths = [m * self.d_width for m in d_outs]
            bad += [f"D {s} px: {c}" for s, c in zip(sides, widths, strict=True) if s in self.d_attn and c % 8]
        if bad:
            raise ValueError(f"self-attention needs channels divisible by 8; got {', '.join(bad)} (raise ch/d_ch)")

    @property
    def g_sides(self) -> tuple[int, ...]:
        """Output side of each G block (8, 16, ..., resolution)."""
        return tuple(BOTTOM * 2 ** (i + 1) for i in range(len(G_ARCH[self.resolution][0])))

    @property
    def num_slots(self) -> int:
        """Number of z chunks: blocks + 1 with ``hier``, else 1."""
        return len(G_ARCH[self.resolution][0]) + 1 if self.hier else 1

    @property
    def z_chunk(self) -> int:
        """Size of each z chunk (``dim_z // num_slots``)."""
        return self.dim_z // self.num_slots

    @property
    def dim_z_used(self) -> int:
        """The z size G takes: ``dim_z`` rounded down to a multiple of ``num_slots``."""
        return self.z_chunk * self.num_slots

    @property
    def cond_dim(self) -> int:
        """Input size of each CBN's gain/bias linears (shared mode): ``shared_dim`` (+ ``z_chunk`` with hier)."""
        return self.shared_dim + (self.z_chunk if self.hier else 0)

    @property
    def d_width(self) -> int:
        return self.ch if self.d_ch is None else self.d_ch


def init_weights(model: nn.Module, style: str) -> None:
    """BigGAN-PyTorch ``init_weights``: re-initialise the weight of every conv, linear and embedding."""
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            if style == "ortho":
                nn.init.orthogonal_(m.weight)
            else:
                nn.init.normal_(m.weight, 0.0, 0.02)


# ----------------------------------------------------------------------------------------------- generator


def upsample_nearest2x(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour x2 upsampling, (N, C, H, W) -> (N, C, 2H, 2W); equal to ``F.interpolate(x, scale_factor=2)``
    but about 2.5x faster on CPU."""
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, 2, w, 2).reshape(n, c, 2 * h, 2 * w)


class ClassImageSizes:
    """``n_classes`` and ``resolution`` of a class-conditional image network, read from its ``config``
    (BigGAN G and D, BigGAN-deep G)."""

    config: Any

    @property
    def n_classes(self) -> int:
        return self.config.n_classes

    @property
    def resolution(self) -> int:
        return self.config.resolution


class GBlock(nn.Module):
    """Up-block: (N, in, H, W), condition -> (N, out, 2H, 2W). Parameter names as BigGAN-PyTorch ``GBlock``."""

    def __init__(self, in_ch: int, out_ch: int, c: BigGANConfig) -> None:
        super().__init__()
        sn = {"eps": c.sn_eps, "n_power_iterations": c.sn_iters}
        self.conv1 = SNConv2d(in_ch, out_ch, 3, padding=1, **sn)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, padding=1, **sn)
        self.conv_sc = SNConv2d(in_ch, out_ch, 1, **sn)  # always learnable: every G block upsamples
        if c.shared:
            bn_sn = {"eps": c.bn_eps, "sn_eps": c.sn_eps, "n_power_iterations": c.sn_iters}
            self.bn1: nn.Module = ConditionalBatchNorm2d(in_ch, c.cond_dim, **bn_sn)
            self.bn2: nn.Module = ConditionalBatchNorm2d(out_ch, c.cond_dim, **bn_sn)
        else:
            self.bn1 = ClassBatchNorm2d(in_ch, c.n_classes, eps=c.bn_eps)
            self.bn2 = ClassBatchNorm2d(out_ch, c.n_classes, eps=c.bn_eps)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = upsample_nearest2x(F.relu(self.bn1(x, cond)))
        x = upsample_nearest2x(x)
        h = self.conv1(h)
        h = self.conv2(F.relu(self.bn2(h, cond)))
        return h + self.conv_sc(x)


class BigGANGenerator(ClassImageSizes, nn.Module):
    """BigGAN G. ``forward(z, y)``: z (N, dim_z), y labels (N,) or class weights (N, n_classes) -> (N, 3, R, R)
    in [-1, 1]. See the module docstring for the architecture."""

    kind = "generator"

    def __init__(self, config: BigGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or BigGANConfig()
        ins, outs = (tuple(m * c.ch for m in t) for t in G_ARCH[c.resolution])
        sn = {"eps": c.sn_eps, "n_power_iterations": c.sn_iters}
        self.shared = nn.Embedding(c.n_classes, c.shared_dim) if c.shared else None
        self.linear = SNLinear(c.z_chunk if c.hier else c.dim_z, ins[0] * BOTTOM**2, **sn)
        blocks = []
        for i, (cin, cout) in enumerate(zip(ins, outs, strict=True)):
            layers: list[nn.Module] = [GBlock(cin, cout, c)]
            if c.g_sides[i] in c.g_attn:
                layers.append(SelfAttention(cout, sn_eps=c.sn_eps, n_power_iterations=c.sn_iters))
            blocks.append(nn.ModuleList(layers))
        self.blocks = nn.ModuleList(blocks)
        self.output_layer = nn.Sequential(
            BatchNorm2d(outs[-1], eps=OUTPUT_BN_EPS), nn.ReLU(), SNConv2d(outs[-1], 3, 3, padding=1, **sn)
        )
        init_weights(self, c.init)

    @property
    def dim_z(self) -> int:
        """Columns of z (``config.dim_z`` rounded down to a multiple of the z chunks with ``hier``)."""
        return self.config.dim_z_used

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        """The class input the blocks see: ``shared(y)`` (N, shared_dim) in shared mode, else ``y`` itself."""
        if self.shared is None:
            return y
        return class_lookup(self.shared.weight, y)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.forward_embedded(z, self.embed(y))

    def forward_embedded(self, z: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        """G from an already embedded class input ``e`` (see :meth:`embed`), as BigGAN-PyTorch's ``G(z, y)``."""
        c = self.config
        if z.dim() != 2 or z.shape[1] != self.dim_z:
            raise ValueError(f"z must have shape (N, {self.dim_z}), got {tuple(z.shape)}")
        if c.hier:
            chunks = torch.split(z, c.z_chunk, dim=1)
            h = self.linear(chunks[0])
            conds = [torch.cat([e, zi], dim=1) for zi in chunks[1:]]
        else:
            h = self.linear(z)
            conds = [e] * len(self.blocks)
        h = h.view(z.shape[0], -1, BOTTOM, BOTTOM)
        for layers, cond in zip(self.blocks, conds, strict=True):
            for layer in layers:
                h = layer(h, cond)
        return torch.tanh(self.output_layer(h))


# ----------------------------------------------------------------------------------------------- discriminator


class DBlock(nn.Module):
    """Wide down-block: (N, in, H, W) -> (N, out, H', W'). Parameter names as BigGAN-PyTorch ``DBlock``."""

    def __init__(self, in_ch: int, out_ch: int, preactivation: bool, downsample: bool, c: BigGANConfig) -> None:
        super().__init__()
        sn = {"eps": c.sn_eps, "n_power_iterations": c.sn_iters}
        self.preactivation = preactivation
        self.downsample = downsample
        self.conv1 = SNConv2d(in_ch, out_ch, 3, padding=1, **sn)
        self.conv2 = SNConv2d(out_ch, out_ch, 3, padding=1, **sn)
        self.learnable_sc = in_ch != out_ch or downsample
        if self.learnable_sc:
            self.conv_sc = SNConv2d(in_ch, out_ch, 1, **sn)

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            if self.learnable_sc:
                x = self.conv_sc(x)
            return F.avg_pool2d(x, 2) if self.downsample else x
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return self.conv_sc(x) if self.learnable_sc else x

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x  # out of place: x still feeds the shortcut
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self._shortcut(x)


class BigGANDiscriminator(ClassImageSizes, nn.Module):
    """BigGAN projection D. ``forward(x, y)``: x (N, 3, R, R) in [-1, 1], y labels (N,) or class weights
    (N, n_classes) -> (N, 1) logits."""

    kind = "discriminator"

    def __init__(self, config: BigGANConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or BigGANConfig()
        if c.resolution not in D_ARCH:
            raise GensrError(
                f"no BigGAN discriminator at resolution {c.resolution} (tables exist for {sorted(D_ARCH)})"
            )
        ins, outs, down, sides = D_ARCH[c.resolution]
        w = c.d_width
        sn = {"eps": c.sn_eps, "n_power_iterations": c.sn_iters}
        blocks = []
        for i in range(len(outs)):
            cin = 3 if ins[i] == 0 else ins[i] * w
            layers: list[nn.Module] = [DBlock(cin, outs[i] * w, i > 0, down[i], c)]
            if sides[i] in c.d_attn:
                layers.append(SelfAttention(outs[i] * w, sn_eps=c.sn_eps, n_power_iterations=c.sn_iters))
            blocks.append(nn.ModuleList(layers))
        self.blocks = nn.ModuleList(blocks)
        self.linear = SNLinear(outs[-1] * w, 1, **sn)
        self.embed = SNEmbedding(c.n_classes, outs[-1] * w, **sn)
        init_weights(self, c.init)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        r = self.config.resolution
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, r, r):
            raise ValueError(f"BigGAN D expects images (N, 3, {r}, {r}), got {tuple(x.shape)}")
        h = x
        for layers in self.blocks:
            for layer in layers:
                h = layer(h)
        h = torch.sum(F.relu(h), dim=(2, 3))
        return self.linear(h) + torch.sum(self.embed(y) * h, dim=1, keepdim=True)
