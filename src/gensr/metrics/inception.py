"""Inception Score and FID with the TF Inception-v3 of :mod:`gensr.nn.inception`, computed as torch-fidelity does.

Images are uint8 RGB: numpy (N, H, W, 3) as :mod:`gensr.io` reads them, or torch (N, 3, H, W); any size (the
network resizes to 299x299 with TF1's bilinear resize). An iterable of such batches streams large sets.

* **IS** (:func:`inception_score`): softmax over the 1008 *unbiased* logits (``pool_3 @ fc.weight.T``, no fc
  bias) in float64; the N images are shuffled with ``np.random.RandomState(2020).permutation(N)`` (torch-fidelity's
  default ``samples_shuffle=True, rng_seed=2020``; ``shuffle=False`` keeps the given order) and cut into 10
  splits at ``i * N // 10``; per split ``exp(mean_x KL(p(y|x) || p(y)))`` with p(y) the split's mean; the
  result is the mean and the population std (``ddof=0``) over splits. Needs N >= splits. The published protocol
  uses 50 000 images (10 x 5 000).
* **FID** (:func:`fid_statistics`, :func:`frechet_inception_distance`): mean and unbiased covariance of the
  2048-d ``pool_3`` features in float64 and the exact Frechet distance of :mod:`gensr.metrics.frechet`
  (symmetric square roots and singular values, no Newton-Schulz). Published numbers use 50 000 generated images
  against the training-set statistics; always report N.
* **Reference statistics** (:func:`reference_stats`): computed once and cached as ``.npz`` with the weights
  digest, the extractor name and the preprocessing; a cache made otherwise is refused.

Values are comparable to published FID/IS only with the real TF 2015-12-05 weights and the same protocol.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from gensr.errors import GensrError
from gensr.metrics.batches import Images, image_batches
from gensr.metrics.frechet import FeatureStats, cached_feature_stats, feature_statistics, stats_frechet_distance
from gensr.nn.inception import EXTRACTOR, PREPROCESS, InceptionV3FID

IS_SPLITS = 10
IS_SHUFFLE_SEED = 2020
FID_FEATURES = f"{EXTRACTOR}:pool_3"


def as_uint8_nchw(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 numpy (N, H, W, 3) or torch (N, 3, H, W) -> torch uint8 (N, 3, H, W); ValueError otherwise."""
    if isinstance(batch, np.ndarray):
        if batch.dtype != np.uint8 or batch.ndim != 4 or batch.shape[3] != 3:
            raise ValueError(f"expected uint8 (N, H, W, 3) images, got {batch.dtype} {batch.shape}")
        return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2)
    if not isinstance(batch, torch.Tensor) or batch.dtype != torch.uint8 or batch.ndim != 4 or batch.shape[1] != 3:
        what = f"{batch.dtype} {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"expected uint8 images, numpy (N, H, W, 3) or torch (N, 3, H, W), got {what}")
    return batch


@torch.inference_mode()
def inception_outputs(
    net: InceptionV3FID, images: Images, batch_size: int = 50, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``pool_3`` features (N, 2048) and unbiased logits (N, 1008), float32 numpy, in image order.

    Batches run on the device of ``net``; the result does not depend on ``batch_size``. ``progress``: a tqdm bar
    on stderr when it is a terminal.
    """
    from tqdm import tqdm

    device = next(net.parameters()).device
    pools, logits = [], []
    # disable=None: a bar only on a terminal, so that logs and error lines stay clean
    with tqdm(unit="img", desc="inception", leave=False, disable=None if progress else True) as bar:
        for batch in image_batches(images, batch_size, as_uint8_nchw):
            pool, logit = net(batch.to(device))
            pools.append(pool.float().cpu().numpy())
            logits.append(logit.float().cpu().numpy())
            bar.update(batch.shape[0])
    if not pools:
        raise GensrError("no images to compute Inception features of")
    return np.concatenate(pools), np.concatenate(logits)


def inception_score(
    logits: np.ndarray, splits: int = IS_SPLITS, shuffle: bool = True, seed: int = IS_SHUFFLE_SEED
) -> tuple[float, float]:
    """(mean, std) of the Inception Score over ``splits`` splits of (N, C) unbiased logits; see the module doc."""
    lg = np.asarray(logits, dtype=np.float64)
    if lg.ndim != 2:
        raise ValueError(f"expected (N, C) logits, got shape {lg.shape}")
    n = lg.shape[0]
    if splits < 1:
        raise ValueError(f"splits must be >= 1, got {splits}")
    if n < splits:
        raise GensrError(f"the Inception Score with {splits} splits needs at least {splits} images, got {n}")
    if shuffle:
        lg = lg[np.random.RandomState(seed).permutation(n)]
    shifted = lg - lg.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(log_p)
    scores = []
    for i in range(splits):
        lo, hi = i * n // splits, (i + 1) * n // splits
        log_py = np.log(p[lo:hi].mean(axis=0))
        kl = (p[lo:hi] * (log_p[lo:hi] - log_py)).sum(axis=1).mean()
        scores.append(float(np.exp(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def inception_identity(net: InceptionV3FID) -> dict[str, str]:
    """What cached FID statistics must match: extractor and layer, weights digest, preprocessing."""
    return {"extractor": FID_FEATURES, "weights": net.weights_digest, "preprocess": PREPROCESS}


def fid_statistics(net: InceptionV3FID, pool_features: np.ndarray) -> FeatureStats:
    """FID statistics (float64 mean, unbiased covariance) of (N, 2048) ``pool_3`` features from ``net``."""
    ident = inception_identity(net)
    return feature_statistics(pool_features, ident["extractor"], ident["weights"], ident["preprocess"])


def image_fid_statistics(
    net: InceptionV3FID, images: Images, batch_size: int = 50, progress: bool = False
) -> FeatureStats:
    """FID statistics of uint8 images (see the module docstring for the accepted forms)."""
    pool, _ = inception_outputs(net, images, batch_size=batch_size, progress=progress)
    return fid_statistics(net, pool)


def reference_stats(
    net: InceptionV3FID,
    images: Images,
    cache_path: str | os.PathLike | None = None,
    batch_size: int = 50,
    progress: bool = False,
) -> FeatureStats:
    """Statistics of the reference images, read from ``cache_path`` when it exists (and was made with the same
    weights and preprocessing, else GensrError), otherwise computed and written there."""
    return cached_feature_stats(
        cache_path,
        inception_identity(net),
        lambda: image_fid_statistics(net, images, batch_size=batch_size, progress=progress),
    )


def fid_from_stats(a: FeatureStats, b: FeatureStats) -> float:
    """FID between two sets of statistics (refused when they come from different weights/preprocessing)."""
    return stats_frechet_distance(a, b)


def frechet_inception_distance(net: InceptionV3FID, images_a: Images, images_b: Images, batch_size: int = 50) -> float:
    """FID between two image sets (symmetric in its arguments)."""
    return fid_from_stats(
        image_fid_statistics(net, images_a, batch_size=batch_size),
        image_fid_statistics(net, images_b, batch_size=batch_size),
    )
