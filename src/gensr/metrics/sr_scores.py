"""Per-image score sets for SR results, shared by ``gensr eval`` and ``gensr compare``.

* :func:`image_scores` - one SR image against its GT: PSNR, SSIM (options of :mod:`gensr.metrics.fidelity`),
  LR-PSNR (RGB, whole image, against the LR), and on request NIQE (no-reference, :mod:`gensr.metrics.niqe`)
  and LPIPS (:mod:`gensr.metrics.lpips`, RGB; a gray pair is replicated to three channels).
* :func:`sample_set_scores` - N samples of one stochastic SR model for one LR input: the mean of every score
  over the samples, the best sample (highest PSNR; first on ties) with its scores, and the diversity of the set:
  ``pixel_std`` (mean per-pixel std across samples, grey levels) and the NTIRE 2021 score
  (:func:`gensr.metrics.diversity.ntire_scores`): ``diversity_lpips`` when an LPIPS model is given, else
  ``diversity_pixel`` (squared-error maps; not the challenge's score, so never reported under its name).
  Diversity needs at least two samples (None otherwise).

Images are numpy (H, W, C), C = 1 or 3, uint8 or uint16 (see :func:`gensr.metrics.fidelity.to_float255`).
Scores are floats; PSNR of identical images is ``math.inf``; NIQE is ``math.nan`` where it is undefined (a flat
image). Callers turn inf/NaN into JSON. numpy-only at import; LPIPS imports torch when used.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from gensr.metrics.diversity import ntire_scores, pixel_std
from gensr.metrics.fidelity import lr_psnr, psnr, ssim

if TYPE_CHECKING:
    from gensr.metrics.lpips import LPIPS
    from gensr.metrics.niqe import NiqeParams

__all__ = ["SCORE_KEYS", "image_scores", "sample_set_scores", "mean_scores", "rgb"]

SCORE_KEYS = ("psnr", "ssim", "lr_psnr", "niqe", "lpips")


def rgb(img: np.ndarray) -> np.ndarray:
    """(H, W, 3) view of an image: gray (H, W) / (H, W, 1) replicated, RGB returned as it is."""
    a = np.asarray(img)
    if a.ndim == 2:
        a = a[:, :, None]
    return np.repeat(a, 3, axis=2) if a.shape[2] == 1 else a


def image_scores(
    sr: np.ndarray,
    gt: np.ndarray,
    lr: np.ndarray,
    scale: int,
    *,
    crop_border: int = 0,
    y_channel: bool = False,
    round_y: bool = False,
    niqe_params: NiqeParams | None = None,
    with_niqe: bool = False,
    lpips_model: LPIPS | None = None,
) -> dict[str, float]:
    """Scores of one SR image: ``psnr``, ``ssim``, ``lr_psnr`` (+ ``niqe`` with ``with_niqe``, + ``lpips``).

    ``gt`` has the SR's size (mod-cropped by the caller); ``lr`` is the SR size / ``scale``. ``niqe_params``
    None = MATLAB's default model. ValueError for mismatched sizes and for an image NIQE cannot score.
    """
    opts = dict(crop_border=crop_border, y_channel=y_channel, round_y=round_y)
    out = {"psnr": psnr(sr, gt, **opts), "ssim": ssim(sr, gt, **opts), "lr_psnr": lr_psnr(sr, lr, scale)}
    if with_niqe:
        from gensr.metrics.niqe import niqe

        out["niqe"] = niqe(sr, niqe_params)
    if lpips_model is not None:
        from gensr.metrics.lpips import lpips_distance

        out["lpips"] = float(lpips_distance(rgb(sr), rgb(gt), lpips_model))
    return out


def mean_scores(rows: Sequence[dict[str, Any]], keys: Sequence[str] = SCORE_KEYS) -> dict[str, float]:
    """Mean of each of ``keys`` present in every row (inf stays inf, NaN stays NaN)."""
    out = {}
    for k in keys:
        if rows and all(k in r for r in rows):
            values = [float(r[k]) for r in rows]
            out[k] = math.inf if any(math.isinf(v) and v > 0 for v in values) else float(np.mean(values))
    return out


def sample_set_scores(
    samples: Sequence[np.ndarray], gt: np.ndarray, lr: np.ndarray, scale: int, **options: Any
) -> dict[str, Any]:
    """Scores of N samples for one image (see the module docstring); ``options`` are the keyword options of
    :func:`image_scores` (``crop_border``, ``y_channel``, ``round_y``, ``niqe_params``, ``with_niqe``,
    ``lpips_model``), applied to every sample, and ``lpips_model`` also scores the diversity.

    Returns ``num_samples``, ``mean`` (score -> mean over samples), ``best`` (``index`` and that sample's
    scores), ``per_sample`` (one score dict per sample), ``pixel_std`` and ``diversity_lpips`` or
    ``diversity_pixel`` (None for a single sample; computed on the challenge's crop of the GT to a multiple of 8).
    """
    if len(samples) < 1:
        raise ValueError("need at least one sample")
    lpips_model = options.get("lpips_model")
    rows = [image_scores(s, gt, lr, scale, **options) for s in samples]
    best = max(range(len(rows)), key=lambda i: (rows[i]["psnr"], -i))
    out: dict[str, Any] = {
        "num_samples": len(rows),
        "mean": mean_scores(rows),
        "best": {"index": best, **rows[best]},
        "per_sample": rows,
        "pixel_std": None,
        "diversity_lpips" if lpips_model is not None else "diversity_pixel": None,
    }
    if len(rows) >= 2:
        out["pixel_std"] = pixel_std(list(samples))
        nt = ntire_scores([rgb(s) for s in samples], rgb(gt), None, scale, lpips_model)
        key = "diversity_lpips" if lpips_model is not None else "diversity_pixel"
        out[key] = float(nt[key])
    return out
