"""The training-run config: one YAML file per experiment, ``key=value`` overrides on the command line.

The run config holds what every training run has: ``name``, ``seed``, ``output_dir``, the optimiser
(``optim``), the learning-rate ``schedule``, ``ema`` and the loop (``train``: iterations, precision, device,
checkpoints, logging, evaluation). What is trained is the ``task:`` section, typed by the task's own dataclass
and chosen by ``task.kind`` (``psnr``, ``esrgan``, ``srflow``, ``biggan``, ``classifier``, or ``module:Class``
for a task class of your own). Relative paths are taken from the current working directory. Unknown keys and
values of the wrong type or range are one-line errors, at every level.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gensr.config import check_at_least, check_finite, from_dict, read_yaml_mapping
from gensr.errors import GensrError

MAX_SEED = 2**32 - 1
OPTIM_KEYS = ("lr", "betas", "eps", "weight_decay", "grad_clip")


@dataclass
class OptimSection:
    """Adam's settings. ``networks`` overrides them per network, e.g. ``{d: {lr: 4.0e-4}}`` (BigGAN's TTUR)."""

    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = None
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_finite("lr", self.lr, 0.0, open_low=True)
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ValueError(f"betas must be two numbers in [0, 1), got {self.betas}")
        check_finite("eps", self.eps, 0.0, open_low=True)
        check_finite("weight_decay", self.weight_decay, 0.0)
        if self.grad_clip is not None:
            check_finite("grad_clip", self.grad_clip, 0.0, open_low=True)
        for name, overrides in self.networks.items():
            bad = sorted(set(overrides) - set(OPTIM_KEYS))
            if bad:
                raise ValueError(f"networks.{name}: unknown key(s) {', '.join(bad)}; allowed: {', '.join(OPTIM_KEYS)}")
            self.for_network(name)  # validates the merged values

    def for_network(self, name: str) -> OptimSection:
        """The settings of network ``name``: these, with its ``networks`` overrides applied."""
        merged = {k: getattr(self, k) for k in OPTIM_KEYS}
        merged.update(self.networks.get(name, {}))
        return from_dict(OptimSection, merged, where=f"optim.networks.{name}")


@dataclass
class ScheduleSection:
    """``multistep`` (milestones, gamma), ``cosine`` (restart periods, eta_min) or ``constant``."""

    kind: str = "multistep"
    milestones: list[int] = field(default_factory=lambda: [200_000, 400_000, 600_000, 800_000])
    gamma: float = 0.5
    periods: list[int] | None = None
    eta_min: float = 1e-7

    def __post_init__(self) -> None:
        if self.kind not in ("multistep", "cosine", "constant"):
            raise ValueError(f"kind must be multistep, cosine or constant, got {self.kind!r}")
        if any(m < 1 for m in self.milestones):
            raise ValueError(f"milestones must be iterations >= 1, got {self.milestones}")
        check_finite("gamma", self.gamma, 0.0, 1.0, open_low=True)
        if self.periods is not None and (not self.periods or any(p < 1 for p in self.periods)):
            raise ValueError(f"periods must be a list of iteration counts >= 1, got {self.periods}")
        check_finite("eta_min", self.eta_min, 0.0)


@dataclass
class EMASection:
    """Exponential moving average of the inference network, exported and evaluated when enabled.

    ``start_iter``: before it the average tracks the network exactly (BigGAN: 20k). ``buffers``: ``copy``
    (BatchNorm statistics etc. copied from the network) or ``average`` (averaged like parameters, BigGAN-PyTorch).
    """

    enabled: bool = False
    decay: float = 0.999
    start_iter: int = 0
    buffers: str = "copy"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decay) and 0.0 <= self.decay < 1.0):
            raise ValueError(f"decay must be in [0, 1), got {self.decay}")
        check_at_least("start_iter", self.start_iter, 0)
        if self.buffers not in ("copy", "average"):
            raise ValueError(f"buffers must be copy or average, got {self.buffers!r}")


@dataclass
class LoopSection:
    """The training loop. ``eval_every`` 0 turns evaluation off (otherwise it also runs after the last
    iteration). ``best_metric``: keep the ``keep_best`` exported models with the best value of this evaluation
    scalar (``best_mode`` max or min) under ``models/best/``."""

    total_iters: int = 1_000_000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    log_every: int = 100
    eval_every: int = 5000
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16
    max_nonfinite: int = 10
    device: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None
    best_metric: str | None = None
    best_mode: str = "max"
    keep_best: int = 0

    def __post_init__(self) -> None:
        for name in ("total_iters", "checkpoint_every", "keep_checkpoints", "log_every", "max_nonfinite"):
            check_at_least(name, getattr(self, name))
        check_at_least("eval_every", self.eval_every, 0)
        check_at_least("keep_best", self.keep_best, 0)
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"precision must be auto, fp32 or bf16, got {self.precision!r}")
        if self.threads is not None:
            check_at_least("threads", self.threads)
        if self.best_mode not in ("max", "min"):
            raise ValueError(f"best_mode must be max or min, got {self.best_mode!r}")
        if self.keep_best and not self.best_metric:
            raise ValueError("keep_best needs best_metric (the evaluation scalar to rank models by)")
        _check_device_name(self.device)


def _check_device_name(device: str) -> None:
    base, _, index = device.partition(":")
    if base not in ("auto", "cpu", "cuda", "mps") or (index and not index.isdigit()):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or mps, got {device!r}")


@dataclass
class RunConfig:
    """A whole training run. ``task`` is the task's own section, typed later by the task (its ``kind`` picks it)."""

    name: str = "run"
    seed: int = 0
    output_dir: str | None = None
    task: dict[str, Any] = field(default_factory=dict)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    ema: EMASection = field(default_factory=EMASection)
    train: LoopSection = field(default_factory=LoopSection)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or os.path.join("runs", self.name))

    @property
    def task_kind(self) -> str:
        return str(self.task["kind"])

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or self.name in (".", ".."):
            raise ValueError(f"name must be a plain folder name, got {self.name!r}")
        if not 0 <= self.seed <= MAX_SEED:
            raise ValueError(f"seed must be an integer in [0, {MAX_SEED}], got {self.seed}")
        kind = self.task.get("kind")
        if not isinstance(kind, str) or not kind:
            raise ValueError("task.kind is required (psnr, esrgan, srflow, biggan, classifier or module:Class)")


# ----------------------------------------------------------------------------------------------- loading

_OLD_LAYOUT_KEYS = ("scale", "model", "data", "task_options")


def _old_layout_error(path: Path, tree: dict[str, Any]) -> GensrError | None:
    old = [k for k in _OLD_LAYOUT_KEYS if k in tree]
    if not old and not isinstance(tree.get("task"), str):
        return None
    kind = tree.get("task") if isinstance(tree.get("task"), str) else "psnr"
    return GensrError(
        f"{path}: config in the old layout: `task: {kind}` is now a section `task: {{kind: {kind}, ...}}`, and "
        f"{', '.join(k for k in old if k != 'task_options') or 'scale, model and data'} "
        f"{'and the keys of task_options ' if 'task_options' in tree else ''}move into it "
        "(see the files in configs/)"
    )


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (numbers, lists, null, ...)."""
    if "=" not in assignment:
        raise GensrError(f"override {assignment!r}: expected key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise GensrError(f"override {assignment!r}: empty key")
    node = tree
    for p in parts[:-1]:
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise GensrError(f"override {assignment!r}: {p} is not a section")
        node = node[p]
    try:
        node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise GensrError(f"override {assignment!r}: the value is not valid YAML") from None


def load_run_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply overrides, validate (unknown keys and bad values are GensrErrors)."""
    p = Path(path)
    tree = read_yaml_mapping(p, "config", "the top level must be a mapping")
    old = _old_layout_error(p, tree)
    if old is not None:
        raise old
    for assignment in overrides or []:
        apply_override(tree, assignment)
    try:
        return from_dict(RunConfig, floats_from_strings(tree))
    except GensrError as exc:
        raise GensrError(f"{p}: {exc}") from None


def floats_from_strings(node: Any) -> Any:
    """PyYAML reads ``1e-4`` as a string (YAML 1.1); turn such number-like strings into floats."""
    if isinstance(node, dict):
        return {k: floats_from_strings(v) for k, v in node.items()}
    if isinstance(node, list):
        return [floats_from_strings(v) for v in node]
    if isinstance(node, str) and any(c in node for c in "eE.") and not node.strip().isalpha():
        try:
            value = float(node)
        except ValueError:
            return node
        return value if math.isfinite(value) else node
    return node
