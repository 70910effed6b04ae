"""``gensr train CONFIG.yaml [key=value ...]``: run a training recipe; ``--resume`` continues exactly."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML run config (see configs/)")
    parser.add_argument(
        "overrides", nargs="*", help="dotted overrides, e.g. train.total_iters=1000 optim.lr=1e-4"
    )
    parser.add_argument(
        "--resume",
        nargs="?",
        const="auto",
        default=None,
        help="continue from a training checkpoint (no value: the latest in the run's checkpoints/ folder)",
    )


def run(args: argparse.Namespace) -> int:
    from gensr.engine.config import load_run_config
    from gensr.engine.trainer import Trainer, copy_config

    cfg = load_run_config(args.config, args.overrides)
    trainer = Trainer(cfg, resume=args.resume)
    if trainer.dist.is_main:
        copy_config(Path(args.config), cfg.run_dir)
    exported = trainer.fit()
    if exported is not None:
        print(f"model written to {exported}")
    return 0
