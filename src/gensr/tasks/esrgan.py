"""Stage 2 of ESRGAN: fine-tune a PSNR-trained generator against a discriminator (Wang et al. 2018).

Networks: ``g`` (the generator, initialised from ``task.model.pretrained``, which is required) and ``d`` (a
discriminator trained from scratch, ``task.discriminator``; its optimiser settings are ``optim`` with the
overrides of ``optim.networks.d``). Generator loss, with ESRGAN's weights
as defaults::

    L_G = perceptual.weight * L_percep + gan_weight * L_G^adv + pixel_weight * L_pixel [+ chroma_weight * L_chroma]
        = 1 * L1(VGG19 conv5_4) + 5e-3 * RaGAN + 1e-2 * L1

``chroma_weight`` (default 0, not in the paper) adds the L1 distance of the BT.601 chroma planes of output and
HR (:func:`gensr.losses.pixel.chroma_l1_loss`): it holds the output's colours to the target's where a small G
against a fresh D paints colour speckle on fine achromatic texture, and leaves luma to the GAN.

One iteration follows the reference (BasicSR ``ESRGANModel.optimize_parameters``), with the shared GAN mechanics
of :mod:`gensr.tasks.gan`:

1. G part, D frozen (``requires_grad`` off) but in train mode: ``fake = G(lr)``; D(real) (constants) and
   D(fake) in *separate* forwards (BatchNorm statistics per pure batch); ``L_G.backward()``.
2. D part on the same fake batch, detached: D(real) and D(fake) in separate forwards; ``L_D.backward()``.
3. Both optimiser steps.

Stepping both optimisers at the end equals the reference's "G step, then D step": the D part never sees
the updated G (the fake is the one made before the G step) and the G part never sees the updated D.
It also makes a skip atomic: if either loss is non-finite, neither network changes and the step
returns ``skipped=1`` (the trainer stops after ``train.max_nonfinite`` in a row).

Perceptual term (``task.perceptual.kind``): ``vgg`` (VGG19 features of a torchvision weights
file, ``weights_path`` or $GENSR_VGG19_WEIGHTS), ``feature_matching`` (L1 between D's intermediate maps of
fake and real, no extra weights needed) or ``none``.

Logged scalars (G terms are the weighted contributions, so ``loss = g_pixel + g_percep + g_gan``):
``loss``, ``g_pixel``, ``g_percep``, ``g_gan``, ``g_chroma``, ``d_loss``, ``d_real``/``d_fake`` (mean D logits of the
D part), ``skipped``.

Validation also writes, for the first ``grid_images`` validation images, a grid
LR (nearest) | bicubic | PSNR model (the pretrained G, frozen) | GAN | GT to
``<run>/val/iter_NNNNNNN/grid_<name>.png`` and to TensorBoard.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gensr.config import check_at_least, check_finite
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo
from gensr.errors import GensrError
from gensr.losses.adversarial import AdversarialLoss
from gensr.losses.perceptual import FeatureMatchingLoss, PerceptualLoss, resolve_layer_weights
from gensr.losses.pixel import chroma_l1_loss, pixel_loss_fn
from gensr.models.registry import build_model
from gensr.tasks.gan import GANStep, float_stats, loss_kind_option
from gensr.tasks.sr_common import SRTask, SRTaskOptions, build_network, nearest_and_bicubic, side_by_side

DISCRIMINATORS: tuple[str, ...] = ("vgg_discriminator", "unet_discriminator")
PERCEPTUAL_KINDS: tuple[str, ...] = ("vgg", "feature_matching", "none")
STAT_KEYS: tuple[str, ...] = ("loss", "g_pixel", "g_percep", "g_gan", "g_chroma", "d_loss", "d_real", "d_fake")


@dataclass
class PerceptualOptions:
    """``kind``: vgg | feature_matching | none. ``layers`` (vgg only): a preset name ("esrgan" = conv5_4,
    "real-esrgan") or {layer: weight}; default "esrgan". ``weights_path`` (vgg only): torchvision
    vgg19 weights, else $GENSR_VGG19_WEIGHTS. ``weight``: the term's weight in L_G. ``criterion``: l1 | mse |
    charbonnier, between feature maps."""

    kind: str = "vgg"
    layers: Any = None
    weights_path: str | None = None
    weight: float = 1.0
    criterion: str = "l1"

    def __post_init__(self) -> None:
        if self.kind not in PERCEPTUAL_KINDS:
            raise ValueError(f"kind must be one of {', '.join(PERCEPTUAL_KINDS)}, got {self.kind!r}")
        if self.kind != "vgg" and (self.layers is not None or self.weights_path):
            raise ValueError(f"layers and weights_path apply to kind vgg only (kind is {self.kind!r})")
        check_finite("weight", self.weight, 0.0)
        _check_loss_name("criterion", self.criterion)
        if self.kind == "vgg":
            try:
                resolve_layer_weights(self.layers)
            except GensrError as exc:
                raise ValueError(f"layers: {exc}") from None


@dataclass
class DiscriminatorOptions:
    """``arch``: vgg_discriminator (ESRGAN, one logit per image; ``config.input_size`` defaults to the
    HR patch size and must equal it) or unet_discriminator (Real-ESRGAN, per-pixel logits).
    ``config``: that architecture's config (see :mod:`gensr.models.discriminators`)."""

    arch: str = "vgg_discriminator"
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.arch not in DISCRIMINATORS:
            raise ValueError(f"arch must be one of {', '.join(DISCRIMINATORS)}, got {self.arch!r}")
        if not isinstance(self.config, dict):
            raise ValueError(f"config must be a mapping, got {self.config!r}")


@dataclass
class ESRGANOptions(SRTaskOptions):
    """The ``task:`` section of the esrgan task: the SR fields and these (defaults are the paper's).

    ``gan_type``: any :class:`gensr.losses.adversarial.AdversarialLoss` name (``rasgan``, alias ``ragan``,
    is ESRGAN's). ``detach_opposite_mean``: relativistic-average D loss, BasicSR v1's variant (see
    adversarial.py). ``gp_weight``: gradient-penalty weight, used with ``wgan-gp`` only. ``grid_images``: how
    many evaluation images get a comparison grid (0 = none).
    """

    kind: str = "esrgan"
    gan_type: str = "rasgan"
    gan_weight: float = 5e-3
    pixel_weight: float = 1e-2
    pixel_loss: str = "l1"
    chroma_weight: float = 0.0
    perceptual: PerceptualOptions = field(default_factory=PerceptualOptions)
    discriminator: DiscriminatorOptions = field(default_factory=DiscriminatorOptions)
    detach_opposite_mean: bool = False
    gp_weight: float = 10.0
    grid_images: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        self.gan_type = loss_kind_option("gan_type", self.gan_type)
        check_finite("gan_weight", self.gan_weight, 0.0)
        check_finite("pixel_weight", self.pixel_weight, 0.0)
        check_finite("chroma_weight", self.chroma_weight, 0.0)
        check_finite("gp_weight", self.gp_weight, 0.0)
        _check_loss_name("pixel_loss", self.pixel_loss)
        check_at_least("grid_images", self.grid_images, 0)


def _check_loss_name(name: str, value: Any) -> None:
    try:
        pixel_loss_fn(value)
    except GensrError as exc:
        raise ValueError(f"{name}: {exc}") from None


def discriminator_config(options: DiscriminatorOptions, patch_size: int) -> dict[str, Any]:
    """D's config dict for HR patches of side ``patch_size``; GensrError if the two cannot work together."""
    config = dict(options.config)
    where = "task.discriminator.config"
    if options.arch == "vgg_discriminator":
        size = config.setdefault("input_size", patch_size)
        if size != patch_size:
            raise GensrError(
                f"{where}.input_size {size} does not match task.data.train.patch_size {patch_size}: the VGG "
                "discriminator sees whole HR patches (set both to the same power of two, e.g. 128)"
            )
        if patch_size < 8 or patch_size & (patch_size - 1):
            raise GensrError(
                f"task.data.train.patch_size {patch_size} cannot feed the VGG discriminator, which needs a power "
                "of two >= 8 (e.g. 64 or 128); use such a patch size or arch unet_discriminator"
            )
    elif patch_size % 8:
        raise GensrError(
            f"task.data.train.patch_size {patch_size} cannot feed the U-Net discriminator (needs a multiple of 8)"
        )
    return config


class ESRGANTask(SRTask):
    """ESRGAN's GAN stage: G from a PSNR checkpoint, D from scratch, perceptual + adversarial + pixel loss."""

    Options = ESRGANOptions

    @classmethod
    def check(cls, options: ESRGANOptions, run: RunConfig) -> None:
        _check_options(options)
        super().check(options, run)

    def __init__(self, options: ESRGANOptions, run: RunConfig, dist: DistInfo) -> None:
        d_config = _check_options(options)  # every user mistake is reported before anything heavy is loaded
        super().__init__(options, run, dist)
        self.pixel_fn = pixel_loss_fn(options.pixel_loss)
        try:
            disc = build_model(options.discriminator.arch, d_config)
        except GensrError as exc:
            raise GensrError(f"task.discriminator: {exc}") from None
        gen = build_network(options.model, options.scale)
        self.psnr_net = self.memory_format(copy.deepcopy(gen).eval().requires_grad_(False).to(self.device))
        gen = self.add_network("g", gen)
        disc = self.add_network("d", disc)
        self.perceptual: nn.Module | None = None
        p = options.perceptual
        if p.kind == "vgg":
            self.perceptual = self.memory_format(PerceptualLoss(p.layers, p.weights_path, p.criterion).to(self.device))
        elif p.kind == "feature_matching":
            self.perceptual = FeatureMatchingLoss(p.criterion)
        adversarial = AdversarialLoss(options.gan_type, detach_opposite_mean=options.detach_opposite_mean)
        self.gan = GANStep(self, adversarial, options.gp_weight, compile_d=run.train.compile)
        self._g = torch.compile(self.networks["g"]) if run.train.compile else self.networks["g"]
        self._vgg = self.perceptual if p.kind == "vgg" else None
        if run.train.compile and self._vgg is not None:
            self._vgg = torch.compile(self._vgg)

    # -- one iteration ---------------------------------------------------------------------------------------
    def generator_backward(
        self, lr: torch.Tensor, hr: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """G part: forward, L_G, backward into G only (D frozen). Returns (detached fake, terms), or None
        (nothing backpropagated) when L_G is non-finite. ``lr`` (N, 3, h, w), ``hr`` (N, 3, sh, sw) in [0, 1]."""
        opts = self.options
        fm = opts.perceptual.kind == "feature_matching"
        kw = {"return_features": fm}
        with self.gan.frozen_discriminator():
            with self.autocast():
                fake = self._g(lr)
                real = hr if self.gan.needs_real_in_g_step(features=fm) else None
                real_out, fake_out = self.gan.generator_outputs(fake, real, fake_kw=kw, real_kw=kw)
            real_logits, real_feats = real_out if fm else (real_out, None)
            fake_logits, fake_feats = fake_out if fm else (fake_out, None)
            zero = torch.zeros((), device=self.device)
            g_pixel = opts.pixel_weight * self.pixel_fn(fake.float(), hr.float()) if opts.pixel_weight else zero
            g_gan = opts.gan_weight * self.gan.generator_loss(real_logits, fake_logits) if opts.gan_weight else zero
            g_chroma = opts.chroma_weight * chroma_l1_loss(fake.float(), hr.float()) if opts.chroma_weight else zero
            g_percep = zero
            if self._vgg is not None and opts.perceptual.weight:
                with self.autocast():
                    g_percep = opts.perceptual.weight * self._vgg(fake, hr).float()
            elif fm and opts.perceptual.weight:
                g_percep = opts.perceptual.weight * self.perceptual(real_feats, fake_feats).float()
            total = g_pixel + g_percep + g_gan + g_chroma
            if not self.all_finite(total):
                return None
            total.backward()
        terms = {"loss": total, "g_pixel": g_pixel, "g_percep": g_percep, "g_gan": g_gan, "g_chroma": g_chroma}
        return fake.detach(), terms

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        lr, hr = self.next_pair(batches)
        g, d = self.networks["g"], self.networks["d"]
        opt_g, opt_d = self.optimizers["g"], self.optimizers["d"]
        g.train()
        d.train()
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        out = self.generator_backward(lr, hr)
        if out is None:
            return float_stats({}, STAT_KEYS, skipped=True)
        fake, g_terms = out
        d_terms = self.gan.discriminator_backward(hr, fake)
        if d_terms is None:
            opt_g.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            return float_stats(g_terms, STAT_KEYS, skipped=True)
        self.clip_gradients("g", g)
        self.clip_gradients("d", d)
        opt_g.step()
        opt_d.step()
        return float_stats({**g_terms, **d_terms}, STAT_KEYS, skipped=False)

    # -- evaluation grids ------------------------------------------------------------------------------------
    @torch.no_grad()
    def comparison_grid(self, lr: torch.Tensor, hr: torch.Tensor, gan: nn.Module) -> torch.Tensor:
        """LR nearest | bicubic | PSNR model | GAN | GT side by side for one image.

        ``lr`` (1, 3, h, w), ``hr`` (1, 3, sh, sw) in [0, 1] -> (3, H, 5 W + 4 gaps) float in [0, 1] on the CPU.
        """
        lr = lr.to(self.device)
        panels = [*nearest_and_bicubic(lr, self.scale), self.super_resolve(self.psnr_net, lr),
                  self.super_resolve(gan, lr), hr]  # fmt: skip
        return side_by_side(panels)

    def extra_evaluation(self, iteration: int, logger: Any, network: nn.Module, out_dir: Path) -> dict[str, float]:
        """Grids for the first ``grid_images`` evaluation images (files when val.save_images)."""
        from gensr.io import write_image

        n = min(self.options.grid_images, len(self.val_set))
        for i in range(n):
            item = self.val_set[i]
            grid = self.comparison_grid(item["lr"][None], item["hr"][None], network)
            if self.options.data.val.save_images:
                write_image(Path(out_dir) / f"grid_{item['name']}.png", grid, overwrite=True)
            logger.images(iteration, f"val_grid/{item['name']}", grid)
        return {}


def _check_options(options: ESRGANOptions) -> dict[str, Any]:
    """Cheap checks of what the esrgan task needs; returns D's config."""
    if not options.model.pretrained:
        raise GensrError(
            "task.model.pretrained is required by the esrgan task: it fine-tunes a PSNR-trained generator "
            "(e.g. runs/rrdb_psnr_x4/model.safetensors, or 'default' for the shipped one)"
        )
    from gensr.checkpoints.shipped import resolve_model_path

    try:
        resolve_model_path(options.model.pretrained)
    except GensrError as exc:
        raise GensrError(f"task.model.pretrained: {exc}") from None
    if options.perceptual.kind == "vgg":
        from gensr.nn.vgg import resolve_weights_path

        try:
            resolve_weights_path(options.perceptual.weights_path)
        except GensrError as exc:
            raise GensrError(f"task.perceptual (kind vgg): {exc}") from None
    return discriminator_config(options.discriminator, options.data.train.patch_size)
