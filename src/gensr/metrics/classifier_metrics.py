"""Offline sample-quality measures with a small trained classifier (e.g. :class:`gensr.models.classifier.CifarResNet`).

NOT comparable to published FID or IS: they use the classifier's own feature space and classes, not the TF
Inception's. They exist to track class-conditional generators on machines without the Inception weights:

* :func:`class_accuracy` - how often the classifier assigns a generated sample to the class it was
  conditioned on (or a real image to its label);
* :func:`classifier_frechet_distance` - the Frechet distance between Gaussians fitted to the classifier's
  penultimate-layer features of two image sets, computed by the same exact code as FID
  (:func:`gensr.metrics.frechet.frechet_distance`);
* :func:`classifier_reference_stats` - the reference set's feature statistics, cached as ``.npz`` with a digest of
  the classifier's config and weights (a cache made with another classifier is refused).

The classifier is any module with ``features(x) -> (N, D)`` and ``forward(x) -> (N, classes)`` logits, taking
RGB in [0, 1] (N, 3, H, W). Images: float torch (N, 3, H, W) in [0, 1], uint8 torch (N, 3, H, W) or uint8 numpy
(N, H, W, 3) (divided by 255); or an iterable of such batches. Quantise generated and real images the same way
(e.g. both to uint8) for a fair comparison. The classifier runs in eval mode (its training mode is restored).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass

import numpy as np
import torch
from torch import nn

from gensr.errors import GensrError
from gensr.metrics.batches import Images, image_batches
from gensr.metrics.frechet import FeatureStats, cached_feature_stats, feature_statistics, stats_frechet_distance

EXTRACTOR_PREFIX = "classifier-penultimate (NOT comparable to published FID)"
PREPROCESS = "RGB in [0, 1] (uint8 / 255)"


def as_float_nchw(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A float32 (N, C, H, W) tensor in [0, 1] from float/uint8 torch NCHW or uint8 numpy NHWC."""
    if isinstance(batch, np.ndarray):
        if batch.dtype != np.uint8 or batch.ndim != 4:
            raise ValueError(f"expected uint8 numpy images (N, H, W, C), got {batch.dtype} {batch.shape}")
        return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float().div(255)
    if not isinstance(batch, torch.Tensor) or batch.ndim != 4:
        what = f"shape {tuple(batch.shape)}" if isinstance(batch, torch.Tensor) else type(batch).__name__
        raise ValueError(f"expected images (N, C, H, W), got {what}")
    if batch.dtype == torch.uint8:
        return batch.float().div(255)
    if not batch.is_floating_point():
        raise ValueError(f"expected float images in [0, 1] or uint8, got {batch.dtype}")
    return batch.float()


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def classifier_predictions(classifier: nn.Module, images: Images, batch_size: int = 256) -> np.ndarray:
    """Arg-max class (N,) int64 of each image."""
    device, preds = _device(classifier), []
    with _eval_mode(classifier):
        for batch in image_batches(images, batch_size, as_float_nchw):
            preds.append(classifier(batch.to(device)).argmax(dim=1).cpu().numpy())
    if not preds:
        raise GensrError("no images to classify")
    return np.concatenate(preds).astype(np.int64)


def class_accuracy(
    classifier: nn.Module, images: Images, labels: np.ndarray | torch.Tensor | Iterable[int], batch_size: int = 256
) -> float:
    """Fraction of ``images`` whose predicted class equals ``labels`` (N,) (the conditioning class of a sample).

    An offline class-consistency measure, NOT comparable to the Inception Score.
    """
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels).astype(np.int64).ravel()
    pred = classifier_predictions(classifier, images, batch_size=batch_size)
    if pred.shape[0] != y.shape[0]:
        raise GensrError(f"{pred.shape[0]} images but {y.shape[0]} labels")
    return float((pred == y).mean())


def classifier_features(classifier: nn.Module, images: Images, batch_size: int = 256) -> np.ndarray:
    """Penultimate-layer features (N, D) float64 of ``images`` (``classifier.features``)."""
    device, feats = _device(classifier), []
    with _eval_mode(classifier):
        for batch in image_batches(images, batch_size, as_float_nchw):
            feats.append(classifier.features(batch.to(device)).float().cpu().numpy())
    if not feats:
        raise GensrError("no images to compute classifier features of")
    return np.concatenate(feats).astype(np.float64)


def classifier_identity(classifier: nn.Module) -> dict[str, str]:
    """Identity of the feature space: class name + config, and a digest of every tensor of the state dict."""
    config = getattr(classifier, "config", None)
    config_text = json.dumps(asdict(config), sort_keys=True) if is_dataclass(config) else repr(config)
    h = hashlib.sha256(config_text.encode())
    for k, v in sorted(classifier.state_dict().items()):
        t = v.detach().cpu().contiguous()
        h.update(f"{k}:{t.dtype}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    name = f"{EXTRACTOR_PREFIX}: {type(classifier).__name__} {config_text}"
    return {"extractor": name, "weights": h.hexdigest()[:16], "preprocess": PREPROCESS}


def classifier_feature_stats(classifier: nn.Module, images: Images, batch_size: int = 256) -> FeatureStats:
    """Mean and unbiased covariance (float64) of the classifier features of ``images`` (N >= 2)."""
    ident = classifier_identity(classifier)
    feats = classifier_features(classifier, images, batch_size=batch_size)
    return feature_statistics(feats, ident["extractor"], ident["weights"], ident["preprocess"])


def classifier_reference_stats(
    classifier: nn.Module, images: Images, cache_path: str | os.PathLike | None = None, batch_size: int = 256
) -> FeatureStats:
    """Reference feature statistics, loaded from ``cache_path`` if it was made by this very classifier, else
    computed (and saved there); a cache of another classifier is a GensrError."""
    return cached_feature_stats(
        cache_path,
        classifier_identity(classifier),
        lambda: classifier_feature_stats(classifier, images, batch_size=batch_size),
    )


def classifier_frechet_distance(
    classifier: nn.Module, images_a: Images | FeatureStats, images_b: Images | FeatureStats, batch_size: int = 256
) -> float:
    """Frechet distance between two image sets (or cached statistics) in the classifier's feature space.

    Same exact formula and code as FID; NOT comparable to published FID values.
    """
    stats = [
        s if isinstance(s, FeatureStats) else classifier_feature_stats(classifier, s, batch_size=batch_size)
        for s in (images_a, images_b)
    ]
    expect = classifier_identity(classifier)
    for s in stats:
        if s.identity() != expect:
            raise GensrError("cached statistics were made with another classifier (weights or config differ)")
    return stats_frechet_distance(stats[0], stats[1])
