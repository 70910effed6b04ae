"""Diversity of several SR samples drawn for one LR input (SRFlow-style stochastic SR).

Measures (float64; the pixel-based ones on the 8-bit scale):

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
* :func:`lpips_distance_maps` - the challenge's maps: spatial LPIPS (AlexNet, v0.1) of each sample to the GT.
* :func:`ntire_scores` - the whole per-image protocol of the challenge's ``measure.py`` (see there).

The module is numpy-only at import; the LPIPS functions import torch when called.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gensr.metrics.fidelity import lr_consistency_target, lr_psnr, to_float255

if TYPE_CHECKING:
    from gensr.metrics.lpips import LPIPS

__all__ = ["pixel_std", "pixel_distance_maps", "lpips_distance_maps", "ntire_diversity_score", "ntire_scores"]

NTIRE_CROP_MULTIPLE = 8  # measure.py crops the GT to a multiple of 8 (the challenge's scales are 4 and 8)


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


def lpips_distance_maps(samples: Sequence[np.ndarray] | np.ndarray, gt: np.ndarray, model: LPIPS) -> np.ndarray:
    """(N, H, W) float64 spatial LPIPS maps of each RGB sample to ``gt`` (uint8 (H, W, 3), or see ``to_float255``).

    ``model`` is a :class:`gensr.metrics.lpips.LPIPS` (AlexNet for the challenge); the GT's features are computed
    once and the samples go through one at a time, on the model's device.
    """
    import torch

    from gensr.metrics.lpips import image_tensor, model_device

    device = model_device(model)
    g = image_tensor(gt).to(device)
    if isinstance(samples, np.ndarray) and samples.ndim == 4:
        samples = list(samples)
    if len(samples) < 1:
        raise ValueError("need at least one sample")
    maps = []
    with torch.inference_mode():
        fg = model.features(g)
        for i, sample in enumerate(samples):
            x = image_tensor(sample).to(device)
            if x.shape != g.shape:
                raise ValueError(f"sample {i} has shape {np.asarray(sample).shape}, GT has {np.asarray(gt).shape}")
            d = model.compare(model.features(x), fg, g.shape[-2:], spatial=True)
            maps.append(d[0, 0].double().cpu().numpy())
    return np.stack(maps)


def _ntire_crop(samples: Sequence[np.ndarray] | np.ndarray, gt: np.ndarray, scale: int):
    """GT cropped top-left to a multiple of lcm(8, scale), and every sample cropped to the same size."""
    gt = np.asarray(gt)
    multiple = math.lcm(NTIRE_CROP_MULTIPLE, scale)
    h, w = gt.shape[0] - gt.shape[0] % multiple, gt.shape[1] - gt.shape[1] % multiple
    if h == 0 or w == 0:
        raise ValueError(f"GT {gt.shape[1]}x{gt.shape[0]} is smaller than the crop multiple {multiple}")
    cropped = []
    for i, s in enumerate(samples):
        s = np.asarray(s)
        if s.shape[0] < h or s.shape[1] < w or s.shape[2:] != gt.shape[2:]:
            raise ValueError(f"sample {i} has shape {s.shape}; the cropped GT is {(h, w) + gt.shape[2:]}")
        cropped.append(s[:h, :w])
    return cropped, gt[:h, :w]


def ntire_scores(
    samples: Sequence[np.ndarray] | np.ndarray,
    gt: np.ndarray,
    lr: np.ndarray | None,
    scale: int,
    lpips_model: LPIPS | None = None,
) -> dict[str, Any]:
    """One image's NTIRE 2021 "Learning the SR space" scores, as the challenge's ``measure.py`` computes them.

    Protocol: the GT is cropped (top-left) to a multiple of 8 (``lcm(8, scale)`` for scales other than 2, 4,
    8) and every sample to the same size; the challenge draws 10 samples per image, any N >= 1 is accepted.
    LR-PSNR: PSNR on RGB, whole image, of the MATLAB-bicubic integer-path downscale (uint8, rounded) of each
    sample against the LR: with ``lr=None`` the reference is ``imresize(cropped GT, 1/scale)`` exactly as in
    ``measure.py``; a given ``lr`` is cropped to the matching top-left region (it can differ from that
    reference in the last pixels of the crop, where bicubic borders differ). The challenge's bar is 45 dB.

    Samples, GT and LR are RGB uint8 (H, W, 3) arrays (uint16 is accepted). Returns ``num_samples``,
    ``lr_psnr`` (list, one per sample), ``lr_psnr_min`` (measure.py's LRPSNR_worst), ``lr_psnr_mean``; with
    ``lpips_model`` (AlexNet LPIPS for the challenge): ``lpips`` (per-sample mean of the spatial map),
    ``lpips_mean`` and ``diversity_lpips``, the challenge's diversity score. Without a model the diversity
    comes from pixel distance maps instead and is reported as ``diversity_pixel`` (not the challenge's score).
    """
    if int(scale) != scale or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    scale = int(scale)
    if isinstance(samples, np.ndarray) and samples.ndim == 4:
        samples = list(samples)
    if len(samples) < 1:
        raise ValueError("need at least one sample")
    crops, gt_c = _ntire_crop(samples, gt, scale)
    lh, lw = gt_c.shape[0] // scale, gt_c.shape[1] // scale
    if lr is None:
        lr_ref = lr_consistency_target(gt_c, scale)
    else:
        lr = np.asarray(lr)
        if lr.shape[0] < lh or lr.shape[1] < lw:
            raise ValueError(f"LR is {lr.shape[1]}x{lr.shape[0]}, the cropped GT needs at least {lw}x{lh}")
        lr_ref = lr[:lh, :lw]
    lr_psnrs = [lr_psnr(s, lr_ref, scale) for s in crops]
    out: dict[str, Any] = {
        "num_samples": len(crops),
        "lr_psnr": lr_psnrs,
        "lr_psnr_min": float(min(lr_psnrs)),
        "lr_psnr_mean": float(np.mean(lr_psnrs)),
    }
    if lpips_model is None:
        out["diversity_pixel"] = ntire_diversity_score(pixel_distance_maps(crops, gt_c))
        return out
    maps = lpips_distance_maps(crops, gt_c, lpips_model)
    per_sample = maps.reshape(maps.shape[0], -1).mean(axis=1)
    out["lpips"] = [float(v) for v in per_sample]
    out["lpips_mean"] = float(per_sample.mean())
    out["diversity_lpips"] = ntire_diversity_score(maps)
    return out
