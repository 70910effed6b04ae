"""Perceptual (VGG19 feature) loss and discriminator feature matching.

``PerceptualLoss(layer_weights, weights_path, criterion)(output, target)`` =
sum over layers of ``weight * criterion(VGG(output)[layer], VGG(target)[layer])``, with the target features
computed without gradient, VGG frozen in eval mode, ImageNet normalisation of RGB [0, 1] inside
(:mod:`gensr.nn.vgg`). Presets (pass the name as ``layer_weights``):

- ``"esrgan"``: ``{"conv5_4": 1.0}`` -- ESRGAN, features before activation (``vgg19().features[:35]``).
- ``"real-esrgan"``: conv1_2 0.1, conv2_2 0.1, conv3_4 1, conv4_4 1, conv5_4 1 (all pre-ReLU), L1.

The loss weight itself (ESRGAN: 1) is applied by the task.
``FeatureMatchingLoss()(real_features, fake_features)``: mean over layers of L1(fake, real.detach()) on the
intermediate maps a discriminator returns with ``forward(x, return_features=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from gensr.errors import GensrError
from gensr.losses.pixel import pixel_loss_fn
from gensr.nn.vgg import VGG19FeatureExtractor

PRESETS: dict[str, dict[str, float]] = {
    "esrgan": {"conv5_4": 1.0},
    "real-esrgan": {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0},
}


def resolve_layer_weights(layer_weights: Mapping[str, float] | str | None) -> dict[str, float]:
    """A preset name or a {layer: weight} mapping -> {layer: float weight}; GensrError if invalid."""
    if layer_weights is None:
        return dict(PRESETS["esrgan"])
    if isinstance(layer_weights, str):
        key = layer_weights.strip().lower().replace("_", "-")
        if key not in PRESETS:
            raise GensrError(f"unknown perceptual preset {layer_weights!r}; known: {', '.join(PRESETS)}")
        return dict(PRESETS[key])
    if not isinstance(layer_weights, Mapping) or not layer_weights:
        raise GensrError(
            f"perceptual layer_weights must be a non-empty mapping or a preset name, got {layer_weights!r}"
        )
    out = {}
    for name, w in layer_weights.items():
        try:
            out[str(name)] = float(w)
        except (TypeError, ValueError):
            raise GensrError(f"perceptual layer weight for {name!r} must be a number, got {w!r}") from None
    return out


class PerceptualLoss(nn.Module):
    """Perceptual loss ``forward(output, target) -> scalar`` (float32); gradients reach ``output`` only.

    ``layer_weights``: {layer name: weight} or a preset name (see :data:`PRESETS`); default ESRGAN's
    ``{"conv5_4": 1.0}``. ``weights_path``: torchvision vgg19 weights (else $GENSR_VGG19_WEIGHTS).
    ``criterion``: "l1" (default), "mse"/"l2" or "charbonnier".
    """

    def __init__(
        self,
        layer_weights: Mapping[str, float] | str | None = None,
        weights_path: str | os.PathLike | None = None,
        criterion: str = "l1",
    ) -> None:
        super().__init__()
        self.layer_weights = resolve_layer_weights(layer_weights)
        self.criterion_name = str(criterion)
        self.criterion = pixel_loss_fn(criterion)
        self.vgg = VGG19FeatureExtractor(list(self.layer_weights), weights_path=weights_path)

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if output.shape != target.shape:
            raise ValueError(f"perceptual loss: output {tuple(output.shape)} and target {tuple(target.shape)} differ")
        fake = self.vgg(output)
        with torch.no_grad():
            real = self.vgg(target.detach())
        loss = output.new_zeros((), dtype=torch.float32)
        for name, w in self.layer_weights.items():
            if w != 0.0:
                loss = loss + w * self.criterion(fake[name], real[name])
        return loss

    def extra_repr(self) -> str:
        return f"layer_weights={self.layer_weights}, criterion={self.criterion_name!r}"


class FeatureMatchingLoss(nn.Module):
    """Mean over layers of ``criterion(fake_l, real_l.detach())`` for two equal-length lists of D features."""

    def __init__(self, criterion: str = "l1") -> None:
        super().__init__()
        self.criterion_name = str(criterion)
        self.criterion = pixel_loss_fn(criterion)

    def forward(self, real_features: Sequence[torch.Tensor], fake_features: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(real_features) != len(fake_features) or not real_features:
            raise ValueError(
                f"feature matching: got {len(real_features)} real and {len(fake_features)} fake feature maps"
            )
        total = sum(self.criterion(f, r.detach()) for r, f in zip(real_features, fake_features, strict=True))
        return total / len(real_features)

    def extra_repr(self) -> str:
        return repr(self.criterion_name)
