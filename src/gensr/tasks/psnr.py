"""Stage 1 of ESRGAN: a PSNR-oriented generator trained with a pixel loss (L1 in the paper)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from gensr.config import from_dict
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, wrap
from gensr.tasks.base import Task
from gensr.tasks.common import build_generator


@dataclass
class PSNROptions:
    pixel_loss: str = "l1"  # l1 | mse | charbonnier

    def __post_init__(self) -> None:
        if self.pixel_loss not in ("l1", "mse", "charbonnier"):
            raise ValueError(f"pixel_loss must be l1, mse or charbonnier, got {self.pixel_loss!r}")


def pixel_loss(kind: str, sr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
    """Mean pixel loss between (N, C, H, W) tensors."""
    if kind == "l1":
        return F.l1_loss(sr, hr)
    if kind == "mse":
        return F.mse_loss(sr, hr)
    return torch.sqrt((sr - hr) ** 2 + 1e-12).mean()


class PSNRTask(Task):
    """L1 (or MSE/Charbonnier) regression of HR from LR with Adam."""

    def __init__(self, cfg: RunConfig, dist: DistInfo) -> None:
        super().__init__(cfg, dist)
        self.options = from_dict(PSNROptions, cfg.task_options, where="task_options")
        model = self.memory_format(build_generator(cfg).to(self.device))
        self.networks["g"] = wrap(model, dist)
        o = cfg.optim
        self.optimizers["g"] = torch.optim.Adam(
            model.parameters(), lr=o.lr, betas=tuple(o.betas), weight_decay=o.weight_decay
        )
        self._step_fn = self._forward_loss
        if cfg.train.compile:
            self._step_fn = torch.compile(self._forward_loss)

    def _forward_loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            sr = self.networks["g"](lr)
        return pixel_loss(self.options.pixel_loss, sr.float(), hr)

    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        lr, hr = self.to_device(batch["lr"]), self.to_device(batch["hr"])
        net, opt = self.networks["g"], self.optimizers["g"]
        net.train()
        loss = self._step_fn(lr, hr)
        opt.zero_grad(set_to_none=True)
        if not self.all_finite(loss):
            return {"loss": float("nan"), "skipped": 1.0}
        loss.backward()
        self.clip_gradients(net)
        opt.step()
        return {"loss": loss.item(), "skipped": 0.0}
