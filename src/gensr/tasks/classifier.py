"""An image classifier trained with cross-entropy: the CIFAR ResNet behind the offline sample-quality measures
(:mod:`gensr.metrics.classifier_metrics`), or any registered network of kind ``classifier``.

The ``task:`` section::

    task:
      kind: classifier
      model: {arch: cifar_classifier, config: {}}     # num_classes and input_size default to the data's
      data:
        train: path/to/train.npz        # a folder of class subfolders, an x/y .npz or a JPEG-bytes .npz
        eval: path/to/test.npz          # top-1 accuracy on it at each evaluation; null: no evaluation
        batch_size: 128
        augment: crop+flip              # random crops of the 4-px zero-padded image + flips | flip | none
      optimizer: sgd                    # sgd (momentum, Nesterov) | adam (the run's optim section)
      label_smoothing: 0.0

Learning rate, weight decay and gradient clipping come from the run config's ``optim`` section, the schedule
from ``schedule``. Data order and augmentation are a pure function of (seed, iteration, rank)
(:func:`gensr.data.class_datasets.class_batches`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, unwrap
from gensr.errors import GensrError
from gensr.models.registry import arch_of, build_model, model_config_dict
from gensr.tasks.base import Task

AUGMENTS = ("crop+flip", "flip", "none")
OPTIMIZERS = ("sgd", "adam")
NETWORK = "classifier"  # the name of the network and its optimiser (optim.networks.classifier overrides)


@dataclass
class ClassifierModel:
    """The network: a registered architecture of kind ``classifier`` and its config."""

    arch: str = "cifar_classifier"
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class ClassifierData:
    """Training and evaluation sources (see :func:`gensr.data.class_datasets.load_class_images`)."""

    train: str = ""
    eval: str | None = None
    batch_size: int = 128
    eval_batch_size: int = 500
    augment: str = "crop+flip"
    crop_padding: int = 4

    def __post_init__(self) -> None:
        if not self.train:
            raise ValueError("train: a training source (class folders or .npz) is required")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_size} and {self.eval_batch_size}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.crop_padding < 1:
            raise ValueError(f"crop_padding must be >= 1, got {self.crop_padding}")


@dataclass
class ClassifierOptions:
    kind: str = "classifier"
    model: ClassifierModel = field(default_factory=ClassifierModel)
    data: ClassifierData = field(default_factory=ClassifierData)
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    label_smoothing: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be sgd or adam, got {self.optimizer!r}")
        if not (math.isfinite(self.momentum) and 0.0 <= self.momentum < 1.0):
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.nesterov and self.momentum == 0.0:
            raise ValueError("nesterov needs momentum > 0")
        if not (math.isfinite(self.label_smoothing) and 0.0 <= self.label_smoothing < 1.0):
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")


class ClassifierTask(Task):
    """Cross-entropy training of ``networks["classifier"]`` on labelled images; evaluation is top-1 accuracy."""

    Options = ClassifierOptions

    @classmethod
    def check(cls, options: ClassifierOptions, run: RunConfig) -> None:
        d = options.data
        for key, source in (("train", d.train), ("eval", d.eval)):
            if source is not None and not Path(source).expanduser().exists():
                raise GensrError(f"{source}: data not found (task.data.{key})")

    def __init__(self, options: ClassifierOptions, run: RunConfig, dist: DistInfo) -> None:
        super().__init__(options, run, dist)
        from gensr.data.class_datasets import load_class_images

        d = options.data
        self.train_set = load_class_images(d.train, where="task.data.train")
        self.eval_set = load_class_images(d.eval, where="task.data.eval") if d.eval is not None else None
        if self.eval_set is not None and (
            self.eval_set.image_size != self.train_set.image_size
            or self.eval_set.num_classes > self.train_set.num_classes
        ):
            raise GensrError(
                f"task.data.eval: {d.eval} has {self.eval_set.num_classes} classes of {self.eval_set.image_size} "
                f"images, the training data {self.train_set.num_classes} of {self.train_set.image_size}"
            )
        net = self.add_network(NETWORK, build_classifier(options.model, self.train_set), optimizer=False)
        self._build_optimizer(net)

    def _build_optimizer(self, net: nn.Module) -> None:
        if self.options.optimizer == "adam":
            self.build_optimizer(NETWORK, net.parameters())
            return
        o = self.run.optim.for_network(NETWORK)
        self.optimizers[NETWORK] = torch.optim.SGD(
            net.parameters(), lr=o.lr, momentum=self.options.momentum, nesterov=self.options.nesterov,
            weight_decay=o.weight_decay,
        )  # fmt: skip

    def inference_network(self) -> nn.Module:
        return unwrap(self.networks[NETWORK])

    # -- training ---------------------------------------------------------------------------------------------
    def train_data(self, seed: int, start_iteration: int, rank: int, world_size: int) -> Iterator[dict[str, Any]]:
        from gensr.data.class_datasets import class_batches

        d = self.options.data
        pad = d.crop_padding if d.augment == "crop+flip" else 0
        return class_batches(
            self.train_set, d.batch_size, seed, start_batch=start_iteration * self.batches_per_step, rank=rank,
            world_size=world_size, hflip=d.augment != "none", crop_padding=pad,
        )  # fmt: skip

    def train_step(self, batches: Iterator[dict[str, Any]]) -> dict[str, float]:
        batch = next(batches)
        x, y = self.to_device(batch["x"]), batch["y"].to(self.device)
        net, opt = self.networks[NETWORK], self.optimizers[NETWORK]
        net.train()
        with self.autocast():
            logits = net(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=self.options.label_smoothing)
        opt.zero_grad(set_to_none=True)
        if not self.all_finite(loss):
            return {"loss": float("nan"), "accuracy": float("nan"), "skipped": 1.0}
        loss.backward()
        self.clip_gradients(NETWORK, net)
        opt.step()
        accuracy = (logits.detach().argmax(dim=1) == y).float().mean()
        return {"loss": loss.item(), "accuracy": accuracy.item(), "skipped": 0.0}

    # -- evaluation and export --------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, iteration: int, logger: Any, network: nn.Module) -> dict[str, float]:
        """Top-1 accuracy and mean cross-entropy (no smoothing) of ``network`` on the evaluation set."""
        if self.eval_set is None:
            return {}
        from gensr.data.class_datasets import eval_batches

        correct, loss_sum = 0, 0.0
        for batch in eval_batches(self.eval_set, self.options.data.eval_batch_size):
            x, y = self.to_device(batch["x"]), batch["y"].to(self.device)
            with self.autocast():
                logits = network(x).float()
            correct += int((logits.argmax(dim=1) == y).sum())
            loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        n = len(self.eval_set)
        return {"accuracy": correct / n, "loss": loss_sum / n}

    def export(self, network: nn.Module, path: Path, meta: dict[str, Any]) -> Path:
        meta = {**meta, "class_names": self.train_set.class_names, "train_data": str(self.options.data.train)}
        return save_checkpoint(
            path, network.state_dict(), arch_of(network), model_config_dict(network), meta=meta, overwrite=True
        )


def build_classifier(model: ClassifierModel, data: Any) -> nn.Module:
    """``model``'s network for ``data`` (a ClassImages): ``num_classes`` and ``input_size`` default to the data's;
    given ones must match it. GensrError (one line) for a network that is not a classifier."""
    config = dict(model.config)
    h, w = data.image_size
    if h != w:
        raise GensrError(f"task.data.train: images are {w}x{h}; the classifier needs square images")
    for key, value in (("num_classes", data.num_classes), ("input_size", h)):
        config.setdefault(key, value)
        if config[key] != value:
            raise GensrError(f"task.model.config.{key} is {config[key]} but the training data has {value}")
    try:
        net = build_model(model.arch, config)
    except GensrError as exc:
        raise GensrError(f"task.model: {exc}") from None
    if getattr(net, "kind", None) != "classifier":
        raise GensrError(f"task.model.arch: {model.arch} is not a classifier (kind {getattr(net, 'kind', None)!r})")
    return net
