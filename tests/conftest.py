"""Shared pytest fixtures: the benchmark/training data folder (skips cleanly when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent


def _datasets_root() -> Path:
    env = os.environ.get("GENSR_DATASETS")
    return Path(env) if env else REPO.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """``../shared/datasets`` (or $GENSR_DATASETS); the test is skipped when it is missing."""
    root = _datasets_root()
    if not (root / "Set5" / "HR").is_dir():
        pytest.skip(f"benchmark datasets not found at {root} (set GENSR_DATASETS)")
    return root


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    """A tiny random x4 RRDBNet (nf 8, nb 1, gc 4) saved as a gensr checkpoint."""
    from gensr.checkpoints.gensr_format import save_checkpoint
    from gensr.models.registry import build_model, model_config_dict

    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    path = tmp_path_factory.mktemp("ck") / "tiny.safetensors"
    save_checkpoint(path, net.state_dict(), "rrdbnet", model_config_dict(net))
    return path


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


def make_trainer(cfg, **kwargs):
    """A Trainer for ``cfg`` with the task class ``gensr train`` would use (``task.kind``)."""
    from gensr.engine.trainer import Trainer
    from gensr.tasks import get_task_class

    return Trainer(cfg, get_task_class(cfg.task_kind).from_config, **kwargs)


def read_training_state(path):
    """A training checkpoint (``iter_N.safetensors``) as a nested dict."""
    from gensr.engine.checkpoint import load_training_state

    return load_training_state(path)
