"""BigGAN training (Brock et al. 2019): class-conditional G and projection D, both spectrally normalised.

The ``task:`` section (``kind: biggan``)::

    task:
      kind: biggan
      generator: {resolution: 128, ch: 96, dim_z: 120, shared: true, shared_dim: 128, hier: true, attn: [64],
                  init: ortho, sn_eps: 1.0e-6, bn_eps: 1.0e-5, n_classes: null}   # null: from the data
      discriminator: {ch: null, attn: [64], init: null, sn_eps: null}              # null: the generator's value
      data: {train: PATH, batch_size: 256, hflip: true}    # class folders, x/y .npz or JPEG-bytes .npz
      loss: hinge           # any name of gensr.losses.adversarial (hinge, vanilla, rasgan, rahinge, wgan-gp, ...)
      d_steps: 2            # D updates per G update (paper 2; BigGAN-PyTorch's CIFAR script 4)
      accumulate: 8         # sub-batches per update, each with fresh z and classes (256 x 8 = 2048)
      g_batch_size: null    # G's sub-batch (null: data.batch_size)
      ortho_beta: 1.0e-4    # orthogonal regularisation of G (0: off); see gensr.losses.regularizers
      sv_log_every: 1000    # every N iterations log every SN layer's top singular value (0: never)
      eval: {samples: 1000, truncation: null, classifier: cifar_classifier, ref: null, standing_stats: 16}

One iteration (``train_step``), following BigGAN-PyTorch's ``train_fns.GAN_training_function``:

1. ``d_steps`` D updates. Each: ``accumulate`` sub-batches, each with the next real batch, fresh
   z ~ N(0, I) and fresh uniform classes, ``G(z, y)`` under ``no_grad`` with G in train mode (its BN running
   statistics move, as there), and D's backward through :class:`gensr.tasks.gan.GANStep` (separate real and
   fake forwards, gradient penalty for wgan-gp) with ``loss_scale = 1 / accumulate``; then Adam.
2. One G update, D frozen: ``accumulate`` sub-batches of ``g_batch_size`` fresh z and classes (plus, for the
   relativistic losses, the real sub-batch of the last D update at the same position, whose D output is a
   constant: as ESRGAN/BasicSR and the relativistic-GAN paper's code pair G's step with the iteration's real
   batch), loss / accumulate; the orthogonal regulariser is added once, with the last sub-batch; then Adam.

Real images are mapped from [0, 1] to G's [-1, 1]. ``batches_per_step`` (data batches per iteration) is
``d_steps * accumulate`` for every loss, so a resumed run sees the same batches and runs with different losses
read the same data stream.
z and classes come from a task-owned CPU generator (seed + rank) saved with the training state.

Non-finite guard: before the first update of an iteration the task keeps a copy of what the iteration can
change before its last update (every buffer of G and D: BN statistics, spectral-norm vectors; D's weights and
Adam state); a non-finite loss anywhere restores it and the iteration returns ``skipped=1``, so a skipped
iteration changes nothing. This costs one copy of D and its Adam state per iteration (3x D's parameters:
about 1 GB at 128 px ch 96; a device-to-device copy, negligible next to the iteration's compute).

Logged per iteration: ``loss`` (G's objective: adversarial + ortho), ``g_loss``, ``ortho``, ``d_loss``,
``d_real``/``d_fake`` (mean D logits), ``g_sv_max``/``g_sv_mean``/``d_sv_max``/``d_sv_mean`` (top singular values
of the SN layers: G's grow and explode at collapse, the paper's early-stopping signal), and every
``sv_log_every`` iterations ``sv_g/<layer>`` and ``sv_d/<layer>`` for every layer (written at the next
``train.log_every`` boundary, so make ``sv_log_every`` a multiple of it).

Evaluation (``evaluate``; the trainer passes the EMA generator when ``ema.enabled``): with a CPU generator seeded
by the iteration (never the global RNG), standing statistics on a copy (``eval.standing_stats`` forwards; 0 =
use the network's own BN statistics), then ``eval.samples`` images (rounded down to a multiple of the class
count, at least one per class, classes balanced) at ``eval.truncation``. Scalars: ``classifier_acc`` (the
classifier's accuracy on the samples for their conditioned class), ``classifier_acc_min_class`` (the worst
class), ``classifier_fd`` (Frechet distance of the classifier's penultimate features vs the real images of
``eval.ref``, whose statistics are cached under ``<run>/eval/``), plus the singular-value summaries. These are
NOT FID/IS (see :mod:`gensr.metrics.classifier_metrics`). A class grid (one row per class) is written to
``<run>/eval/iter_NNNNNNN/class_grid.png``. Without a usable classifier (file missing, another image size or
class count) one note is logged and only the singular values are returned. ``train.best_metric:
classifier_acc`` with ``keep_best`` keeps the best exports.

Export: the (EMA) generator as a gensr file (arch ``biggan_generator``, its config, the class names in the
metadata); ``gensr generate`` reads it.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gensr.config import check_at_least, check_finite
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, unwrap
from gensr.errors import GensrError
from gensr.losses.adversarial import AdversarialLoss
from gensr.tasks.base import Task
from gensr.tasks.gan import GANStep, float_stats, loss_kind_option

STAT_KEYS: tuple[str, ...] = (
    "loss", "g_loss", "ortho", "d_loss", "d_real", "d_fake", "g_sv_max", "g_sv_mean", "d_sv_max", "d_sv_mean",
)  # fmt: skip
MAX_EVAL_SAMPLES = 50_000


@dataclass
class GeneratorOptions:
    """G's hyper-parameters (:class:`gensr.models.biggan.BigGANConfig` fields; ``attn`` = its ``g_attn``).
    ``n_classes`` null: the number of classes of the training data."""

    resolution: int = 128
    ch: int = 96
    dim_z: int = 120
    shared: bool = True
    shared_dim: int = 128
    hier: bool = True
    attn: list[int] = field(default_factory=lambda: [64])
    init: str = "ortho"
    sn_eps: float = 1e-6
    bn_eps: float = 1e-5
    sn_iters: int = 1
    n_classes: int | None = None

    def config(self, n_classes: int) -> Any:
        """The :class:`BigGANConfig` of G for ``n_classes`` classes (ValueError for a bad combination)."""
        from gensr.models.biggan import BigGANConfig

        return BigGANConfig(
            resolution=self.resolution, ch=self.ch, dim_z=self.dim_z, shared=self.shared, shared_dim=self.shared_dim,
            hier=self.hier, n_classes=n_classes, g_attn=tuple(self.attn), d_attn=(), init=self.init,
            sn_eps=self.sn_eps, bn_eps=self.bn_eps, sn_iters=self.sn_iters,
        )  # fmt: skip

    def __post_init__(self) -> None:
        if self.n_classes is not None:
            check_at_least("n_classes", self.n_classes)
        self.config(self.n_classes or 1)  # validates every field now, before any data is read


@dataclass
class DiscriminatorOptions:
    """D's hyper-parameters: ``ch`` (BigGANConfig ``d_ch``), ``attn`` (``d_attn``: sides after whose blocks
    attention is added), ``init``, ``sn_eps``, ``sn_iters``; null takes the generator's value."""

    ch: int | None = None
    attn: list[int] = field(default_factory=lambda: [64])
    init: str | None = None
    sn_eps: float | None = None
    sn_iters: int | None = None

    def config(self, g: GeneratorOptions, n_classes: int) -> Any:
        from gensr.models.biggan import BigGANConfig

        return BigGANConfig(
            resolution=g.resolution, ch=self.ch or g.ch, n_classes=n_classes, g_attn=(), d_attn=tuple(self.attn),
            init=self.init or g.init, sn_eps=self.sn_eps or g.sn_eps, sn_iters=self.sn_iters or g.sn_iters,
        )  # fmt: skip


@dataclass
class DataOptions:
    """``train``: a folder of class subfolders, an x/y ``.npz`` or a JPEG-bytes ``.npz``
    (:func:`gensr.data.class_datasets.load_class_images`); its images must be resolution x resolution.
    ``batch_size``: real images per D sub-batch (per process). ``hflip``: random horizontal flips."""

    train: str = ""
    batch_size: int = 64
    hflip: bool = True

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("train: the training data (class folders or .npz) is required")
        check_at_least("batch_size", self.batch_size)


@dataclass
class EvalOptions:
    """Evaluation (see the module docstring). ``truncation`` null: untruncated z; ``truncation_mode``: resample
    (the paper's) or scale. ``classifier``: shipped name or file (null: no classifier measures). ``ref``: real
    images for the Frechet distance (null: ``data.train``), at most ``ref_max`` of them (a fixed random subset).
    ``standing_stats``: forwards (of ``batch_size``) for standing BN statistics, 0 = off. ``grid_classes`` rows
    of ``grid_per_class`` samples in the class grid."""

    samples: int = 1000
    truncation: float | None = None
    truncation_mode: str = "resample"
    classifier: str | None = "cifar_classifier"
    ref: str | None = None
    ref_max: int = 10_000
    standing_stats: int = 16
    batch_size: int = 100
    grid_per_class: int = 10
    grid_classes: int = 20

    def __post_init__(self) -> None:
        check_at_least("samples", self.samples)
        if self.samples > MAX_EVAL_SAMPLES:
            raise ValueError(f"samples must be <= {MAX_EVAL_SAMPLES}, got {self.samples}")
        from gensr.inference.generation import check_truncation

        try:
            check_truncation(self.truncation, self.truncation_mode)
        except GensrError as exc:
            raise ValueError(str(exc)) from None
        check_at_least("ref_max", self.ref_max, 2)
        check_at_least("standing_stats", self.standing_stats, 0)
        for name in ("batch_size", "grid_per_class", "grid_classes"):
            check_at_least(name, getattr(self, name))


@dataclass
class BigGANOptions:
    """The ``task:`` section of the biggan task (defaults: the paper's 128 px recipe, except the batch)."""

    kind: str = "biggan"
    generator: GeneratorOptions = field(default_factory=GeneratorOptions)
    discriminator: DiscriminatorOptions = field(default_factory=DiscriminatorOptions)
    data: DataOptions = field(default_factory=DataOptions)
    loss: str = "hinge"
    d_steps: int = 2
    accumulate: int = 1
    g_batch_size: int | None = None
    ortho_beta: float = 1e-4
    gp_weight: float = 10.0
    sv_log_every: int = 1000
    eval: EvalOptions = field(default_factory=EvalOptions)

    def __post_init__(self) -> None:
        self.loss = loss_kind_option("loss", self.loss)
        check_at_least("d_steps", self.d_steps)
        check_at_least("accumulate", self.accumulate)
        check_at_least("sv_log_every", self.sv_log_every, 0)
        if self.g_batch_size is not None:
            check_at_least("g_batch_size", self.g_batch_size)
        for name in ("ortho_beta", "gp_weight"):
            check_finite(name, getattr(self, name), 0.0)
        if self.loss == "rsgan" and self.g_batch_size not in (None, self.data.batch_size):
            raise ValueError("loss rsgan pairs real and fake samples: g_batch_size must equal data.batch_size")
        self.discriminator.config(self.generator, 1)  # D's fields checked now

    @property
    def relativistic(self) -> bool:
        return self.loss in ("rsgan", "rasgan", "ralsgan", "rahinge")


def _check_source(path: str, where: str) -> None:
    if not Path(path).expanduser().exists():
        raise GensrError(f"{where}: {path}: no such file or folder")


class BigGANTask(Task):
    """BigGAN G and D trained from scratch with d_steps D updates per G update (see the module docstring)."""

    Options = BigGANOptions

    @classmethod
    def check(cls, options: BigGANOptions, run: RunConfig) -> None:
        from gensr.checkpoints.shipped import resolve_model_path
        from gensr.engine.logging import say

        _check_source(options.data.train, "task.data.train")
        if options.eval.ref:
            _check_source(options.eval.ref, "task.eval.ref")
        if options.eval.classifier and run.train.eval_every:
            try:
                resolve_model_path(options.eval.classifier)
            except GensrError as exc:
                say(f"gensr: note: task.eval.classifier: {exc}; evaluation will report singular values only")

    def __init__(self, options: BigGANOptions, run: RunConfig, dist: DistInfo) -> None:
        super().__init__(options, run, dist)
        from gensr.data.class_datasets import load_class_images
        from gensr.losses.regularizers import ortho_parameters
        from gensr.models.biggan import BigGANDiscriminator, BigGANGenerator

        o = options
        self.data = load_class_images(o.data.train, where="task.data.train")
        g_opts = o.generator
        if self.data.image_size != (g_opts.resolution, g_opts.resolution):
            h, w = self.data.image_size
            raise GensrError(
                f"task.data.train: {o.data.train}: images are {w}x{h}, but task.generator.resolution is "
                f"{g_opts.resolution}"
            )
        n_classes = g_opts.n_classes or self.data.num_classes
        if n_classes < self.data.num_classes:
            raise GensrError(
                f"task.generator.n_classes {n_classes} is smaller than the {self.data.num_classes} classes of "
                f"{o.data.train}"
            )
        try:
            g = BigGANGenerator(g_opts.config(n_classes))
            d = BigGANDiscriminator(o.discriminator.config(g_opts, n_classes))
        except ValueError as exc:
            raise GensrError(f"task.generator/discriminator: {exc}") from None
        g = self.add_network("g", g)
        d = self.add_network("d", d)
        self.gan = GANStep(self, AdversarialLoss(o.loss), o.gp_weight, compile_d=run.train.compile)
        self.ortho_params = [p for _, p in ortho_parameters(g)] if o.ortho_beta else []
        self.g_batch_size = o.g_batch_size or o.data.batch_size
        self.batches_per_step = o.d_steps * o.accumulate
        self._last_real: list[tuple[torch.Tensor, torch.Tensor]] = []  # the last D update's real sub-batches
        self.rng = torch.Generator().manual_seed(run.seed * 1009 + dist.rank)
        self.iteration = 0
        self._pulled = 0  # real batches taken in the current iteration
        self._classifier: nn.Module | None = None
        self._classifier_note_logged = False
        self._ref_stats: Any = None

    # -- data -------------------------------------------------------------------------------------------------
    def train_data(self, seed: int, start_iteration: int, rank: int, world_size: int) -> Iterator[dict[str, Any]]:
        from gensr.data.class_datasets import class_batches

        d = self.options.data
        start = start_iteration * self.batches_per_step
        return class_batches(self.data, d.batch_size, seed, start, rank, world_size, hflip=d.hflip)

    def _real(self, batches: Iterator[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """The next real batch on the device: images (B, 3, R, R) in [-1, 1], labels (B,)."""
        batch = next(batches)
        self._pulled += 1
        return self.to_device(batch["x"]) * 2.0 - 1.0, batch["y"].to(self.device)

    def _latents(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Fresh z ~ N(0, I) (n, dim_z) and uniform classes (n,) from the task's own generator."""
        g = unwrap(self.networks["g"])
        z = torch.randn(n, g.dim_z, generator=self.rng)
        y = torch.randint(0, g.n_classes, (n,), generator=self.rng)
        return z.to(self.device), y.to(self.device)

    # -- one iteration ---------------------------------------------------------------------------------------
    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        g, d = self.networks["g"], self.networks["d"]
        g.train()
        d.train()
        self.iteration += 1
        snapshot = _Snapshot(unwrap(g), unwrap(d), self.optimizers["d"])
        terms: dict[str, list[torch.Tensor]] = {}
        self._pulled = 0
        ok = all(self._d_update(batches, terms) for _ in range(self.options.d_steps)) and self._g_update(batches, terms)
        if not ok:
            snapshot.restore()
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            for _ in range(self.batches_per_step - self._pulled):  # keep the data position a function of the iteration
                next(batches)
        means = {k: torch.stack(v).mean() for k, v in terms.items() if v}
        means.update(self._sv_summary())
        stats = float_stats(means, STAT_KEYS, skipped=not ok)
        every = self.options.sv_log_every
        if every and self.iteration % every == 0:
            stats.update({f"sv_g/{k}": v for k, v in _singular_values(unwrap(g)).items()})
            stats.update({f"sv_d/{k}": v for k, v in _singular_values(unwrap(d)).items()})
        return stats

    def _d_update(self, batches: Iterator[Any], terms: dict[str, list[torch.Tensor]]) -> bool:
        """One D update over ``accumulate`` sub-batches; False (nothing stepped) on a non-finite loss."""
        o, d, g_bare = self.options, self.networks["d"], unwrap(self.networks["g"])
        opt = self.optimizers["d"]
        opt.zero_grad(set_to_none=True)
        self._last_real = []
        for j in range(o.accumulate):
            real, y_real = self._real(batches)
            self._last_real.append((real, y_real))
            z, y_fake = self._latents(real.shape[0])
            with torch.no_grad(), self.autocast():
                fake = g_bare(z, y_fake)
            with _no_sync(d, j < o.accumulate - 1):
                out = self.gan.discriminator_backward(
                    real, fake, real_kw={"y": y_real}, fake_kw={"y": y_fake}, loss_scale=1.0 / o.accumulate
                )
            if out is None:
                return False
            for k, v in out.items():
                terms.setdefault(k, []).append(v)
        self.clip_gradients("d", d)
        opt.step()
        return True

    def _g_update(self, batches: Iterator[Any], terms: dict[str, list[torch.Tensor]]) -> bool:
        """One G update (D frozen) over ``accumulate`` sub-batches + the orthogonal regulariser."""
        o, g = self.options, self.networks["g"]
        opt = self.optimizers["g"]
        opt.zero_grad(set_to_none=True)
        with self.gan.frozen_discriminator():
            for j in range(o.accumulate):
                z, y_fake = self._latents(self.g_batch_size)
                real, y_real = self._last_real[j] if o.relativistic else (None, None)
                with _no_sync(g, j < o.accumulate - 1):
                    with self.autocast():
                        fake = g(z, y_fake)
                        real_logits, fake_logits = self.gan.generator_outputs(
                            fake, real, fake_kw={"y": y_fake}, real_kw={"y": y_real}
                        )
                    g_loss = self.gan.generator_loss(real_logits, fake_logits)
                    total = g_loss / o.accumulate
                    if j == o.accumulate - 1:
                        ortho = self._ortho()
                        total = total + ortho
                    if not self.all_finite(total):
                        return False
                    total.backward()
                terms.setdefault("g_loss", []).append(g_loss.detach())
        terms["ortho"] = [ortho.detach()]
        terms["loss"] = [torch.stack(terms["g_loss"]).mean() + ortho.detach()]
        self.clip_gradients("g", g)
        opt.step()
        return True

    def _ortho(self) -> torch.Tensor:
        from gensr.losses.regularizers import orthogonal_regularization

        if not self.ortho_params:
            return torch.zeros((), device=self.device)
        return orthogonal_regularization(self.ortho_params, self.options.ortho_beta)

    def _sv_summary(self) -> dict[str, torch.Tensor]:
        out = {}
        for name in ("g", "d"):
            sv = _sv_tensor(unwrap(self.networks[name]))
            if sv.numel():
                out[f"{name}_sv_max"], out[f"{name}_sv_mean"] = sv.max(), sv.mean()
        return out

    # -- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, iteration: int, logger: Any, network: nn.Module) -> dict[str, float]:
        from gensr.inference.generation import class_grid, render, sample_z, standing_stats_copy

        e = self.options.eval
        scalars = {k: float(v) for k, v in self._sv_summary().items()}
        gen = torch.Generator().manual_seed(iteration)  # local: the global RNG of a resumed run stays exact
        net = network
        if e.standing_stats:
            net = standing_stats_copy(network, e.standing_stats, e.truncation, e.truncation_mode, e.batch_size, gen)
        n_classes = net.n_classes
        per_class = max(1, e.samples // n_classes)
        labels = torch.arange(n_classes).repeat_interleave(per_class)
        z = sample_z(len(labels), net.dim_z, e.truncation, e.truncation_mode, gen)
        images = render(net, z, labels, e.truncation, e.batch_size)
        labels_np = labels.numpy()
        grid = class_grid(images, labels_np, range(min(n_classes, e.grid_classes)), e.grid_per_class)
        self._write_grid(iteration, logger, grid)
        classifier = self._load_classifier(logger, net)
        if classifier is not None:
            try:
                scalars.update(self._classifier_scores(classifier, images, labels_np, n_classes))
            except GensrError as exc:  # e.g. unreadable reference data: keep training, say so once
                self._note(logger, f"classifier measures failed ({exc})")
        return scalars

    def _write_grid(self, iteration: int, logger: Any, grid: np.ndarray) -> None:
        from gensr.io import write_image

        write_image(self.run.run_dir / "eval" / f"iter_{iteration:07d}" / "class_grid.png", grid, overwrite=True)
        logger.images(iteration, "eval/class_grid", torch.from_numpy(grid).permute(2, 0, 1).float() / 255.0)

    def _note(self, logger: Any, text: str) -> None:
        if not self._classifier_note_logged:
            logger.message(f"note: {text}; evaluation reports singular values only")
            self._classifier_note_logged = True

    def _load_classifier(self, logger: Any, network: nn.Module) -> nn.Module | None:
        """The evaluation classifier (loaded once), or None with one logged note when it cannot be used."""
        name = self.options.eval.classifier
        if self._classifier is not None or not name:
            return self._classifier
        from gensr.checkpoints.loader import load_model

        try:
            with torch.random.fork_rng(devices=[]):  # building the network draws its (discarded) initial weights
                clf = load_model(name, device=self.device)
        except GensrError as exc:
            self._note(logger, f"task.eval.classifier: {exc}")
            return None
        config = getattr(clf, "config", None)
        size = getattr(config, "input_size", None)
        problem = None
        if getattr(clf, "kind", None) != "classifier" or not hasattr(clf, "features"):
            problem = f"is a {type(clf).__name__}, not a classifier"
        elif size != network.resolution:
            problem = f"takes {size} px images, the generator makes {network.resolution} px"
        elif getattr(clf, "num_classes", None) != network.n_classes:
            problem = f"has {getattr(clf, 'num_classes', '?')} classes, the generator {network.n_classes}"
        if problem:
            self._note(logger, f"task.eval.classifier {name}: {problem}")
            return None
        self._classifier = clf.eval().requires_grad_(False)
        return self._classifier

    def _classifier_scores(
        self, clf: nn.Module, images: np.ndarray, labels: np.ndarray, n_classes: int
    ) -> dict[str, float]:
        from gensr.metrics.classifier_metrics import (
            classifier_feature_stats,
            classifier_predictions,
            classifier_reference_stats,
        )
        from gensr.metrics.frechet import stats_frechet_distance

        bs = self.options.eval.batch_size
        pred = classifier_predictions(clf, images, batch_size=bs)
        hit = pred == labels
        per_class = [float(hit[labels == c].mean()) for c in range(n_classes) if (labels == c).any()]
        if self._ref_stats is None:
            ref_images, cache = self._reference_images(clf)
            self._ref_stats = classifier_reference_stats(clf, ref_images, cache, batch_size=bs)
        fake_stats = classifier_feature_stats(clf, images, batch_size=bs)
        return {
            "classifier_acc": float(hit.mean()),
            "classifier_acc_min_class": min(per_class),
            "classifier_fd": stats_frechet_distance(self._ref_stats, fake_stats),
        }

    def _reference_images(self, clf: nn.Module) -> tuple[np.ndarray, Path]:
        """(uint8 NHWC real images, cache path of their statistics): a fixed random subset of ``eval.ref``."""
        from gensr.data.class_datasets import load_class_images
        from gensr.metrics.classifier_metrics import classifier_identity

        e = self.options.eval
        source = e.ref or self.options.data.train
        data = self.data if not e.ref else load_class_images(e.ref, where="task.eval.ref")
        x = data.x
        if len(x) > e.ref_max:
            x = x[np.sort(np.random.default_rng(0).permutation(len(x))[: e.ref_max])]
        key = hashlib.sha256(f"{Path(source).expanduser().resolve()}|{e.ref_max}".encode()).hexdigest()[:10]
        digest = classifier_identity(clf)["weights"]
        return x, self.run.run_dir / "eval" / f"classifier_ref_{digest}_{key}.npz"

    # -- export and state -------------------------------------------------------------------------------------
    def export(self, network: nn.Module, path: Path, meta: dict[str, Any]) -> Path:
        from gensr.checkpoints.gensr_format import save_checkpoint
        from gensr.models.registry import arch_of, model_config_dict

        meta = {**meta, "class_names": list(self.data.class_names)}
        return save_checkpoint(
            path, network.state_dict(), arch_of(network), model_config_dict(network), meta=meta, overwrite=True
        )

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state["latent_rng"] = self.rng.get_state()
        state["iteration"] = self.iteration
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.rng.set_state(state["latent_rng"])
        self.iteration = int(state["iteration"])


# ----------------------------------------------------------------------------------------------- helpers


def _no_sync(module: nn.Module, skip: bool) -> contextlib.AbstractContextManager:
    """DDP's ``no_sync`` for accumulation sub-batches before the last; a no-op otherwise."""
    if skip and isinstance(module, nn.parallel.DistributedDataParallel):
        return module.no_sync()
    return contextlib.nullcontext()


def _sv_tensor(model: nn.Module) -> torch.Tensor:
    """Every SN layer's last top singular value, stacked (one device sync when read)."""
    from gensr.nn.norm import spectral_norm_layers

    values = [m.sv0.reshape(()) for _, m in spectral_norm_layers(model)]
    return torch.stack(values).float() if values else torch.zeros(0)


def _singular_values(model: nn.Module) -> dict[str, float]:
    from gensr.nn.norm import spectral_norm_layers

    names = [n for n, _ in spectral_norm_layers(model)]
    return dict(zip(names, _sv_tensor(model).tolist(), strict=True))


class _Snapshot:
    """What one iteration may change before its last update (the G step), to restore after a non-finite loss:
    every buffer of G and D, D's weights and D's optimiser state."""

    def __init__(self, g: nn.Module, d: nn.Module, opt_d: torch.optim.Optimizer) -> None:
        self.tensors = [(t, t.detach().clone()) for t in (*g.buffers(), *d.buffers(), *d.parameters())]
        self.opt_d, self.opt_state = opt_d, copy.deepcopy(opt_d.state_dict())

    @torch.no_grad()
    def restore(self) -> None:
        for t, saved in self.tensors:
            t.copy_(saved)
        self.opt_d.load_state_dict(self.opt_state)
