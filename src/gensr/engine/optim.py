"""The one place optimisers are built from the run config's ``optim`` section."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from gensr.engine.config import OptimSection


def build_adam(
    params: Iterable[torch.nn.Parameter] | Iterable[dict[str, Any]], section: OptimSection
) -> torch.optim.Adam:
    """Adam with ``section``'s lr, betas, eps and weight decay over ``params`` (tensors or param groups)."""
    return torch.optim.Adam(
        params, lr=section.lr, betas=(section.betas[0], section.betas[1]), eps=section.eps,
        weight_decay=section.weight_decay,
    )  # fmt: skip


def clip_gradients(params: Iterable[torch.nn.Parameter], section: OptimSection) -> torch.Tensor | None:
    """Clip the gradient norm to ``section.grad_clip`` (no-op when unset); returns the norm before clipping."""
    if not section.grad_clip:
        return None
    return torch.nn.utils.clip_grad_norm_(list(params), section.grad_clip)
