"""The training loop, readable in one sitting. It knows no task, model, dataset or metric.

A task (see ``gensr.tasks.base.Task``) gives the trainer its networks and optimisers, an iterator of batches
(``train_data``, a pure function of seed, iteration and rank), one ``train_step(batches)`` that pulls as many
batches as it needs, ``evaluate(iteration, logger, network)``, ``export(network, path, meta)`` and the network
that EMA and inference use. The trainer owns the rest: learning-rate schedules, EMA, checkpoints and exact
resume, the run folder and its lock, evaluation and best-k exports, logging, and the non-finite-step guard.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from gensr.config import to_dict
from gensr.engine import checkpoint as ckpt
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, setup, teardown
from gensr.engine.ema import ModelEMA
from gensr.engine.logging import Progress, RunLogger, say
from gensr.engine.resume import apply_changed_settings, config_changes
from gensr.engine.run_folder import check_run_folder, clear_run, remove_empty_run_folder, take_run_folder
from gensr.engine.schedule import build_scheduler
from gensr.engine.signals import signals_held
from gensr.errors import GensrError, NonFiniteLossError

TaskFactory = Callable[[RunConfig, DistInfo], Any]


class Trainer:
    """Runs ``cfg`` with the task ``make_task(cfg, dist)`` builds, from iteration 0 or, with ``resume`` (a
    checkpoint path, or "auto" for the latest in the run folder), from a training checkpoint."""

    def __init__(
        self,
        cfg: RunConfig,
        make_task: TaskFactory,
        resume: str | None = None,
        overwrite: bool = False,
        dist: DistInfo | None = None,
    ) -> None:
        self.cfg = cfg
        self.dist = dist or setup(cfg.train.device)
        self.run_dir = cfg.run_dir
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.resume_path = self._find_resume(resume)  # checkpoint and config changes checked before any work
        self.lock = None
        if self.dist.is_main:
            check_run_folder(self.run_dir, resume, overwrite)
            created = not self.run_dir.exists()
            self.lock = take_run_folder(self.run_dir)
            say(f"{cfg.name}: run folder {self.run_dir}; preparing data and networks ({cfg.task_kind})")
        torch.manual_seed(cfg.seed + self.dist.rank)
        try:
            self.task = make_task(cfg, self.dist)  # data errors surface here, before any file is written
        except BaseException:
            if self.lock is not None:
                self.lock.release()
                if created:
                    remove_empty_run_folder(self.run_dir)
            raise
        if overwrite and self.dist.is_main:
            clear_run(self.run_dir)
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main)
        self.schedulers = {
            k: build_scheduler(opt, cfg.schedule, cfg.train.total_iters) for k, opt in self.task.optimizers.items()
        }
        e = cfg.ema
        self.ema = ModelEMA(self.task.inference_network(), e.decay, e.start_iter, e.buffers) if e.enabled else None
        self.iteration = 0
        self.nonfinite_in_a_row = 0
        self.last_good_checkpoint: Path | None = None
        self.best: list[tuple[float, int, Path]] = []
        if self.resume_path is not None:
            self._resume(self.resume_path)
        if self.dist.is_main:
            text = yaml.safe_dump(to_dict(cfg), sort_keys=False).encode()
            from gensr.fileutil import write_bytes_atomic

            write_bytes_atomic(self.run_dir / "config.yaml", text, overwrite=True)

    # -- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> Path | None:
        """Train to ``train.total_iters``; returns the exported model path (main rank) or None."""
        loop = self.cfg.train
        batches = self.task.train_data(self.cfg.seed, self.iteration, self.dist.rank, self.dist.world_size)
        progress = Progress(self.iteration, loop.total_iters, self.log, enabled=self.dist.is_main)
        window: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        try:
            while self.iteration < loop.total_iters:
                with signals_held():  # an interrupt acts after the whole iteration, never inside it
                    stats = self.task.train_step(batches)
                    self.iteration += 1
                    self._after_step(stats)
                for k, v in stats.items():
                    window.setdefault(k, []).append(v)
                progress.update(1)
                if self.iteration % loop.log_every == 0 or self.iteration == loop.total_iters:
                    means = self._log_window(window, time.perf_counter() - t0)
                    progress.report(means)
                    window, t0 = {}, time.perf_counter()
                if self.iteration % loop.checkpoint_every == 0 or self.iteration == loop.total_iters:
                    self.save()
                if loop.eval_every and (self.iteration % loop.eval_every == 0 or self.iteration == loop.total_iters):
                    self.evaluate()
            return self.export(self.run_dir / "model.safetensors") if self.dist.is_main else None
        except KeyboardInterrupt:  # Ctrl-C, SIGTERM/SIGHUP (the CLI raises them so), between iterations
            progress.close()
            self.log.message(f"interrupted at iteration {self.iteration}; saving a checkpoint to resume from")
            self.save()
            raise
        finally:
            progress.close()
            self.close()  # the run folder's lock is released however the run ends

    def close(self) -> None:
        self.log.close()
        if self.lock is not None:
            self.lock.release()
        teardown(self.dist)

    def _after_step(self, stats: dict[str, float]) -> None:
        with warnings.catch_warnings():  # a skipped step means no optimizer.step(); that is intended
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
            for s in self.schedulers.values():
                s.step()
        if stats.get("skipped"):
            self._on_nonfinite()
            return
        self.nonfinite_in_a_row = 0
        if self.ema is not None:
            self.ema.update(self.task.inference_network(), self.iteration)

    def _log_window(self, window: dict[str, list[float]], seconds: float) -> dict[str, float]:
        means = {k: _finite_mean(v) for k, v in window.items()}
        for name, opt in self.task.optimizers.items():
            means["lr" if name == next(iter(self.task.optimizers)) else f"lr_{name}"] = opt.param_groups[0]["lr"]
        means["sec_per_iter"] = seconds / max(1, len(window.get("skipped", [1])))
        self.log.scalars(self.iteration, means)
        return means

    def _on_nonfinite(self) -> None:
        self.nonfinite_in_a_row += 1
        self.log.message(
            f"iteration {self.iteration}: non-finite loss, step skipped ({self.nonfinite_in_a_row} in a row)"
        )
        if self.nonfinite_in_a_row >= self.cfg.train.max_nonfinite:
            last = self.last_good_checkpoint or "none saved yet"
            raise NonFiniteLossError(
                f"{self.nonfinite_in_a_row} non-finite losses in a row at iteration {self.iteration}; "
                f"stopping. Last good checkpoint: {last}"
            )

    # -- evaluation, checkpoints, export ----------------------------------------------------------------------
    def inference_network(self) -> torch.nn.Module:
        """The network evaluated and exported: the EMA average when enabled, else the trained one."""
        return self.ema.shadow if self.ema is not None else self.task.inference_network()

    def evaluate(self) -> dict[str, float] | None:
        if not self.dist.is_main:
            return None
        net = self.inference_network()
        was_training = net.training
        net.eval()
        try:
            scalars = self.task.evaluate(self.iteration, self.log, net)
        finally:
            net.train(was_training)
        if scalars:
            self.log.scalars(self.iteration, scalars, prefix="val")
            shown = ", ".join(f"{k} {v:.4g}" for k, v in scalars.items())
            self.log.message(f"iteration {self.iteration}: evaluation: {shown}")
            self._keep_best(scalars)
        return scalars

    def _keep_best(self, scalars: dict[str, float]) -> None:
        loop = self.cfg.train
        if not loop.keep_best or loop.best_metric not in scalars or not math.isfinite(scalars[loop.best_metric]):
            return
        value = scalars[loop.best_metric]
        key = value if loop.best_mode == "max" else -value
        if len(self.best) >= loop.keep_best and key <= min(b[0] for b in self.best):
            return
        path = self.export(self.run_dir / "models" / "best" / f"iter_{self.iteration:07d}.safetensors")
        self.best.append((key, self.iteration, path))
        self.best.sort(key=lambda b: (-b[0], b[1]))
        for _, _, old in self.best[loop.keep_best :]:
            old.unlink(missing_ok=True)
        self.best = self.best[: loop.keep_best]
        self.log.message(f"iteration {self.iteration}: {loop.best_metric} {value:.4g} is among the best; kept {path}")

    def state_dict(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "task": self.task.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": ckpt.rng_state(),
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "best": [[k, it, str(p)] for k, it, p in self.best],
            "config": to_dict(self.cfg),
        }

    def save(self) -> Path | None:
        """Write ``checkpoints/iter_N.safetensors`` (full state) and ``models/latest.safetensors``; keep the
        newest ``train.keep_checkpoints`` states (by iteration number, never the one just written)."""
        if not self.dist.is_main:
            return None
        path = ckpt.save_training_state(self.ckpt_dir / ckpt.checkpoint_name(self.iteration), self.state_dict())
        self.export(self.run_dir / "models" / "latest.safetensors")
        self.last_good_checkpoint = path
        for _, old in ckpt.list_checkpoints(self.ckpt_dir)[: -self.cfg.train.keep_checkpoints]:
            if old != path:
                old.unlink(missing_ok=True)
        return path

    def _find_resume(self, resume: str | None) -> Path | None:
        """The checkpoint to resume from (None: start afresh), its config changes checked against the run's."""
        if not resume:
            return None
        path = ckpt.latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if path is None:
            say(f"no checkpoint in {self.ckpt_dir}; starting from scratch")
            return None
        refused, _ = config_changes(ckpt.read_training_config(path), to_dict(self.cfg))
        if refused:
            raise GensrError(f"{path}: cannot resume with a changed {'; '.join(refused)} (start a new run instead)")
        return path

    def _resume(self, path: Path) -> None:
        state = ckpt.load_training_state(path)
        _, applied = config_changes(state.get("config", {}), to_dict(self.cfg))
        if int(state["iteration"]) > self.cfg.train.total_iters:
            raise GensrError(
                f"{path}: is at iteration {state['iteration']}, beyond train.total_iters {self.cfg.train.total_iters}"
            )
        self.task.load_state_dict(state["task"])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.best = [(float(k), int(it), Path(p)) for k, it, p in state.get("best", [])]
        self.last_good_checkpoint = path
        self.log.message(f"resumed from {path} at iteration {self.iteration}")
        if applied:
            apply_changed_settings(self.cfg, self.task.optimizers, self.schedulers)
            self.log.message("resume: applied the changed setting(s) " + "; ".join(applied))

    def export(self, path: Path) -> Path:
        """The inference network (EMA weights when enabled) as a model file the task's loader reads."""
        meta = {
            "task": self.cfg.task_kind,
            "name": self.cfg.name,
            "iteration": self.iteration,
            "ema": self.ema is not None,
        }
        return self.task.export(self.inference_network(), path, meta)


def _finite_mean(values: list[float]) -> float:
    good = [v for v in values if math.isfinite(v)]
    return sum(good) / len(good) if good else float("nan")
