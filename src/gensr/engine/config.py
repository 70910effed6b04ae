"""The training-run config: one YAML file per experiment, ``key=value`` overrides on the command line.

Relative paths in a config are taken from the current working directory. Unknown keys are errors.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from gensr.config import from_dict
from gensr.errors import GensrError


@dataclass
class ModelSection:
    """The network being trained: registry name, its config, and optional weights to start from."""

    arch: str = "rrdbnet"
    config: dict[str, Any] = field(default_factory=dict)
    pretrained: str | None = None


@dataclass
class TrainDataSection:
    hr_dirs: list[str] = field(default_factory=list)
    lr_dirs: list[str] | None = None
    lr_suffix: str = ""
    patch_size: int = 128
    batch_size: int = 16
    num_workers: int = 2
    augment: str = "dihedral"  # dihedral | hflip | none


@dataclass
class ValDataSection:
    hr_dir: str | None = None
    lr_dir: str | None = None
    lr_suffix: str = ""
    every: int = 5000
    save_images: bool = True


@dataclass
class DataSection:
    train: TrainDataSection = field(default_factory=TrainDataSection)
    val: ValDataSection = field(default_factory=ValDataSection)


@dataclass
class OptimSection:
    lr: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    grad_clip: float | None = None


@dataclass
class ScheduleSection:
    """``multistep`` (milestones, gamma), ``cosine`` (restart periods, eta_min) or ``constant``."""

    kind: str = "multistep"
    milestones: list[int] = field(default_factory=lambda: [200_000, 400_000, 600_000, 800_000])
    gamma: float = 0.5
    periods: list[int] | None = None
    eta_min: float = 1e-7


@dataclass
class EMASection:
    enabled: bool = False
    decay: float = 0.999


@dataclass
class LoopSection:
    total_iters: int = 1_000_000
    checkpoint_every: int = 5000
    keep_checkpoints: int = 3
    log_every: int = 100
    precision: str = "auto"  # auto (bf16 on CUDA) | fp32 | bf16
    max_nonfinite: int = 10
    device: str = "auto"
    channels_last: bool = True
    compile: bool = False
    threads: int | None = None


@dataclass
class RunConfig:
    """A whole training run. ``task`` picks the recipe; ``task_options`` holds that task's own settings."""

    name: str = "run"
    task: str = "psnr"
    scale: int = 4
    seed: int = 0
    output_dir: str | None = None
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    ema: EMASection = field(default_factory=EMASection)
    train: LoopSection = field(default_factory=LoopSection)
    task_options: dict[str, Any] = field(default_factory=dict)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir or os.path.join("runs", self.name))

    def __post_init__(self) -> None:
        if self.scale not in (1, 2, 3, 4, 8):
            raise ValueError(f"scale must be 1, 2, 3, 4 or 8, got {self.scale}")
        if self.train.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(f"train.precision must be auto, fp32 or bf16, got {self.train.precision!r}")
        if self.schedule.kind not in ("multistep", "cosine", "constant"):
            raise ValueError(
                f"schedule.kind must be multistep, cosine or constant, got {self.schedule.kind!r}"
            )
        if self.data.train.augment not in ("dihedral", "hflip", "none"):
            raise ValueError(
                f"data.train.augment must be dihedral, hflip or none, got {self.data.train.augment!r}"
            )


def apply_override(tree: dict[str, Any], assignment: str) -> None:
    """Set ``a.b.c=value`` in a nested dict; the value is parsed as YAML (numbers, lists, null, ...)."""
    if "=" not in assignment:
        raise GensrError(f"override {assignment!r}: expected key=value")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = tree
    for p in parts[:-1]:
        if not isinstance(node.setdefault(p, {}), dict):
            raise GensrError(f"override {assignment!r}: {p} is not a section")
        node = node[p]
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else ""


def load_run_config(path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config, apply overrides, validate (unknown keys and bad values are GensrErrors)."""
    p = Path(path)
    if not p.is_file():
        raise GensrError(f"{p}: config file not found")
    try:
        tree = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise GensrError(f"{p}: invalid YAML ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(tree, dict):
        raise GensrError(f"{p}: the top level must be a mapping")
    for assignment in overrides or []:
        apply_override(tree, assignment)
    return from_dict(RunConfig, _floats(tree), where=str(p))


def _floats(node: Any) -> Any:
    """PyYAML reads ``1e-4`` as a string (YAML 1.1); turn such number-like strings into floats."""
    if isinstance(node, dict):
        return {k: _floats(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_floats(v) for v in node]
    if isinstance(node, str):
        try:
            return float(node) if any(c in node for c in "eE.") and not node.strip().isalpha() else node
        except ValueError:
            return node
    return node
