"""Diversity of several SR samples drawn for one LR input (SRFlow-style stochastic SR).

Two measures, both on the 8-bit scale and in float64:

* :func:`pixel_std` - mean over pixels (and channels) of the per-pixel standard deviation across the N
  samples (population std, ``ddof=0``). 0 when all samples are equal; in grey levels, so comparable across
  image sizes.
* :func:`ntire_diversity_score` - the score of the NTIRE 2021/2022 "Learning the SR space" challenge:
  with a per-sample distance map ``D_i(p)`` to the GT, ``global = min_i mean_p D_i(p)`` (the best single
  sample) and ``local = mean_p min_i D_i(p)`` (the best sample chosen per pixel);
  ``score = (global - local) / global * 100``. The challenge uses spatial LPIPS maps;
  :func:`pixel_distance_maps` gives the pixel-space variant (squared error averaged over RGB), and any other
  maps (e.g. spatial LPIPS) can be passed in. 0 when one sample is best everywhere; higher means the samples
  cover the GT in different places.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from gensr.metrics.fidelity import to_float255

__all__ = ["pixel_std", "pixel_distance_maps", "ntire_diversity_score"]


def _stack(samples: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
    """(N, H, W, C) float64 on the 8-bit scale from N same-size images (see :func:`to_float255`)."""
    if isinstance(samples, np.ndarray) and samples.ndim == 4:
        samples = list(samples)
    imgs = [to_float255(s) for s in samples]
    if len(imgs) < 1:
        raise ValueError("need at least one sample")
    shape = imgs[0].shape
    for i, im in enumerate(imgs):
        if im.shape != shape:
            raise ValueError(f"sample {i} has shape {im.shape}, sample 0 has {shape}")
    return np.stack(imgs)


def pixel_std(samples: Sequence[np.ndarray] | np.ndarray) -> float:
    """Mean over pixels and channels of the per-pixel std across samples (grey levels); needs >= 2 samples."""
    x = _stack(samples)
    if x.shape[0] < 2:
        raise ValueError("pixel_std needs at least two samples")
    return float(x.std(axis=0).mean())


def pixel_distance_maps(samples: Sequence[np.ndarray] | np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(N, H, W) squared error of each sample to ``gt``, averaged over channels, on the 8-bit scale."""
    x = _stack(samples)
    g = to_float255(gt)
    if g.shape != x.shape[1:]:
        raise ValueError(f"GT has shape {g.shape}, samples have {x.shape[1:]}")
    return ((x - g[None]) ** 2).mean(axis=3)


def ntire_diversity_score(distance_maps: np.ndarray) -> float:
    """``(global - local) / global * 100`` from (N, H, W) per-sample distance maps (lower distance = better).

    Returns 0.0 when ``global`` is 0 (some sample equals the GT everywhere: nothing left to gain).
    """
    d = np.asarray(distance_maps, dtype=np.float64)
    if d.ndim != 3 or d.shape[0] < 1:
        raise ValueError(f"expected (N, H, W) distance maps, got shape {d.shape}")
    global_best = float(d.reshape(d.shape[0], -1).mean(axis=1).min())
    local_best = float(d.min(axis=0).mean())
    if global_best == 0.0:
        return 0.0
    return (global_best - local_best) / global_best * 100.0
