"""LPIPS v0.1 (Zhang et al. 2018, the ``lpips`` package's default metric) with AlexNet or VGG16, no torchvision.

Formula, for RGB ``x``, ``y`` (N, 3, H, W) in [0, 1]: both are mapped to [-1, 1] (``2 x - 1``) and through
the scaling layer ``(v - shift) / scale`` with shift (-.030, -.088, -.188), scale (.458, .448, .450);
the backbone gives five ReLU taps (AlexNet relu1..relu5 with 64, 192, 384, 256, 256 channels; VGG16
relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 with 64, 128, 256, 512, 512); each tap is unit-normalised along
channels, ``f / (sqrt(sum_c f^2) + 1e-10)``; a 1x1 conv without bias (the learned head ``w_k``) maps the
squared difference to one channel; LPIPS = sum over taps of the spatial mean of that map (N, 1, 1, 1).
With ``spatial=True`` each tap's map is instead upsampled to (H, W) (bilinear, ``align_corners=False``, as the
``lpips`` package) and the maps are summed: (N, 1, H, W). Lower is more similar; LPIPS(x, x) = 0.

Weights (never downloaded): ``load_lpips(net, weights)`` or $GENSR_LPIPS_WEIGHTS, pointing to

* a folder holding, for ``net='alex'``, ``alex.pth`` (the lpips package's ``weights/v0.1/alex.pth``: keys
  ``lin0.model.1.weight .. lin4.model.1.weight``) and torchvision's ``alexnet-owt-7be5be79.pth`` (any one
  ``alexnet-*.pth``; keys ``features.{0,3,6,8,10}.weight/bias``, its ``classifier.*`` are ignored); for
  ``net='vgg'``, ``vgg.pth`` and ``vgg16-397923af.pth`` (any one ``vgg16-*.pth``). One folder can serve both.
  A combined file ``lpips_alex.pth`` / ``lpips_vgg.pth`` in the folder is used instead when present;
* or one file: a whole ``lpips.LPIPS(net=...).state_dict()`` (``net.slice1.0.weight ..``,
  ``lin0.model.1.weight ..``; the duplicate ``lins.K.*`` and the constant ``scaling_layer.shift/scale``
  are accepted), or any file holding both the torchvision backbone keys and the head keys.

Every file may be ``.pth`` (read with ``torch.load(weights_only=True)``) or ``.safetensors`` with the same
keys. Loading is strict: missing, unexpected or misshapen keys are one GensrError listing them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError
from gensr.metrics.fidelity import to_float255
from gensr.nn.alexnet import alexnet_param_shapes, build_alexnet_features
from gensr.nn.torchvision_layout import (
    key_problems,
    natural_key,
    read_state_dict,
    shape_problems,
    short_list,
    weights_source,
)
from gensr.nn.vgg import VGG16_CONV_CHANNELS, VGG16_LAYER_INDEX, build_vgg16_features, vgg_param_shapes

__all__ = [
    "WEIGHTS_ENV",
    "LPIPS",
    "FeatureTaps",
    "load_lpips",
    "lpips_available",
    "resolve_lpips_files",
    "lpips_distance",
    "image_tensor",
    "model_device",
]

WEIGHTS_ENV = "GENSR_LPIPS_WEIGHTS"
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10
_WEIGHT_SUFFIXES = (".safetensors", ".pth")


@dataclass(frozen=True)
class _NetSpec:
    name: str  # lpips' net name and head file stem: alex | vgg
    arch: str
    taps: tuple[int, ...]  # indices in torchvision's ``features`` whose outputs are compared
    channels: tuple[int, ...]
    backbone_file: str  # torchvision's file name
    backbone_glob: str
    build: Callable[[int], nn.Sequential]
    param_shapes: Callable[[], dict[str, tuple[int, ...]]]


_SPECS: dict[str, _NetSpec] = {
    "alex": _NetSpec(
        "alex", "AlexNet", (1, 4, 7, 9, 11), (64, 192, 384, 256, 256),
        "alexnet-owt-7be5be79.pth", "alexnet-*", build_alexnet_features, alexnet_param_shapes,
    ),
    "vgg": _NetSpec(
        "vgg", "VGG16",
        tuple(VGG16_LAYER_INDEX[n] for n in ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")),
        (64, 128, 256, 512, 512), "vgg16-397923af.pth", "vgg16-*", build_vgg16_features,
        lambda: vgg_param_shapes(VGG16_CONV_CHANNELS),
    ),
}  # fmt: skip
_ALIASES = {"alex": "alex", "alexnet": "alex", "vgg": "vgg", "vgg16": "vgg"}


def _spec(net: str) -> _NetSpec:
    key = _ALIASES.get(str(net).lower())
    if key is None:
        raise GensrError(f"unknown LPIPS network {net!r}; known: alex, vgg (aliases alexnet, vgg16)")
    return _SPECS[key]


class FeatureTaps(nn.Module):
    """``features`` (an ``nn.Sequential`` in torchvision's layout) returning the outputs at ``taps`` indices."""

    def __init__(self, features: nn.Sequential, taps: Sequence[int]) -> None:
        super().__init__()
        self.features = features
        self.taps = tuple(sorted(taps))
        # A tap that the next (in-place) module would overwrite is cloned.
        self._clone = {
            i
            for i in self.taps
            if i + 1 < len(features) and getattr(features[i + 1], "inplace", False) and i + 1 <= self.taps[-1]
        }

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x.clone() if i in self._clone else x)
                if i == self.taps[-1]:
                    break
        return out


class LPIPS(nn.Module):
    """LPIPS v0.1 on RGB in [0, 1] (converted to [-1, 1] inside, like ``lpips``' ``normalize=True``).

    ``backbone(x)`` returns one feature map per entry of ``channels`` (N, C_k, h_k, w_k); ``heads[k]`` is the
    1x1 conv without bias of tap k. Build a pretrained one with :func:`load_lpips`.
    """

    def __init__(self, backbone: nn.Module, channels: Sequence[int], net: str = "custom") -> None:
        super().__init__()
        self.net = net
        self.backbone = backbone
        self.heads = nn.ModuleList(nn.Conv2d(int(c), 1, 1, bias=False) for c in channels)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channel-unit-normalised taps of ``x`` (N, 3, H, W) in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"LPIPS expects RGB input (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
        shift = torch.tensor(SHIFT, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor(SCALE, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        taps = self.backbone(((2 * x - 1) - shift) / scale)
        if len(taps) != len(self.heads):
            raise ValueError(f"LPIPS backbone gave {len(taps)} feature maps for {len(self.heads)} heads")
        return [f / (torch.sqrt(torch.sum(f * f, dim=1, keepdim=True)) + EPS) for f in taps]

    def compare(
        self, fx: Sequence[torch.Tensor], fy: Sequence[torch.Tensor], size: Sequence[int], spatial: bool = False
    ) -> torch.Tensor:
        """Distance from :meth:`features` outputs: (N, 1, 1, 1), or (N, 1, *size) with ``spatial``."""
        total: torch.Tensor | None = None
        for head, a, b in zip(self.heads, fx, fy, strict=True):
            d = head((a - b) ** 2)
            if spatial:
                d = F.interpolate(d, size=tuple(size), mode="bilinear", align_corners=False)
            else:
                d = d.mean(dim=(2, 3), keepdim=True)
            total = d if total is None else total + d
        assert total is not None
        return total

    def forward(self, x: torch.Tensor, y: torch.Tensor, spatial: bool = False) -> torch.Tensor:
        """LPIPS of ``x`` and ``y`` (N, 3, H, W) in [0, 1] (``y`` may have N = 1): (N, 1, 1, 1) or (N, 1, H, W)."""
        if x.shape[1:] != y.shape[1:] or y.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"LPIPS inputs differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
        return self.compare(self.features(x), self.features(y), x.shape[-2:], spatial)


# ------------------------------------------------------------------------------------------- weight files


def _hint(spec: _NetSpec) -> str:
    return (
        f"set {WEIGHTS_ENV} (or pass weights=) to a folder holding {spec.name}.pth (lpips v0.1 head) and "
        f"{spec.backbone_file} (torchvision backbone), or to one file with a whole "
        f"lpips.LPIPS(net='{spec.name}') state dict"
    )


def _first_file(folder: Path, stem: str) -> Path | None:
    for suffix in _WEIGHT_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def _folder_files(spec: _NetSpec, folder: Path, source: str) -> list[Path]:
    combined = _first_file(folder, f"lpips_{spec.name}")
    if combined is not None:
        return [combined]
    head = _first_file(folder, spec.name)
    backbones = sorted(p for p in folder.glob(spec.backbone_glob) if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    problems = []
    if head is None:
        problems.append(f"no {spec.name}.pth (lpips v0.1 head)")
    if not backbones:
        problems.append(f"no {spec.backbone_file} (torchvision {spec.arch} backbone)")
    elif len(backbones) > 1:
        problems.append(f"several {spec.backbone_glob} files ({', '.join(p.name for p in backbones)}): keep one")
    if problems:
        raise GensrError(f"{folder} (from {source}): LPIPS ({spec.name}) weights incomplete: {'; '.join(problems)}")
    assert head is not None
    return [head, backbones[0]]


def resolve_lpips_files(net: str = "alex", weights: str | os.PathLike | None = None) -> list[Path]:
    """The weight file(s) for ``net`` from ``weights`` or $GENSR_LPIPS_WEIGHTS (see the module docstring)."""
    spec = _spec(net)
    path, source = weights_source(weights, WEIGHTS_ENV, "weights")
    if path is None:
        raise GensrError(f"LPIPS ({spec.name}) needs pretrained weights, which are never downloaded: {_hint(spec)}")
    if path.is_file():
        return [path]
    if path.is_dir():
        return _folder_files(spec, path, source)
    raise GensrError(f"{path}: LPIPS weights not found (from {source}); {_hint(spec)}")


def lpips_available(net: str = "alex", weights: str | os.PathLike | None = None) -> bool:
    """Whether the files for ``net`` can be found (not read); :func:`load_lpips` says why not."""
    try:
        resolve_lpips_files(net, weights)
    except GensrError:
        return False
    return True


def _key_table(spec: _NetSpec) -> tuple[dict[str, str], dict[str, tuple[int, ...]], dict[str, str]]:
    """Accepted file key -> canonical key, canonical key -> shape, canonical key -> lpips-layout name.

    Canonical keys are torchvision's ``features.N.*`` and the head file's ``linK.model.1.weight``.
    """
    shapes = dict(spec.param_shapes())
    table = {k: k for k in shapes}
    lpips_names: dict[str, str] = {}
    for key in shapes:
        index = int(key.split(".")[1])
        slice_no = 1 + sum(index > t for t in spec.taps)  # lpips' slice k ends right after tap k
        lpips_names[key] = f"net.slice{slice_no}.{key[len('features.') :]}"
        table[lpips_names[key]] = key
    for k, c in enumerate(spec.channels):
        head = f"lin{k}.model.1.weight"
        shapes[head] = (1, c, 1, 1)
        table[head] = head
        table[f"lins.{k}.model.1.weight"] = head
    return table, shapes, lpips_names


def _scaling_problems(sd: Mapping[str, torch.Tensor]) -> list[str]:
    bad = []
    for name, value in (("shift", SHIFT), ("scale", SCALE)):
        t = sd.get(f"scaling_layer.{name}")
        ref = torch.tensor(value).view(1, 3, 1, 1)
        if t is not None and (t.shape != ref.shape or not torch.allclose(t.float(), ref, atol=1e-6)):
            bad.append(f"scaling_layer.{name} {t.flatten().tolist()} is not LPIPS v0.1's {list(value)}")
    return bad


def _gather(spec: _NetSpec, files: Sequence[Path]) -> dict[str, torch.Tensor]:
    """The strict union of ``files`` as canonical keys; one GensrError listing every problem."""
    table, shapes, lpips_names = _key_table(spec)
    where = " + ".join(str(p) for p in files)
    merged: dict[str, torch.Tensor] = {}
    unexpected: set[str] = set()
    problems: list[str] = []
    lpips_layout = False
    for path in files:
        sd = read_state_dict(path, f"LPIPS ({spec.name}) weights", "lpips or torchvision layout")
        problems += _scaling_problems(sd)
        for key, tensor in sd.items():
            canon = table.get(key)
            lpips_layout |= key.startswith("net.slice")
            if canon is None:
                if not (key.startswith("classifier.") or key in ("scaling_layer.shift", "scaling_layer.scale")):
                    unexpected.add(key)
            elif canon in merged and not torch.equal(merged[canon], tensor):
                problems.append(f"{key} disagrees with another copy of {canon}")
            else:
                merged[canon] = tensor
    # Name backbone keys in the layout the file used, so a missing key reads like the file's own keys.
    display = {k: lpips_names.get(k, k) if lpips_layout else k for k in shapes}
    parts = key_problems({display[k] for k in merged} | unexpected, {display[k]: s for k, s in shapes.items()})
    bad = shape_problems({display[k]: t for k, t in merged.items()}, {display[k]: s for k, s in shapes.items()})
    if bad:
        parts.append(f"wrong shape(s): {short_list(bad)}")
    parts += problems
    if parts:
        raise GensrError(f"{where}: not LPIPS v0.1 {spec.arch} weights: {'; '.join(parts)}")
    return {k: merged[k].to(torch.float32).contiguous() for k in sorted(shapes, key=natural_key)}


def load_lpips(net: str = "alex", weights: str | os.PathLike | None = None) -> LPIPS:
    """LPIPS v0.1 with ``net`` = alex | vgg, weights from ``weights`` or $GENSR_LPIPS_WEIGHTS; frozen, eval mode."""
    spec = _spec(net)
    sd = _gather(spec, resolve_lpips_files(spec.name, weights))
    with torch.device("meta"):  # no random init: every parameter comes from the files
        model = LPIPS(FeatureTaps(spec.build(max(spec.taps) + 1), spec.taps), spec.channels, net=spec.name)
    own: dict[str, torch.Tensor] = {}
    for key, tensor in sd.items():
        if key.startswith("lin"):
            own[f"heads.{key[3 : key.index('.')]}.weight"] = tensor
        else:
            own[f"backbone.{key}"] = tensor
    model.load_state_dict(own, strict=True, assign=True)
    model.requires_grad_(False)
    return model.eval()


# ------------------------------------------------------------------------------------------------- numpy


def image_tensor(img: np.ndarray) -> torch.Tensor:
    """(1, 3, H, W) float32 in [0, 1] from an RGB (H, W, 3) uint8 / uint16 / float-in-[0, 255] image."""
    a = to_float255(img)
    if a.shape[2] != 3:
        raise ValueError(f"LPIPS needs RGB images (H, W, 3), got shape {np.asarray(img).shape}")
    return torch.from_numpy((a / 255.0).astype(np.float32)).permute(2, 0, 1).unsqueeze(0).contiguous()


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s first parameter (CPU when it has none)."""
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def lpips_distance(img_a: np.ndarray, img_b: np.ndarray, model: LPIPS, spatial: bool = False) -> float | np.ndarray:
    """LPIPS of two RGB (H, W, 3) images (uint8, or see :func:`image_tensor`): a float, or an (H, W) float64 map."""
    a, b = image_tensor(img_a), image_tensor(img_b)
    if a.shape != b.shape:
        raise ValueError(f"image sizes differ: {a.shape[3]}x{a.shape[2]} vs {b.shape[3]}x{b.shape[2]} (WxH)")
    device = model_device(model)
    with torch.inference_mode():
        out = model(a.to(device), b.to(device), spatial=spatial)
    if spatial:
        return out[0, 0].double().cpu().numpy()
    return float(out.flatten()[0])
