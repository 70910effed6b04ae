"""What every task shares: device/precision handling and the state the trainer checkpoints."""

from __future__ import annotations

import abc
import contextlib
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, all_reduce_mean, unwrap


class Task(abc.ABC):
    """Base class. Subclasses fill ``networks`` and ``optimizers`` and implement :meth:`train_step`.

    ``networks["g"]`` is the model that inference uses (exported, validated, EMA-averaged).
    """

    def __init__(self, cfg: RunConfig, dist: DistInfo) -> None:
        self.cfg = cfg
        self.dist = dist
        self.device = dist.device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Optimizer] = {}

    # -- one step ---------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def train_step(self, batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step; returns scalars for logging, with ``skipped=1`` if the step was not applied."""

    # -- helpers for subclasses -------------------------------------------------------------------------------
    @property
    def use_bf16(self) -> bool:
        """bf16 autocast: on CUDA unless precision is fp32; on CPU only when precision is bf16 (opt-in)."""
        p = self.cfg.train.precision
        if self.device.type == "cuda":
            return p in ("auto", "bf16")
        return self.device.type == "cpu" and p == "bf16"

    @property
    def use_channels_last(self) -> bool:
        """channels_last pays on CUDA and with bf16 on CPU (oneDNN); fp32 on CPU is faster in NCHW."""
        return self.cfg.train.channels_last and (self.device.type == "cuda" or self.use_bf16)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when :attr:`use_bf16`, else a no-op."""
        if self.use_bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def memory_format(self, module: nn.Module) -> nn.Module:
        """``module`` in channels_last when :attr:`use_channels_last`."""
        return module.to(memory_format=torch.channels_last) if self.use_channels_last else module

    def to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)
        if self.use_channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def all_finite(self, *losses: torch.Tensor) -> bool:
        """True when every loss is finite on every rank (so all ranks skip together)."""
        flag = torch.tensor(float(all(bool(torch.isfinite(v).all()) for v in losses)), device=self.device)
        return bool(all_reduce_mean(flag, self.dist).item() == 1.0)

    def clip_gradients(self, module: nn.Module) -> None:
        if self.cfg.optim.grad_clip:
            torch.nn.utils.clip_grad_norm_(module.parameters(), self.cfg.optim.grad_clip)

    # -- what inference/validation/export use ------------------------------------------------------------------
    def inference_network(self) -> nn.Module:
        return unwrap(self.networks["g"])

    @torch.no_grad()
    def super_resolve(self, net: nn.Module, lr: torch.Tensor) -> torch.Tensor:
        """SR of one validation LR (1, 3, h, w) -> (1, 3, sh, sw), unclamped."""
        return net(lr)

    def on_validation(self, iteration: int, dataset, out_dir, logger) -> dict[str, float]:
        """Extra validation output (image grids, samples, task metrics); returns extra scalars to log.

        Called on the main rank after the standard metrics. Must not use the global RNG (use a local
        ``torch.Generator``), so that validation never changes a resumed run.
        """
        return {}

    # -- checkpoint state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "networks": {k: unwrap(v).state_dict() for k, v in self.networks.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["networks"].items():
            unwrap(self.networks[k]).load_state_dict(v)
        for k, v in state["optimizers"].items():
            self.optimizers[k].load_state_dict(v)
