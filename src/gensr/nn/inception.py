"""The TF Inception-v3 of FID and IS (the ``inception-2015-12-05`` graph), built here, loading ported weights.

This is the network behind the published FID (TTUR) and Inception Score numbers, not torchvision's
``inception_v3`` (different weights, 1000 classes, other pooling). Nothing is downloaded: the weights come from
the ``weights`` argument or ``$GENSR_INCEPTION_WEIGHTS``, in the layout of

* pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` and
* torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``.

Both hold the same TF tensors under torchvision's module names (``Conv2d_1a_3x3.conv.weight``,
``Mixed_5b.branch1x1.bn.running_mean``, ..., ``fc.weight`` (1008, 2048), ``fc.bias``; no ``AuxLogits``):
94 conv + BatchNorm units, 472 tensors. torch-fidelity's converter writes no ``num_batches_tracked``
buffers; a file that has them (a state dict saved from a torchvision-built module) is accepted and they are
ignored. ``.safetensors`` files with the same keys load too. Anything else (missing, unexpected or
mis-shaped keys) is a GensrError listing the keys.

The TF graph's quirks, reproduced: BatchNorm eps 1e-3 after bias-free convs; the 3x3 average pools of the
A, C and first E blocks ignore the zero padding (``count_include_pad=False``); the last block (``Mixed_7c``)
pools its fourth branch with a 3x3 *max* pool.

Input: uint8 RGB (N, 3, H, W), any size. As in the TF graph it is cast to float32, resized to 299x299 with
TF1's bilinear resize (``align_corners=False``, no half-pixel centres: source = dest * in/out, edge-clamped;
:func:`resize_bilinear_tf1`), then mapped to [-1, 1) by (x - 128) / 128. Output: the 2048-d ``pool_3``
features (global average of ``Mixed_7c``) and the 1008 "unbiased" logits ``pool_3 @ fc.weight.T`` (the fc
bias is left out, as the IS code does; torch-fidelity's ``logits_unbiased``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError
from gensr.nn.torchvision_layout import key_problems, read_state_dict, shape_problems, short_list, weights_file

WEIGHTS_ENV = "GENSR_INCEPTION_WEIGHTS"
WEIGHTS_FLAG = "--inception-weights"
INPUT_SIZE = 299
FEATURE_DIM = 2048
NUM_LOGITS = 1008
# Identity of the preprocessing, stored with cached statistics so that mismatched ones are refused.
PREPROCESS = "uint8 -> float32 -> TF1 bilinear resize to 299x299 (align_corners=False) -> (x - 128) / 128"
EXTRACTOR = "inception-v3-tf-2015-12-05"


# ----------------------------------------------------------------------------------------------- resize


def _tf1_axis(n_in: int, n_out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Low index, high index and float32 fraction of each output position along one axis (TF1 rules)."""
    scale = torch.tensor(n_in / n_out, dtype=torch.float32, device=device)  # TF: float(in) / float(out)
    pos = torch.arange(n_out, dtype=torch.float32, device=device) * scale
    lo = pos.floor()
    frac = pos - lo
    lo = lo.long()
    hi = (lo + 1).clamp(max=n_in - 1)
    return lo, hi, frac


def resize_bilinear_tf1(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """TF 1.x ``resize_bilinear(align_corners=False)`` of a float (N, C, H, W) batch to ``size`` = (h, w).

    Output pixel i samples the input at ``i * in/out`` (no half-pixel offset, so the image shifts towards the
    top-left when upscaling) with the two neighbours ``floor`` and ``min(floor + 1, in - 1)``. The arithmetic
    is TF's, in float32: ``top = tl + (tr - tl) * fx``, ``bottom = bl + (br - bl) * fx``,
    ``out = top + (bottom - top) * fy``. Same size in and out is the identity.
    """
    if x.ndim != 4 or not x.is_floating_point():
        raise ValueError(f"expected a float (N, C, H, W) tensor, got {x.dtype} {tuple(x.shape)}")
    out_h, out_w = int(size[0]), int(size[1])
    y_lo, y_hi, fy = _tf1_axis(x.shape[2], out_h, x.device)
    x_lo, x_hi, fx = _tf1_axis(x.shape[3], out_w, x.device)
    fx = fx.to(x.dtype).view(1, 1, 1, out_w)
    fy = fy.to(x.dtype).view(1, 1, out_h, 1)
    top_rows = x.index_select(2, y_lo)
    bottom_rows = x.index_select(2, y_hi)
    tl, tr = top_rows.index_select(3, x_lo), top_rows.index_select(3, x_hi)
    bl, br = bottom_rows.index_select(3, x_lo), bottom_rows.index_select(3, x_hi)
    top = tl + (tr - tl) * fx
    bottom = bl + (br - bl) * fx
    return top + (bottom - top) * fy


# ----------------------------------------------------------------------------------------------- blocks


class ConvBN(nn.Module):
    """Bias-free conv -> BatchNorm (eps 1e-3) -> ReLU; parameters ``conv.*`` and ``bn.*`` (torchvision names)."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple[int, int], stride: int = 1, padding=0) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _avg_pool_tf(x: torch.Tensor) -> torch.Tensor:
    """TF's 3x3 / stride 1 / SAME average pool: border windows average only the pixels inside the image."""
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool_same(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class BlockA(nn.Module):
    """Mixed_5b/5c/5d (35x35): 1x1 | 1x1 -> 5x5 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1; 224 + ``pool_ch`` channels."""

    def __init__(self, cin: int, pool_ch: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch5x5_2(self.branch5x5_1(x))
        c = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        d = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([a, b, c, d], 1)


class BlockB(nn.Module):
    """Mixed_6a (35 -> 17): 3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool 3x3/2; 384 + 96 + ``cin`` channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3(x)
        b = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class BlockC(nn.Module):
    """Mixed_6b..6e (17x17), factorised 7x7 convs with ``c7`` inner channels; 4 x 192 output channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        row, col = ((1, 7), (0, 3)), ((7, 1), (3, 0))  # (kernel, padding) of a 1x7 and a 7x1 conv
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, c7, 1)
        self.branch7x7_2 = ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7_3 = ConvBN(c7, 192, col[0], padding=col[1])
        self.branch7x7dbl_1 = ConvBN(cin, c7, 1)
        self.branch7x7dbl_2 = ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_3 = ConvBN(c7, c7, row[0], padding=row[1])
        self.branch7x7dbl_4 = ConvBN(c7, c7, col[0], padding=col[1])
        self.branch7x7dbl_5 = ConvBN(c7, 192, row[0], padding=row[1])
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        c = self.branch7x7dbl_1(x)
        for conv in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            c = conv(c)
        d = self.branch_pool(_avg_pool_tf(x))
        return torch.cat([a, b, c, d], 1)


class BlockD(nn.Module):
    """Mixed_7a (17 -> 8): 1x1 -> 3x3/2 | 1x1 -> 1x7 -> 7x1 -> 3x3/2 | max-pool 3x3/2; 320 + 192 + ``cin``."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = ConvBN(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = ConvBN(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_2(self.branch3x3_1(x))
        b = self.branch7x7x3_1(x)
        for conv in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b = conv(b)
        return torch.cat([a, b, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class BlockE(nn.Module):
    """Mixed_7b/7c (8x8): 1x1 | 1x1 -> (1x3, 3x1) | 1x1 -> 3x3 -> (1x3, 3x1) | pool -> 1x1; 2048 channels.

    ``pool``: "avg" (Mixed_7b, padding-excluding average) or "max" (Mixed_7c: the 2015-12-05 graph max-pools).
    """

    def __init__(self, cin: int, pool: str) -> None:
        super().__init__()
        if pool not in ("avg", "max"):
            raise ValueError(f"pool must be 'avg' or 'max', got {pool!r}")
        self.pool = _avg_pool_tf if pool == "avg" else _max_pool_same
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch1x1(x)
        b = self.branch3x3_1(x)
        b = torch.cat([self.branch3x3_2a(b), self.branch3x3_2b(b)], 1)
        c = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        c = torch.cat([self.branch3x3dbl_3a(c), self.branch3x3dbl_3b(c)], 1)
        d = self.branch_pool(self.pool(x))
        return torch.cat([a, b, c, d], 1)


def build_inception_body() -> nn.ModuleDict:
    """The randomly initialised modules of the FID Inception under their torchvision names (incl. ``fc``)."""
    return nn.ModuleDict(
        {
            "Conv2d_1a_3x3": ConvBN(3, 32, 3, stride=2),
            "Conv2d_2a_3x3": ConvBN(32, 32, 3),
            "Conv2d_2b_3x3": ConvBN(32, 64, 3, padding=1),
            "Conv2d_3b_1x1": ConvBN(64, 80, 1),
            "Conv2d_4a_3x3": ConvBN(80, 192, 3),
            "Mixed_5b": BlockA(192, 32),
            "Mixed_5c": BlockA(256, 64),
            "Mixed_5d": BlockA(288, 64),
            "Mixed_6a": BlockB(288),
            "Mixed_6b": BlockC(768, 128),
            "Mixed_6c": BlockC(768, 160),
            "Mixed_6d": BlockC(768, 160),
            "Mixed_6e": BlockC(768, 192),
            "Mixed_7a": BlockD(768),
            "Mixed_7b": BlockE(1280, "avg"),
            "Mixed_7c": BlockE(2048, "max"),
            "fc": nn.Linear(FEATURE_DIM, NUM_LOGITS),
        }
    )


# ----------------------------------------------------------------------------------------------- weights


def _is_counter(key: str) -> bool:
    return key.endswith(".num_batches_tracked")


def expected_shapes() -> dict[str, tuple[int, ...]]:
    """Every key of the weights file (472) -> its shape, in network order; ``num_batches_tracked`` excluded."""
    with torch.device("meta"):
        body = build_inception_body()
    return {k: tuple(v.shape) for k, v in body.state_dict().items() if not _is_counter(k)}


def resolve_weights_path(weights: str | os.PathLike | None = None) -> Path:
    """``weights`` or ``$GENSR_INCEPTION_WEIGHTS`` as an existing file; GensrError naming both ways otherwise."""
    how = (
        f"FID/IS need the TF Inception weights (pytorch-fid's pt_inception-2015-12-05-6726825d.pth or "
        f"torch-fidelity's weights-inception-2015-12-05-6726825d.pth): pass {WEIGHTS_FLAG} PATH or set "
        f"{WEIGHTS_ENV}"
    )
    return weights_file(weights, WEIGHTS_ENV, "inception weights argument", "Inception weights file", how)


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """The raw state dict of a ``.pth`` (``weights_only``) or ``.safetensors`` file; GensrError if unreadable."""
    return read_state_dict(path, "Inception weights", "pytorch-fid / torch-fidelity Inception layout")


def check_inception_state_dict(
    sd: Mapping[str, torch.Tensor], where: str = "Inception weights"
) -> dict[str, torch.Tensor]:
    """The 472 float32 tensors of a pytorch-fid / torch-fidelity file, in network order; GensrError otherwise.

    ``*.num_batches_tracked`` keys of known BatchNorms are accepted and dropped.
    """
    expected = expected_shapes()
    counters = {k for k in sd if _is_counter(k) and k[: -len("num_batches_tracked")] + "running_mean" in expected}
    parts = key_problems(set(sd) - counters, expected, ignored=())
    if parts:
        raise GensrError(f"{where}: not the FID Inception (2015-12-05) layout: {'; '.join(parts)}{_hint(sd)}")
    bad = shape_problems(sd, expected)
    if bad:
        raise GensrError(f"{where}: wrong Inception tensor shape(s): {short_list(bad)}{_hint(sd)}")
    not_float = sorted(k for k in expected if not sd[k].is_floating_point())
    if not_float:
        raise GensrError(f"{where}: non-float Inception tensor(s): {short_list(not_float)}")
    return {k: sd[k].detach().to(torch.float32) for k in expected}


def _hint(sd: Mapping[str, torch.Tensor]) -> str:
    fc = sd.get("fc.weight")
    if any(k.startswith("AuxLogits.") for k in sd) or (fc is not None and tuple(fc.shape)[:1] == (1000,)):
        return " (torchvision's ImageNet inception_v3? FID/IS need the TF 2015-12-05 weights with 1008 classes)"
    if any(k.startswith("module.") for k in sd):
        return " (keys carry a 'module.' prefix; save the unwrapped state dict)"
    return ""


def weights_digest(sd: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (16 hex digits) of the checked tensors' names, shapes and float32 values, independent of the
    file container: the pytorch-fid and torch-fidelity files of one set of weights give the same digest."""
    h = hashlib.sha256()
    for k in sorted(k for k in sd if not _is_counter(k)):
        t = sd[k].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{k}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


# ----------------------------------------------------------------------------------------------- network


class InceptionV3FID(nn.Module):
    """Frozen FID/IS Inception: ``forward(uint8 (N, 3, H, W)) -> (pool3 (N, 2048), logits_unbiased (N, 1008))``.

    ``weights``: a file path (else ``$GENSR_INCEPTION_WEIGHTS``) or an already loaded state dict. Loading is
    strict (see the module docstring). ``weights_digest`` identifies the tensors (for cached statistics).
    Always in eval mode; outputs are float32.
    """

    def __init__(self, weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None) -> None:
        super().__init__()
        if isinstance(weights, Mapping):
            sd, where, self.weights_path = dict(weights), "Inception weights", None
        else:
            path = resolve_weights_path(weights)
            sd, where, self.weights_path = read_weights_file(path), str(path), path
        sd = check_inception_state_dict(sd, where)
        self.weights_digest = weights_digest(sd)
        with torch.device("meta"):  # no random init: every tensor comes from the file
            body = build_inception_body()
        counters = {k: torch.zeros((), dtype=torch.long) for k in body.state_dict() if _is_counter(k)}
        body.load_state_dict({**sd, **counters}, strict=True, assign=True)
        for name, module in body.items():
            setattr(self, name, module)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> InceptionV3FID:
        """Always stays in eval mode (frozen BatchNorm statistics)."""
        return super().train(False)

    @staticmethod
    def preprocess(x: torch.Tensor) -> torch.Tensor:
        """uint8 (N, 3, H, W) -> float32 (N, 3, 299, 299) in [-1, 1): TF1 bilinear resize, then (x - 128) / 128."""
        if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"Inception expects uint8 RGB images (N, 3, H, W), got {x.dtype} {tuple(x.shape)}")
        x = resize_bilinear_tf1(x.to(torch.float32), (INPUT_SIZE, INPUT_SIZE))
        return (x - 128) / 128

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.preprocess(x)
        for name in ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3"):
            x = getattr(self, name)(x)
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2)
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):  # fmt: skip
            x = getattr(self, name)(x)
        pool = x.mean(dim=(2, 3))
        return pool, pool @ self.fc.weight.t()
