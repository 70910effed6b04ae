"""VGG19 feature extractor for perceptual losses, built without torchvision, loading torchvision's weights.

(VGG16's ``features`` in the same layout are also built here, :func:`build_vgg16_features`, for LPIPS.)

``features`` is an ``nn.Sequential`` with torchvision's ``vgg19().features`` indices (conv 3x3 + in-place
ReLU, 2x2 max-pools), so torchvision's ``vgg19-dcbb9e9d.pth`` (keys ``features.N.weight/bias``; its
``classifier.*`` keys are ignored) loads strictly into it. Nothing is downloaded: the weights file comes
from the ``weights_path`` argument or the ``GENSR_VGG19_WEIGHTS`` environment variable (``.pth`` saved by
``torch.save``, or ``.safetensors`` with the same keys).

Layers are tapped by name: ``conv1_1 .. conv5_4`` (pre-activation), ``relu1_1 .. relu5_4``,
``pool1 .. pool5``; e.g. ESRGAN's ``conv5_4`` is index 34 (``features[:35]``). The net stops after the
deepest requested layer. A tapped output that the next (in-place) ReLU would overwrite is cloned
first. The input is RGB in [0, 1], normalised with the ImageNet mean/std inside. Parameters are frozen
and the module stays in eval mode.

VGG16 (torchvision's "D" configuration, ``vgg16-397923af.pth``): the 31 modules of ``vgg16().features``,
named ``conv1_1 .. conv5_3`` / ``relu1_1 .. relu5_3`` / ``pool1 .. pool5`` in :data:`VGG16_LAYER_INDEX`
(e.g. ``relu1_2`` = 3, ``relu5_3`` = 29); :func:`check_vgg16_state_dict` checks a file's 26 conv tensors.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from torch import nn

from gensr.errors import GensrError
from gensr.nn.torchvision_layout import check_features_state_dict, conv_param_shapes, read_state_dict, weights_file

WEIGHTS_ENV = "GENSR_VGG19_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# torchvision's "E" (VGG19) and "D" (VGG16) configurations: channels per conv, "M" = 2x2 max-pool.
_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M",
                               512, 512, 512, 512, "M", 512, 512, 512, 512, "M")  # fmt: skip
_CFG16: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                 512, 512, 512, "M", 512, 512, 512, "M")  # fmt: skip


def _layer_table(cfg: tuple[int | str, ...] = _CFG) -> tuple[list[str], dict[int, tuple[int, int]]]:
    """Names of the modules of torchvision's ``features`` for ``cfg`` in order, and conv index -> (in_ch, out_ch).

    37 modules for VGG19 (``_CFG``), 31 for VGG16 (``_CFG16``).
    """
    names: list[str] = []
    convs: dict[int, tuple[int, int]] = {}
    block, k, in_ch = 1, 1, 3
    for v in cfg:
        if v == "M":
            names.append(f"pool{block}")
            block, k = block + 1, 1
        else:
            convs[len(names)] = (in_ch, int(v))
            names += [f"conv{block}_{k}", f"relu{block}_{k}"]
            in_ch, k = int(v), k + 1
    return names, convs


LAYER_NAMES, CONV_CHANNELS = _layer_table(_CFG)
LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(LAYER_NAMES)}
VGG16_LAYER_NAMES, VGG16_CONV_CHANNELS = _layer_table(_CFG16)
VGG16_LAYER_INDEX: dict[str, int] = {name: i for i, name in enumerate(VGG16_LAYER_NAMES)}


def resolve_weights_path(weights_path: str | os.PathLike | None = None) -> Path:
    """``weights_path`` or $GENSR_VGG19_WEIGHTS as an existing file; GensrError telling how to provide it."""
    how = (
        "VGG19 weights are needed for the perceptual loss: pass the path of torchvision's "
        f"vgg19-dcbb9e9d.pth (or a .safetensors with the same keys) or set {WEIGHTS_ENV}"
    )
    return weights_file(weights_path, WEIGHTS_ENV, "weights_path", "VGG19 weights file", how)


def load_vgg19_weights(weights_path: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The 32 conv tensors ``features.N.weight/bias`` of a torchvision-layout VGG19 file, checked.

    ``classifier.*`` keys are ignored; any other key, a missing key or a wrong shape is a GensrError
    listing the keys (a vgg19_bn file, a wrapped or prefixed state dict are refused).
    """
    path = resolve_weights_path(weights_path)
    sd = read_state_dict(path, "VGG19 weights", "torchvision vgg19 layout")
    return check_vgg19_state_dict(sd, where=str(path))


def vgg_param_shapes(conv_channels: Mapping[int, tuple[int, int]]) -> dict[str, tuple[int, ...]]:
    """``features.N.weight/bias`` shapes of a VGG ``features`` (3x3 convs) from conv index -> (in_ch, out_ch)."""
    return conv_param_shapes({i: (cin, cout, 3) for i, (cin, cout) in conv_channels.items()})


def _bn_hint(keys: Iterable[str], arch: str) -> str:
    if any("running_mean" in k for k in keys):
        return f" (a {arch.lower()}_bn file? only plain {arch.lower()} is supported)"
    return ""


def check_vgg19_state_dict(sd: Mapping[str, torch.Tensor], where: str = "VGG19 weights") -> dict[str, torch.Tensor]:
    """The conv tensors of a torchvision vgg19 state dict; GensrError on missing/unexpected/misshapen keys."""
    expected = vgg_param_shapes(CONV_CHANNELS)
    return check_features_state_dict(sd, expected, where, "VGG19", _bn_hint(sd, "VGG19"))


def check_vgg16_state_dict(sd: Mapping[str, torch.Tensor], where: str = "VGG16 weights") -> dict[str, torch.Tensor]:
    """The 26 conv tensors of a torchvision vgg16 state dict (``vgg16-397923af.pth``), checked like VGG19's."""
    expected = vgg_param_shapes(VGG16_CONV_CHANNELS)
    return check_features_state_dict(sd, expected, where, "VGG16", _bn_hint(sd, "VGG16"))


def _build_features(names: list[str], convs: Mapping[int, tuple[int, int]], num_layers: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, name in enumerate(names[:num_layers]):
        if name.startswith("conv"):
            cin, cout = convs[i]
            layers.append(nn.Conv2d(cin, cout, 3, 1, 1))
        elif name.startswith("relu"):
            layers.append(nn.ReLU(inplace=True))
        else:
            layers.append(nn.MaxPool2d(2, 2))
    return nn.Sequential(*layers)


def build_vgg19_features(num_layers: int = len(LAYER_NAMES)) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's ``vgg19().features`` (randomly initialised)."""
    return _build_features(LAYER_NAMES, CONV_CHANNELS, num_layers)


def build_vgg16_features(num_layers: int = len(VGG16_LAYER_NAMES)) -> nn.Sequential:
    """The first ``num_layers`` modules of torchvision's ``vgg16().features`` (randomly initialised)."""
    return _build_features(VGG16_LAYER_NAMES, VGG16_CONV_CHANNELS, num_layers)


class VGG19FeatureExtractor(nn.Module):
    """Frozen VGG19 taps: ``forward(x) -> {layer name: feature map}`` for RGB ``x`` in [0, 1] (N, 3, H, W)."""

    def __init__(
        self,
        layers: Iterable[str] = ("conv5_4",),
        weights_path: str | os.PathLike | None = None,
        normalize_input: bool = True,
    ) -> None:
        super().__init__()
        layers = list(dict.fromkeys(layers))
        if not layers:
            raise GensrError("VGG19 feature extractor: no layers requested")
        unknown = [name for name in layers if name not in LAYER_INDEX]
        if unknown:
            raise GensrError(
                f"unknown VGG19 layer(s) {', '.join(map(repr, unknown))}; known: conv1_1..conv5_4, "
                f"relu1_1..relu5_4, pool1..pool5 ({', '.join(LAYER_NAMES)})"
            )
        self.layers = layers
        self._taps = {LAYER_INDEX[name]: name for name in layers}
        depth = max(self._taps) + 1
        sd = load_vgg19_weights(weights_path)
        prefix = "features."
        wanted = {k[len(prefix) :]: v for k, v in sd.items() if int(k.split(".")[1]) < depth}
        with torch.device("meta"):  # no random init: every parameter comes from the file
            self.features = build_vgg19_features(depth)
        self.features.load_state_dict(wanted, strict=True, assign=True)
        self.normalize_input = normalize_input
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        # Clone a tap when the module right after it is an in-place ReLU (it would overwrite the tap).
        self._clone = {
            i
            for i in self._taps
            if i + 1 < depth and isinstance(self.features[i + 1], nn.ReLU) and self.features[i + 1].inplace
        }
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGG19FeatureExtractor:
        """Always stays in eval mode (a frozen loss network)."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"VGG19 expects RGB input (N, 3, H, W), got {tuple(x.shape)}")
        if self.normalize_input:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out: dict[str, torch.Tensor] = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self._taps:
                out[self._taps[i]] = x.clone() if i in self._clone else x
        return out
