"""SRFlow training (Lugmayr et al., ECCV 2020): maximum likelihood of the HR given the LR, nothing else.

The loss is the mean negative log-likelihood of the dequantised HR patch in SRFlow's official unit, bits per
*pixel* (``bpp``; see :mod:`gensr.losses.likelihood`); proper bits per dimension (``bpd``) is logged beside it.
The released recipe (see ``configs/srflow_x4.yaml``): Adam (0.9, 0.99), lr 2.5e-4 (4x) / 5e-4 (8x), x0.5 at
50/75/90/95 % of 200k iterations, HR patches 160, batch 12 (4x) / 16 (8x), horizontal flips only, the RRDB
encoder initialised from a PSNR-trained RRDBNet.

``task:`` section: the SR fields (:mod:`gensr.tasks.sr_common`) and:

* ``rrdb_pretrained``: weights for the RRDB encoder -- a gensr RRDBNet file, a shipped name ("default"), an
  official RRDBNet layout, or an SRFlow checkpoint (its encoder is taken). Its nf/nb/gc/scale must match
  ``task.model.config``. Not combinable with ``task.model.pretrained`` (which already holds an encoder).
* ``freeze_rrdb_fraction``: the encoder is frozen for the first ``fraction * train.total_iters`` iterations
  (the paper: 0.5). The official code never freezes (its freeze switch is dead code, issue #37): set 0 to
  reproduce the released training loop. The encoder's parameters are in the optimiser from the start (param
  group "rrdb"); while frozen they get no gradient, so Adam leaves them and their moments untouched.
* ``dequantize``: add U(-1/2, 1/2)/quant noise to the HR (``quant`` from the model config). The released
  training loop never does (a bug; the paper does); default True. The noise comes from a task-owned
  generator saved in the training state, so a resumed run draws exactly the noise of an uninterrupted one.
* ``val_heat``, ``val_samples``, ``val_sample_images``: validation also draws ``val_samples`` samples per image
  at temperature ``val_heat`` (paper default 0.9) from a local generator seeded by the iteration, reports
  their mean ``sample_psnr_y`` / ``sample_lr_psnr`` and writes the samples of the first
  ``val_sample_images`` images as PNGs. The standard validation metrics are those of the tau = 0 mean.

Guards: a step whose loss or gradient norm is not finite, or whose forward/backward raises a linear-algebra
failure (``torch.linalg.LinAlgError``, or a RuntimeError mentioning "singular" or "converge": the slogdet /
inverse failures of the 1x1 convolutions), is skipped -- gradients zeroed, no optimiser step -- and reported
with ``skipped=1`` and ``skip_reason`` (1 non-finite loss, 2 linear-algebra failure, 3 non-finite gradient);
the trainer stops after ``train.max_nonfinite`` in a row. Every other exception propagates. Under DDP a
failure inside ``backward`` on one rank only cannot be recovered (the other ranks wait in the all-reduce).

ActNorm data-dependent initialisation: on the first training batch, one no-grad forward in train mode
initialises every ActNorm not yet initialised (none after a resume or with ``task.model.pretrained``: loading marks
them initialised). Under DDP the model is wrapped only after that forward (DDP then broadcasts rank 0's
statistics), and re-wrapped whenever the encoder is (un)frozen, since DDP fixes its set of trained parameters
at construction. An EMA (``ema.enabled``; off in the SRFlow configs) copies the weights before this
initialisation, so its ActNorm statistics catch up only at the EMA's own rate.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, unwrap, wrap
from gensr.errors import GensrError
from gensr.losses.likelihood import dequantize, likelihood_summary
from gensr.models.srflow import SRFlowNet, load_rrdb_encoder
from gensr.nn.flow import ActNorm
from gensr.tasks.sr_common import SRTask, SRTaskOptions, build_network

SKIP_NONFINITE_LOSS = 1.0
SKIP_LINALG = 2.0
SKIP_NONFINITE_GRAD = 3.0

_LINALG_WORDS = re.compile(r"singular|converge", re.IGNORECASE)


@dataclass
class SRFlowOptions(SRTaskOptions):
    kind: str = "srflow"
    rrdb_pretrained: str | None = None
    freeze_rrdb_fraction: float = 0.5
    dequantize: bool = True
    val_heat: float = 0.9
    val_samples: int = 1
    val_sample_images: int = 3

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.arch != "srflow":
            raise ValueError(f"model.arch: the srflow task trains arch 'srflow', got {self.model.arch!r}")
        if not 0.0 <= float(self.freeze_rrdb_fraction) <= 1.0:
            raise ValueError(f"freeze_rrdb_fraction must be in [0, 1], got {self.freeze_rrdb_fraction}")
        if float(self.val_heat) < 0:
            raise ValueError(f"val_heat must be >= 0, got {self.val_heat}")
        if int(self.val_samples) < 0 or int(self.val_sample_images) < 0:
            raise ValueError("val_samples and val_sample_images must be >= 0")


def is_linalg_failure(exc: BaseException) -> bool:
    """True for the numerical failures a flow step may hit: LinAlgError, or 'singular'/'converge' errors."""
    if isinstance(exc, torch.linalg.LinAlgError):
        return True
    return isinstance(exc, RuntimeError) and bool(_LINALG_WORDS.search(str(exc)))


def load_rrdb_weights(model: SRFlowNet, source: str) -> None:
    """Initialise ``model.RRDB`` from ``source`` (any checkpoint the loader reads: an RRDBNet or an SRFlow)."""
    from gensr.checkpoints.loader import load_model
    from gensr.checkpoints.srflow_official import rrdb_encoder_state

    where = "task.rrdb_pretrained"
    try:
        loaded = load_model(source)
    except GensrError as exc:
        raise GensrError(f"{where}: {exc}") from None
    want = model.config
    if isinstance(loaded, SRFlowNet):
        state = loaded.RRDB.state_dict()
    else:
        state = loaded.state_dict()
    have = getattr(loaded, "config", None)
    got = {k: getattr(have, k, None) for k in ("nf", "nb", "gc", "scale")}
    need = {k: getattr(want, k) for k in ("nf", "nb", "gc", "scale")}
    if got != need or getattr(have, "in_ch", 3) != 3 or getattr(have, "out_ch", 3) != 3:
        text = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
        raise GensrError(
            f"{where}: {source} is a {type(loaded).__name__} with {text(got)}, "
            f"but the SRFlow encoder (task.model.config) needs {text(need)}"
        )
    try:
        load_rrdb_encoder(model, rrdb_encoder_state(state))
    except GensrError as exc:
        raise GensrError(f"{where}: {source}: {exc}") from None


class SRFlowTask(SRTask):
    """Trains :class:`~gensr.models.srflow.SRFlowNet` by maximum likelihood (see the module docstring)."""

    Options = SRFlowOptions

    @classmethod
    def check(cls, options: SRFlowOptions, run: RunConfig) -> None:
        super().check(options, run)
        if options.rrdb_pretrained:
            from gensr.checkpoints.shipped import resolve_model_path

            try:
                resolve_model_path(options.rrdb_pretrained)
            except GensrError as exc:
                raise GensrError(f"task.rrdb_pretrained: {exc}") from None

    def __init__(self, options: SRFlowOptions, run: RunConfig, dist: DistInfo) -> None:
        if run.train.compile:
            raise GensrError("train.compile: not supported by the srflow task (set it to false)")
        if options.rrdb_pretrained and options.model.pretrained:
            raise GensrError(
                "task.rrdb_pretrained and task.model.pretrained are both set: model.pretrained already "
                "holds an encoder; set task.rrdb_pretrained=null to fine-tune a whole SRFlow"
            )
        super().__init__(options, run, dist)
        model = build_network(options.model, options.scale)
        if self.options.rrdb_pretrained:
            load_rrdb_weights(model, self.options.rrdb_pretrained)
        model = self.memory_format(model.to(self.device))
        self.model = model
        self.networks["g"] = model  # DDP-wrapped lazily, after the ActNorm initialisation (see train_step)
        self._wrapped_trainable: bool | None = None
        unused = set(model.unused_parameter_names())
        named = [(n, p) for n, p in model.named_parameters() if n not in unused]
        self.trainable_params = [p for _, p in named]
        groups = [
            {"params": [p for n, p in named if not n.startswith("RRDB.")], "name": "flow"},
            {"params": [p for n, p in named if n.startswith("RRDB.")], "name": "rrdb"},
        ]
        self.build_optimizer("g", groups)
        self.freeze_iters = int(math.floor(self.options.freeze_rrdb_fraction * run.train.total_iters + 0.5))
        self.steps = 0  # training steps taken (skipped ones included), as the trainer's iteration
        # Dequantisation noise comes from the task's own generator (saved with the task state): the global RNG
        # is also drawn from by the trainer (e.g. when a DataLoader iterator starts), which would make a
        # resumed run differ from an uninterrupted one.
        self.noise_rng = torch.Generator(device=self.device).manual_seed(run.seed * 1009 + dist.rank + 17)
        self._actnorms_ready = False
        self.rrdb_trainable = True
        self._set_rrdb_trainable(self.steps >= self.freeze_iters)

    # -- encoder freezing and DDP ---------------------------------------------------------------------------
    def _set_rrdb_trainable(self, trainable: bool) -> None:
        if trainable != self.rrdb_trainable:
            self.model.set_rrdb_trainable(trainable)
            self.rrdb_trainable = trainable

    def _needs_actnorm_init(self) -> bool:
        if not self._actnorms_ready:
            self._actnorms_ready = all(m.is_initialized() for m in self.model.modules() if isinstance(m, ActNorm))
        return not self._actnorms_ready

    @torch.no_grad()
    def initialize_actnorms(self, hr: torch.Tensor, lr: torch.Tensor) -> None:
        """Glow's data-dependent ActNorm init from one batch: a no-grad forward in train mode."""
        was_training = self.model.training
        self.model.train()
        with self.autocast():
            self.model(self._dequantize(hr), lr, add_noise=False)
        self.model.train(was_training)

    def _dequantize(self, hr: torch.Tensor) -> torch.Tensor:
        if not self.options.dequantize:
            return hr
        return dequantize(hr, self.model.config.quant, self.noise_rng)

    def _ensure_wrapped(self) -> None:
        if not self.dist.enabled or self._wrapped_trainable == self.rrdb_trainable:
            return
        self.networks["g"] = wrap(self.model, self.dist)  # DDP broadcasts rank 0's weights and buffers
        self._wrapped_trainable = self.rrdb_trainable

    # -- one step -------------------------------------------------------------------------------------------
    def objective(self, hr: torch.Tensor, lr: torch.Tensor) -> dict[str, torch.Tensor]:
        """Likelihood summaries of a batch (float32, per sample; ``loss`` = mean bpp) under the task's autocast.

        The HR is dequantised here (task generator) and the model is called without noise; ``bpp`` then gets
        the official ``+ H*W*ln(quant)`` constant back, so the numbers are those of a dequantised likelihood.
        """
        with self.autocast():
            out = self.networks["g"](self._dequantize(hr), lr, add_noise=False)
        hw = hr.shape[-2] * hr.shape[-1]
        return likelihood_summary(out["logp"], hw, self.model.config.quant, self.options.dequantize)

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        lr, hr = self.next_pair(batches)
        self._set_rrdb_trainable(self.steps >= self.freeze_iters)
        if self._needs_actnorm_init():
            self.initialize_actnorms(hr, lr)
        self._ensure_wrapped()
        self.steps += 1
        net, opt = self.networks["g"], self.optimizers["g"]
        net.train()
        opt.zero_grad(set_to_none=True)
        frozen = 0.0 if self.rrdb_trainable else 1.0
        try:
            out = self.objective(hr, lr)
            loss = out["loss"]
        except Exception as exc:
            if not is_linalg_failure(exc):
                raise
            out, loss = None, torch.tensor(float("nan"), device=self.device)
        if out is None or not self.all_finite(loss):
            return self._skipped(SKIP_NONFINITE_LOSS if out is not None else SKIP_LINALG, frozen)
        try:
            loss.backward()
        except Exception as exc:
            if not is_linalg_failure(exc):
                raise
            opt.zero_grad(set_to_none=True)
            return self._skipped(SKIP_LINALG, frozen)
        max_norm = self.run.optim.for_network("g").grad_clip or float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable_params, max_norm)
        if not bool(torch.isfinite(grad_norm)):
            opt.zero_grad(set_to_none=True)
            return self._skipped(SKIP_NONFINITE_GRAD, frozen)
        opt.step()
        return {
            "loss": loss.item(),
            "bpp": loss.item(),
            "bpd": out["bpd"].detach().mean().item(),
            "grad_norm": grad_norm.item(),
            "rrdb_frozen": frozen,
            "skipped": 0.0,
            "skip_reason": 0.0,
        }

    def _skipped(self, reason: float, frozen: float) -> dict[str, float]:
        nan = float("nan")
        return {
            "loss": nan,
            "bpp": nan,
            "bpd": nan,
            "grad_norm": nan,
            "rrdb_frozen": frozen,
            "skipped": 1.0,
            "skip_reason": reason,
        }

    # -- evaluation -----------------------------------------------------------------------------------------
    def _sampler(self, net: nn.Module):
        """The one SRFlow sampler (padding, cropping, output checks) on the network being evaluated. Broken
        outputs are reported, not re-drawn: an evaluation measures the model as it is."""
        from gensr.inference.flow_sampling import FlowSampler

        return FlowSampler(unwrap(net), device=self.device, redraws=0, min_region_psnr=0.0, channels_last=False)

    @torch.no_grad()
    def super_resolve(self, net: nn.Module, lr: torch.Tensor) -> torch.Tensor:
        """The deterministic tau = 0 mean (what the standard PSNR/SSIM/LR-PSNR are computed on)."""
        return self._sampler(net).sample(lr, temperature=0.0, num_samples=1, seed=0)

    @torch.no_grad()
    def extra_evaluation(self, iteration: int, logger: Any, network: nn.Module, out_dir: Path) -> dict[str, float]:
        """Samples at ``val_heat`` (local generator seeded by ``iteration``): mean Y-PSNR and LR-PSNR, PNGs."""
        from gensr.io import tensor_to_pixels, write_image
        from gensr.metrics.fidelity import lr_psnr, psnr

        o = self.options
        if o.val_samples == 0:
            return {}
        sampler = self._sampler(network)
        rows = []
        for i in range(len(self.val_set)):
            item = self.val_set[i]
            try:  # seeded by the iteration (and the image): no global RNG, the same draws every evaluation
                srs = sampler.sample(item["lr"][None], o.val_heat, o.val_samples, seed=int(iteration) * 1009 + i)
            except GensrError as exc:
                logger.message(f"iteration {iteration}: evaluation sample of {item['name']} is broken ({exc})")
                return {"sample_broken": 1.0}
            hr8, lr8 = tensor_to_pixels(item["hr"]), tensor_to_pixels(item["lr"])
            for k in range(srs.shape[0]):
                sr8 = tensor_to_pixels(srs[k])
                rows.append((psnr(sr8, hr8, crop_border=self.scale, y_channel=True), lr_psnr(sr8, lr8, self.scale)))
                if o.data.val.save_images and i < o.val_sample_images:
                    name = f"{item['name']}_t{o.val_heat:g}_{k}.png"
                    write_image(Path(out_dir) / "samples" / name, sr8, overwrite=True)
        arr = np.array(rows, dtype=np.float64)
        return {"sample_psnr_y": float(arr[:, 0].mean()), "sample_lr_psnr": float(arr[:, 1].mean())}

    # -- checkpoint state -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["steps"] = self.steps
        state["noise_rng"] = self.noise_rng.get_state()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.steps = int(state.get("steps", 0))
        if "noise_rng" in state:
            self.noise_rng.set_state(state["noise_rng"])
