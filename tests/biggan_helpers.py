"""Shared by the BigGAN task and generation tests: synthetic class data, tiny configs, a rule-based classifier."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import yaml

COLOURS = np.array([[230, 40, 40], [40, 220, 60], [50, 70, 235]], dtype=np.float64)  # class 0 red, 1 green, 2 blue


def shapes_images(n_per_class: int, seed: int = 0, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """3 very distinct classes of (size x size) images: a red square, a green disc, blue stripes on a dark
    noisy background; uint8 (N, size, size, 3) and int64 labels (N,), classes interleaved."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    xs, ys = [], []
    for i in range(n_per_class * 3):
        c = i % 3
        img = rng.normal(30, 8, (size, size, 3))
        cy, cx = rng.integers(size // 4, 3 * size // 4, 2)
        r = rng.integers(size // 6, size // 4 + 1)
        if c == 0:
            mask = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
        elif c == 1:
            mask = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        else:
            mask = ((yy + rng.integers(0, 6)) // 3) % 2 == 0
        img[mask] = COLOURS[c] + rng.normal(0, 10, (int(mask.sum()), 3))
        xs.append(np.clip(img, 0, 255).round().astype(np.uint8))
        ys.append(c)
    return np.stack(xs), np.asarray(ys, dtype=np.int64)


def write_shapes_npz(path: Path, n_per_class: int = 64, seed: int = 0) -> Path:
    x, y = shapes_images(n_per_class, seed)
    np.savez(path, x=x, y=y)
    return path


def mean_colour_class(images: np.ndarray) -> np.ndarray:
    """A rule-based classifier of :func:`shapes_images`: the dominant channel of the mean colour of the
    pixels brighter than the background (uint8 NHWC -> int64 (N,))."""
    x = images.astype(np.float64)
    bright = x.max(axis=3, keepdims=True) > 100
    sums = (x * bright).sum(axis=(1, 2)) / np.maximum(bright.sum(axis=(1, 2)), 1)
    return sums.argmax(axis=1).astype(np.int64)


TINY_G = {"resolution": 32, "ch": 4, "dim_z": 16, "shared": True, "shared_dim": 8, "hier": True, "attn": [],
          "init": "N02"}  # fmt: skip
TINY_D = {"ch": 4, "attn": []}


def biggan_config(tmp: Path, data: Path, task: dict | None = None, **top) -> Path:
    """A run config for a tiny 32 px BigGAN on ``data`` (``task``/``top`` override task keys / top-level keys)."""
    cfg = {
        "name": "bg", "output_dir": str(tmp / "run"), "seed": 3,
        "task": {
            "kind": "biggan", "generator": dict(TINY_G), "discriminator": dict(TINY_D),
            "data": {"train": str(data), "batch_size": 8}, "d_steps": 2, "accumulate": 2,
            "eval": {"samples": 30, "classifier": None, "standing_stats": 2, "batch_size": 16},
        },
        "optim": {"lr": 2e-4, "betas": [0.0, 0.999], "networks": {"d": {"lr": 4e-4}}},
        "schedule": {"kind": "constant"},
        "ema": {"enabled": True, "decay": 0.9, "start_iter": 2, "buffers": "average"},
        "train": {"total_iters": 8, "checkpoint_every": 4, "log_every": 1, "eval_every": 0, "threads": 1},
    }  # fmt: skip
    cfg["task"].update(task or {})
    cfg.update(top)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "cfg.yaml").write_text(yaml.safe_dump(cfg))
    return tmp / "cfg.yaml"


def tiny_generator(n_classes: int = 3, seed: int = 0, **overrides) -> torch.nn.Module:
    from gensr.models.biggan import BigGANConfig, BigGANGenerator

    torch.manual_seed(seed)
    kw = {"resolution": 32, "ch": 4, "dim_z": 16, "shared_dim": 8, "g_attn": [], "d_attn": [], "init": "N02"}
    kw.update(overrides)
    return BigGANGenerator(BigGANConfig(n_classes=n_classes, **kw))
