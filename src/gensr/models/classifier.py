"""A small CIFAR-10 classifier (ResNet-20 by default) for offline sample-quality measures.

The real Inception weights behind FID/IS cannot be downloaded everywhere; this network, trained on the
CIFAR-10 subset with the generic trainer, gives the offline stand-ins of :mod:`gensr.metrics.classifier_metrics`
(accuracy of class-conditional samples, Frechet distance in its feature space). Those numbers are NOT
comparable to published FID or IS.

Architecture (He et al. 2016, section 4.2, with projection shortcuts): conv 3x3 (``widths[0]``) -> BN -> ReLU;
three stages of ``blocks`` basic residual blocks (conv 3x3 -> BN -> ReLU -> conv 3x3 -> BN, + shortcut, ReLU)
at 32x32, 16x16 and 8x8 with ``widths`` channels (the first block of stages 2 and 3 has stride 2 and a 1x1
conv + BN shortcut); global average pool -> ``features`` (N, widths[-1]); linear -> logits (N, num_classes).
The defaults (widths 16/32/64, 3 blocks) are ResNet-20: 272,474 parameters (1.09 MB in float32), 41 M
multiply-adds per image. The paper reports 91.25 % CIFAR-10 test accuracy for ResNet-20 (with zero-padding
identity shortcuts; this one projects) with its recipe: SGD lr 0.1, momentum 0.9, weight decay 1e-4, batch 128,
64k iterations, random flips and 4-pixel-padded 32x32 crops.

Input: RGB in [0, 1], (N, in_ch, input_size, input_size) = (N, 3, 32, 32) by default; with ``normalize`` the
CIFAR-10 channel mean/std are subtracted/divided inside (constants, not parameters; for ``in_ch`` != 3 the input
is mapped to [-1, 1] instead).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gensr.config import check_bounds, check_positive, check_positive_value

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


@dataclass
class ClassifierConfig:
    """Hyper-parameters of :class:`CifarResNet` (defaults: ResNet-20 for CIFAR-10)."""

    num_classes: int = 10
    in_ch: int = 3
    input_size: int = 32
    widths: tuple[int, ...] = (16, 32, 64)
    blocks: int = 3
    normalize: bool = True

    def __post_init__(self) -> None:
        check_bounds(
            self,
            {
                "num_classes": (1, 100_000),
                "in_ch": (1, 64),
                "input_size": (4, 4096),
                "widths": (1, 4096),
                "blocks": (1, 64),
            },
        )
        if isinstance(self.widths, list):
            self.widths = tuple(self.widths)
        if not isinstance(self.widths, tuple) or not self.widths:
            raise ValueError(f"widths must be a non-empty list of channel counts, got {self.widths!r}")
        check_positive(self, "num_classes", "in_ch", "input_size", "blocks")
        for w in self.widths:
            check_positive_value("widths entry", w)
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        factor = 2 ** (len(self.widths) - 1)
        if self.input_size % factor:
            raise ValueError(f"input_size {self.input_size} must be divisible by 2**(len(widths) - 1) = {factor}")
        if not isinstance(self.normalize, bool):
            raise ValueError(f"normalize must be true or false, got {self.normalize!r}")

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


class BasicBlock(nn.Module):
    """conv3x3(stride) -> BN -> ReLU -> conv3x3 -> BN, plus identity or 1x1-conv + BN shortcut, then ReLU."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """CIFAR ResNet classifier: ``forward(x) -> logits (N, num_classes)``, ``features(x) -> (N, widths[-1])``.

    ``x``: RGB in [0, 1], (N, in_ch, input_size, input_size). ``features`` is the penultimate layer (the
    globally pooled last stage, after its ReLU); ``forward(x) == fc(features(x))``.
    """

    kind = "classifier"

    def __init__(self, config: ClassifierConfig | None = None) -> None:
        super().__init__()
        self.config = c = config or ClassifierConfig()
        self.conv1 = nn.Conv2d(c.in_ch, c.widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c.widths[0])
        stages, cin = [], c.widths[0]
        for i, width in enumerate(c.widths):
            stride = 1 if i == 0 else 2
            blocks = [BasicBlock(cin if j == 0 else width, width, stride if j == 0 else 1) for j in range(c.blocks)]
            stages.append(nn.Sequential(*blocks))
            cin = width
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(c.feature_dim, c.num_classes)
        rgb = c.in_ch == len(CIFAR10_MEAN)
        mean = CIFAR10_MEAN if rgb else (0.5,) * c.in_ch
        std = CIFAR10_STD if rgb else (0.5,) * c.in_ch
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @property
    def num_classes(self) -> int:
        return self.config.num_classes

    @property
    def feature_dim(self) -> int:
        return self.config.feature_dim

    def _check_input(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or tuple(x.shape[1:]) != (c.in_ch, c.input_size, c.input_size):
            raise ValueError(
                f"classifier expects input of shape (N, {c.in_ch}, {c.input_size}, {c.input_size}) in [0, 1], "
                f"got {tuple(x.shape)}"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (N, widths[-1]) of RGB ``x`` in [0, 1]."""
        self._check_input(x)
        if self.config.normalize:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        x = F.relu(self.bn1(self.conv1(x)))
        return self.stages(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
