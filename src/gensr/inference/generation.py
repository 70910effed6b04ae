"""Class-conditional image generation with BigGAN generators: truncation, standing statistics, interpolation.

:func:`generate` is the one-call form: ``num`` images for each class of ``classes`` -> uint8 (N, H, W, 3) and
int64 labels (N,), class-major (all images of ``classes[0]`` first).

* **Truncation** (``truncation`` = None: untruncated z ~ N(0, I)):

  - ``"resample"`` (the paper's truncation trick): z ~ N(0, I), and every entry with ``|z| > truncation`` is
    redrawn until all are within; ``truncation`` is the threshold (0 < t <= 2).
  - ``"scale"``: ``truncation * truncnorm(-2, 2)``, the TF-Hub / pytorch-pretrained-BigGAN convention (and the
    distribution BigGAN-deep's ported BN statistics were made for). For a BigGAN-deep file the model's own
    ``truncation`` argument also selects/interpolates its stored BN statistics; those files accept only this
    mode with 0 < t <= 1 (None = 1).

  BigGAN-PyTorch's ``--sample_trunc_curves`` (z ~ N(0, t^2) without truncation) is neither of these.
* **Reproducibility**: the z of image ``k`` (its index within its class) is drawn from a CPU generator seeded
  from ``(seed, k)`` alone, so it is the same whatever ``num``, ``classes``, ``batch_size`` or the device, and
  images ``k`` of different classes share their z (rows of a class grid are comparable column by column).
* **Standing statistics** (``standing_stats`` = N > 0; BigGAN-PyTorch's ``accumulate_standing_stats``): on a
  *copy* of the generator, every BatchNorm is reset and switched to cumulative averaging, N forwards in BN-train
  mode (no grad) with fresh z (same truncation) and uniform random classes are run, and the copy is evaluated
  with those averages. Only the BNs are put in train mode, so spectral norm's vectors are not advanced.
* Every output is checked: a non-finite image is an error, never written.

Interpolation sheets (:func:`interpolation_sheet`): ``"z"`` -- one row per class, z moving linearly from the
z of image 0 to that of image 1 of ``seed``; ``"class"`` -- one row per z (images 0.. of ``seed``), the class
input moving linearly from the first class to the second (a mix of their embeddings / CBN parameters).
"""

from __future__ import annotations

import copy
import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from gensr.errors import GensrError

__all__ = [
    "MAX_IMAGES",
    "TRUNCATION_MODES",
    "generate",
    "load_generator",
    "check_truncation",
    "truncated_normal",
    "sample_z",
    "latents_for",
    "standing_stats_copy",
    "interpolation_sheet",
    "class_grid",
    "to_uint8",
    "render",
    "tile_rows",
]

MAX_IMAGES = 50_000  # per call: the usual FID sample count
MAX_TRUNCATION = 2.0
TRUNCATION_MODES = ("resample", "scale")
SCALE_MODE_BOUND = 2.0  # truncnorm(-2, 2) of the "scale" mode
DEFAULT_STANDING_BATCH = 64


# ----------------------------------------------------------------------------------------------- checks


def check_truncation(truncation: float | None, mode: str = "resample") -> float | None:
    """``truncation`` as a float (None stays None) when 0 < t <= 2 and ``mode`` is known; GensrError otherwise."""
    if mode not in TRUNCATION_MODES:
        raise GensrError(f"truncation mode must be one of {', '.join(TRUNCATION_MODES)}, got {mode!r}")
    if truncation is None:
        return None
    try:
        t = float(truncation)
    except (TypeError, ValueError):
        raise GensrError(f"truncation must be a number in (0, {MAX_TRUNCATION:g}], got {truncation!r}") from None
    if not (math.isfinite(t) and 0.0 < t <= MAX_TRUNCATION):
        raise GensrError(f"truncation must be a number in (0, {MAX_TRUNCATION:g}], got {truncation!r}")
    return t


def _is_deep(model: nn.Module) -> bool:
    from gensr.models.biggan_deep import BigGANDeepGenerator

    return isinstance(model, BigGANDeepGenerator)


def load_generator(model: str | os.PathLike | nn.Module, device: str | torch.device | None = None) -> nn.Module:
    """A class-conditional generator in eval mode: a module (used as is) or a shipped name / checkpoint file.

    GensrError when the model's declared ``kind`` is not ``"generator"`` (an SR network, a discriminator, ...).
    """
    if isinstance(model, nn.Module):
        net, name = model, type(model).__name__
    elif isinstance(model, (str, os.PathLike)):
        from gensr.checkpoints.loader import load_model

        net, name = load_model(model), str(model)
    else:
        raise GensrError(f"model must be a name, a checkpoint path or an nn.Module, got {type(model).__name__}")
    kind = getattr(net, "kind", None)
    if kind != "generator":
        hint = {
            "sr": "; use `gensr upscale`",
            "flow-sr": "; use `gensr sample`",
        }.get(str(kind), "")
        raise GensrError(
            f"{name}: is a {type(net).__name__} (kind {kind or 'undeclared'}), not a class-conditional "
            f"image generator{hint}"
        )
    for attr in ("dim_z", "n_classes", "resolution"):
        if not hasattr(net, attr):
            raise GensrError(f"{name}: generator {type(net).__name__} declares no {attr}")
    if device is not None:
        net.to(device)
    return net.eval()


def _check_classes(classes: Sequence[int] | None, n_classes: int) -> list[int]:
    if classes is None:
        return list(range(n_classes))
    out = []
    for c in classes:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise GensrError(f"class {c!r} is not an integer class index")
        if not 0 <= int(c) < n_classes:
            raise GensrError(f"class {c} is not a class of this model (it has classes 0..{n_classes - 1})")
        out.append(int(c))
    if not out:
        raise GensrError("no classes given")
    return out


def _check_count(num: int, what: str = "num") -> int:
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise GensrError(f"{what} must be a positive integer, got {num!r}")
    return int(num)


# ----------------------------------------------------------------------------------------------- latents


def truncated_normal(shape: Sequence[int], threshold: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """N(0, 1) samples with every entry ``|z| > threshold`` redrawn until none is left (float32, CPU)."""
    if not threshold > 0:
        raise ValueError(f"threshold must be > 0, got {threshold}")
    z = torch.randn(tuple(shape), generator=generator)
    bad = z.abs() > threshold
    while bool(bad.any()):
        z[bad] = torch.randn(int(bad.sum()), generator=generator)
        bad = z.abs() > threshold
    return z


def sample_z(
    n: int, dim: int, truncation: float | None, mode: str = "resample", generator: torch.Generator | None = None
) -> torch.Tensor:
    """(n, dim) float32 CPU latents: N(0, I), or truncated per ``mode`` (see the module docstring)."""
    if truncation is None:
        return torch.randn(n, dim, generator=generator)
    if mode == "resample":
        return truncated_normal((n, dim), truncation, generator)
    if mode == "scale":
        return truncation * truncated_normal((n, dim), SCALE_MODE_BOUND, generator)
    raise ValueError(f"unknown truncation mode {mode!r}")


def _image_seed(seed: int, k: int) -> int:
    digest = hashlib.sha256(f"gensr-generate:{int(seed)}:{int(k)}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def latents_for(indices: Sequence[int], dim: int, truncation: float | None, mode: str, seed: int) -> torch.Tensor:
    """(len(indices), dim) latents; row i depends only on (``seed``, ``indices[i]``), truncation and mode."""
    rows = [sample_z(1, dim, truncation, mode, torch.Generator().manual_seed(_image_seed(seed, k))) for k in indices]
    return torch.cat(rows) if rows else torch.zeros(0, dim)


# ----------------------------------------------------------------------------------------------- forwards


def _device_of(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def _forward(model: nn.Module, z: torch.Tensor, y: torch.Tensor, truncation: float | None) -> torch.Tensor:
    """G(z, y) in [-1, 1] as float32 on the model's device (BigGAN-deep also gets its truncation)."""
    device = _device_of(model)
    z, y = z.to(device), y.to(device)
    if _is_deep(model):
        return model(z, y, 1.0 if truncation is None else truncation).float()
    return model(z, y).float()


def standing_stats_copy(
    model: nn.Module,
    forwards: int,
    truncation: float | None = None,
    mode: str = "resample",
    batch_size: int = DEFAULT_STANDING_BATCH,
    generator: torch.Generator | None = None,
) -> nn.Module:
    """A copy of ``model`` (eval mode) whose BatchNorms hold standing statistics of ``forwards`` batches.

    ``model`` itself is not changed. z follows ``truncation``/``mode``; classes are uniform; the random draws
    come from ``generator`` (a CPU generator; None = a fresh one seeded with 0), never the global RNG.
    """
    from gensr.nn.norm import batch_norm_layers, begin_standing_stats, end_standing_stats

    if _is_deep(model):
        raise GensrError("standing statistics do not apply to BigGAN-deep ports (their BN statistics are fixed)")
    _check_count(forwards, "standing-statistics forwards")
    gen = generator if generator is not None else torch.Generator().manual_seed(0)
    net = copy.deepcopy(model).eval()
    begin_standing_stats(net)
    for bn in batch_norm_layers(net):
        bn.train()
    with torch.no_grad():
        for _ in range(forwards):
            z = sample_z(batch_size, net.dim_z, truncation, mode, gen)
            y = torch.randint(0, net.n_classes, (batch_size,), generator=gen)
            _forward(net, z, y, truncation)
    end_standing_stats(net)
    return net.eval()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Generator output (N, 3, H, W) in [-1, 1] -> uint8 (N, H, W, 3); GensrError on NaN/inf."""
    if not bool(torch.isfinite(x).all()):
        raise GensrError("the generator produced non-finite values (NaN or inf); no image written")
    u8 = ((x.detach().float().cpu() + 1.0) * 127.5).round_().clamp_(0, 255).to(torch.uint8)
    return u8.permute(0, 2, 3, 1).contiguous().numpy()


def render(
    model: nn.Module, z: torch.Tensor, y: torch.Tensor, truncation: float | None = None, batch_size: int = 64
) -> np.ndarray:
    """G(z, y) in batches (no grad, the model's current mode) -> uint8 (N, H, W, 3); y labels or class weights."""
    out = []
    with torch.no_grad():
        for s in range(0, z.shape[0], batch_size):
            out.append(to_uint8(_forward(model, z[s : s + batch_size], y[s : s + batch_size], truncation)))
    return np.concatenate(out) if out else np.zeros((0, model.resolution, model.resolution, 3), np.uint8)


def _prepare(
    model: Any, truncation: float | None, truncation_mode: str, device: str | torch.device | None
) -> tuple[nn.Module, float | None]:
    from gensr.inference.precision import resolve_device

    truncation = check_truncation(truncation, truncation_mode)
    dev = None if device is None and isinstance(model, nn.Module) else resolve_device(device)
    net = load_generator(model, dev)
    if _is_deep(net):
        if truncation_mode != "scale":
            raise GensrError(
                "BigGAN-deep ports carry BN statistics for truncation x truncnorm(-2, 2) only: use truncation "
                "mode 'scale' (--truncation-mode scale)"
            )
        if truncation is not None and truncation > 1.0:
            raise GensrError(f"BigGAN-deep ports take a truncation in (0, 1], got {truncation:g}")
    return net, truncation


def _with_standing_stats(
    net: nn.Module, forwards: int, truncation: float | None, truncation_mode: str, batch_size: int, seed: int
) -> nn.Module:
    """``net`` itself for ``forwards`` 0, else a copy with standing statistics over ``forwards`` batches, drawn
    from a generator seeded for index -1 of ``seed`` (an index no image uses, so no image's z is reused)."""
    if not forwards:
        return net
    gen = torch.Generator().manual_seed(_image_seed(seed, -1))
    return standing_stats_copy(net, forwards, truncation, truncation_mode, batch_size, gen)


def generate(
    model: str | os.PathLike | nn.Module = "biggan_cifar",
    classes: Sequence[int] | None = None,
    num: int = 1,
    truncation: float | None = None,
    truncation_mode: str = "resample",
    seed: int = 0,
    batch_size: int = 64,
    standing_stats: int = 0,
    device: str | torch.device | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``num`` images for each class of ``classes`` (None = every class) -> (uint8 (N, H, W, 3), int64 (N,)).

    ``model``: a generator module or a shipped name / checkpoint file (refused unless its kind is
    ``generator``). See the module docstring for truncation, seeding and ``standing_stats``. ``device``: where
    to run a loaded model (None: CUDA when available); a module given as ``model`` stays where it is unless
    ``device`` is set. At most :data:`MAX_IMAGES` images per call.
    """
    num = _check_count(num)
    batch_size = _check_count(batch_size, "batch_size")
    if isinstance(standing_stats, bool) or not isinstance(standing_stats, int) or standing_stats < 0:
        raise GensrError(f"standing_stats must be an integer >= 0, got {standing_stats!r}")
    net, truncation = _prepare(model, truncation, truncation_mode, device)
    cls = _check_classes(classes, net.n_classes)
    total = num * len(cls)
    if total > MAX_IMAGES:
        raise GensrError(f"{num} images x {len(cls)} classes = {total} images is over the limit of {MAX_IMAGES}")
    net = _with_standing_stats(net, standing_stats, truncation, truncation_mode, batch_size, seed)
    z = latents_for(range(num), net.dim_z, truncation, truncation_mode, seed).repeat(len(cls), 1)
    y = torch.tensor(cls, dtype=torch.int64).repeat_interleave(num)
    return render(net, z, y, truncation, batch_size), y.numpy()


def interpolation_sheet(
    model: str | os.PathLike | nn.Module,
    mode: str,
    classes: Sequence[int],
    steps: int = 8,
    rows: int = 1,
    truncation: float | None = None,
    truncation_mode: str = "resample",
    seed: int = 0,
    batch_size: int = 64,
    standing_stats: int = 0,
    device: str | torch.device | None = None,
) -> np.ndarray:
    """Interpolation frames as uint8 (R, steps, H, W, 3) (see the module docstring).

    ``mode`` "z": one row per class of ``classes`` (``rows`` ignored); "class": exactly two classes,
    ``rows`` rows (one z each).
    """
    if mode not in ("z", "class"):
        raise GensrError(f"interpolation mode must be 'z' or 'class', got {mode!r}")
    steps = _check_count(steps, "steps")
    if steps < 2:
        raise GensrError(f"an interpolation needs at least 2 steps, got {steps}")
    rows = _check_count(rows, "rows")
    net, truncation = _prepare(model, truncation, truncation_mode, device)
    cls = _check_classes(classes, net.n_classes)
    if mode == "class" and len(cls) != 2:
        raise GensrError(f"class interpolation needs exactly two classes, got {len(cls)}")
    n_rows = len(cls) if mode == "z" else rows
    if n_rows * steps > MAX_IMAGES:
        raise GensrError(f"{n_rows} rows x {steps} steps is over the limit of {MAX_IMAGES} images")
    net = _with_standing_stats(net, standing_stats, truncation, truncation_mode, batch_size, seed)
    t = torch.linspace(0.0, 1.0, steps)[:, None]
    if mode == "z":
        a, b = latents_for([0, 1], net.dim_z, truncation, truncation_mode, seed)
        z = ((1 - t) * a + t * b).repeat(n_rows, 1)
        y = torch.tensor(cls).repeat_interleave(steps)
    else:
        z = latents_for(range(n_rows), net.dim_z, truncation, truncation_mode, seed).repeat_interleave(steps, 0)
        onehot = torch.eye(net.n_classes)
        y = ((1 - t) * onehot[cls[0]] + t * onehot[cls[1]]).repeat(n_rows, 1)
    frames = render(net, z, y, truncation, _check_count(batch_size, "batch_size"))
    return frames.reshape(n_rows, steps, *frames.shape[1:])


# ----------------------------------------------------------------------------------------------- sheets


def tile_rows(rows: Sequence[np.ndarray], gap: int = 2, fill: int = 255) -> np.ndarray:
    """Rows of uint8 images (each (k_i, H, W, 3)) -> one uint8 (H', W', 3) sheet, ``gap`` px between cells."""
    if not rows:
        raise ValueError("no rows to tile")
    h, w = rows[0].shape[1:3]
    cols = max(r.shape[0] for r in rows)
    sheet = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), fill, dtype=np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            sheet[i * (h + gap) : i * (h + gap) + h, j * (w + gap) : j * (w + gap) + w] = img
    return sheet


def class_grid(
    images: np.ndarray, labels: np.ndarray, classes: Sequence[int], per_class: int, gap: int = 2
) -> np.ndarray:
    """One row per class of ``classes`` with its first ``per_class`` images -> uint8 (H', W', 3)."""
    rows = []
    for c in classes:
        picked = images[np.asarray(labels) == c][:per_class]
        rows.append(picked if len(picked) else np.zeros((1, *images.shape[1:]), dtype=np.uint8))
    return tile_rows(rows, gap)
