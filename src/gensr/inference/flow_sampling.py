"""Diverse SR samples from an SRFlow model: batched, seeded, any LR size, optionally tiled.

:func:`sample_sr` is the one-call form; :class:`FlowSampler` keeps one loaded model for many images.

* **Temperature** ``tau``: every latent (final z and each split's eps) is drawn from N(0, tau^2);
  ``tau = 0`` gives the deterministic mean (all samples identical, the best-PSNR output), 0.9 is the
  paper's default for general images, 0.8 for faces.
* **Reproducibility**: the latents come from a CPU ``torch.Generator`` seeded with ``seed``, drawn sample by
  sample in a fixed order (final z, then the split eps from the deepest split up), so sample ``i`` depends
  only on ``seed``, ``i``, ``tau`` and the LR size -- not on ``num_samples``, ``batch_size``, the tiling or
  the device. ``seed=None`` picks a random seed.
* **Any LR size**: the LR is reflect-padded at the bottom/right to a multiple of the model's
  ``lr_multiple`` (2 for the released layouts, whose deepest level is at LR/2) and the SR is cropped back
  to ``scale * h x scale * w``, as the official ``test.py`` does.
* **Batching**: the LR encoder runs once per image (or per group of tiles); its features are shared by up
  to ``batch_size`` decoder passes at a time (samples and tiles together).
* **Tiling** (``tile`` > 0, in LR pixels): the whole latent field is drawn once for the padded image and
  each tile decodes its own crop of it, so overlapping tiles share their latents; tiles still see only
  their own LR context, so neighbouring tiles do not agree exactly and their outputs are blended with a
  feathered window (linear ramps over the overlap, :func:`gensr.inference.tiling.feather_window`). The
  stochastic detail of one tile is thus not independent of its neighbour's, but seams are blended, not
  exact: for ``tau > 0`` a tiled sample differs from the untiled sample of the same seed near tile edges.
  Tile sizes and offsets are multiples of ``lr_multiple`` so latent crops align with every level.
* **Speed**: eval mode and ``torch.inference_mode``: the 1x1-conv inverses are computed once in float64 and
  cached by the model. ``precision`` "bf16"/"fp16" runs the convolutions under autocast (CUDA), the flow
  state, scales and inverses stay float32 (see :mod:`gensr.nn.flow`). On CUDA the model and inputs use
  channels_last.

* **Checked outputs** (:func:`check_flow_output`): every raw sample is checked per region of
  ``REGION_SIZE`` x ``REGION_SIZE`` LR pixels: a region with non-finite values, or whose MATLAB-bicubic
  downscale has an LR-PSNR below ``REGION_MIN_LR_PSNR`` dB against the LR *and* ``REGION_MARGIN_DB`` below
  the tau-0 mean's (decoded only when some region is that low), is broken (a runaway inverse's saturated or
  black block scores 1-25 dB; the shipped model's returned samples of Set5/Set14/BSD100 at tau 0.9 have no
  region below 27 dB, and those below 30 dB lie where its tau-0 mean is below 40 dB). The latents of that sample
  at every level under the broken regions (plus a margin of half a region) are re-drawn from N(0, tau^2)
  and the sample is decoded again, at most ``redraws`` times (default 3); the re-draws use generators seeded
  from (seed, sample index, attempt), so results still depend only on the seed. A sample that stays broken
  (or a broken tau-0 mean, which has nothing to re-draw) raises GensrError: a broken image is never returned.
  ``FlowSampler.stats`` counts the samples, re-drawn regions and re-drawn samples.

Output: float32 CPU tensor (N, 3, s*h, s*w) clamped to [0, 1].
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError
from gensr.nn.padding import pad_to_multiple

__all__ = [
    "DEFAULT_TEMPERATURE",
    "FlowSampler",
    "sample_sr",
    "load_flow_model",
    "pad_to_multiple",
    "as_image_tensor",
    "draw_latents",
    "resolve_seed",
    "check_temperature",
    "check_flow_output",
    "region_lr_psnr",
    "RegionReport",
    "REGION_SIZE",
    "REGION_MIN_LR_PSNR",
]

DEFAULT_TEMPERATURE = 0.9
REGION_SIZE = 8  # LR pixels per checked region
REGION_MIN_LR_PSNR = 30.0  # dB; a region below this is broken ...
REGION_MARGIN_DB = 10.0  # ... when it is also this much below the tau-0 mean's LR-PSNR there
MAX_REDRAWS = 3
MAX_SEED = 2**63 - 1
MAX_SAMPLES = 10_000  # per image and call: samples are made and handed out in chunks, so memory stays flat
PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


# ------------------------------------------------------------------------------------------------ helpers


def load_flow_model(
    model: str | os.PathLike | nn.Module, device: torch.device | str | None = None, config: Any = None
) -> nn.Module:
    """An SRFlow model in eval mode on ``device`` from a shipped name, a checkpoint path or a module.

    ``config``: for an official file, what its weights cannot tell (the official training YAML's path or a dict,
    see :func:`gensr.checkpoints.loader.load_model`).
    A module is moved and switched to eval mode in place. GensrError when the checkpoint holds another
    architecture (e.g. an RRDB/ESRGAN generator, which `gensr upscale` runs).
    """
    from gensr.models.srflow import SRFlowNet

    if isinstance(model, nn.Module):
        net = model
    elif isinstance(model, (str, os.PathLike)):
        from gensr.checkpoints.loader import load_model

        net = load_model(model, config=config)
    else:
        raise GensrError(f"model must be a name, a checkpoint path or an nn.Module, got {type(model).__name__}")
    if getattr(net, "kind", None) != "flow-sr" or not isinstance(net, SRFlowNet):
        hint = {"sr": " (use `gensr upscale` for feed-forward SR networks)", "generator": " (use `gensr generate`)"}
        raise GensrError(
            f"{model if not isinstance(model, nn.Module) else type(model).__name__}: is a "
            f"{type(net).__name__}, not an SRFlow model{hint.get(getattr(net, 'kind', None), '')}"
        )
    net.eval()
    if device is not None:
        net.to(device)
    return net


def as_image_tensor(image: torch.Tensor | str | os.PathLike, what: str = "image") -> torch.Tensor:
    """(1, 3, H, W) float32 CPU tensor in [0, 1] from a tensor ((3, H, W), (1, 1|3, H, W)) or an image path.

    Gray is replicated to RGB; the alpha channel of a file is ignored.
    """
    if isinstance(image, (str, os.PathLike)):
        from gensr.io import read_image

        return read_image(Path(image)).rgb_tensor()
    if not isinstance(image, torch.Tensor):
        raise GensrError(f"{what} must be a tensor or an image path, got {type(image).__name__}")
    x = image.unsqueeze(0) if image.dim() == 3 else image
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise GensrError(f"{what}: expected a (1, 3, H, W) or (3, H, W) tensor, got shape {tuple(image.shape)}")
    if not x.is_floating_point():
        raise GensrError(f"{what}: expected a float tensor in [0, 1], got {x.dtype}")
    x = x.detach().to("cpu", torch.float32)
    return x.expand(1, 3, *x.shape[-2:]).contiguous() if x.shape[1] == 1 else x


def resolve_seed(seed: int | None) -> int:
    """``seed`` itself, or a fresh random 63-bit seed for None."""
    if seed is None:
        return int.from_bytes(os.urandom(8), "little") >> 1
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise GensrError(f"seed must be an integer, got {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise GensrError(f"seed must be an integer in [0, 2**63 - 1], got {seed}")
    return seed


def draw_latents(
    shapes: list[tuple[int, int, int]], temperature: float, num: int, generator: torch.Generator | None
) -> list[torch.Tensor]:
    """N(0, temperature^2) latents in the model's z_list order ([eps..., z], each (num, C, H, W), CPU).

    Drawn sample by sample, final z first and then the eps from the last split to the first, so sample
    ``i`` does not depend on ``num``. Zeros (no generator use) for temperature 0.
    """
    out = [torch.zeros((num, *s)) for s in shapes]
    if temperature == 0:
        return out
    for i in range(num):
        for j in reversed(range(len(shapes))):
            out[j][i] = torch.randn(shapes[j], generator=generator).mul_(temperature)
    return out


def check_temperature(temperature: float) -> float:
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        raise GensrError(f"temperature must be a number, got {temperature!r}") from None
    if not (t >= 0 and t < float("inf")):
        raise GensrError(f"temperature must be a finite number >= 0, got {temperature}")
    return t


# ------------------------------------------------------------------------------------------------ output check


@dataclass
class RegionReport:
    """Per-region check of N flow outputs; regions are ``region`` x ``region`` LR pixels (the last row and
    column of regions may be smaller). All fields (N, gh, gw): ``psnr`` float32, the LR-PSNR of each region
    (dB); ``limit``, the LR-PSNR below which that region is broken; ``nonfinite`` bool, the region holds
    NaN/Inf output pixels; ``bad`` bool, either."""

    psnr: torch.Tensor
    limit: torch.Tensor
    nonfinite: torch.Tensor
    bad: torch.Tensor

    def summary(self, i: int) -> str:
        """One line about output ``i``: how many regions are broken and why."""
        bad, psnr = self.bad[i], self.psnr[i]
        parts = []
        if bool(self.nonfinite[i].any()):
            parts.append(f"non-finite values in {int(self.nonfinite[i].sum())} region(s)")
        k = int(torch.argmin(psnr - self.limit[i]))
        lowest, limit = float(psnr.flatten()[k]), float(self.limit[i].flatten()[k])
        parts.append(f"lowest region LR-PSNR {lowest:.1f} dB, limit {limit:.1f} dB")
        return f"{int(bad.sum())} of {bad.numel()} region(s) broken ({'; '.join(parts)})"


def region_lr_psnr(sr: torch.Tensor, lr: torch.Tensor, scale: int, region: int = REGION_SIZE) -> torch.Tensor:
    """(N, gh, gw) LR-PSNR (dB, float32) per ``region`` x ``region`` LR pixels of the MATLAB-bicubic downscale
    (torch path) of ``sr`` (N, 3, s*h, s*w; NaN -> 0, then clamped to [0, 1]) against ``lr`` (1 | N, 3, h, w)."""
    from gensr.imresize import imresize

    if sr.shape[-2:] != (lr.shape[-2] * scale, lr.shape[-1] * scale):
        raise GensrError(f"output size {tuple(sr.shape[-2:])} is not {scale} x the LR size {tuple(lr.shape[-2:])}")
    h, w = lr.shape[-2:]
    gh, gw = -(-h // region), -(-w // region)
    clean = torch.nan_to_num(sr.detach().to("cpu", torch.float32), nan=0.0, posinf=1.0, neginf=0.0).clamp_(0.0, 1.0)
    err = (imresize(clean, 1.0 / scale) - lr.detach().to("cpu", torch.float32)).pow(2).mean(1, keepdim=True)
    pad = (0, gw * region - w, 0, gh * region - h)
    total = F.avg_pool2d(F.pad(err, pad), region, divisor_override=1)
    count = F.avg_pool2d(F.pad(torch.ones_like(err), pad), region, divisor_override=1)
    return (-10.0 * torch.log10((total / count).clamp(min=1e-20)))[:, 0]


def check_flow_output(
    sr: torch.Tensor,
    lr: torch.Tensor,
    scale: int,
    region: int = REGION_SIZE,
    min_psnr: float = REGION_MIN_LR_PSNR,
    reference: Callable[[], torch.Tensor] | torch.Tensor | None = None,
) -> RegionReport:
    """Check raw flow outputs ``sr`` (N, 3, s*h, s*w), unclamped, against their LR ``lr`` (1 | N, 3, h, w).

    Per ``region`` x ``region`` LR pixels: a region is broken when it holds a non-finite value, or when its
    LR-PSNR (:func:`region_lr_psnr`) is below ``min_psnr`` *and* more than ``REGION_MARGIN_DB`` below the
    ``reference``: the region LR-PSNRs (1 | N, gh, gw) of the model's tau-0 mean for this LR, or a function
    giving them, called only when some region is below ``min_psnr`` (a model that is not LR-consistent at
    all, e.g. an untrained one, is then judged against itself). ``min_psnr`` 0 checks finiteness only.
    """
    sr = sr.detach().to("cpu", torch.float32)
    h, w = lr.shape[-2:]
    psnr = region_lr_psnr(sr, lr, scale, region)
    finite = torch.isfinite(sr).all(1, keepdim=True).float()
    gh, gw = psnr.shape[-2:]
    finite = F.pad(finite, (0, (gw * region - w) * scale, 0, (gh * region - h) * scale), value=1.0)
    nonfinite = (-F.max_pool2d(-finite, region * scale))[:, 0] < 0.5
    limit = torch.full_like(psnr, float(min_psnr))
    if min_psnr > 0 and reference is not None and bool((psnr < limit).any()):
        ref = reference() if callable(reference) else reference
        limit = torch.minimum(limit, ref.to(psnr.dtype).expand_as(psnr) - REGION_MARGIN_DB)
    bad = nonfinite | (psnr < limit) if min_psnr > 0 else nonfinite.clone()
    return RegionReport(psnr=psnr, limit=limit, nonfinite=nonfinite, bad=bad)


def region_pixel_mask(bad: torch.Tensor, region: int, size: tuple[int, int], margin: int = 0) -> torch.Tensor:
    """(gh, gw) bool region grid -> (size) bool mask of the LR pixels inside a bad region or at most ``margin``
    pixels from one; ``size`` (H, W) may exceed the grid's cover by padding (the grid's edge is extended)."""
    mk = bad.float()[None, None].repeat_interleave(region, 2).repeat_interleave(region, 3)
    ph, pw = max(0, size[0] - mk.shape[-2]), max(0, size[1] - mk.shape[-1])
    if ph or pw:
        mk = F.pad(mk, (0, pw, 0, ph), mode="replicate")
    if margin > 0:
        mk = F.max_pool2d(mk, 2 * margin + 1, stride=1, padding=margin)
    return mk[0, 0, : size[0], : size[1]] > 0.5


def redraw_seed(seed: int, index: int, attempt: int) -> int:
    """The seed of re-draw ``attempt`` (1, 2, ...) of sample ``index`` of a call with ``seed``."""
    digest = hashlib.sha256(f"gensr-flow-redraw:{seed}:{index}:{attempt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def redraw_latents(fields: list[torch.Tensor], index: int, mask: torch.Tensor, temperature: float, seed: int) -> None:
    """Replace, in place, the latents of sample ``index`` of ``fields`` ([eps..., z], each (N, C, H_l, W_l))
    under the LR-pixel ``mask`` (H, W) by fresh N(0, temperature^2) draws: a latent position is redrawn when
    any LR pixel it covers is in the mask. Draws from a generator seeded with ``seed``, final z first."""
    gen = torch.Generator().manual_seed(int(seed))
    mk = mask.float()[None, None]
    for field in reversed(fields):
        fh, fw = field.shape[-2:]
        if fh >= mk.shape[-2]:
            level = F.interpolate(mk, size=(fh, fw), mode="nearest")
        else:
            level = F.adaptive_max_pool2d(mk, (fh, fw))
        fresh = torch.randn(tuple(field.shape[1:]), generator=gen).mul_(temperature)
        field[index] = torch.where(level[0] > 0.5, fresh, field[index])


# ------------------------------------------------------------------------------------------------ sampler


class FlowSampler:
    """One SRFlow model ready to sample SR images; see the module docstring for the behaviour.

    Args:
        model: shipped name ("srflow"), checkpoint path, or an SRFlow ``nn.Module`` (moved in place).
        device: "cpu", "cuda", ...; None picks CUDA when available.
        precision: "fp32" (default), "bf16" or "fp16": autocast dtype of the convolutions (the flow
            arithmetic stays float32). Low precision on the CPU falls back to fp32.
        batch_size: decoder passes per forward (samples x tiles).
        tile, tile_overlap: tile size and overlap in LR pixels (tile 0 = whole image).
        channels_last: None = on CUDA only.
        redraws: re-draws of a sample with broken regions before GensrError (0: error at once).
        min_region_psnr: LR-PSNR (dB) below which a region is broken (0: check finiteness only).
    """

    def __init__(
        self,
        model: str | os.PathLike | nn.Module = "srflow",
        *,
        device: str | torch.device | None = None,
        precision: str = "fp32",
        batch_size: int = 4,
        tile: int = 0,
        tile_overlap: int = 16,
        channels_last: bool | None = None,
        redraws: int = MAX_REDRAWS,
        min_region_psnr: float = REGION_MIN_LR_PSNR,
    ) -> None:
        from gensr.inference.precision import resolve_device

        if redraws < 0:
            raise GensrError(f"redraws must be >= 0, got {redraws}")
        if not 0 <= min_region_psnr < float("inf"):
            raise GensrError(f"min_region_psnr must be a finite number >= 0 (0 = off), got {min_region_psnr}")
        self.redraws, self.min_region_psnr, self.region = int(redraws), float(min_region_psnr), REGION_SIZE
        self.stats = {"samples": 0, "redrawn_regions": 0, "redrawn_samples": 0}

        if batch_size < 1:
            raise GensrError(f"batch size must be >= 1, got {batch_size}")
        if tile < 0:
            raise GensrError(f"tile must be >= 0 (0 = no tiling), got {tile}")
        if tile_overlap < 0:
            raise GensrError(f"tile overlap must be >= 0, got {tile_overlap}")
        if tile and tile_overlap >= tile:
            raise GensrError(f"tile overlap ({tile_overlap}) must be smaller than the tile size ({tile})")
        if precision not in PRECISIONS:
            raise GensrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        self.device = resolve_device(device)
        self.dtype = _DTYPES[precision] if self.device.type == "cuda" else torch.float32
        self.batch_size, self.tile, self.tile_overlap = int(batch_size), int(tile), int(tile_overlap)
        self.model = load_flow_model(model, self.device)
        self.channels_last = self.device.type == "cuda" if channels_last is None else bool(channels_last)
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)

    @property
    def scale(self) -> int:
        return int(self.model.config.scale)

    @property
    def default_temperature(self) -> float:
        return float(getattr(self.model.config, "heat", DEFAULT_TEMPERATURE))

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def tiles_for(self, h: int, w: int) -> int:
        """Number of tiles an ``h`` x ``w`` LR image is split into."""
        from gensr.inference.tiling import tile_count

        return tile_count(h, w, self.tile, self.tile_overlap, self.model.config.lr_multiple)

    @torch.inference_mode()
    def sample(
        self,
        lr: torch.Tensor | str | os.PathLike,
        temperature: float | None = None,
        num_samples: int = 1,
        seed: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        lr_consistency: int = 0,
    ) -> torch.Tensor:
        """``num_samples`` SR samples of one LR image -> (N, 3, s*h, s*w) float32 CPU in [0, 1].

        ``temperature`` None uses the model's ``config.heat`` (0.9 for the released models).
        ``progress(done, total)`` is called after every decoder batch. ``lr_consistency`` > 0 applies that
        many back-projection passes to every sample (:mod:`gensr.inference.consistency`; off by default).
        Every sample is checked first (:func:`check_flow_output`); a broken region is re-drawn (see the module
        docstring) and GensrError is raised when it stays broken. See :meth:`sample_iter` for many samples.
        """
        chunks = self.sample_iter(lr, temperature, num_samples, seed, None, progress, lr_consistency)
        return torch.cat(list(chunks))

    @torch.inference_mode()
    def sample_iter(
        self,
        lr: torch.Tensor | str | os.PathLike,
        temperature: float | None = None,
        num_samples: int = 1,
        seed: int | None = None,
        chunk: int | None = None,
        progress: Callable[[int, int], None] | None = None,
        lr_consistency: int = 0,
    ) -> Iterator[torch.Tensor]:
        """The samples of :meth:`sample`, handed out ``chunk`` at a time ((k, 3, s*h, s*w) each; None: all at
        once), so that memory does not grow with ``num_samples``. The samples are the same whatever the chunk:
        sample ``i`` depends only on the seed and ``i``."""
        tau = self.default_temperature if temperature is None else check_temperature(temperature)
        n = int(num_samples)
        if not 1 <= n <= MAX_SAMPLES:
            raise GensrError(f"number of samples must be in [1, {MAX_SAMPLES}], got {num_samples}")
        chunk = n if chunk is None else max(1, int(chunk))
        seed = resolve_seed(seed)
        x = as_image_tensor(lr, "LR")
        s, m = self.scale, self.model.config.lr_multiple
        xp, (h, w) = pad_to_multiple(x, m)
        shapes = self.model.z_shapes(tuple(xp.shape[-2:]))
        generator = torch.Generator().manual_seed(seed)  # one stream for all chunks: chunking changes nothing
        for first in range(0, n, chunk):
            k = min(chunk, n - first)
            fields = draw_latents(shapes, tau, k, generator)
            out = self._decode(xp, fields, list(range(k)), progress)[:, :, : h * s, : w * s]
            self.stats["samples"] += k
            out = self._guard(out, x, xp, fields, tau, seed, first).clamp_(0.0, 1.0).contiguous()
            if lr_consistency:
                from gensr.inference.consistency import enforce_lr_consistency

                out = enforce_lr_consistency(out, x, s, lr_consistency)
            yield out

    def _guard(
        self,
        out: torch.Tensor,
        x: torch.Tensor,
        xp: torch.Tensor,
        fields: list[torch.Tensor],
        tau: float,
        seed: int,
        first: int = 0,
    ) -> torch.Tensor:
        """Check every sample of ``out`` (raw, cropped; sample numbers ``first``, ``first + 1`` ...) against the
        LR ``x``; re-draw the latents of its broken regions in ``fields`` (in place) and decode it again, up to
        ``self.redraws`` times; GensrError after."""
        s, (h, w) = self.scale, x.shape[-2:]
        ref: list[torch.Tensor] = []

        def reference() -> torch.Tensor:  # region LR-PSNRs of the tau-0 mean, decoded once when first needed
            if not ref:
                mean = self._decode(xp, [torch.zeros_like(f[:1]) for f in fields], [0], None)
                ref.append(region_lr_psnr(mean[:, :, : h * s, : w * s], x, s, self.region))
            return ref[0]

        def check(batch: torch.Tensor) -> RegionReport:
            return check_flow_output(batch, x, s, self.region, self.min_region_psnr, reference)

        report = check(out)
        for i in torch.nonzero(report.bad.flatten(1).any(1)).flatten().tolist():
            last, j = report, i
            for attempt in range(1, (self.redraws if tau > 0 else 0) + 1):
                self.stats["redrawn_regions"] += int(last.bad[j].sum())
                mask = region_pixel_mask(last.bad[j], self.region, tuple(xp.shape[-2:]), margin=self.region // 2)
                redraw_latents(fields, i, mask, tau, redraw_seed(seed, first + i, attempt))
                out[i] = self._decode(xp, fields, [i], None)[0, :, : h * s, : w * s]
                last, j = check(out[i : i + 1]), 0
                if not bool(last.bad[0].any()):
                    break
            if bool(last.bad[j].any()):
                how = f"after {self.redraws} re-draw(s)" if tau > 0 else "(a tau-0 mean cannot be re-drawn)"
                raise GensrError(
                    f"SRFlow sample {first + i} (seed {seed}, temperature {tau:g}) is broken {how}: {last.summary(j)}; "
                    "try another seed or a lower temperature"
                )
            self.stats["redrawn_samples"] += 1
        return torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0)

    def _decode(
        self,
        xp: torch.Tensor,
        fields: list[torch.Tensor],
        ids: list[int],
        progress: Callable[[int, int], None] | None,
    ) -> torch.Tensor:
        """Decode samples ``ids`` of the latent ``fields`` for the padded LR ``xp`` (1, 3, hp, wp), tiled and
        batched -> raw (len(ids), 3, s*hp, s*wp) float32 CPU (unclamped; may hold NaN/Inf)."""
        from gensr.inference.tiling import TileBlender, tile_grid

        grid = tile_grid(xp.shape[-2], xp.shape[-1], self.tile, self.tile_overlap, self.model.config.lr_multiple)
        blender = TileBlender(grid, self.scale, 3, batch=len(ids))
        group = max(1, self.batch_size // len(ids))  # tiles whose LR features are computed together
        tiles = grid.positions
        groups = [tiles[g0 : g0 + group] for g0 in range(0, len(tiles), group)]
        total = sum(-(-(len(g) * len(ids)) // self.batch_size) for g in groups)
        done = [0, total]
        for gtiles in groups:
            self._decode_group(xp, fields, ids, grid, gtiles, blender, progress, done)
        return blender.result()

    def _decode_group(self, xp, fields, ids, grid, gtiles, blender, progress, done) -> None:
        """Decode every sample of the tiles ``gtiles`` (LR features computed once for the group) into ``blender``."""
        model, (hp, wp), th, tw = self.model, xp.shape[-2:], grid.th, grid.tw
        lr_g = self._to_device(torch.cat([xp[:, :, y : y + th, x0 : x0 + tw] for y, x0 in gtiles]))
        with self._autocast():
            conds = model.conditions(lr_g)
        items = [(t, k) for t in range(len(gtiles)) for k in range(len(ids))]
        for b0 in range(0, len(items), self.batch_size):
            chunk = items[b0 : b0 + self.batch_size]
            rows = torch.tensor([t for t, _ in chunk], device=self.device)
            z_list = []
            for field in fields:
                fh, fw = field.shape[-2:]
                crops = []
                for t, k in chunk:
                    y, x0 = gtiles[t]
                    ry, rx = slice(y * fh // hp, (y + th) * fh // hp), slice(x0 * fw // wp, (x0 + tw) * fw // wp)
                    crops.append(field[ids[k], :, ry, rx])
                z_list.append(self._to_device(torch.stack(crops)))
            with self._autocast():
                sr = model.decode(
                    lr_g.index_select(0, rows), z_list, heat=0.0, conds=[c.index_select(0, rows) for c in conds]
                )
            sr = sr.float().cpu()
            for j, (t, k) in enumerate(chunk):
                blender.add(sr[j], *gtiles[t], k=k)
            done[0] += 1
            if progress is not None:
                progress(done[0], done[1])


def sample_sr(
    lr: torch.Tensor | str | os.PathLike,
    model: str | os.PathLike | nn.Module = "srflow",
    *,
    temperature: float | None = DEFAULT_TEMPERATURE,
    num_samples: int = 1,
    seed: int | None = None,
    batch_size: int = 4,
    tile: int = 0,
    tile_overlap: int = 16,
    device: str | torch.device | None = None,
    precision: str = "fp32",
    lr_consistency: int = 0,
) -> torch.Tensor:
    """Draw ``num_samples`` SR images for one LR image with SRFlow -> (N, 3, s*h, s*w) float32 in [0, 1].

    ``lr``: (1, 3, h, w) / (3, h, w) float tensor in [0, 1] or an image path; any h, w (reflect-padded to
    the model's multiple and cropped back). ``temperature`` 0 gives the deterministic mean (all N
    identical); None uses the model's ``config.heat``. Same ``seed`` -> same samples (sample i depends only
    on the seed and i). ``tile`` > 0 decodes tiles of that many LR pixels (overlap ``tile_overlap``) that
    crop one shared latent field and are feather-blended at the seams. ``lr_consistency`` > 0 back-projects
    the LR residual that many times (:mod:`gensr.inference.consistency`). See :class:`FlowSampler`.
    """
    sampler = FlowSampler(
        model, device=device, precision=precision, batch_size=batch_size, tile=tile, tile_overlap=tile_overlap
    )
    return sampler.sample(
        lr, temperature=temperature, num_samples=num_samples, seed=seed, lr_consistency=lr_consistency
    )
