"""The task interface: what a training recipe gives the trainer (``gensr.engine.trainer``).

A task is built from its typed ``task:`` section (``Options``, a dataclass with a ``kind`` field), the run
config and the process's place in a distributed run. It provides:

* ``networks`` / ``optimizers`` (dicts by name; ``inference_network()`` is what EMA, evaluation and export use),
* ``train_data(seed, start_iteration, rank, world_size)``: an iterator of batches that is a pure function of
  its arguments, so a resumed run sees the batches an uninterrupted run would,
* ``train_step(batches) -> dict of floats``: one iteration, pulling as many batches as it needs; it returns
  ``skipped=1`` when it applied no update (non-finite loss),
* ``evaluate(iteration, logger, network) -> dict of floats`` and ``export(network, path, meta) -> Path``,
* ``state_dict()`` / ``load_state_dict()``: everything beyond the networks' and optimisers' states that an
  exact resume needs (task-owned random generators, counters).
"""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn
from torch.optim import Optimizer

from gensr.config import from_dict
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, all_reduce_mean, unwrap, wrap
from gensr.engine.optim import build_adam, clip_gradients


class Task(abc.ABC):
    """Base class. Subclasses set ``Options``, fill ``networks`` and ``optimizers`` and implement the methods."""

    Options: ClassVar[type]
    batches_per_step: int = 1  # batches one train_step pulls (for the data position of a resumed run)

    def __init__(self, options: Any, run: RunConfig, dist: DistInfo) -> None:
        self.options = options
        self.run = run
        self.dist = dist
        self.device = dist.device
        self.networks: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Optimizer] = {}

    @classmethod
    def check(cls, options: Any, run: RunConfig) -> None:
        """Cheap checks of what the task needs (files, folders, combinations of settings), run by ``gensr train``
        before any data or network is prepared, so that a mistake is one line before any work."""
        return None

    @classmethod
    def from_config(cls, run: RunConfig, dist: DistInfo) -> Task:
        """The task of ``run.task`` (typed by ``cls.Options``; unknown keys and bad values are GensrErrors)."""
        return cls(from_dict(cls.Options, run.task, where="task"), run, dist)

    # -- what the trainer calls -------------------------------------------------------------------------------
    @abc.abstractmethod
    def train_data(self, seed: int, start_iteration: int, rank: int, world_size: int) -> Iterator[Any]:
        """Batches from ``start_iteration`` on; a pure function of the arguments."""

    @abc.abstractmethod
    def train_step(self, batches: Iterator[Any]) -> dict[str, float]:
        """One iteration; returns scalars for logging, with ``skipped=1`` if no update was applied."""

    def evaluate(self, iteration: int, logger: Any, network: nn.Module) -> dict[str, float]:
        """Evaluation of ``network`` (in eval mode); returns scalars to log. Must not use the global RNG."""
        return {}

    @abc.abstractmethod
    def export(self, network: nn.Module, path: Path, meta: dict[str, Any]) -> Path:
        """Write ``network`` as a model file (replacing ``path``); returns the path."""

    def inference_network(self) -> nn.Module:
        return unwrap(self.networks["g"])

    # -- precision, devices, optimisers: helpers for subclasses ---------------------------------------------
    @property
    def use_bf16(self) -> bool:
        """bf16 autocast: on CUDA unless precision is fp32; on CPU only when precision is bf16 (opt-in)."""
        p = self.run.train.precision
        if self.device.type == "cuda":
            return p in ("auto", "bf16")
        return self.device.type == "cpu" and p == "bf16"

    @property
    def use_channels_last(self) -> bool:
        """channels_last pays on CUDA and with bf16 on CPU (oneDNN); fp32 on CPU is faster in NCHW."""
        return self.run.train.channels_last and (self.device.type == "cuda" or self.use_bf16)

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

    def add_network(self, name: str, net: nn.Module, optimizer: bool = True) -> nn.Module:
        """Register ``net`` as ``networks[name]``: moved to the task's device and memory format, wrapped for DDP
        and (with ``optimizer``) given the run's Adam (:meth:`build_optimizer`). Returns the placed network,
        unwrapped."""
        net = self.memory_format(net.to(self.device))
        self.networks[name] = wrap(net, self.dist)
        if optimizer:
            self.build_optimizer(name, net.parameters())
        return net

    def build_optimizer(self, name: str, params: Iterable[Any]) -> Optimizer:
        """Adam for network ``name`` with the run's ``optim`` settings (and its per-network overrides)."""
        self.optimizers[name] = build_adam(params, self.run.optim.for_network(name))
        return self.optimizers[name]

    def clip_gradients(self, name: str, module: nn.Module) -> None:
        clip_gradients(module.parameters(), self.run.optim.for_network(name))

    def all_finite(self, *losses: torch.Tensor) -> bool:
        """True when every loss is finite on every rank (so all ranks skip together)."""
        flag = torch.tensor(float(all(bool(torch.isfinite(v).all()) for v in losses)), device=self.device)
        return bool(all_reduce_mean(flag, self.dist).item() == 1.0)

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
