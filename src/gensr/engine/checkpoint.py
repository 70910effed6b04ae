"""Training checkpoints: everything needed to continue exactly (weights, optimisers, schedulers, EMA, RNGs)."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensr.errors import GensrError
from gensr.fileutil import atomic_path


def rng_state() -> dict[str, Any]:
    """The state of every random generator a training step may use."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically with torch.save (a kill mid-write leaves the previous file intact)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_training_state`."""
    p = Path(path)
    if not p.is_file():
        raise GensrError(f"{p}: resume checkpoint not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise GensrError(
            f"{p}: unreadable training checkpoint ({' '.join(str(exc).split())[:160]})"
        ) from None


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The ``iter_*.pt`` with the highest iteration in ``folder`` (None if there is none)."""
    d = Path(folder)
    if not d.is_dir():
        return None
    found = sorted(
        d.glob("iter_*.pt"), key=lambda p: int(p.stem.split("_")[1]) if p.stem[5:].isdigit() else -1
    )
    return found[-1] if found else None
