"""Stage 1 of ESRGAN: a PSNR-oriented generator trained with a pixel loss (L1 in the paper).

``task:`` section: the SR fields (:mod:`gensr.tasks.sr_common`) and ``pixel_loss`` (l1 | mse | charbonnier,
see :mod:`gensr.losses.pixel`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo
from gensr.errors import GensrError
from gensr.losses.pixel import pixel_loss_fn
from gensr.tasks.sr_common import SRTask, SRTaskOptions, build_network


@dataclass
class PSNROptions(SRTaskOptions):
    pixel_loss: str = "l1"

    def __post_init__(self) -> None:
        super().__post_init__()
        try:
            pixel_loss_fn(self.pixel_loss)
        except GensrError as exc:
            raise ValueError(f"pixel_loss: {exc}") from None


class PSNRTask(SRTask):
    """L1 (or MSE/Charbonnier) regression of HR from LR with Adam."""

    Options = PSNROptions

    def __init__(self, options: PSNROptions, run: RunConfig, dist: DistInfo) -> None:
        super().__init__(options, run, dist)
        self.loss_fn = pixel_loss_fn(options.pixel_loss)
        self.add_network("g", build_network(options.model, options.scale))
        self._step_fn = torch.compile(self._forward_loss) if run.train.compile else self._forward_loss

    def _forward_loss(self, lr: torch.Tensor, hr: torch.Tensor) -> torch.Tensor:
        with self.autocast():
            sr = self.networks["g"](lr)
        return self.loss_fn(sr.float(), hr)

    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        lr, hr = self.next_pair(batches)
        net, opt = self.networks["g"], self.optimizers["g"]
        net.train()
        loss = self._step_fn(lr, hr)
        opt.zero_grad(set_to_none=True)
        if not self.all_finite(loss):
            return {"loss": float("nan"), "skipped": 1.0}
        loss.backward()
        self.clip_gradients("g", net)
        opt.step()
        return {"loss": loss.item(), "skipped": 0.0}
