"""``gensr train CONFIG.yaml [key=value ...]``: run a training recipe; ``--resume`` continues exactly.

A run folder (``runs/<name>`` or ``output_dir``) that holds a previous run is refused unless ``--resume``
(continue it) or ``--overwrite`` (delete its checkpoints, models and logs and start again); a folder in use by
another training is refused. Ctrl-C, SIGTERM and SIGHUP save a checkpoint before the process ends.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

INTERMIXED = "overrides"  # `gensr train CONFIG --resume key=value ...` works like `... key=value --resume`


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML run config (see configs/)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.total_iters=1000 optim.lr=1e-4")
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        metavar="CKPT",
        help="continue from a training checkpoint (no value: the latest in the run's checkpoints/ folder)",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="start again in a run folder that holds a previous run (deletes it)"
    )


def _resume_value_as_override(args: argparse.Namespace) -> None:
    """``--resume key=value`` (an override, not a file) means ``--resume`` and the override ``key=value``."""
    import re

    value = args.resume
    if value and value != "auto" and re.match(r"^[A-Za-z_][\w.]*=", value) and not Path(value).exists():
        args.resume = "auto"
        args.overrides = [value, *args.overrides]


def run(args: argparse.Namespace) -> int:
    import torch

    from gensr.config import from_dict
    from gensr.engine.config import load_run_config
    from gensr.engine.trainer import Trainer
    from gensr.errors import GensrError
    from gensr.tasks import get_task_class

    _resume_value_as_override(args)
    cfg = load_run_config(args.config, args.overrides)
    try:
        task_class = get_task_class(cfg.task_kind)
        options = from_dict(task_class.Options, cfg.task, where="task")  # every config mistake before any work
    except GensrError as exc:
        raise GensrError(f"{args.config}: {exc}") from None
    task_class.check(options, cfg)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    if cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
        raise GensrError(f"train.device={cfg.train.device}: CUDA is not available on this machine (use cpu or auto)")
    trainer = Trainer(cfg, task_class.from_config, resume=args.resume, overwrite=args.overwrite)
    if trainer.dist.is_main:
        original = cfg.run_dir / "config.original.yaml"
        if Path(args.config).resolve() != original.resolve():
            shutil.copyfile(args.config, original)
    exported = trainer.fit()
    if exported is not None:
        print(f"model written to {exported}", file=sys.stderr)
    return 0
