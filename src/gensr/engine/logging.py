"""Run logging: scalars to ``log.jsonl`` always, to TensorBoard (scalars and images) when it is installed, and
progress on stderr (a bar on a terminal, a line per logging interval otherwise)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch


def say(text: str) -> None:
    """One line on stderr that never glues onto an active progress bar."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stderr)
    sys.stderr.flush()


class RunLogger:
    """Writes scalars/images/messages for one run. A no-op on non-main ranks (``enabled=False``)."""

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
            say(text)
            self._jsonl.write(json.dumps({"message": text, "time": round(time.time(), 3)}) + "\n")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._jsonl is not None:
            self._jsonl.close()
            self._jsonl = None


class Progress:
    """Training progress: a tqdm bar (it/s, ETA) when stderr is a terminal; without one (logs, pipes, CI) a
    plain line per logging interval with the iteration, the loss, s/it and the ETA."""

    def __init__(self, start: int, total: int, log: RunLogger, enabled: bool = True) -> None:
        self.total, self.done, self.log = total, start, log
        self.enabled = enabled
        self.tty = enabled and sys.stderr.isatty()
        self.bar = None
        self.t0, self.start = time.perf_counter(), start
        if self.tty:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, smoothing=0.05, file=sys.stderr)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)

    def report(self, means: dict[str, float]) -> None:
        """Called at each logging interval with the window's mean scalars."""
        if not self.enabled:
            return
        loss = means.get("loss", float("nan"))
        if self.bar is not None:
            self.bar.set_postfix({"loss": f"{loss:.4g}"})
            return
        rate = (time.perf_counter() - self.t0) / max(1, self.done - self.start)
        eta = rate * (self.total - self.done)
        self.log.message(f"iteration {self.done}/{self.total}: loss {loss:.4g}, {rate:.3f} s/it, ETA {_duration(eta)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"
