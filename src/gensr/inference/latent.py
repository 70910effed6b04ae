"""SRFlow latent space: encode, decode, likelihood scores and latent manipulation (paper section 5).

Latents are lists in the model's ``z_list`` order: the eps of every split (whitened by its learned prior),
then the final z; each (N, C, H_l, W_l). Under the model all entries are N(0, 1) (N(0, tau^2) when
sampling at temperature tau).

* :func:`encode` (HR, LR) -> latents plus the likelihood (bits/pixel as SRFlow reports it and bits/dim);
  :func:`decode_latents` (LR, latents) -> image; ``decode_latents(lr, encode(hr, lr)["latents"])``
  reproduces ``hr`` up to float error. When the LR is omitted it is the MATLAB-bicubic (torch float path,
  unrounded) downscale of the HR mod-cropped to the scale. Odd LR sizes are reflect-padded to the model's
  multiple (with the HR padded to match) and cropped back on decoding.
* :func:`score_image`: bits/dim of any SR image (e.g. an ESRGAN output) given its LR, averaged over noise
  draws (see there for what exactly is reported).
* Latent normalisation (:func:`normalize_latents`): for a set Z~ of latent entries with empirical mean
  mu~ and std sigma~, draw mu^ ~ N(0, tau^2/N), sigma^2 ~ Gamma((N-1)/2, scale=2 tau^2/(N-1)) and set
  z^ = (sigma^/sigma~)(z - mu~) + mu^. These are exactly the distributions of the mean and the unbiased
  variance of N fresh N(0, tau^2) draws, so the set is given the statistics of a typical sample while its
  pattern is kept. Sets: ``global`` (all entries of all levels), ``local`` (the channels at each position
  of each level), ``spatial`` (the positions of each channel of each level); all per image. Std here is
  the unbiased one (ddof 1), so the output set has mean mu^ and unbiased std sigma^ exactly.
* :func:`resample_latents`: redraw N(0, tau^2) latents at the positions inside a mask (per level, the
  mask is any-pooled to the level's resolution: a latent position is inside when any HR pixel it covers is).
* High-level edits on images: :func:`normalize` (encode, normalise, decode), :func:`resample` (stochastic
  re-sampling of a region), :func:`transfer` (paste a region of another image into an SR result, encode
  with the original LR, local normalisation inside the edited region only, decode: the result stays
  consistent with the LR) and :func:`restore` (encode a degraded HR with its own LR, spatial then local
  normalisation, decode).

Random draws use a CPU ``torch.Generator`` seeded with ``seed`` (None = random), so results repeat.

Every decoded image is checked (:func:`gensr.inference.flow_sampling.check_flow_output`: no non-finite value,
and no region of 8 x 8 LR pixels below 30 dB LR-PSNR against the LR it was decoded with unless the model's
tau-0 mean is as poor there); a broken one raises GensrError instead of being returned. So do non-finite
latents given to :func:`decode_latents` and an encoding that is not finite.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gensr.errors import GensrError
from gensr.inference.flow_sampling import (
    DEFAULT_TEMPERATURE,
    as_image_tensor,
    check_flow_output,
    check_temperature,
    load_flow_model,
    region_lr_psnr,
    resolve_seed,
)
from gensr.metrics.fidelity import lr_psnr_torch
from gensr.nn.padding import pad_bottom_right, pad_to_multiple

__all__ = [
    "MODES",
    "FlowPair",
    "prepare_pair",
    "encode",
    "decode_latents",
    "score_image",
    "normalize_latents",
    "resample_latents",
    "level_masks",
    "region_mask",
    "lr_psnr_torch",
    "normalize",
    "resample",
    "transfer",
    "restore",
]

MODES = ("global", "local", "spatial")
Latents = list[torch.Tensor]
ImageLike = torch.Tensor | str | os.PathLike
ModelLike = str | os.PathLike | nn.Module


# ------------------------------------------------------------------------------------------- HR/LR pairs


@dataclass
class FlowPair:
    """An HR/LR pair ready for the flow: both padded so the LR sides are multiples of the model's multiple.

    ``lr`` is the unpadded LR (1, 3, h, w); ``hr_p``/``lr_p`` the padded tensors; ``lr_size`` (h, w).
    """

    hr_p: torch.Tensor
    lr_p: torch.Tensor
    lr: torch.Tensor
    lr_size: tuple[int, int]
    scale: int

    @property
    def hr(self) -> torch.Tensor:
        h, w = self.lr_size
        return self.hr_p[:, :, : h * self.scale, : w * self.scale]

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """Crop an HR-size (padded) tensor back to the unpadded HR size."""
        h, w = self.lr_size
        return x[..., : h * self.scale, : w * self.scale]

    def pad_hr_like(self, x: torch.Tensor) -> torch.Tensor:
        """Pad an unpadded HR-size (N, C, H, W) tensor (image or mask) the way the HR was padded."""
        ph = self.hr_p.shape[-2] - x.shape[-2]
        pw = self.hr_p.shape[-1] - x.shape[-1]
        return pad_bottom_right(x.float(), ph, pw).to(x.dtype)


def _downscale(hr: torch.Tensor, scale: int) -> torch.Tensor:
    from gensr.imresize import imresize, modcrop

    return imresize(modcrop(hr, scale), 1.0 / scale).clamp_(0.0, 1.0)


def prepare_pair(hr: ImageLike, lr: ImageLike | None, model: nn.Module) -> FlowPair:
    """Read/validate HR and LR; LR None -> MATLAB bicubic of the HR mod-cropped to the scale.

    The HR is mod-cropped to the scale (bottom/right); GensrError when it is then not ``scale`` x the LR.
    """
    from gensr.imresize import modcrop

    s = int(model.config.scale)
    x_hr = as_image_tensor(hr, "HR")
    if lr is None:
        x_hr = modcrop(x_hr, s)
        if x_hr.shape[-1] == 0 or x_hr.shape[-2] == 0:
            raise GensrError(f"HR image is smaller than the scale x{s}")
        x_lr = _downscale(x_hr, s)
    else:
        x_lr = as_image_tensor(lr, "LR")
    h, w = x_lr.shape[-2:]
    if tuple(modcrop(x_hr, s).shape[-2:]) != (h * s, w * s):
        raise GensrError(
            f"HR size {x_hr.shape[-1]}x{x_hr.shape[-2]} is not x{s} the LR size {w}x{h} (expected {w * s}x{h * s})"
        )
    x_hr = modcrop(x_hr, s)
    m = int(model.config.lr_multiple)
    lr_p, _ = pad_to_multiple(x_lr, m)
    hr_p, _ = pad_to_multiple(x_hr, m * s)
    return FlowPair(hr_p=hr_p, lr_p=lr_p, lr=x_lr, lr_size=(h, w), scale=s)


def _load(model: ModelLike, device: str | torch.device | None) -> nn.Module:
    """The SRFlow model on ``device``; a name/path with device None goes to CUDA when available, a module
    with device None stays where it is."""
    if device is None and not isinstance(model, nn.Module):
        from gensr.inference.precision import resolve_device

        device = resolve_device(None)
    return load_flow_model(model, device)


def _device_of(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _generator(seed: int | None) -> torch.Generator:
    return torch.Generator().manual_seed(resolve_seed(seed))


# ----------------------------------------------------------------------------------------- encode/decode


@torch.inference_mode()
def encode(
    hr: ImageLike,
    lr: ImageLike | None = None,
    model: ModelLike = "srflow",
    *,
    add_noise: bool = False,
    seed: int | None = 0,
    device: str | torch.device | None = None,
) -> dict:
    """Encode an HR image with its LR -> dict of latents and likelihood numbers.

    Keys: ``latents`` (list [eps_0, ..., z], CPU float32, batch 1, padded sizes), ``eps`` (the split
    eps), ``z`` (final z), ``logp`` (nats, continuous density), ``bpp`` (SRFlow's bits per pixel),
    ``bpd`` (bits per dimension with the 1/quant bin constant), ``lr`` (the LR used, unpadded),
    ``lr_size`` (h, w), ``scale``. ``add_noise`` dequantises first (then the latents decode to the noisy
    HR); the default encodes the image itself, deterministically. Likelihoods are of the padded image when
    the LR needed padding.
    """
    from gensr.losses.likelihood import likelihood_summary

    net = _load(model, device)
    pair = prepare_pair(hr, lr, net)
    dev = _device_of(net)
    gen = _generator(seed) if add_noise else None
    z_list, logp = net.encode(pair.hr_p.to(dev), pair.lr_p.to(dev), add_noise=add_noise, generator=gen)
    if not (bool(torch.isfinite(logp).all()) and all(bool(torch.isfinite(z).all()) for z in z_list)):
        raise GensrError("encoding is not finite (NaN/Inf latents or likelihood): the model cannot encode this image")
    numbers = likelihood_summary(logp, pair.hr_p.shape[-2] * pair.hr_p.shape[-1], int(net.config.quant), add_noise)
    latents = [z.float().cpu() for z in z_list]
    return {
        "latents": latents,
        "eps": latents[:-1],
        "z": latents[-1],
        "logp": float(logp[0]),
        "bpp": float(numbers["bpp"][0]),
        "bpd": float(numbers["bpd"][0]),
        "lr": pair.lr,
        "lr_size": pair.lr_size,
        "scale": pair.scale,
    }


def _check_latents(net: nn.Module, latents: Sequence[torch.Tensor | None], lr_p: torch.Tensor) -> int:
    shapes = net.z_shapes(tuple(lr_p.shape[-2:]))
    if len(latents) != len(shapes):
        raise GensrError(
            f"latents have {len(latents)} entries, this model needs {len(shapes)} "
            f"({len(shapes) - 1} split eps + final z)"
        )
    present = [z for z in latents if z is not None]
    if not present:
        raise GensrError("latents: every entry is missing (give at least the final z)")
    n = present[0].shape[0]
    for i, (z, shape) in enumerate(zip(latents, shapes, strict=True)):
        name = "z" if i == len(shapes) - 1 else f"eps_{i}"
        if z is not None and not bool(torch.isfinite(z).all()):
            bad = int((~torch.isfinite(z)).sum())
            raise GensrError(f"latents: {name} holds {bad} non-finite value(s) (NaN/Inf) of {z.numel()}")
        if z is not None and tuple(z.shape) != (n, *shape):
            raise GensrError(
                f"latents: {name} has shape {tuple(z.shape)}, but this model and LR "
                f"({lr_p.shape[-1]}x{lr_p.shape[-2]} padded) need {(n, *shape)}"
            )
    return n


@torch.inference_mode()
def decode_latents(
    lr: ImageLike,
    latents: Sequence[torch.Tensor | None] | dict,
    model: ModelLike = "srflow",
    *,
    temperature_for_missing: float = 0.0,
    seed: int | None = None,
    device: str | torch.device | None = None,
    clamp: bool = True,
) -> torch.Tensor:
    """Decode latents ([eps..., z], batch N, padded sizes as :func:`encode` gives) with ``lr`` -> (N, 3, H, W).

    ``latents`` may be the dict of :func:`encode`. ``None`` entries are drawn from
    N(0, temperature_for_missing^2) (a missing final z too). Output cropped to ``scale`` x the LR size,
    float32 CPU, clamped to [0, 1] unless ``clamp`` is False. GensrError for non-finite latents and for a
    broken output (see the module docstring).
    """
    if isinstance(latents, dict):
        latents = latents["latents"]
    latents = list(latents)
    tau = check_temperature(temperature_for_missing)
    net = _load(model, device)
    dev = _device_of(net)
    x_lr = as_image_tensor(lr, "LR")
    lr_p, (h, w) = pad_to_multiple(x_lr, int(net.config.lr_multiple))
    n = _check_latents(net, latents, lr_p)
    shapes = net.z_shapes(tuple(lr_p.shape[-2:]))
    gen = _generator(seed)
    if latents[-1] is None:
        latents[-1] = torch.randn((n, *shapes[-1]), generator=gen) * tau
    z_list = [None if z is None else z.to(dev, torch.float32) for z in latents]
    out = net.decode(lr_p.to(dev), z_list, heat=tau, generator=gen if tau > 0 else None, num_samples=n)
    s = int(net.config.scale)
    out = out.float().cpu()[:, :, : h * s, : w * s]
    _raise_if_broken(net, out, lr_p, x_lr, "decoded latents")
    return out.clamp(0.0, 1.0) if clamp else out


def _raise_if_broken(net: nn.Module, out: torch.Tensor, lr_p: torch.Tensor, lr: torch.Tensor, what: str) -> None:
    """GensrError when a raw decoded batch ``out`` (N, 3, s*h, s*w) fails :func:`check_flow_output` against the
    unpadded ``lr`` (the tau-0 mean of the padded ``lr_p`` is the reference, decoded only when needed)."""
    s = int(net.config.scale)
    h, w = lr.shape[-2:]

    def reference() -> torch.Tensor:
        with torch.inference_mode():
            mean = net.decode(lr_p.to(_device_of(net)), None, heat=0.0).float().cpu()
        return region_lr_psnr(mean[:, :, : h * s, : w * s], lr, s)

    report = check_flow_output(out, lr, s, reference=reference)
    for i in range(out.shape[0]):
        if bool(report.bad[i].any()):
            which = f" (image {i} of {out.shape[0]})" if out.shape[0] > 1 else ""
            raise GensrError(
                f"{what}{which}: the flow output is broken: {report.summary(i)}; "
                "try another seed or a lower temperature"
            )


@torch.inference_mode()
def score_image(
    sr: ImageLike,
    lr: ImageLike,
    model: ModelLike = "srflow",
    *,
    noise_draws: int = 1,
    add_noise: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> dict:
    """How likely ``sr`` is under the flow given ``lr``: bits/dim and SRFlow's bits/pixel.

    Reported (all per image):

    * ``logp``: the mean over ``noise_draws`` dequantisation draws u ~ U(-1/2, 1/2)^D / quant of
      log p(sr + u | lr) in nats (a fixed ``seed``, so scores repeat); with ``add_noise`` False, one
      evaluation of the density at the image itself;
    * ``bpd``: (-logp + D ln quant) / (D ln 2), D = 3 H W: with noise, a Monte-Carlo estimate of the
      variational upper bound on the discrete -log2 P(sr | lr) per dimension (lower = more likely);
    * ``bpp``: SRFlow's number, (-logp [+ H W ln quant with noise]) / (H W ln 2).

    Sizes: ``sr`` must be ``scale`` x ``lr``; when the LR sides are not multiples of the model's multiple
    both are cropped (bottom/right) to the largest that are, and only that part is scored.
    """
    from gensr.losses.likelihood import likelihood_summary

    if int(noise_draws) < 1:
        raise GensrError(f"noise draws must be >= 1, got {noise_draws}")
    net = _load(model, device)
    dev = _device_of(net)
    s, m = int(net.config.scale), int(net.config.lr_multiple)
    x_sr, x_lr = as_image_tensor(sr, "SR"), as_image_tensor(lr, "LR")
    h, w = x_lr.shape[-2:]
    if tuple(x_sr.shape[-2:]) != (h * s, w * s):
        raise GensrError(
            f"SR size {x_sr.shape[-1]}x{x_sr.shape[-2]} is not x{s} the LR size {w}x{h} (expected {w * s}x{h * s})"
        )
    hc, wc = h - h % m, w - w % m
    if hc == 0 or wc == 0:
        raise GensrError(f"LR {w}x{h} is too small: this model needs LR sides of at least {m}")
    x_lr = x_lr[:, :, :hc, :wc].to(dev)
    x_sr = x_sr[:, :, : hc * s, : wc * s].to(dev)
    gen = torch.Generator().manual_seed(int(seed))
    conds = net.conditions(x_lr)
    logps = []
    for _ in range(int(noise_draws) if add_noise else 1):
        _, logp = net.encode(x_sr, x_lr, add_noise=add_noise, generator=gen, conds=conds)
        logps.append(logp.double())
    logp = torch.stack(logps).mean(0)
    hw = hc * s * wc * s
    q = int(net.config.quant)
    numbers = likelihood_summary(logp, hw, q, add_noise)
    return {
        "logp": float(logp[0]),
        "bpd": float(numbers["bpd"][0]),
        "bpp": float(numbers["bpp"][0]),
        "noise_draws": int(noise_draws) if add_noise else 0,
        "pixels": hw,
        "quant": q,
    }


# ------------------------------------------------------------------------------------------ normalisation


def _chi2(dof: int, count: int, generator: torch.Generator | None, chunk: int = 1 << 22) -> torch.Tensor:
    """``count`` chi-square(dof) draws (float64) as sums of ``dof`` squared standard normals."""
    out = torch.zeros(count, dtype=torch.float64)
    if dof <= 0:
        return out
    per = max(1, chunk // dof)
    for c0 in range(0, count, per):
        c1 = min(count, c0 + per)
        done = 0
        while done < dof:  # very large sets (global mode): sum in pieces
            k = min(dof - done, chunk)
            g = torch.randn(c1 - c0, k, generator=generator, dtype=torch.float64)
            out[c0:c1] += g.square().sum(1)
            done += k
    return out


def _target_stats(n: torch.Tensor, tau: float, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """mu^ ~ N(0, tau^2/N) and sigma^ = sqrt(Gamma((N-1)/2, scale 2 tau^2/(N-1))) for set sizes ``n``."""
    n = n.to(torch.float64)
    mu = torch.randn(n.shape, generator=generator, dtype=torch.float64) * tau / n.clamp(min=1).sqrt()
    sigma = torch.zeros(n.shape, dtype=torch.float64)
    if tau > 0:
        flat_n = n.flatten().long()
        chi = torch.zeros(flat_n.shape, dtype=torch.float64)
        for k in torch.unique(flat_n).tolist():  # one batch of draws per distinct set size
            where = flat_n == k
            chi[where] = _chi2(int(k) - 1, int(where.sum()), generator)
        sigma = (tau * tau * chi.reshape(n.shape) / (n - 1).clamp(min=1)).sqrt()
    return mu, sigma


def _normalize_sets(
    values: torch.Tensor, weights: torch.Tensor, tau: float, generator: torch.Generator | None
) -> torch.Tensor:
    """Normalise each row of (S, M) ``values`` over the entries with weight 1 (others returned as they are)."""
    v = values.double()
    wgt = weights.double()
    n = wgt.sum(1)
    mean = (v * wgt).sum(1) / n.clamp(min=1)
    var = (((v - mean[:, None]) ** 2) * wgt).sum(1) / (n - 1).clamp(min=1)
    std = var.sqrt()
    mu_hat, sigma_hat = _target_stats(n, tau, generator)
    ratio = torch.where(std > 0, sigma_hat / std.clamp(min=1e-300), torch.zeros_like(std))
    new = (v - mean[:, None]) * ratio[:, None] + mu_hat[:, None]
    new = torch.where(wgt > 0, new, v)
    empty = n == 0
    if bool(empty.any()):
        new[empty] = v[empty]
    return new.to(values.dtype)


def _as_masks(masks: Sequence[torch.Tensor] | None, latents: Latents) -> list[torch.Tensor]:
    """Per-level (N, 1, H, W) bool masks (all True when ``masks`` is None)."""
    if masks is None:
        return [torch.ones(z.shape[0], 1, *z.shape[-2:], dtype=torch.bool) for z in latents]
    if len(masks) != len(latents):
        raise GensrError(f"{len(masks)} masks for {len(latents)} latent levels")
    out = []
    for mk, z in zip(masks, latents, strict=True):
        mk = mk.to("cpu").bool()
        if mk.dim() == 2:
            mk = mk[None, None]
        if tuple(mk.shape[-2:]) != tuple(z.shape[-2:]):
            raise GensrError(f"mask of size {tuple(mk.shape[-2:])} for a latent of size {tuple(z.shape[-2:])}")
        out.append(mk.expand(z.shape[0], 1, *z.shape[-2:]))
    return out


def normalize_latents(
    latents: Sequence[torch.Tensor],
    mode: str = "global",
    temperature: float = DEFAULT_TEMPERATURE,
    generator: torch.Generator | None = None,
    masks: Sequence[torch.Tensor] | None = None,
) -> Latents:
    """Latent normalisation (see the module docstring) of ``latents`` [eps..., z] -> new list (CPU).

    ``mode``: "global" | "local" | "spatial". ``masks`` (one (H_l, W_l) or (N, 1, H_l, W_l) bool per level,
    see :func:`level_masks`) limits the sets to the positions inside: local normalises only the positions
    inside, spatial/global use only the entries inside; everything outside is returned unchanged.
    ``temperature`` 0 sets every selected entry to 0.
    """
    if mode not in MODES:
        raise GensrError(f"normalisation mode must be one of {', '.join(MODES)}, got {mode!r}")
    tau = check_temperature(temperature)
    lat = [z.detach().float().cpu() for z in latents]
    mks = _as_masks(masks, lat)
    if mode == "local":  # sets: the C channels at each (level, image, position)
        out = []
        for z, mk in zip(lat, mks, strict=True):
            n, c, h, w = z.shape
            vals = z.permute(0, 2, 3, 1).reshape(-1, c)
            wgt = mk.permute(0, 2, 3, 1).reshape(-1, 1).expand(-1, c).float()
            new = _normalize_sets(vals, wgt, tau, generator)
            out.append(new.reshape(n, h, w, c).permute(0, 3, 1, 2).contiguous())
        return out
    if mode == "spatial":  # sets: the positions of each (level, image, channel)
        out = []
        for z, mk in zip(lat, mks, strict=True):
            n, c, h, w = z.shape
            vals = z.reshape(n * c, h * w)
            wgt = mk.expand(n, c, h, w).reshape(n * c, h * w).float()
            out.append(_normalize_sets(vals, wgt, tau, generator).reshape(n, c, h, w))
        return out
    # global: one set per image over every level
    n = lat[0].shape[0]
    vals = torch.cat([z.reshape(n, -1) for z in lat], 1)
    wgt = torch.cat([mk.expand_as(z).reshape(n, -1).float() for z, mk in zip(lat, mks, strict=True)], 1)
    new = _normalize_sets(vals, wgt, tau, generator)
    out, c0 = [], 0
    for z in lat:
        k = z[0].numel()
        out.append(new[:, c0 : c0 + k].reshape(z.shape))
        c0 += k
    return out


def resample_latents(
    latents: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    temperature: float = DEFAULT_TEMPERATURE,
    generator: torch.Generator | None = None,
) -> Latents:
    """Replace the entries at masked positions (all channels) by fresh N(0, temperature^2) draws (CPU)."""
    tau = check_temperature(temperature)
    lat = [z.detach().float().cpu() for z in latents]
    mks = _as_masks(masks, lat)
    out = []
    for z, mk in zip(lat, mks, strict=True):
        fresh = torch.randn(z.shape, generator=generator) * tau
        out.append(torch.where(mk.expand_as(z), fresh, z))
    return out


def level_masks(mask: torch.Tensor, shapes: Sequence[Sequence[int]]) -> list[torch.Tensor]:
    """A (H, W) / (1, 1, H, W) mask -> one (1, 1, h_l, w_l) bool mask per latent shape (C, h_l, w_l).

    Shrinking uses any-pooling (a latent position is inside when any mask pixel it covers is), growing
    uses nearest neighbour.
    """
    mk = mask.detach().to("cpu")
    if mk.dim() == 2:
        mk = mk[None, None]
    mk = (mk.float() > 0.5).float()
    out = []
    for shape in shapes:
        h, w = int(shape[-2]), int(shape[-1])
        if h <= mk.shape[-2] and w <= mk.shape[-1]:
            m = F.adaptive_max_pool2d(mk, (h, w))
        else:
            m = F.interpolate(mk, size=(h, w), mode="nearest")
        out.append(m > 0.5)
    return out


def region_mask(size: tuple[int, int], region: Sequence[int]) -> torch.Tensor:
    """(1, 1, H, W) bool mask of the rectangle ``region`` = (x, y, w, h) inside an image of ``size`` (H, W)."""
    x, y, w, h = (int(v) for v in region)
    H, W = size
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > W or y + h > H:
        raise GensrError(f"region {x},{y},{w},{h} (x,y,w,h) does not fit inside the {W}x{H} image")
    mk = torch.zeros(1, 1, H, W, dtype=torch.bool)
    mk[..., y : y + h, x : x + w] = True
    return mk


# --------------------------------------------------------------------------------------- image-level edits


def _encode_pair(net: nn.Module, pair: FlowPair) -> Latents:
    dev = _device_of(net)
    with torch.inference_mode():
        z_list, _ = net.encode(pair.hr_p.to(dev), pair.lr_p.to(dev), add_noise=False)
    return [z.float().cpu() for z in z_list]


def _decode_pair(net: nn.Module, pair: FlowPair, latents: Latents) -> torch.Tensor:
    """Decode edited ``latents`` with the pair's LR -> (N, 3, H, W) in [0, 1]; GensrError when broken."""
    dev = _device_of(net)
    with torch.inference_mode():
        out = net.decode(pair.lr_p.to(dev), [z.to(dev) for z in latents], heat=0.0)
    out = pair.crop(out.float().cpu())
    _raise_if_broken(net, out, pair.lr_p, pair.lr, "latent edit")
    return out.clamp(0.0, 1.0)


def _mask_tensor(mask: ImageLike, size: tuple[int, int]) -> torch.Tensor:
    """A mask from a bool/float tensor or an image file (pixels > 0.5 of any channel are inside),
    resized (nearest) to ``size`` (H, W) -> (1, 1, H, W) bool."""
    if isinstance(mask, (str, os.PathLike)):
        from gensr.io import read_image

        img = read_image(mask)
        mk = img.rgb_tensor().amax(1, keepdim=True)
        if img.alpha is not None and img.pixels.max() == 0:  # black + alpha masks: use the alpha
            mk = img.alpha_tensor()
    elif isinstance(mask, torch.Tensor):
        mk = mask.detach().to("cpu").float()
        while mk.dim() < 4:
            mk = mk.unsqueeze(0)
        mk = mk.amax(1, keepdim=True)
    else:
        raise GensrError(f"mask must be a tensor or an image path, got {type(mask).__name__}")
    if tuple(mk.shape[-2:]) != tuple(size):
        mk = F.interpolate(mk, size=size, mode="nearest")
    mk = mk > 0.5
    if not bool(mk.any()):
        raise GensrError("mask is empty (no pixel > 0.5)")
    return mk


def _prep(image: ImageLike, lr: ImageLike | None, model: ModelLike, device) -> tuple[nn.Module, FlowPair]:
    net = _load(model, device)
    return net, prepare_pair(image, lr, net)


def _tau(net: nn.Module, temperature: float | None) -> float:
    if temperature is None:
        return float(getattr(net.config, "heat", DEFAULT_TEMPERATURE))
    return check_temperature(temperature)


def normalize(
    image: ImageLike,
    model: ModelLike = "srflow",
    *,
    lr: ImageLike | None = None,
    mode: str = "global",
    temperature: float | None = None,
    seed: int | None = None,
    mask: ImageLike | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Encode ``image`` (HR or SR) with ``lr`` (default: its bicubic downscale), normalise the latents
    (``mode``, optionally only inside ``mask``), decode -> (1, 3, H, W) in [0, 1]."""
    net, pair = _prep(image, lr, model, device)
    tau = _tau(net, temperature)
    lat = _encode_pair(net, pair)
    masks = None
    if mask is not None:
        mk = pair.pad_hr_like(_mask_tensor(mask, tuple(pair.hr.shape[-2:])))
        masks = level_masks(mk, [z.shape[1:] for z in lat])
    new = normalize_latents(lat, mode, tau, _generator(seed), masks)
    return _decode_pair(net, pair, new)


def resample(
    image: ImageLike,
    mask: ImageLike,
    model: ModelLike = "srflow",
    *,
    lr: ImageLike | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Re-sample ``image`` inside ``mask`` (HR-size or any size, resized nearest): encode with ``lr``,
    redraw the latents at masked positions of every level at ``temperature``, decode."""
    net, pair = _prep(image, lr, model, device)
    tau = _tau(net, temperature)
    lat = _encode_pair(net, pair)
    mk = pair.pad_hr_like(_mask_tensor(mask, tuple(pair.hr.shape[-2:])))
    new = resample_latents(lat, level_masks(mk, [z.shape[1:] for z in lat]), tau, _generator(seed))
    return _decode_pair(net, pair, new)


def transfer(
    lr: ImageLike,
    source: ImageLike,
    region: Sequence[int],
    model: ModelLike = "srflow",
    *,
    sr: ImageLike | None = None,
    at: Sequence[int] | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Image content transfer: paste ``region`` (x, y, w, h, HR pixels of ``source``) into the SR of ``lr``
    at ``at`` (x, y; default the same place), encode with ``lr``, locally normalise the latents inside the
    pasted region only, decode -> (1, 3, H, W).

    ``sr``: the SR image to edit; None draws one from ``lr`` at ``temperature`` with ``seed``.
    """
    from gensr.inference.flow_sampling import FlowSampler

    net = _load(model, device)
    tau = _tau(net, temperature)
    x_lr = as_image_tensor(lr, "LR")
    if sr is None:
        x_sr = FlowSampler(net, device=_device_of(net)).sample(x_lr, temperature=tau, seed=seed)
    else:
        x_sr = as_image_tensor(sr, "SR")
    src = as_image_tensor(source, "source")
    x, y, w, h = (int(v) for v in region)
    region_mask(tuple(src.shape[-2:]), (x, y, w, h))  # validates the region inside the source
    ax, ay = (x, y) if at is None else (int(at[0]), int(at[1]))
    dst = region_mask(tuple(x_sr.shape[-2:]), (ax, ay, w, h))
    edited = x_sr.clone()
    edited[:, :, ay : ay + h, ax : ax + w] = src[:, :, y : y + h, x : x + w]
    pair = prepare_pair(edited, x_lr, net)
    lat = _encode_pair(net, pair)
    masks = level_masks(pair.pad_hr_like(dst), [z.shape[1:] for z in lat])
    new = normalize_latents(lat, "local", tau, _generator(seed), masks)
    return _decode_pair(net, pair, new)


def restore(
    image: ImageLike,
    model: ModelLike = "srflow",
    *,
    lr: ImageLike | None = None,
    temperature: float | None = None,
    seed: int | None = None,
    modes: Sequence[str] = ("spatial", "local"),
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Restore a degraded HR image (noise, compression artefacts): encode it with its own LR (default:
    its bicubic downscale, which removes most of the degradation), apply the normalisations ``modes`` in
    order (default spatial, then local) at ``temperature``, decode -> (1, 3, H, W)."""
    net, pair = _prep(image, lr, model, device)
    tau = _tau(net, temperature)
    for mode in modes:
        if mode not in MODES:
            raise GensrError(f"normalisation mode must be one of {', '.join(MODES)}, got {mode!r}")
    lat = _encode_pair(net, pair)
    gen = _generator(seed)
    for mode in modes:
        lat = normalize_latents(lat, mode, tau, gen)
    return _decode_pair(net, pair, lat)
