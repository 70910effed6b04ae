"""What a resume may change: settings that only steer the rest of the run are applied (and reported); ones
that would make the checkpoint describe a different experiment are refused."""

from __future__ import annotations

from typing import Any

from gensr.engine.config import RunConfig

# Dotted prefixes of settings a resumed run must keep: another task, network, data order or EMA would not be
# a continuation of the same run.
REFUSED = ("seed", "task.kind", "task.scale", "task.model", "task.generator", "task.discriminator", "ema.enabled")


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        out.update(_flatten(v, key) if isinstance(v, dict) and v else {key: v})
    return out


def config_changes(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[str], list[str]]:
    """(refused, applied) descriptions ``key old -> new`` of the settings that differ between two configs."""
    a, b = _flatten(old), _flatten(new)
    refused, applied = [], []
    for key in sorted(set(a) | set(b)):
        if a.get(key) == b.get(key) or key in ("name", "output_dir"):
            continue
        text = f"{key} {a.get(key)!r} -> {b.get(key)!r}"
        (refused if any(key == p or key.startswith(p + ".") for p in REFUSED) else applied).append(text)
    return refused, applied


def apply_changed_settings(cfg: RunConfig, optimizers: dict[str, Any], schedulers: dict[str, Any]) -> None:
    """After the optimiser and scheduler states were restored: give them the config's learning rates.

    The schedule function itself is rebuilt from the config (so a changed schedule or ``total_iters`` is already
    in force); the base learning rate is part of the saved state and is reset here.
    """
    for name, opt in optimizers.items():
        lr = cfg.optim.for_network(name).lr
        sched = schedulers[name]
        sched.base_lrs = [lr for _ in opt.param_groups]
        for group, fn in zip(opt.param_groups, sched.lr_lambdas, strict=True):
            group["initial_lr"] = lr
            group["lr"] = lr * fn(sched.last_epoch)
