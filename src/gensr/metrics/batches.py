"""Image sets as the feature-based metrics take them (:mod:`gensr.metrics.inception`,
:mod:`gensr.metrics.classifier_metrics`): one numpy array or torch tensor of images, or an iterable of such
batches (to stream large sets), cut into batches of a fixed size."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

Images = np.ndarray | torch.Tensor | Iterable[np.ndarray | torch.Tensor]


def image_batches(
    images: Images, batch_size: int, convert: Callable[[np.ndarray | torch.Tensor], torch.Tensor]
) -> Iterator[torch.Tensor]:
    """Batches of at most ``batch_size`` images (N, C, H, W), each chunk of ``images`` passed through
    ``convert`` (which checks it and returns a torch tensor) first; ValueError for ``batch_size`` < 1."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    chunks = [images] if isinstance(images, (np.ndarray, torch.Tensor)) else images
    for chunk in chunks:
        chunk = convert(chunk)
        for start in range(0, chunk.shape[0], batch_size):
            yield chunk[start : start + batch_size]
