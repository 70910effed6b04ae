"""Learning-rate schedules by iteration: multistep, cosine with restarts, constant."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from gensr.engine.config import ScheduleSection


def lr_factor(iteration: int, cfg: ScheduleSection, total_iters: int) -> float:
    """Multiplier of the base learning rate after ``iteration`` completed steps."""
    if cfg.kind == "constant":
        return 1.0
    if cfg.kind == "multistep":
        return cfg.gamma ** sum(iteration >= m for m in cfg.milestones)
    periods = cfg.periods or [total_iters]
    start = 0
    for period in periods:
        if iteration < start + period:
            return 0.5 * (1 + math.cos(math.pi * (iteration - start) / period))
        start += period
    return 0.0


def build_scheduler(optimizer: Optimizer, cfg: ScheduleSection, total_iters: int) -> LambdaLR:
    """A LambdaLR following :func:`lr_factor`; cosine decays to ``eta_min`` (absolute) at each period's end."""
    base = optimizer.param_groups[0]["lr"]

    def factor(it: int) -> float:
        f = lr_factor(it, cfg, total_iters)
        if cfg.kind == "cosine" and base > 0:
            floor = min(cfg.eta_min / base, 1.0)
            f = floor + (1 - floor) * f
        return f

    return LambdaLR(optimizer, factor)
