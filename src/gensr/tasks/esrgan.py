"""Stage 2 of ESRGAN: fine-tune a PSNR-trained generator against a discriminator (Wang et al. 2018).

Networks: ``g`` (the generator, initialised from ``model.pretrained``, which is required) and ``d`` (a
discriminator trained from scratch, ``task_options.discriminator``). Generator loss, with ESRGAN's weights
as defaults::

    L_G = perceptual.weight * L_percep + gan_weight * L_G^adv + pixel_weight * L_pixel
        = 1 * L1(VGG19 conv5_4) + 5e-3 * RaGAN + 1e-2 * L1

One iteration follows the reference (BasicSR ``ESRGANModel.optimize_parameters``):

1. G part, D frozen (``requires_grad`` off) but in train mode: ``fake = G(lr)``; D(real) (constants) and
   D(fake) in *separate* forwards (BatchNorm statistics per pure batch); ``L_G.backward()``.
2. D part on the same fake batch, detached: D(real) and D(fake) in separate forwards; ``L_D.backward()``.
3. Both optimiser steps.

Stepping both optimisers at the end equals the reference's "G step, then D step": the D part never sees
the updated G (the fake is the one made before the G step) and the G part never sees the updated D.
It also makes a skip atomic: if either loss is non-finite, neither network changes and the step
returns ``skipped=1`` (the trainer stops after ``train.max_nonfinite`` in a row).

Perceptual term (``task_options.perceptual.kind``): ``vgg`` (VGG19 features of a torchvision weights
file, ``weights_path`` or $GENSR_VGG19_WEIGHTS), ``feature_matching`` (L1 between D's intermediate maps of
fake and real, no extra weights needed) or ``none``.

Logged scalars (G terms are the weighted contributions, so ``loss = g_pixel + g_percep + g_gan``):
``loss``, ``g_pixel``, ``g_percep``, ``g_gan``, ``d_loss``, ``d_real``/``d_fake`` (mean D logits of the
D part), ``skipped``.

Validation also writes, for the first ``grid_images`` validation images, a grid
LR (nearest) | bicubic | PSNR model (the pretrained G, frozen) | GAN | GT to
``<run>/val/iter_NNNNNNN/grid_<name>.png`` and to TensorBoard.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import from_dict
from gensr.engine.config import OptimSection, RunConfig
from gensr.engine.distributed import DistInfo, unwrap, wrap
from gensr.errors import GensrError
from gensr.losses.adversarial import AdversarialLoss, canonical_kind, gradient_penalty
from gensr.losses.perceptual import FeatureMatchingLoss, PerceptualLoss, resolve_layer_weights
from gensr.losses.pixel import pixel_loss_fn
from gensr.tasks.base import Task
from gensr.tasks.common import build_generator

DISCRIMINATORS: tuple[str, ...] = ("vgg_discriminator", "unet_discriminator")
PERCEPTUAL_KINDS: tuple[str, ...] = ("vgg", "feature_matching", "none")
STAT_KEYS: tuple[str, ...] = ("loss", "g_pixel", "g_percep", "g_gan", "d_loss", "d_real", "d_fake")


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
        _check_weight("weight", self.weight)
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
class ESRGANOptions:
    """``task_options`` of the esrgan task (unknown keys are errors). Defaults are the paper's.

    ``gan_type``: any :class:`gensr.losses.adversarial.AdversarialLoss` name (``rasgan``, alias ``ragan``,
    is ESRGAN's). ``optim_d``: D's optimiser (keys of the ``optim`` section); default: the same as G's.
    ``detach_opposite_mean``: relativistic-average D loss, BasicSR v1's variant (see adversarial.py).
    ``gp_weight``: gradient-penalty weight, used with ``wgan-gp`` only. ``grid_images``: how many
    validation images get a comparison grid (0 = none).
    """

    gan_type: str = "rasgan"
    gan_weight: float = 5e-3
    pixel_weight: float = 1e-2
    pixel_loss: str = "l1"
    perceptual: PerceptualOptions = field(default_factory=PerceptualOptions)
    discriminator: DiscriminatorOptions = field(default_factory=DiscriminatorOptions)
    optim_d: dict[str, Any] | None = None
    detach_opposite_mean: bool = False
    gp_weight: float = 10.0
    grid_images: int = 3

    def __post_init__(self) -> None:
        try:
            self.gan_type = canonical_kind(self.gan_type)
        except GensrError as exc:
            raise ValueError(f"gan_type: {exc}") from None
        _check_weight("gan_weight", self.gan_weight)
        _check_weight("pixel_weight", self.pixel_weight)
        _check_weight("gp_weight", self.gp_weight)
        _check_loss_name("pixel_loss", self.pixel_loss)
        if not isinstance(self.detach_opposite_mean, bool):
            raise ValueError(f"detach_opposite_mean must be true or false, got {self.detach_opposite_mean!r}")
        if not isinstance(self.grid_images, int) or isinstance(self.grid_images, bool) or self.grid_images < 0:
            raise ValueError(f"grid_images must be an integer >= 0, got {self.grid_images!r}")
        if self.optim_d is not None and not isinstance(self.optim_d, dict):
            raise ValueError(f"optim_d must be a mapping (keys of the optim section), got {self.optim_d!r}")


def _check_weight(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def _check_loss_name(name: str, value: Any) -> None:
    try:
        pixel_loss_fn(value)
    except GensrError as exc:
        raise ValueError(f"{name}: {exc}") from None


def discriminator_config(options: DiscriminatorOptions, patch_size: int) -> dict[str, Any]:
    """D's config dict for HR patches of side ``patch_size``; GensrError if the two cannot work together."""
    config = dict(options.config)
    where = "task_options.discriminator.config"
    if options.arch == "vgg_discriminator":
        size = config.setdefault("input_size", patch_size)
        if size != patch_size:
            raise GensrError(
                f"{where}.input_size {size} does not match data.train.patch_size {patch_size}: the VGG "
                "discriminator sees whole HR patches (set both to the same power of two, e.g. 128)"
            )
        if patch_size < 8 or patch_size & (patch_size - 1):
            raise GensrError(
                f"data.train.patch_size {patch_size} cannot feed the VGG discriminator, which needs a power "
                "of two >= 8 (e.g. 64 or 128); use such a patch size or arch unet_discriminator"
            )
    elif patch_size % 8:
        raise GensrError(
            f"data.train.patch_size {patch_size} cannot feed the U-Net discriminator (needs a multiple of 8)"
        )
    return config


class ESRGANTask(Task):
    """ESRGAN's GAN stage: G from a PSNR checkpoint, D from scratch, perceptual + adversarial + pixel loss."""

    def __init__(self, cfg: RunConfig, dist: DistInfo) -> None:
        super().__init__(cfg, dist)
        opts = self.options = from_dict(ESRGANOptions, cfg.task_options, where="task_options")
        # -- cheap checks first: every user mistake is reported before anything heavy is loaded ----------
        if not cfg.model.pretrained:
            raise GensrError(
                "model.pretrained is required by the esrgan task: it fine-tunes a PSNR-trained generator "
                "(e.g. runs/rrdb_psnr_x4/model.safetensors, or 'default' for the shipped one)"
            )
        from gensr.models.registry import build_model, resolve_model_path

        try:
            resolve_model_path(cfg.model.pretrained)
        except GensrError as exc:
            raise GensrError(f"model.pretrained: {exc}") from None
        d_config = discriminator_config(opts.discriminator, cfg.data.train.patch_size)
        optim_d = from_dict(
            OptimSection, opts.optim_d if opts.optim_d is not None else vars(cfg.optim), "task_options.optim_d"
        )
        if opts.perceptual.kind == "vgg":
            from gensr.nn.vgg import resolve_weights_path

            try:
                resolve_weights_path(opts.perceptual.weights_path)
            except GensrError as exc:
                raise GensrError(f"task_options.perceptual (kind vgg): {exc}") from None
        self.adversarial = AdversarialLoss(opts.gan_type, detach_opposite_mean=opts.detach_opposite_mean)
        self.pixel_fn = pixel_loss_fn(opts.pixel_loss)

        # -- networks --------------------------------------------------------------------------------------
        try:
            disc = build_model(opts.discriminator.arch, d_config)
        except GensrError as exc:
            raise GensrError(f"task_options.discriminator: {exc}") from None
        gen = build_generator(cfg)
        self.psnr_net = copy.deepcopy(gen).eval().requires_grad_(False)  # the starting point, for grids
        gen = self.memory_format(gen.to(self.device))
        disc = self.memory_format(disc.to(self.device))
        self.psnr_net = self.memory_format(self.psnr_net.to(self.device))
        self.networks["g"] = wrap(gen, dist)
        self.networks["d"] = wrap(disc, dist)
        self.perceptual: nn.Module | None = None
        if opts.perceptual.kind == "vgg":
            loss = PerceptualLoss(opts.perceptual.layers, opts.perceptual.weights_path, opts.perceptual.criterion)
            self.perceptual = self.memory_format(loss.to(self.device))
        elif opts.perceptual.kind == "feature_matching":
            self.perceptual = FeatureMatchingLoss(opts.perceptual.criterion)

        o = cfg.optim
        self.optimizers["g"] = torch.optim.Adam(
            gen.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
        )
        self.optim_d = optim_d
        self.optimizers["d"] = torch.optim.Adam(
            disc.parameters(), lr=optim_d.lr, betas=tuple(optim_d.betas), weight_decay=optim_d.weight_decay
        )

        # Callables used in the step: D through DDP in the D part; the bare D (frozen, no gradient to
        # synchronise) in the G part.
        self._g = self.networks["g"]
        self._d = self.networks["d"]
        self._d_bare = disc
        self._vgg = self.perceptual if opts.perceptual.kind == "vgg" else None
        if cfg.train.compile:
            self._g = torch.compile(self._g)
            self._d = torch.compile(self._d)
            self._d_bare = torch.compile(self._d_bare)
            if self._vgg is not None:
                self._vgg = torch.compile(self._vgg)

    # -- one iteration ---------------------------------------------------------------------------------------
    def set_d_trainable(self, flag: bool) -> None:
        """Freeze (False) or unfreeze (True) D's parameters."""
        unwrap(self.networks["d"]).requires_grad_(flag)

    def generator_backward(
        self, lr: torch.Tensor, hr: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]] | None:
        """G part: forward, L_G, backward into G only (D frozen). Returns (detached fake, terms), or None
        (nothing backpropagated) when L_G is non-finite. ``lr`` (N, 3, h, w), ``hr`` (N, 3, sh, sw) in [0, 1]."""
        opts = self.options
        fm = opts.perceptual.kind == "feature_matching"
        need_real = fm or self.adversarial.is_relativistic
        self.set_d_trainable(False)
        try:
            with self.autocast():
                fake = self._g(lr)
                real_out = None
                if need_real:
                    with torch.no_grad():
                        real_out = self._d_bare(hr, return_features=fm)
                fake_out = self._d_bare(fake, return_features=fm)
            real_logits, real_feats = real_out if fm else (real_out, None)
            fake_logits, fake_feats = fake_out if fm else (fake_out, None)
            zero = torch.zeros((), device=self.device)
            g_pixel = opts.pixel_weight * self.pixel_fn(fake.float(), hr.float()) if opts.pixel_weight else zero
            g_gan = opts.gan_weight * self.adversarial.g_loss(real_logits, fake_logits) if opts.gan_weight else zero
            g_percep = zero
            if self._vgg is not None and opts.perceptual.weight:
                with self.autocast():
                    g_percep = opts.perceptual.weight * self._vgg(fake, hr).float()
            elif fm and opts.perceptual.weight:
                g_percep = opts.perceptual.weight * self.perceptual(real_feats, fake_feats).float()
            total = g_pixel + g_percep + g_gan
            if not self.all_finite(total):
                return None
            total.backward()
        finally:
            self.set_d_trainable(True)
        return fake.detach(), {"loss": total, "g_pixel": g_pixel, "g_percep": g_percep, "g_gan": g_gan}

    def discriminator_backward(self, hr: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor] | None:
        """D part on a detached ``fake`` batch: real and fake in separate forwards, L_D backward.
        Returns the terms, or None (nothing backpropagated) when L_D is non-finite."""
        fake = fake.detach()
        with self.autocast():
            real_logits = self._d(hr)
            fake_logits = self._d(fake)
        d_loss = self.adversarial.d_loss(real_logits, fake_logits)
        if self.adversarial.kind == "wgan-gp" and self.options.gp_weight:
            bare = unwrap(self.networks["d"])  # eager and outside DDP: the penalty needs a double backward

            def critic(x: torch.Tensor) -> torch.Tensor:
                with self.autocast():
                    return bare(x)

            d_loss = d_loss + gradient_penalty(critic, hr.float(), fake.float(), self.options.gp_weight)
        if not self.all_finite(d_loss):
            return None
        d_loss.backward()
        return {
            "d_loss": d_loss,
            "d_real": real_logits.detach().float().mean(),
            "d_fake": fake_logits.detach().float().mean(),
        }

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        lr, hr = self.to_device(batch["lr"]), self.to_device(batch["hr"])
        g, d = self.networks["g"], self.networks["d"]
        opt_g, opt_d = self.optimizers["g"], self.optimizers["d"]
        g.train()
        d.train()
        opt_g.zero_grad(set_to_none=True)
        opt_d.zero_grad(set_to_none=True)
        out = self.generator_backward(lr, hr)
        if out is None:
            return _stats({}, skipped=True)
        fake, g_terms = out
        d_terms = self.discriminator_backward(hr, fake)
        if d_terms is None:
            opt_g.zero_grad(set_to_none=True)
            opt_d.zero_grad(set_to_none=True)
            return _stats(g_terms, skipped=True)
        self.clip_gradients(g)
        if self.optim_d.grad_clip:
            torch.nn.utils.clip_grad_norm_(d.parameters(), self.optim_d.grad_clip)
        opt_g.step()
        opt_d.step()
        return _stats({**g_terms, **d_terms}, skipped=False)

    # -- validation grids ------------------------------------------------------------------------------------
    @torch.no_grad()
    def comparison_grid(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        """LR nearest | bicubic | PSNR model | GAN | GT side by side for one image.

        ``lr`` (1, 3, h, w), ``hr`` (1, 3, sh, sw) in [0, 1] -> (3, H, 5 W + 4 gap) float in [0, 1] on the CPU.
        """
        from gensr.imresize import imresize

        s = self.cfg.scale
        lr = lr.to(self.device)
        gan = self.inference_network()
        was_training = gan.training
        gan.eval()
        try:
            panels = [
                F.interpolate(lr.float(), scale_factor=s, mode="nearest"),
                imresize(lr.float(), scale=s),
                self.super_resolve(self.psnr_net, lr),
                self.super_resolve(gan, lr),
                hr,
            ]
        finally:
            gan.train(was_training)
        panels = [p.detach().float().cpu().clamp(0, 1)[0] for p in panels]
        h = min(p.shape[1] for p in panels)
        w = min(p.shape[2] for p in panels)
        gap = torch.ones(3, h, 4)
        parts: list[torch.Tensor] = []
        for i, p in enumerate(panels):
            if i:
                parts.append(gap)
            parts.append(p[:, :h, :w])
        return torch.cat(parts, dim=2)

    def on_validation(self, iteration: int, dataset, out_dir, logger) -> dict[str, float]:
        """Grids for the first ``grid_images`` validation images (files when data.val.save_images)."""
        from gensr.io import write_image

        n = min(self.options.grid_images, len(dataset))
        for i in range(n):
            item = dataset[i]
            grid = self.comparison_grid(item["lr"][None], item["hr"][None])
            if out_dir is not None and self.cfg.data.val.save_images:
                write_image(Path(out_dir) / f"iter_{iteration:07d}" / f"grid_{item['name']}.png", grid)
            logger.images(iteration, f"val_grid/{item['name']}", grid)
        return {}


def _stats(terms: dict[str, torch.Tensor], skipped: bool) -> dict[str, float]:
    """Python floats for the trainer (one device sync); missing terms are NaN (ignored in means)."""
    keys = [k for k in STAT_KEYS if k in terms]
    values = torch.stack([terms[k].detach().float() for k in keys]).tolist() if keys else []
    out = {k: float("nan") for k in STAT_KEYS}
    out.update(dict(zip(keys, values, strict=True)))
    if skipped:
        out["loss"] = float("nan")
    out["skipped"] = 1.0 if skipped else 0.0
    return out
