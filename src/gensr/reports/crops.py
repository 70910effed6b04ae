"""Where the models of a comparison differ most: crop windows and the tiles shown side by side.

The score of a pixel is, in grey levels, ``|GAN - flow mean|`` (mean absolute difference over channels) plus
the per-pixel std of the flow's samples, whichever of the two exist; without either, the per-pixel std across
all the outputs shown. A window's score is the mean over it (box filter on an integral image, evaluated on a
grid of stride side/4 plus the last row and column). Per image the windows are picked greedily without overlap;
across images the best window of every image comes before the second-best of any, then by score.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["CROP_LR", "STD_GAIN", "score_map", "spread_map", "best_windows", "choose_crops", "tile", "std_tile"]

CROP_LR = 24  # crop side in LR pixels (96 HR pixels at x4)
STD_GAIN = 8.0  # std map shown as grey level 8 x std: a std of 32 grey levels or more is white


def _float(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img, dtype=np.float64)
    return a[:, :, None] if a.ndim == 2 else a


def score_map(gan: np.ndarray | None, flow_mean: np.ndarray | None, std: np.ndarray | None) -> np.ndarray | None:
    """(H, W) float64 disagreement in grey levels from uint8 (H, W, C) images and an (H, W) std map."""
    total = None
    if gan is not None and flow_mean is not None:
        total = np.abs(_float(gan) - _float(flow_mean)).mean(axis=2)
    if std is not None:
        total = std.astype(np.float64) if total is None else total + std
    return total


def spread_map(outputs: Sequence[np.ndarray]) -> np.ndarray | None:
    """(H, W) per-pixel std across ``outputs`` (uint8 (H, W, C)), mean over channels; None for fewer than 2."""
    if len(outputs) < 2:
        return None
    return np.stack([_float(o) for o in outputs]).std(axis=0).mean(axis=2)


def _starts(n: int, side: int) -> list[int]:
    stride = max(1, side // 4)
    starts = list(range(0, n - side + 1, stride))
    if starts[-1] != n - side:
        starts.append(n - side)
    return starts


def best_windows(scores: np.ndarray, side: int, count: int) -> list[tuple[float, int, int]]:
    """Up to ``count`` non-overlapping ``side`` x ``side`` windows of highest mean score: (score, y, x)."""
    h, w = scores.shape
    side = min(side, h, w)
    ii = np.zeros((h + 1, w + 1))
    ii[1:, 1:] = scores.cumsum(0).cumsum(1)
    cands = []
    for y in _starts(h, side):
        for x in _starts(w, side):
            s = ii[y + side, x + side] - ii[y, x + side] - ii[y + side, x] + ii[y, x]
            cands.append((float(s) / (side * side), y, x))
    cands.sort(key=lambda c: (-c[0], c[1], c[2]))
    picked: list[tuple[float, int, int]] = []
    for c in cands:
        if len(picked) >= count:
            break
        if all(abs(c[1] - p[1]) >= side or abs(c[2] - p[2]) >= side for p in picked):
            picked.append(c)
    return picked


def choose_crops(maps: dict[str, np.ndarray], side: int, count: int) -> list[dict[str, Any]]:
    """``count`` crops over all images (name -> score map): ``image``, ``x``, ``y``, ``w``, ``h``, ``score``."""
    ranked = []
    for name, m in maps.items():
        s = min(side, *m.shape)
        for rank, (score, y, x) in enumerate(best_windows(m, side, count)):
            ranked.append((rank, -score, name, {"image": name, "x": x, "y": y, "w": s, "h": s, "score": score}))
    ranked.sort(key=lambda r: r[:3])
    return [r[3] for r in ranked[:count]]


def tile(img: np.ndarray, box: dict[str, Any]) -> np.ndarray:
    """The crop ``box`` of a uint8 (H, W, C) image as (h, w, 3) uint8 (gray replicated)."""
    a = np.asarray(img)
    a = a[:, :, None] if a.ndim == 2 else a
    c = a[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]]
    return np.ascontiguousarray(np.repeat(c, 3, axis=2) if c.shape[2] == 1 else c)


def std_tile(std: np.ndarray, box: dict[str, Any]) -> np.ndarray:
    """The crop ``box`` of an (H, W) std map (grey levels) as a (h, w, 3) uint8 picture (x :data:`STD_GAIN`)."""
    c = std[box["y"] : box["y"] + box["h"], box["x"] : box["x"] + box["w"]]
    g = np.clip(np.round(c.astype(np.float64) * STD_GAIN), 0, 255).astype(np.uint8)
    return np.repeat(g[:, :, None], 3, axis=2)
