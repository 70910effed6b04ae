"""AlexNet convolutional features in torchvision's key layout, built without torchvision (the LPIPS backbone).

``build_alexnet_features()`` is an ``nn.Sequential`` with the 13 modules of torchvision's
``alexnet().features`` at the same indices, so ``alexnet-owt-7be5be79.pth`` (keys ``features.{0,3,6,8,10}``
``.weight/.bias``; its ``classifier.*`` keys are ignored) loads strictly into it::

    0 conv1 3->64 11x11 stride 4 pad 2   1 relu1   2 pool1 (max 3x3, stride 2)
    3 conv2 64->192 5x5 pad 2            4 relu2   5 pool2 (max 3x3, stride 2)
    6 conv3 192->384 3x3 pad 1           7 relu3
    8 conv4 384->256 3x3 pad 1           9 relu4
    10 conv5 256->256 3x3 pad 1          11 relu5  12 pool5 (max 3x3, stride 2)

ReLUs are in place, as in torchvision. Layer names map to indices in :data:`LAYER_INDEX`. The input
normalisation is the caller's business (LPIPS applies its own scaling layer).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from gensr.nn.torchvision_layout import check_features_state_dict, conv_param_shapes

LAYER_NAMES: tuple[str, ...] = (
    "conv1", "relu1", "pool1", "conv2", "relu2", "pool2", "conv3", "relu3",
    "conv4", "relu4", "conv5", "relu5", "pool5",
)  # fmt: skip
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}

# conv index -> (in_ch, out_ch, kernel, stride, padding)
CONVS: dict[int, tuple[int, int, int, int, int]] = {
    0: (3, 64, 11, 4, 2),
    3: (64, 192, 5, 1, 2),
    6: (192, 384, 3, 1, 1),
    8: (384, 256, 3, 1, 1),
    10: (256, 256, 3, 1, 1),
}


def alexnet_param_shapes() -> dict[str, tuple[int, ...]]:
    """``features.N.weight/bias`` -> shape for the five convs of torchvision's AlexNet."""
    return conv_param_shapes({i: (cin, cout, k) for i, (cin, cout, k, _, _) in CONVS.items()})


def check_alexnet_state_dict(sd: Mapping[str, torch.Tensor], where: str = "AlexNet weights") -> dict[str, torch.Tensor]:
    """The 10 conv tensors of a torchvision alexnet state dict; GensrError listing missing/unexpected/misshapen keys."""
    return check_features_state_dict(sd, alexnet_param_shapes(), where, "AlexNet")


def build_alexnet_features(num_layers: int = len(LAYER_NAMES)) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's ``alexnet().features`` (randomly initialised)."""
    if not 1 <= num_layers <= len(LAYER_NAMES):
        raise ValueError(f"num_layers must be in 1..{len(LAYER_NAMES)}, got {num_layers}")
    layers: list[nn.Module] = []
    for i, name in enumerate(LAYER_NAMES[:num_layers]):
        if name.startswith("conv"):
            cin, cout, k, stride, pad = CONVS[i]
            layers.append(nn.Conv2d(cin, cout, k, stride, pad))
        elif name.startswith("relu"):
            layers.append(nn.ReLU(inplace=True))
        else:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2))
    return nn.Sequential(*layers)
