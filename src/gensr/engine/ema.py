"""Exponential moving average of a network: ``shadow = decay * shadow + (1 - decay) * value`` per update."""

from __future__ import annotations

import copy

import torch
from torch import nn


class ModelEMA:
    """An averaged copy (``shadow``, an ``nn.Module`` in eval mode) of a network.

    ``start_iter``: updates before that iteration copy the network instead of averaging (BigGAN starts its
    EMA at 20k). ``buffers``: ``copy`` (BatchNorm statistics, power-iteration vectors ... copied) or
    ``average`` (floating buffers averaged like parameters, as BigGAN-PyTorch's EMA of its state dict).
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, start_iter: int = 0, buffers: str = "copy") -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        if buffers not in ("copy", "average"):
            raise ValueError(f"EMA buffers must be copy or average, got {buffers!r}")
        self.decay, self.start_iter, self.buffers = decay, start_iter, buffers
        self.shadow = copy.deepcopy(_unwrap(model)).eval()
        for p in self.shadow.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, iteration: int | None = None) -> None:
        """Average in ``model``'s current weights (``iteration``: the one just finished, for ``start_iter``)."""
        src = _unwrap(model)
        weight = 1.0 if iteration is not None and iteration < self.start_iter else 1.0 - self.decay
        for s, p in zip(self.shadow.parameters(), src.parameters(), strict=True):
            s.lerp_(p.detach().to(s.dtype), weight)
        for s, b in zip(self.shadow.buffers(), src.buffers(), strict=True):
            if self.buffers == "average" and s.is_floating_point():
                s.lerp_(b.to(s.dtype), weight)
            else:
                s.copy_(b)

    def state_dict(self) -> dict:
        return {"decay": self.decay, "shadow": self.shadow.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.decay = state["decay"]
        self.shadow.load_state_dict(state["shadow"])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") else model
