"""What the super-resolution tasks (psnr, esrgan, srflow) share: their config sections, data, evaluation
(Y-PSNR / SSIM with border = scale, LR-PSNR, saved images, comparison grids) and export.

The ``task:`` section of an SR run::

    task:
      kind: psnr            # or esrgan, srflow
      scale: 4              # stated once
      model: {arch: rrdbnet, config: {nf: 64, nb: 23, gc: 32}, pretrained: null}
      data:
        train: {hr_dirs: [...], patch_size: 128, batch_size: 16, ...}
        val: {hr_dir: ..., lr_dir: ...}   # null: no evaluation data (train.eval_every 0 also turns it off)
      ...                   # the task's own settings
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.config import check_at_least
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo
from gensr.errors import GensrError
from gensr.models.registry import arch_of, build_model, model_config_dict, weight_config
from gensr.tasks.base import Task

SCALES = (1, 2, 3, 4, 8)


@dataclass
class ModelSection:
    """The network being trained: architecture name, its config (``scale`` comes from ``task.scale``) and
    optional weights to start from (a shipped name or any checkpoint gensr reads, loaded strictly)."""

    arch: str = "rrdbnet"
    config: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None


@dataclass
class TrainData:
    """HR folders (LR made with the MATLAB bicubic) or paired HR/LR folders; random aligned patches."""

    hr_dirs: list[str] = field(default_factory=list)
    lr_dirs: list[str] | None = None
    lr_suffix: str = ""
    patch_size: int = 128
    batch_size: int = 16
    num_workers: int = 2
    augment: str = "dihedral"  # dihedral | hflip | none

    def __post_init__(self) -> None:
        if not self.hr_dirs:
            raise ValueError("hr_dirs: at least one folder of HR training images is required")
        check_at_least("patch_size", self.patch_size)
        check_at_least("batch_size", self.batch_size)
        check_at_least("num_workers", self.num_workers, 0)
        if self.augment not in ("dihedral", "hflip", "none"):
            raise ValueError(f"augment must be dihedral, hflip or none, got {self.augment!r}")


@dataclass
class ValData:
    """Whole evaluation images: HR (mod-cropped) and LR from ``lr_dir`` or the MATLAB bicubic."""

    hr_dir: str = ""
    lr_dir: str | None = None
    lr_suffix: str = ""
    save_images: bool = True

    def __post_init__(self) -> None:
        if not self.hr_dir:
            raise ValueError("hr_dir is required (or set val: null for no evaluation data)")


@dataclass
class SRData:
    train: TrainData = field(default_factory=TrainData)
    val: ValData | None = None


@dataclass
class SRTaskOptions:
    """The part of the ``task:`` section every SR task has."""

    kind: str = "psnr"
    scale: int = 4
    model: ModelSection = field(default_factory=ModelSection)
    data: SRData = field(default_factory=SRData)

    def __post_init__(self) -> None:
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        if self.data.train.patch_size % self.scale:
            raise ValueError(
                f"data.train.patch_size {self.data.train.patch_size} is not a multiple of scale {self.scale}"
            )
        if "scale" in self.model.config and self.model.config["scale"] != self.scale:
            raise ValueError(
                f"model.config.scale {self.model.config['scale']} differs from scale {self.scale} (state it once, "
                "as task.scale)"
            )


def build_network(model: ModelSection, scale: int) -> nn.Module:
    """``model``'s network at ``scale``; with ``pretrained`` its weights are loaded strictly (same config up to
    the config's ``ARITHMETIC_FIELDS``, e.g. SRFlow's reverse-pass guards, which take ``task.model``'s values)."""
    config = {**model.config, "scale": scale}
    net = build_model(model.arch, config)
    if model.pretrained:
        from gensr.checkpoints.loader import load_model

        try:
            source = load_model(model.pretrained)
        except GensrError as exc:
            raise GensrError(f"task.model.pretrained: {exc}") from None
        if type(source) is not type(net) or weight_config(source) != weight_config(net):
            raise GensrError(
                f"task.model.pretrained: {model.pretrained} holds {type(source).__name__} {source.config}, "
                f"which differs from task.model ({type(net).__name__} {net.config})"
            )
        net.load_state_dict(source.state_dict())
    return net


class SRTask(Task):
    """Base of the SR tasks: datasets (found and prepared at construction, so missing data is reported
    before the first step), the resumable data iterator, evaluation and export."""

    @classmethod
    def check(cls, options: SRTaskOptions, run: RunConfig) -> None:
        from gensr.checkpoints.shipped import resolve_model_path
        from gensr.data.datasets import find_images

        t, v = options.data.train, options.data.val
        find_images(t.hr_dirs, where="task.data.train.hr_dirs")
        if t.lr_dirs:
            find_images(t.lr_dirs, where="task.data.train.lr_dirs")
        if v is not None:
            find_images([v.hr_dir], recursive=False, where="task.data.val.hr_dir")
            if v.lr_dir:
                find_images([v.lr_dir], recursive=False, where="task.data.val.lr_dir")
        if options.model.pretrained:
            try:
                resolve_model_path(options.model.pretrained)
            except GensrError as exc:
                raise GensrError(f"task.model.pretrained: {exc}") from None

    def __init__(self, options: SRTaskOptions, run: RunConfig, dist: DistInfo) -> None:
        super().__init__(options, run, dist)
        from gensr.data.datasets import SRTrainDataset, SRValDataset

        d, s = options.data, options.scale
        self.scale = s
        self.train_set = SRTrainDataset(
            d.train.hr_dirs, s, d.train.patch_size, lr_dirs=d.train.lr_dirs, lr_suffix=d.train.lr_suffix,
            augment=d.train.augment, seed=run.seed, where="task.data.train",
        )  # fmt: skip
        self.val_set = SRValDataset(d.val.hr_dir, s, d.val.lr_dir, d.val.lr_suffix) if d.val is not None else None

    # -- data -------------------------------------------------------------------------------------------------
    def train_data(self, seed: int, start_iteration: int, rank: int, world_size: int) -> Iterator[dict[str, Any]]:
        from torch.utils.data import DataLoader

        from gensr.data.datasets import ResumableSampler

        t = self.options.data.train
        sampler = ResumableSampler(t.batch_size, start_iteration * self.batches_per_step, rank, world_size)
        # A private generator: starting the loader's iterator must not draw from the global RNG, which tasks use
        # and which a resumed run restores exactly.
        loader = DataLoader(
            self.train_set, batch_size=t.batch_size, sampler=sampler, num_workers=t.num_workers,
            generator=torch.Generator().manual_seed(seed), pin_memory=self.device.type == "cuda",
            persistent_workers=t.num_workers > 0, drop_last=True,
        )  # fmt: skip
        return iter(loader)

    def next_pair(self, batches: Iterator[dict[str, Any]]) -> tuple[torch.Tensor, torch.Tensor]:
        """(lr, hr) of the next batch on the task's device: (N, 3, h, w) and (N, 3, sh, sw) in [0, 1]."""
        batch = next(batches)
        return self.to_device(batch["lr"]), self.to_device(batch["hr"])

    # -- evaluation -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def super_resolve(self, net: nn.Module, lr: torch.Tensor) -> torch.Tensor:
        """SR of one evaluation LR (1, 3, h, w) -> (1, 3, sh, sw), unclamped."""
        return net(lr)

    def evaluate(self, iteration: int, logger: Any, network: nn.Module) -> dict[str, float]:
        if self.val_set is None:
            return {}
        v = self.options.data.val
        out_dir = self.run.run_dir / "val" / f"iter_{iteration:07d}"
        try:
            with self.autocast():
                means, previews = evaluate_sr(
                    lambda x: self.super_resolve(network, x), self.val_set, self.scale, self.device,
                    out_dir if v.save_images else None,
                )  # fmt: skip
                means.update(self.extra_evaluation(iteration, logger, network, out_dir))
        except GensrError as exc:  # e.g. a diverged model's NaN output: reported, never the end of a run
            logger.message(f"iteration {iteration}: evaluation failed ({exc})")
            return {"eval_failed": 1.0}
        if previews:
            logger.images(iteration, "val/sr", previews[0])
        return means

    def extra_evaluation(self, iteration: int, logger: Any, network: nn.Module, out_dir: Path) -> dict[str, float]:
        """Task-specific evaluation output (grids, samples); returns extra scalars. No global RNG."""
        return {}

    # -- export -----------------------------------------------------------------------------------------------
    def export(self, network: nn.Module, path: Path, meta: dict[str, Any]) -> Path:
        return save_checkpoint(
            path, network.state_dict(), arch_of(network), model_config_dict(network), meta=meta, overwrite=True
        )


@torch.no_grad()
def evaluate_sr(
    sr_fn: Any, dataset: Any, scale: int, device: torch.device, out_dir: Path | None = None
) -> tuple[dict[str, float], list[torch.Tensor]]:
    """Mean Y-PSNR / SSIM (border ``scale``) and RGB LR-PSNR over ``dataset`` (items ``{"lr", "hr", "name"}``);
    SR images written to ``out_dir`` when given. Returns (means, the first SR images as (3, H, W) in [0, 1])."""
    from gensr.io import tensor_to_pixels, write_image
    from gensr.metrics.fidelity import lr_psnr, psnr, ssim

    rows, previews = [], []
    for i in range(len(dataset)):
        item = dataset[i]
        sr = sr_fn(item["lr"].unsqueeze(0).to(device)).float().cpu()
        sr8, hr8, lr8 = tensor_to_pixels(sr), tensor_to_pixels(item["hr"]), tensor_to_pixels(item["lr"])
        rows.append(
            (
                psnr(sr8, hr8, crop_border=scale, y_channel=True),
                ssim(sr8, hr8, crop_border=scale, y_channel=True),
                lr_psnr(sr8, lr8, scale),
            )
        )
        if out_dir is not None:
            write_image(out_dir / f"{item['name']}.png", sr8, overwrite=True)
        if len(previews) < 4:
            previews.append(sr.clamp(0, 1)[0])
    arr = np.array(rows, dtype=np.float64)
    means = {"psnr_y": float(arr[:, 0].mean()), "ssim_y": float(arr[:, 1].mean()), "lr_psnr": float(arr[:, 2].mean())}
    return means, previews


def side_by_side(panels: list[torch.Tensor], gap: int = 4) -> torch.Tensor:
    """(1|, 3, H_i, W_i) images in [0, 1] -> one (3, H, sum W + gaps) grid (cropped to the smallest H, W)."""
    flat = [p.detach().float().cpu().clamp(0, 1).reshape(-1, *p.shape[-3:])[0] for p in panels]
    h = min(p.shape[1] for p in flat)
    w = min(p.shape[2] for p in flat)
    parts: list[torch.Tensor] = []
    for i, p in enumerate(flat):
        if i:
            parts.append(torch.ones(3, h, gap))
        parts.append(p[:, :h, :w])
    return torch.cat(parts, dim=2)


def nearest_and_bicubic(lr: torch.Tensor, scale: int) -> list[torch.Tensor]:
    """The LR enlarged by nearest neighbour (to see its pixels) and by the MATLAB bicubic."""
    from gensr.imresize import imresize

    return [F.interpolate(lr.float(), scale_factor=scale, mode="nearest"), imresize(lr.float(), scale=scale)]
