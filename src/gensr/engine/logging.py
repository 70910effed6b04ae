"""Run logging: scalars to ``log.jsonl`` always, and to TensorBoard (scalars and images) when it is installed."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


class RunLogger:
    """Writes scalars/images for one run. A no-op on non-main ranks (``enabled=False``)."""

    def __init__(self, run_dir: Path, enabled: bool = True, tensorboard: bool = True) -> None:
        self.enabled = enabled
        self.run_dir = run_dir
        self._tb = None
        self._jsonl = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(run_dir / "log.jsonl", "a", buffering=1)  # noqa: SIM115 - closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package

                self._tb = SummaryWriter(log_dir=str(run_dir / "tb"))
            except Exception:  # tensorboard not installed: scalars still go to log.jsonl
                self._tb = None

    def scalars(self, iteration: int, values: dict[str, float], prefix: str = "train") -> None:
        if not self.enabled:
            return
        record = {"iter": iteration, "time": round(time.time(), 3), "split": prefix}
        record.update({k: float(v) for k, v in values.items()})
        self._jsonl.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in values.items():
                self._tb.add_scalar(f"{prefix}/{k}", float(v), iteration)

    def images(self, iteration: int, tag: str, grid: torch.Tensor) -> None:
        """``grid``: (3, H, W) float in [0, 1]."""
        if self.enabled and self._tb is not None:
            self._tb.add_image(tag, grid.clamp(0, 1), iteration)

    def message(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)
            self._jsonl.write(json.dumps({"message": text, "time": round(time.time(), 3)}) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._jsonl is not None:
            self._jsonl.close()
