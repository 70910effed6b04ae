"""SRFlow (Lugmayr et al., ECCV 2020): a conditional normalising flow p(HR | LR) on top of an RRDB encoder.

Module tree and parameter names are those of the official checkpoints (``RRDB.*``,
``flowUpsamplerNet.layers.{i}.*``, ``flowUpsamplerNet.f.0.*``), so an official ``SRFlow_DF2K_4X.pth`` loads
strictly without renaming.

Flow layout (per level l = 1..L, HR resolution / 2^l): Squeeze -> ``n_transition`` steps (ActNorm + 1x1 conv)
-> K conditional steps (ActNorm -> 1x1 conv -> affine injector -> affine coupling) -> Split (only for
l < L - 1, as released). 4x: L=3, z = [eps_1 (6, H/2, W/2), z (96, H/8, W/8)]; 8x: L=4,
z = [eps_1 (6, H/2, W/2), eps_2 (12, H/4, W/4), z (192, H/16, W/16)] with H, W the HR size. The deepest
level is at LR/2, so the LR sides must be even (pad with reflection and crop the SR otherwise).

Conditioning: the RRDB encoder (official global residual ``trunk_out + trunk_conv(trunk_out)``) gives
``fea_up{2,4,8}`` (the upconv outputs, *after* the LeakyReLU: the official forward applies an in-place
LeakyReLU to the very tensor it stores), ``fea_up1`` (the LR-resolution trunk output) and ``fea_up0``
(bilinear x0.5 of it). The outputs of the tapped RRDB blocks are concatenated and nearest-resized to each
level and appended: 64 + 4*64 = 320 channels per level. Level l uses the feature at scale / 2^l x LR.

Likelihood (see :mod:`gensr.losses.likelihood`): :meth:`SRFlowNet.encode` returns the continuous log-density
``logp = log p(y~ | x)`` in nats; :meth:`SRFlowNet.nll` turns it into the official bits per pixel and proper
bits per dimension.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import check_at_least, check_bounds, check_positive
from gensr.errors import GensrError
from gensr.nn.flow import FlowStep, Split2d, Squeeze2d, dequantize, gaussian_log_prob, sample_normal
from gensr.nn.rrdb import ResidualDenseBlock, kaiming_scaled_

DEFAULT_TAPS = {4: [1, 8, 15, 22], 8: [1, 3, 5, 7]}
UNUSED_F_CHANNELS = 96  # ``flowUpsamplerNet.f``: built but never used by the official code


@dataclass
class SRFlowConfig:
    """Hyper-parameters of :class:`SRFlowNet`; the defaults are the released DF2K 4x model (39.54M params).

    ``L`` None -> 3 for 4x, 4 for 8x. ``rrdb_blocks`` None -> [1, 8, 15, 22] for 4x, [1, 3, 5, 7] for 8x
    (0-based indices of the RRDB blocks whose outputs condition the flow). ``quant``: dequantisation bin count
    (noise U(-1/2, 1/2)/quant). ``heat``: default sampling temperature. Both None defaults are resolved
    in ``__post_init__``, so a saved config is explicit.

    Reverse-pass guards (gensr's, not in the official code; 0 turns one off, all three 0 is the official
    arithmetic; see :mod:`gensr.nn.flow`): ``net_input_bound`` clamps the flow state where it enters the
    coupling and split-prior networks to [-b, b]; ``min_scale`` floors every coupling and injector scale (the
    official floor is 1e-4); ``max_prior_logs`` bounds the split prior's log-std. They stop the runaway inverse
    that turned about one sample in ten of some images into a saturated or black block. At these defaults they are
    inactive on natural images (the K 4 model shipped before: Set5 and BSD100 likelihoods and all tau-0 outputs
    unchanged); a tighter bound is not (the shipped model's bound 2, see docs/MODEL_CARD_srflow.md).

    ``ARITHMETIC_FIELDS`` (the guards and ``heat``) do not shape the weights: ``task.model.pretrained`` may load a
    file saved with other values of them (a fine-tune under tighter guards).
    """

    ARITHMETIC_FIELDS: ClassVar[tuple[str, ...]] = ("heat", "net_input_bound", "min_scale", "max_prior_logs")

    scale: int = 4
    nf: int = 64
    nb: int = 23
    gc: int = 32
    K: int = 16
    L: int | None = None
    n_transition: int = 2
    hidden: int = 64
    rrdb_blocks: list[int] | None = None
    lu_decomposed: bool = False
    quant: int = 32
    heat: float = 0.9
    net_input_bound: float = 12.0
    min_scale: float = 0.05
    max_prior_logs: float = 5.0

    def __post_init__(self) -> None:
        check_bounds(
            self,
            {
                "nf": (1, 1024),
                "nb": (1, 256),
                "gc": (1, 1024),
                "K": (1, 128),
                "L": (1, 8),
                "n_transition": (0, 16),
                "hidden": (1, 4096),
                "rrdb_blocks": (0, 255),
                "quant": (1, 65536),
            },
        )
        if self.scale not in (4, 8):
            raise ValueError(f"scale must be 4 or 8, got {self.scale}")
        check_positive(self, "nf", "nb", "gc", "K", "hidden", "quant")
        check_at_least("n_transition", self.n_transition, 0)
        log2s = int(math.log2(self.scale))
        if self.L is None:
            self.L = log2s + 1
        if not 1 <= self.L <= log2s + 2:
            raise ValueError(f"L must be in 1..{log2s + 2} for scale {self.scale}, got {self.L}")
        if self.rrdb_blocks is None:
            taps = DEFAULT_TAPS[self.scale]
            if max(taps) >= self.nb:
                raise ValueError(f"default rrdb_blocks {taps} need nb > {max(taps)}; set rrdb_blocks for nb={self.nb}")
            self.rrdb_blocks = list(taps)
        self.rrdb_blocks = [int(b) for b in self.rrdb_blocks]
        bad = [b for b in self.rrdb_blocks if not 0 <= b < self.nb]
        if bad:
            raise ValueError(f"rrdb_blocks {bad} out of range 0..{self.nb - 1}")
        if self.heat < 0:
            raise ValueError(f"heat must be >= 0, got {self.heat}")
        for name in ("net_input_bound", "min_scale", "max_prior_logs"):
            value = float(getattr(self, name))
            if not 0 <= value < math.inf:
                raise ValueError(f"{name} must be a finite number >= 0 (0 = off), got {value}")
        if self.min_scale >= 1:
            raise ValueError(f"min_scale must be < 1 (scales are at most 1), got {self.min_scale}")

    @property
    def cond_channels(self) -> int:
        """Channels of every conditioning map: nf (level feature) + nf per tapped block (320 by default)."""
        return self.nf * (1 + len(self.rrdb_blocks))

    @property
    def level_factors(self) -> list[float]:
        """Resolution of level l = 1..L relative to the LR: scale / 2^l."""
        return [self.scale / 2**level for level in range(1, self.L + 1)]

    @property
    def lr_multiple(self) -> int:
        """LR sides must be multiples of this (2 for the released layouts)."""
        return max(1, 2**self.L // self.scale)


def feature_name(factor: float) -> str:
    """Official name of the encoder feature at ``factor`` x LR: 2 -> 'fea_up2', 0.5 -> 'fea_up0'."""
    if factor >= 1:
        return f"fea_up{int(factor)}"
    return {0.5: "fea_up0", 0.25: "fea_up-1"}[factor]


# --------------------------------------------------------------------------------------------------
# Encoder
# --------------------------------------------------------------------------------------------------


class OfficialRRDB(nn.Module):
    """RRDB with the official SRFlow/ESRGAN-v0 names ``RDB1..RDB3``; out = RDB3(RDB2(RDB1(x))) * 0.2 + x."""

    def __init__(self, nf: int = 64, gc: int = 32) -> None:
        super().__init__()
        self.RDB1 = ResidualDenseBlock(nf, gc)
        self.RDB2 = ResidualDenseBlock(nf, gc)
        self.RDB3 = ResidualDenseBlock(nf, gc)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.RDB3(self.RDB2(self.RDB1(x))) * 0.2 + x


class RRDBEncoder(nn.Module):
    """SRFlow's LR encoder g: an RRDBNet with the official names and the official global residual.

    ``forward(lr)`` is the plain SR output (for pre-training); :meth:`features` gives the feature dict the
    flow is conditioned on. Note the residual: ``h = trunk(conv_first(x)); h + trunk_conv(h)`` (not ESRGAN's
    ``conv_first(x) + trunk_conv(h)``), which is what the released SRFlow/RRDB weights were trained with.
    """

    def __init__(self, nf: int = 64, nb: int = 23, gc: int = 32, scale: int = 4, in_ch: int = 3, out_ch: int = 3):
        super().__init__()
        self.scale = int(scale)
        self.num_upsample = int(math.log2(scale))
        self.conv_first = nn.Conv2d(in_ch, nf, 3, 1, 1)
        self.RRDB_trunk = nn.Sequential(*[OfficialRRDB(nf, gc) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        for i in range(1, self.num_upsample + 1):
            setattr(self, f"upconv{i}", nn.Conv2d(nf, nf, 3, 1, 1))
        self.HRconv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.conv_last = nn.Conv2d(nf, out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(0.2, inplace=False)
        kaiming_scaled_(self.RRDB_trunk, 0.1)  # as the official code: x0.1 Kaiming for the dense-block convs

    def upconvs(self) -> list[nn.Conv2d]:
        return [getattr(self, f"upconv{i}") for i in range(1, self.num_upsample + 1)]

    def features(
        self, lr: torch.Tensor, blocks: Sequence[int] = (), factors: Sequence[float] | None = None
    ) -> dict[str, torch.Tensor]:
        """Official feature dict: 'fea_up1' (= 'last_lr_fea'), 'fea_up{2,4,8}' (post-LeakyReLU upconv
        outputs), 'fea_up0' (bilinear x0.5), 'fea_up-1' (x0.25) and 'block_{i}' for ``blocks``.

        ``factors`` limits the upsampling convs to those needed (default: all up to ``scale``).
        """
        factors = list(factors) if factors is not None else [2.0**i for i in range(self.num_upsample + 1)] + [0.5]
        out: dict[str, torch.Tensor] = {}
        fea = self.conv_first(lr)
        wanted = set(blocks)
        for idx, block in enumerate(self.RRDB_trunk):
            fea = block(fea)
            if idx in wanted:
                out[f"block_{idx}"] = fea
        last = fea + self.trunk_conv(fea)
        out["last_lr_fea"] = out["fea_up1"] = last
        top = max(factors)
        h = last
        for i, conv in enumerate(self.upconvs(), start=1):
            if 2**i > top:
                break
            # The official forward stores the conv output and then applies an *in-place* LeakyReLU to it,
            # so the stored feature is the activated one.
            h = self.lrelu(conv(F.interpolate(h, scale_factor=2, mode="nearest")))
            out[f"fea_up{2**i}"] = h
        for f in factors:
            if f < 1:
                out[feature_name(f)] = F.interpolate(
                    last, scale_factor=f, mode="bilinear", align_corners=False, recompute_scale_factor=True
                )
        return out

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        fea = self.conv_first(lr)
        fea = self.RRDB_trunk(fea)
        h = fea + self.trunk_conv(fea)
        for conv in self.upconvs():
            h = self.lrelu(conv(F.interpolate(h, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.HRconv(h)))


# --------------------------------------------------------------------------------------------------
# Flow
# --------------------------------------------------------------------------------------------------


class FlowUpsamplerNet(nn.Module):
    """The flow: ``layers`` numbered exactly as the official ModuleList; ``f`` is the official unused conv."""

    def __init__(self, config: SRFlowConfig) -> None:
        super().__init__()
        c = config
        self.layers = nn.ModuleList()
        self.layer_levels: list[int] = []
        channels = 3
        cond = c.cond_channels
        for level in range(1, c.L + 1):
            self.layers.append(Squeeze2d(2))
            self.layer_levels.append(level)
            channels *= 4
            for _ in range(c.n_transition):
                self.layers.append(FlowStep(channels, cond, c.hidden, affine=False, lu_decomposed=c.lu_decomposed))
                self.layer_levels.append(level)
            for _ in range(c.K):
                self.layers.append(
                    FlowStep(
                        channels,
                        cond,
                        c.hidden,
                        affine=True,
                        lu_decomposed=c.lu_decomposed,
                        input_bound=c.net_input_bound,
                        min_scale=c.min_scale,
                    )
                )
                self.layer_levels.append(level)
            if level < c.L - 1:  # as released (``correct_splits`` false): no split after level L-1
                split = Split2d(channels, input_bound=c.net_input_bound, max_logs=c.max_prior_logs)
                self.layers.append(split)
                self.layer_levels.append(level)
                channels = split.num_channels_pass
        self.out_channels = channels
        # Built by the official code but never used; kept (frozen) so official checkpoints load strictly.
        self.f = nn.Sequential(nn.Conv2d(cond, UNUSED_F_CHANNELS, 3, 1, 1))
        self.f.requires_grad_(False)

    def encode(self, x: torch.Tensor, conds: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], torch.Tensor]:
        """HR -> ([factored-out eps of each split..., final z], sum of the layers' log-determinants) per sample.

        Every layer has the same contract; after a layer with ``factored_channels`` k the last k channels leave
        the flow (their prior, like the final z's, is added by the caller: :meth:`SRFlowNet.encode`).
        """
        logdet = torch.zeros(
            x.shape[0], dtype=torch.float64 if x.dtype == torch.float64 else torch.float32, device=x.device
        )
        z_list: list[torch.Tensor] = []
        for layer, level in zip(self.layers, self.layer_levels, strict=True):
            x, ld = layer(x, conds[level - 1])
            logdet = logdet + ld
            k = layer.factored_channels
            if k:
                x, factored = x[:, :-k], x[:, -k:]
                z_list.append(factored)
        z_list.append(x)
        return z_list, logdet

    def decode(
        self,
        z_list: Sequence[torch.Tensor | None],
        conds: Sequence[torch.Tensor],
        heat: float,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """([eps..., z]) -> HR. ``None`` eps entries are drawn from N(0, heat^2) (final z required)."""
        x = z_list[-1]
        factored = iter(reversed(list(z_list[:-1])))
        for layer, level in zip(reversed(self.layers), reversed(self.layer_levels), strict=True):
            k = layer.factored_channels
            if k:
                eps = next(factored)
                if eps is None:
                    eps = sample_normal((x.shape[0], k, *x.shape[2:]), heat, x.device, generator, x.dtype)
                x = torch.cat([x, eps.to(x.device, x.dtype)], 1)
            x = layer.inverse(x, conds[level - 1])
        return x


# --------------------------------------------------------------------------------------------------
# The whole model
# --------------------------------------------------------------------------------------------------


class SRFlowNet(nn.Module):
    """SRFlow: ``RRDB`` (LR encoder) + ``flowUpsamplerNet`` (the conditional flow HR <-> z).

    * :meth:`encode` (HR, LR) -> (z_list, logp); z_list = split eps in split order, final z last.
    * :meth:`decode` (LR, z_list or None, heat) -> SR (unclamped); heat 0 gives the deterministic mean.
    * ``forward`` (HR, LR) -> {"logp": ...}, the training direction; bits/pixel and bits/dim come from
      :func:`gensr.losses.likelihood.likelihood_summary`.

    Images are RGB in [0, 1]; LR sides must be multiples of ``config.lr_multiple`` (2 by default).
    Unused parameters (the RRDB tail that only produces the RRDB's own SR image, and ``flowUpsamplerNet.f``)
    have ``requires_grad=False`` so DDP needs no ``find_unused_parameters``; use :meth:`set_rrdb_trainable`
    to freeze/unfreeze the encoder.
    """

    kind = "flow-sr"

    def __init__(self, config: SRFlowConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or SRFlowConfig()
        self.RRDB = RRDBEncoder(c.nf, c.nb, c.gc, c.scale)
        self.flowUpsamplerNet = FlowUpsamplerNet(c)
        self.set_rrdb_trainable(True)

    # -- bookkeeping -------------------------------------------------------------------------------
    @property
    def scale(self) -> int:
        return self.config.scale

    def unused_parameter_names(self) -> list[str]:
        """Parameters present in checkpoints but not used by encode/decode."""
        used_up = {f"upconv{i}" for i in range(1, self.RRDB.num_upsample + 1) if 2**i <= max(self.config.level_factors)}
        names = []
        for name, _ in self.named_parameters():
            if name.startswith("flowUpsamplerNet.f."):
                names.append(name)
            elif name.startswith("RRDB."):
                head = name.split(".")[1]
                if head in ("HRconv", "conv_last") or (head.startswith("upconv") and head not in used_up):
                    names.append(name)
        return names

    def set_rrdb_trainable(self, trainable: bool) -> None:
        """(Un)freeze the encoder's used parameters; the unused ones always stay frozen."""
        unused = set(self.unused_parameter_names())
        for name, p in self.named_parameters():
            if name in unused:
                p.requires_grad_(False)
            elif name.startswith("RRDB."):
                p.requires_grad_(bool(trainable))

    def to_lu_(self) -> SRFlowNet:
        """Switch every 1x1 conv to the exact LU parametrisation (e.g. after loading official weights)."""
        for m in self.flowUpsamplerNet.layers:
            m.to_lu_()
        self.config.lu_decomposed = True
        return self

    def check_sizes(self, lr: torch.Tensor, hr: torch.Tensor | None = None) -> None:
        if lr.dim() != 4 or lr.shape[1] != 3:
            raise ValueError(f"SRFlow expects an RGB LR batch (N, 3, h, w), got {tuple(lr.shape)}")
        m = self.config.lr_multiple
        h, w = lr.shape[-2:]
        if h % m or w % m:
            raise ValueError(f"SRFlow needs LR sides divisible by {m}, got {h}x{w}: pad (reflect) and crop the SR")
        if hr is not None:
            want = (lr.shape[0], 3, h * self.scale, w * self.scale)
            if tuple(hr.shape) != want:
                raise ValueError(f"HR shape {tuple(hr.shape)} does not match LR {tuple(lr.shape)} at x{self.scale}")

    def z_shapes(self, lr_size: tuple[int, int]) -> list[tuple[int, int, int]]:
        """(C, H, W) of each z_list entry for an LR of ``lr_size`` (h, w): split eps in order, z last."""
        shape = (3, lr_size[0] * self.scale, lr_size[1] * self.scale)
        shapes = []
        for layer in self.flowUpsamplerNet.layers:
            shape = layer.out_shape(shape)
            k = layer.factored_channels
            if k:
                shapes.append((k, *shape[1:]))
                shape = (shape[0] - k, *shape[1:])
        shapes.append(shape)
        return shapes

    # -- conditioning ------------------------------------------------------------------------------
    def conditions(self, lr: torch.Tensor) -> list[torch.Tensor]:
        """The 320-channel conditioning map of each level l = 1..L (at scale/2^l x LR)."""
        self.check_sizes(lr)
        factors = self.config.level_factors
        feats = self.RRDB.features(lr, self.config.rrdb_blocks, factors)
        taps = [feats[f"block_{b}"] for b in self.config.rrdb_blocks]
        concat = torch.cat(taps, 1) if taps else None
        conds = []
        for f in factors:
            fea = feats[feature_name(f)]
            if concat is not None:
                fea = torch.cat([fea, F.interpolate(concat, size=fea.shape[-2:], mode="nearest")], 1)
            conds.append(fea)
        return conds

    # -- the two directions ------------------------------------------------------------------------
    def encode(
        self,
        hr: torch.Tensor,
        lr: torch.Tensor,
        add_noise: bool,
        generator: torch.Generator | None = None,
        conds: Sequence[torch.Tensor] | None = None,
        quant: int | None = None,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(HR, LR) -> (z_list, logp).

        ``add_noise`` dequantises the HR with U(-1/2, 1/2)/quant first (training and likelihood evaluation);
        without it the encoding is deterministic (latent manipulation). ``logp`` = log p(HR~ | LR) per sample
        in nats (a continuous density in [0, 1] units; no quantisation constant), float32: the flow's
        log-determinants plus the standard-normal log-density of every factored-out eps and of the final z
        (:func:`gensr.losses.likelihood.likelihood_summary` turns it into bits).
        """
        self.check_sizes(lr, hr)
        x = hr.float() if hr.dtype != torch.float64 else hr
        if add_noise:
            x = dequantize(x, quant or self.config.quant, generator)
        if conds is None:
            conds = self.conditions(lr)
        z_list, logdet = self.flowUpsamplerNet.encode(x, conds)
        return z_list, logdet + sum(gaussian_log_prob(z) for z in z_list)

    def decode(
        self,
        lr: torch.Tensor,
        z_list: Sequence[torch.Tensor | None] | None = None,
        heat: float | None = None,
        generator: torch.Generator | None = None,
        num_samples: int = 1,
        conds: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """(LR, z_list) -> SR, unclamped, float32.

        ``z_list`` None (or None entries) draws N(0, heat^2) latents; ``heat`` None -> ``config.heat``;
        heat 0 is the deterministic mean. ``num_samples`` > 1 draws that many samples per LR image (the
        encoder runs once; output order: all samples of image 0, then image 1, ...). Random draws use
        ``generator``, final z first, then the split eps from the deepest split up. Gradients flow if
        enabled; wrap sampling in ``torch.inference_mode()`` (the 1x1-conv inverses are then cached in eval
        mode).
        """
        heat = self.config.heat if heat is None else float(heat)
        if conds is None:
            conds = self.conditions(lr)
        else:
            self.check_sizes(lr)
        n = lr.shape[0] * num_samples
        if num_samples > 1:
            conds = [c.repeat_interleave(num_samples, 0) for c in conds]
        shapes = self.z_shapes(tuple(lr.shape[-2:]))
        if z_list is None:
            z_list = [None] * len(shapes)
        z_list = list(z_list)
        if len(z_list) != len(shapes):
            raise ValueError(f"z_list has {len(z_list)} entries, this model needs {len(shapes)} (splits + final z)")
        for i, (z, shape) in enumerate(zip(z_list, shapes, strict=True)):
            if z is not None and tuple(z.shape) != (n, *shape):
                raise ValueError(f"z_list[{i}] has shape {tuple(z.shape)}, expected {(n, *shape)}")
        if z_list[-1] is None:
            z_list[-1] = sample_normal((n, *shapes[-1]), heat, lr.device, generator)
        z_list[-1] = z_list[-1].float() if z_list[-1].dtype != torch.float64 else z_list[-1]
        return self.flowUpsamplerNet.decode(z_list, conds, heat, generator)

    def forward(
        self, hr: torch.Tensor, lr: torch.Tensor, add_noise: bool = True, generator: torch.Generator | None = None
    ) -> dict[str, torch.Tensor]:
        """The training direction (what DDP wraps): ``{"logp": log p(HR~ | LR)}`` per sample, see :meth:`encode`."""
        return {"logp": self.encode(hr, lr, add_noise=add_noise, generator=generator)[1]}


# --------------------------------------------------------------------------------------------------
# Encoder initialisation from an RRDBNet
# --------------------------------------------------------------------------------------------------


def load_rrdb_encoder(srflow: SRFlowNet, state_dict: dict[str, torch.Tensor]) -> None:
    """Initialise ``srflow.RRDB`` from a state dict in the encoder's own names (the official ``RRDB_trunk`` names;
    :func:`gensr.checkpoints.srflow_official.rrdb_encoder_state` renames a gensr/BasicSR RRDBNet's), strictly:
    GensrError listing missing/unexpected keys or naming a shape mismatch.

    The SRFlow encoder computes the official SRFlow residual (``h + trunk_conv(h)``), not ESRGAN's: weights of
    an RRDBNet trained with the ESRGAN residual give different features and are only an initialisation.
    """
    expected = srflow.RRDB.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    if missing or unexpected:
        raise GensrError(
            "RRDB encoder state dict does not match the SRFlow encoder: "
            f"missing {_short(missing)}; unexpected {_short(unexpected)}"
        )
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(state_dict[k].shape)]
    if bad:
        k = bad[0]
        raise GensrError(
            f"RRDB encoder: {len(bad)} shape mismatch(es), e.g. {k}: {tuple(state_dict[k].shape)} "
            f"vs {tuple(expected[k].shape)}"
        )
    srflow.RRDB.load_state_dict(state_dict, strict=True)


def _short(keys: list[str], n: int = 8) -> str:
    if not keys:
        return "none"
    more = f" ... (+{len(keys) - n} more)" if len(keys) > n else ""
    return ", ".join(keys[:n]) + more
