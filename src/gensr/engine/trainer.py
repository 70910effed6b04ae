"""The training loop, readable in one sitting. It knows nothing about SR or GANs: a task supplies the networks,
optimisers and one ``train_step``; the trainer supplies data order, schedules, EMA, checkpoints, resume,
validation, logging and the non-finite-loss guard.
"""

from __future__ import annotations

import math
import shutil
import time
import warnings
from pathlib import Path

import torch
import yaml
from torch.utils.data import DataLoader

from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.config import to_dict
from gensr.data.datasets import ResumableSampler, SRTrainDataset, SRValDataset
from gensr.engine import checkpoint as ckpt
from gensr.engine.config import RunConfig
from gensr.engine.distributed import DistInfo, setup, teardown
from gensr.engine.ema import ModelEMA
from gensr.engine.logging import RunLogger
from gensr.engine.schedule import build_scheduler
from gensr.engine.validate import validate
from gensr.errors import NonFiniteLossError
from gensr.models.registry import arch_of, model_config_dict
from gensr.tasks import get_task_class


class Trainer:
    """Runs ``cfg`` from iteration 0, or from a checkpoint with ``resume`` (a path, or "auto" for the latest)."""

    def __init__(self, cfg: RunConfig, resume: str | None = None, dist: DistInfo | None = None) -> None:
        self.cfg = cfg
        self.dist = dist or setup(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.run_dir = cfg.run_dir
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.task = get_task_class(cfg.task)(cfg, self.dist)  # config errors surface here, before any file is written
        self.log = RunLogger(self.run_dir, enabled=self.dist.is_main)
        self.schedulers = {
            k: build_scheduler(opt, cfg.schedule, cfg.train.total_iters)
            for k, opt in self.task.optimizers.items()
        }
        self.ema = ModelEMA(self.task.inference_network(), cfg.ema.decay) if cfg.ema.enabled else None
        self.iteration = 0
        self.nonfinite_in_a_row = 0
        self.last_good_checkpoint: Path | None = None
        if resume:
            self._resume(resume)
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

    # -- data -------------------------------------------------------------------------------------------------
    def _train_loader(self) -> DataLoader:
        d = self.cfg.data.train
        dataset = SRTrainDataset(
            d.hr_dirs,
            self.cfg.scale,
            d.patch_size,
            lr_dirs=d.lr_dirs,
            lr_suffix=d.lr_suffix,
            augment=d.augment,
            seed=self.cfg.seed,
        )
        sampler = ResumableSampler(d.batch_size, self.iteration, self.dist.rank, self.dist.world_size)
        # A private generator: creating the loader's iterator must not draw from the global RNG, which tasks use
        # (e.g. SRFlow's dequantisation noise) and which a resumed run restores exactly.
        loader_rng = torch.Generator().manual_seed(self.cfg.seed)
        return DataLoader(
            dataset,
            batch_size=d.batch_size,
            sampler=sampler,
            num_workers=d.num_workers,
            generator=loader_rng,
            pin_memory=self.dist.device.type == "cuda",
            persistent_workers=d.num_workers > 0,
            drop_last=True,
        )

    # -- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> Path | None:
        """Train to ``train.total_iters``; returns the exported model path (main rank) or None."""
        cfg, loop = self.cfg, self.cfg.train
        batches = iter(self._train_loader())
        progress = _progress(self.iteration, loop.total_iters, self.dist.is_main)
        window: dict[str, list[float]] = {}
        t0 = time.perf_counter()
        try:
            while self.iteration < loop.total_iters:
                batch = next(batches)
                stats = self.task.train_step(batch)
                self.iteration += 1
                with warnings.catch_warnings():  # a skipped step means no optimizer.step(); that is intended
                    warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step")
                    for s in self.schedulers.values():
                        s.step()
                if stats.get("skipped"):
                    self._on_nonfinite(stats)
                else:
                    self.nonfinite_in_a_row = 0
                    if self.ema is not None:
                        self.ema.update(self.task.inference_network())
                for k, v in stats.items():
                    window.setdefault(k, []).append(v)
                progress.update(1)
                if self.iteration % loop.log_every == 0 or self.iteration == loop.total_iters:
                    means = {k: _finite_mean(v) for k, v in window.items()}
                    means["lr"] = next(iter(self.task.optimizers.values())).param_groups[0]["lr"]
                    means["sec_per_iter"] = (time.perf_counter() - t0) / len(window.get("skipped", [1]))
                    self.log.scalars(self.iteration, means)
                    progress.set_postfix({k: f"{means[k]:.4g}" for k in ("loss",) if k in means})
                    window, t0 = {}, time.perf_counter()
                if self.iteration % loop.checkpoint_every == 0 or self.iteration == loop.total_iters:
                    self.save()
                val = cfg.data.val
                if val.hr_dir and (self.iteration % val.every == 0 or self.iteration == loop.total_iters):
                    self.run_validation()
        except KeyboardInterrupt:
            self.log.message(f"interrupted at iteration {self.iteration}; saving a checkpoint to resume from")
            self.save()
            raise
        finally:
            progress.close()
        exported = self.export(self.run_dir / "model.safetensors") if self.dist.is_main else None
        self.log.close()
        teardown(self.dist)
        return exported

    def _on_nonfinite(self, stats: dict[str, float]) -> None:
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

    # -- validation, checkpoints, export ----------------------------------------------------------------------
    def run_validation(self) -> dict[str, float] | None:
        if not self.dist.is_main:
            return None
        v = self.cfg.data.val
        dataset = SRValDataset(v.hr_dir, self.cfg.scale, v.lr_dir, v.lr_suffix)
        net = self.ema.shadow if self.ema is not None else self.task.inference_network()
        was_training = net.training
        net.eval()
        out_dir = self.run_dir / "val" / f"iter_{self.iteration:07d}" if v.save_images else None
        with self.task.autocast():
            means, previews = validate(
                lambda x: self.task.super_resolve(net, x), dataset, self.cfg.scale, self.dist.device, out_dir
            )
        with self.task.autocast():
            means.update(self.task.on_validation(self.iteration, dataset, self.run_dir / "val", self.log))
        net.train(was_training)
        self.log.scalars(self.iteration, means, prefix="val")
        if previews:
            self.log.images(self.iteration, "val/sr", previews[0])
        self.log.message(
            f"iteration {self.iteration}: val Y-PSNR {means['psnr_y']:.3f} dB, SSIM {means['ssim_y']:.4f}, "
            f"LR-PSNR {means['lr_psnr']:.2f} dB"
        )
        return means

    def state_dict(self) -> dict:
        return {
            "iteration": self.iteration,
            "task": self.task.state_dict(),
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "rng": ckpt.rng_state(),
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "config": to_dict(self.cfg),
        }

    def save(self) -> Path | None:
        """Write ``checkpoints/iter_N.pt`` (full state) and ``models/latest.safetensors``; prune old ones."""
        if not self.dist.is_main:
            return None
        path = ckpt.save_training_state(self.ckpt_dir / f"iter_{self.iteration:07d}.pt", self.state_dict())
        self.export(self.run_dir / "models" / "latest.safetensors")
        self.last_good_checkpoint = path
        old = sorted(self.ckpt_dir.glob("iter_*.pt"))[: -self.cfg.train.keep_checkpoints]
        for p in old:
            p.unlink(missing_ok=True)
        return path

    def _resume(self, resume: str) -> None:
        path = ckpt.latest_checkpoint(self.ckpt_dir) if resume == "auto" else Path(resume)
        if path is None:
            self.log.message(f"no checkpoint in {self.ckpt_dir}; starting from scratch")
            return
        state = ckpt.load_training_state(path)
        self.task.load_state_dict(state["task"])
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])
        if self.ema is not None and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        ckpt.set_rng_state(state["rng"])
        self.iteration = int(state["iteration"])
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.last_good_checkpoint = path
        self.log.message(f"resumed from {path} at iteration {self.iteration}")

    def export(self, path: Path) -> Path:
        """The inference model (EMA weights when enabled) as a gensr safetensors file."""
        net = self.ema.shadow if self.ema is not None else self.task.inference_network()
        meta = {
            "task": self.cfg.task,
            "name": self.cfg.name,
            "iteration": self.iteration,
            "ema": self.ema is not None,
        }
        return save_checkpoint(path, net.state_dict(), arch_of(net), model_config_dict(net), meta=meta)


def _finite_mean(values: list[float]) -> float:
    good = [v for v in values if math.isfinite(v)]
    return sum(good) / len(good) if good else float("nan")


def _progress(start: int, total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total, initial=start, disable=not enabled, unit="it", dynamic_ncols=True, smoothing=0.05
    )


def copy_config(src: Path, run_dir: Path) -> None:
    """Keep the original YAML beside the resolved one (for the model card)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, run_dir / "config.original.yaml")
