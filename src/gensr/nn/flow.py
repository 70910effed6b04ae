"""Bijective layers for Glow-style conditional flows (SRFlow, Lugmayr et al. 2020).

Every layer is an ``nn.Module`` with

* ``forward(x, cond=None) -> (y, logdet)``: ``logdet`` is ``log|det dy/dx|`` per sample, shape (N,);
* ``inverse(y, cond=None) -> x``.

``logdet`` is float32 (float64 when the input is float64, so that tests can check it exactly). The flow state
itself is kept in float32 even under ``torch.autocast``: only the convolutions *inside* the coupling networks
run in reduced precision; the invertible 1x1 convolution, every log-determinant, every scale and the Gaussian
log-densities are computed with autocast disabled. Parameter and buffer names reproduce the official SRFlow
checkpoints (``actnorm.bias``, ``invconv.weight``, ``affine.fAffine.0.weight`` ...), so they load 1:1.

**Reverse-pass guards** (not in the official code; each off with 0): the inverse of an affine coupling divides by
its scale (``sigmoid(h + 2) + 1e-4``, so by as little as 1e-4) and the split prior multiplies by ``exp(logs)``,
and both scale and log-std are computed by ReLU networks *from the flow state itself*. In the reverse pass an
unusual latent makes one position of the state large, the networks extrapolate linearly from it to a scale near
the floor (or a large log-std), the next inverse divides by it, and the state that the next network sees is
larger still: a positive feedback that ends in values of 1e19 (or Inf/NaN) that 3x3 convolutions spread into
a saturated or black block. float64 gives the same blocks; it is the arithmetic, not rounding. The guards cut
the loop: ``input_bound`` clamps the flow-state input of the coupling and prior networks to [-b, b],
``min_scale`` floors every coupling/injector scale and ``max_logs`` bounds the prior's log-std. All three are
functions of the conditioning half only, so every layer stays an exact bijection with an exact log-determinant;
on natural images they are (almost) never active (see :class:`gensr.models.srflow.SRFlowConfig`).

Layers: :class:`Squeeze2d`, :class:`ActNorm`, :class:`InvertibleConv1x1` (plain weight, as released) and
:class:`InvertibleConv1x1LU` (Glow's LU parametrisation), :class:`Conv2dZeros`, :func:`coupling_net`,
:class:`CondAffineSeparatedAndCond` (affine injector + conditional affine coupling), :class:`Split2d`
(factor-out with a learned Gaussian prior) and :class:`FlowStep`.
"""

from __future__ import annotations

import abc
import contextlib
import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

LOG_2PI = math.log(2 * math.pi)

_AUTOCAST_DEVICES = ("cpu", "cuda", "xpu", "mps", "hpu")


def flow_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype of the flow state and log-determinants for ``x``: float64 stays, all else is float32."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def no_autocast(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """A context that disables autocast on ``x``'s device type (a no-op context on exotic devices)."""
    device_type = x.device.type
    if device_type not in _AUTOCAST_DEVICES:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, enabled=False)


def bound_input(z: torch.Tensor, bound: float) -> torch.Tensor:
    """``z`` clamped to [-bound, bound]; unchanged for ``bound`` 0 (the official arithmetic)."""
    return z.clamp(-bound, bound) if bound > 0 else z


def _zeros_logdet(x: torch.Tensor) -> torch.Tensor:
    return torch.zeros(x.shape[0], dtype=flow_dtype(x), device=x.device)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor | None = None, logs: torch.Tensor | None = None):
    """log N(x; mean, exp(logs)^2) summed over all but the batch dim -> (N,), float32 (float64 for float64 x).

    ``mean`` and ``logs`` default to the standard normal. Computed with autocast disabled.
    """
    dt = flow_dtype(x)
    with no_autocast(x):
        x = x.to(dt)
        if mean is None and logs is None:
            ll = -0.5 * (x * x + LOG_2PI)
        else:
            mean = torch.zeros_like(x) if mean is None else mean.to(dt)
            logs = torch.zeros_like(x) if logs is None else logs.to(dt)
            ll = -0.5 * (2.0 * logs + (x - mean) ** 2 * torch.exp(-2.0 * logs) + LOG_2PI)
        return ll.flatten(1).sum(1)


def sample_normal(
    shape: tuple[int, ...],
    heat: float,
    device: torch.device | str,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """N(0, heat^2) samples of ``shape`` (zeros for heat 0). ``generator`` may live on another device."""
    if heat == 0:
        return torch.zeros(shape, device=device, dtype=dtype)
    gen_device = generator.device if generator is not None else device
    eps = torch.randn(shape, generator=generator, device=gen_device, dtype=dtype)
    return (eps * heat).to(device)


def dequantize(x: torch.Tensor, quant: int = 32, generator: torch.Generator | None = None) -> torch.Tensor:
    """``x + (U[0,1) - 0.5) / quant``, the uniform dequantisation of SRFlow (std 1/(quant*sqrt(12)))."""
    if quant <= 0:
        raise ValueError(f"quant must be positive, got {quant}")
    dt = torch.float64 if x.dtype == torch.float64 else torch.float32
    gen_device = generator.device if generator is not None else x.device
    u = torch.rand(x.shape, generator=generator, device=gen_device, dtype=dt).to(x.device)
    return x.to(dt) + (u - 0.5) / quant


class FlowLayer(nn.Module):
    """The contract of every flow layer: ``forward(x, cond=None) -> (y, logdet)`` with ``logdet`` the per-sample
    log|det dy/dx| (float32, float64 for float64 input) and ``inverse(y, cond=None) -> x``.

    ``factored_channels``: how many of ``y``'s last channels the enclosing flow factors out after this layer
    (0 for all but a split); their density, like the final z's, belongs to the objective (a standard normal),
    not to the layer. ``out_shape`` maps a (C, H, W) input shape to the output's.
    """

    factored_channels: int = 0

    def out_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        return shape

    def to_lu_(self) -> None:
        """Switch 1x1 convolutions to the LU parametrisation (layers that have none: nothing to do)."""


# --------------------------------------------------------------------------------------------------
# Squeeze
# --------------------------------------------------------------------------------------------------


class Squeeze2d(FlowLayer):
    """Space-to-depth, Glow channel order: (N,C,H,W) -> (N,4C,H/2,W/2), channel c*4 + dy*2 + dx. logdet 0."""

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"squeeze factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def out_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        c, h, w = shape
        return c * self.factor**2, h // self.factor, w // self.factor

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.factor
        n, c, h, w = x.shape
        if h % f or w % f:
            raise ValueError(f"Squeeze2d: spatial size {h}x{w} is not divisible by {f}")
        y = x.reshape(n, c, h // f, f, w // f, f).permute(0, 1, 3, 5, 2, 4).reshape(n, c * f * f, h // f, w // f)
        return y, _zeros_logdet(x)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        f = self.factor
        n, c, h, w = y.shape
        if c % (f * f):
            raise ValueError(f"Squeeze2d.inverse: {c} channels are not divisible by {f * f}")
        x = y.reshape(n, c // (f * f), f, f, h, w).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(n, c // (f * f), h * f, w * f)


# --------------------------------------------------------------------------------------------------
# ActNorm
# --------------------------------------------------------------------------------------------------


class ActNorm(FlowLayer):
    """Per-channel affine ``y = (x + bias) * exp(logs)``; logdet = H*W*sum(logs).

    Data-dependent initialisation (Glow): on the first forward in *training* mode while not initialised,
    ``bias = -mean`` and ``logs = log(scale / (std + 1e-6))`` over (N, H, W) of that batch. The state is an
    explicit flag, ``initialized``: a bool buffer that is *not* saved in state dicts (so official checkpoints
    load strictly); loading ``bias`` and ``logs`` from a state dict sets it, so a loaded model is never
    re-initialised. Eval mode never initialises, and :meth:`inverse` never does. Use :meth:`mark_initialized`
    (or :func:`set_actnorm_initialized` on a whole model) to set or clear the flag by hand.

    Under DDP, initialise before wrapping (or on one rank and broadcast): each rank would see its own batch.
    """

    def __init__(self, num_features: int, scale: float = 1.0) -> None:
        super().__init__()
        self.num_features = int(num_features)
        self.scale = float(scale)
        self.bias = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, num_features, 1, 1))
        self.register_buffer("initialized", torch.tensor(False), persistent=False)
        self._initialized_seen = False  # host-side mirror: avoids a device sync per call once initialised

    # -- the flag ----------------------------------------------------------------------------------
    def is_initialized(self) -> bool:
        if not self._initialized_seen and bool(self.initialized):
            self._initialized_seen = True
        return self._initialized_seen

    def mark_initialized(self, flag: bool = True) -> None:
        self.initialized.fill_(bool(flag))
        self._initialized_seen = bool(flag)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):  # noqa: D401 (torch hook)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "bias" in state_dict and prefix + "logs" in state_dict:
            self.mark_initialized(True)

    @torch.no_grad()
    def data_init(self, x: torch.Tensor) -> None:
        """Set ``bias``/``logs`` from the statistics of ``x`` and mark the layer initialised."""
        if x.dim() != 4 or x.shape[1] != self.num_features:
            raise ValueError(
                f"ActNorm({self.num_features}): expected (N, {self.num_features}, H, W), got {tuple(x.shape)}"
            )
        with no_autocast(x):
            xf = x.detach().to(flow_dtype(x))
            mean = xf.mean(dim=(0, 2, 3), keepdim=True)
            std = ((xf - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
            self.bias.copy_(-mean)
            self.logs.copy_(torch.log(self.scale / (std + 1e-6)))
        self.mark_initialized(True)

    # -- the bijection -----------------------------------------------------------------------------
    def transform(self, x: torch.Tensor) -> torch.Tensor:
        """``(x + bias) * exp(logs)`` with the data-dependent init, without the log-determinant."""
        if self.training and not self.is_initialized():
            self.data_init(x)
        return (x + self.bias) * torch.exp(self.logs)

    def logdet(self, x: torch.Tensor) -> torch.Tensor:
        with no_autocast(x):
            ld = self.logs.to(flow_dtype(x)).sum() * (x.shape[2] * x.shape[3])
        return ld.expand(x.shape[0])

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.transform(x)
        return y, self.logdet(x)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return y * torch.exp(-self.logs) - self.bias


def set_actnorm_initialized(module: nn.Module, flag: bool = True) -> int:
    """Set the init flag of every :class:`ActNorm` inside ``module``; returns how many were set."""
    n = 0
    for m in module.modules():
        if isinstance(m, ActNorm):
            m.mark_initialized(flag)
            n += 1
    return n


# --------------------------------------------------------------------------------------------------
# Invertible 1x1 convolution
# --------------------------------------------------------------------------------------------------


def random_orthogonal(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random n x n orthogonal matrix (QR of a Gaussian matrix), float32."""
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return q.float()


class _InvConvBase(FlowLayer, abc.ABC):
    """Shared 1x1-conv mechanics: fp32 convolution and a cached float64 inverse for eval-mode decoding."""

    num_channels: int

    def __init__(self) -> None:
        super().__init__()
        self._inv_cache: torch.Tensor | None = None
        self._inv_key: tuple | None = None

    @abc.abstractmethod
    def get_weight(self) -> torch.Tensor:
        """The (C, C) weight."""

    @abc.abstractmethod
    def logabsdet(self) -> torch.Tensor:
        """log|det W| as a float64 scalar."""

    def _cache_key(self) -> tuple:
        return tuple((t._version, t.data_ptr(), t.device, t.dtype) for t in self._state_tensors())

    def _state_tensors(self) -> Iterator[torch.Tensor]:
        yield from self.parameters(recurse=False)
        yield from self.buffers(recurse=False)

    def invalidate_cache(self) -> None:
        """Drop the cached inverse (needed only after editing weights through ``.data``)."""
        self._inv_cache = None
        self._inv_key = None

    def _load_from_state_dict(self, *args, **kwargs):
        self.invalidate_cache()
        super()._load_from_state_dict(*args, **kwargs)

    def _can_cache(self) -> bool:
        needs_grad = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters(recurse=False))
        return not self.training and not needs_grad

    def inverse_weight(self) -> torch.Tensor:
        """W^-1 in float64 (``torch.inverse``), cached in eval mode when no weight gradient is needed."""
        if not self._can_cache():
            return torch.inverse(self.get_weight().double())
        key = self._cache_key()
        cached = self._inv_cache
        if (
            cached is not None
            and self._inv_key == key
            and not (cached.is_inference() and not torch.is_inference_mode_enabled())
        ):
            return cached
        with torch.no_grad():
            inv = torch.inverse(self.get_weight().double())
        self._inv_cache, self._inv_key = inv, key
        return inv

    def _conv(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        dt = flow_dtype(x)
        return F.conv2d(x.to(dt), weight.to(dt).reshape(*weight.shape, 1, 1))

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        with no_autocast(x):
            y = self._conv(x, self.get_weight())
            ld = (self.logabsdet() * (x.shape[2] * x.shape[3])).to(flow_dtype(x))
        return y, ld.expand(x.shape[0])

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        with no_autocast(y):
            return self._conv(y, self.inverse_weight())


class InvertibleConv1x1(_InvConvBase):
    """Glow's invertible 1x1 convolution with a plain (C, C) ``weight`` (the released SRFlow models).

    Random orthogonal init; logdet = H*W*log|det W| via ``slogdet`` in float64; the inverse is
    ``torch.inverse`` of the float64 weight, cast to the flow dtype and cached in eval mode.
    """

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.num_channels = int(num_channels)
        self.weight = nn.Parameter(random_orthogonal(num_channels))

    def get_weight(self) -> torch.Tensor:
        return self.weight

    def logabsdet(self) -> torch.Tensor:
        return torch.linalg.slogdet(self.weight.double())[1]


class InvertibleConv1x1LU(_InvConvBase):
    """Glow's LU-parametrised 1x1 convolution: W = P (L + I) (U + diag(sign_s * exp(log_s))).

    ``perm`` (P) and ``sign_s`` are fixed buffers; ``lower`` (strictly lower part used), ``upper`` (strictly
    upper part used) and ``log_s`` are trained. logdet = H*W*sum(log_s) needs no decomposition, which avoids
    the slogdet/SVD failures of the plain parametrisation. :meth:`from_weight` converts a plain weight exactly
    (up to float rounding), e.g. to fine-tune official checkpoints in LU form.
    """

    def __init__(self, num_channels: int, weight: torch.Tensor | None = None) -> None:
        super().__init__()
        c = self.num_channels = int(num_channels)
        w = random_orthogonal(c) if weight is None else weight.detach().to("cpu", torch.float64)
        if w.shape != (c, c):
            raise ValueError(f"InvertibleConv1x1LU({c}): weight of shape {tuple(w.shape)}")
        p, lower, upper = torch.linalg.lu(w.double())
        s = torch.diagonal(upper)
        if not s.is_meta and bool((s == 0).any()):
            raise ValueError("InvertibleConv1x1LU: singular weight")
        self.register_buffer("perm", p.float())
        self.register_buffer("sign_s", torch.sign(s).float())
        self.lower = nn.Parameter(torch.tril(lower, -1).float())
        self.upper = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(s.abs()).float())
        self.register_buffer("l_mask", torch.tril(torch.ones(c, c), -1), persistent=False)
        self.register_buffer("eye", torch.eye(c), persistent=False)

    @classmethod
    def from_weight(cls, weight: torch.Tensor) -> InvertibleConv1x1LU:
        return cls(weight.shape[0], weight)

    def get_weight(self) -> torch.Tensor:
        lower = self.lower * self.l_mask + self.eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def logabsdet(self) -> torch.Tensor:
        return self.log_s.double().sum()


# --------------------------------------------------------------------------------------------------
# Coupling networks
# --------------------------------------------------------------------------------------------------


class Conv2dZeros(nn.Conv2d):
    """Zero-initialised "same" conv, output scaled by ``exp(logscale_factor * logs)``, logs (C_out, 1, 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, logscale_factor: float = 3.0):
        super().__init__(in_channels, out_channels, kernel_size, 1, kernel_size // 2)
        self.logscale_factor = float(logscale_factor)
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) * torch.exp(self.logs * self.logscale_factor)


class ConvActNorm(nn.Conv2d):
    """Bias-free "same" conv (weight ~ N(0, 0.05)) followed by an :class:`ActNorm` whose logdet is dropped."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, weight_std: float = 0.05):
        super().__init__(in_channels, out_channels, kernel_size, 1, kernel_size // 2, bias=False)
        nn.init.normal_(self.weight, 0.0, weight_std)
        self.actnorm = ActNorm(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.actnorm.transform(super().forward(x))


def coupling_net(in_channels: int, out_channels: int, hidden: int = 64) -> nn.Sequential:
    """SRFlow's F: 3x3 conv+ActNorm -> ReLU -> 1x1 conv+ActNorm -> ReLU -> Conv2dZeros 3x3.

    Keys: ``0.weight``, ``0.actnorm.{bias,logs}``, ``2.weight``, ``2.actnorm.*``, ``4.{weight,bias,logs}``.
    """
    return nn.Sequential(
        ConvActNorm(in_channels, hidden, 3),
        nn.ReLU(inplace=False),
        ConvActNorm(hidden, hidden, 1),
        nn.ReLU(inplace=False),
        Conv2dZeros(hidden, out_channels, 3),
    )


class CondAffineSeparatedAndCond(FlowLayer):
    """Affine injector then conditional affine coupling, both conditioned on the features ``cond``.

    * injector: ``fFeatures(cond)`` -> shift (even channels), logit (odd channels);
      ``h <- (h + shift) * scale`` with ``scale = sigmoid(logit + 2) + eps``;
    * coupling: ``z1`` = first ``C // 2`` channels, ``z2`` = the rest; ``fAffine(cat(z1, cond))`` -> shift,
      logit (interleaved as above); ``z2 <- (z2 + shift) * scale``.

    logdet = sum of log(scale) of both. Scales are bounded in (eps, 1 + eps], so the inverse divides by at
    most 1/eps per layer. The nets may run under autocast; scales and the transform are float32.

    Guards (0 = off, the official layer): ``input_bound`` clamps ``z1`` to [-b, b] where it enters ``fAffine``
    (the injector sees only ``cond``); ``min_scale`` floors both scales, so one inverse divides by at most
    1/min_scale. See the module docstring.
    """

    def __init__(
        self,
        in_channels: int,
        cond_channels: int = 320,
        hidden: int = 64,
        eps: float = 1e-4,
        input_bound: float = 0.0,
        min_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.in_channels = int(in_channels)
        self.cond_channels = int(cond_channels)
        self.eps = float(eps)
        self.input_bound = float(input_bound)
        self.min_scale = float(min_scale)
        self.channels_for_nn = self.in_channels // 2
        self.channels_for_co = self.in_channels - self.channels_for_nn
        self.fAffine = coupling_net(self.channels_for_nn + self.cond_channels, 2 * self.channels_for_co, hidden)
        self.fFeatures = coupling_net(self.cond_channels, 2 * self.in_channels, hidden)

    def _scale_shift(self, h: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with no_autocast(like):
            h = h.to(flow_dtype(like))
            shift, logit = h[:, 0::2], h[:, 1::2]
            scale = torch.sigmoid(logit + 2.0) + self.eps
            if self.min_scale > 0:
                scale = scale.clamp(min=self.min_scale)
        return scale, shift

    def _coupling_params(self, z1: torch.Tensor, cond: torch.Tensor, like: torch.Tensor):
        """(scale, shift) of the coupling from the (guarded) first half ``z1`` and ``cond``."""
        h = self.fAffine(torch.cat([bound_input(z1, self.input_bound), cond.to(z1.dtype)], 1))
        return self._scale_shift(h, like)

    def _check(self, x: torch.Tensor, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            raise ValueError("CondAffineSeparatedAndCond needs conditioning features")
        if x.shape[1] != self.in_channels or cond.shape[1] != self.cond_channels:
            raise ValueError(
                f"CondAffineSeparatedAndCond({self.in_channels}, cond {self.cond_channels}): "
                f"got x {tuple(x.shape)}, cond {tuple(cond.shape)}"
            )
        if cond.shape[-2:] != x.shape[-2:]:
            raise ValueError(f"conditioning size {tuple(cond.shape[-2:])} != flow size {tuple(x.shape[-2:])}")
        return cond

    @staticmethod
    def _log_sum(scale: torch.Tensor) -> torch.Tensor:
        with no_autocast(scale):
            return torch.log(scale).flatten(1).sum(1)

    # injector -------------------------------------------------------------------------------------
    def forward_injector(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        scale, shift = self._scale_shift(self.fFeatures(self._check(x, cond)), x)
        return (x.to(scale.dtype) + shift) * scale, self._log_sum(scale)

    def inverse_injector(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        scale, shift = self._scale_shift(self.fFeatures(self._check(y, cond)), y)
        return y.to(scale.dtype) / scale - shift

    # coupling -------------------------------------------------------------------------------------
    def forward_coupling(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self._check(x, cond)
        z1, z2 = x[:, : self.channels_for_nn], x[:, self.channels_for_nn :]
        scale, shift = self._coupling_params(z1, cond, x)
        z2 = (z2.to(scale.dtype) + shift) * scale
        return torch.cat([z1.to(z2.dtype), z2], 1), self._log_sum(scale)

    def inverse_coupling(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self._check(y, cond)
        z1, z2 = y[:, : self.channels_for_nn], y[:, self.channels_for_nn :]
        scale, shift = self._coupling_params(z1, cond, y)
        z2 = z2.to(scale.dtype) / scale - shift
        return torch.cat([z1.to(z2.dtype), z2], 1)

    # both -----------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        h, ld1 = self.forward_injector(x, cond)
        h, ld2 = self.forward_coupling(h, cond)
        return h, ld1 + ld2

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        return self.inverse_injector(self.inverse_coupling(y, cond), cond)


# --------------------------------------------------------------------------------------------------
# Split (factor-out with a learned prior)
# --------------------------------------------------------------------------------------------------


class Split2d(FlowLayer):
    """Factor out channels under a learned Gaussian conditioned on the kept half: a conditional affine bijection.

    Keeps the first ``C - round(C * consume_ratio)`` channels (z1) and standardises the rest (z2) with the prior
    ``conv(z1[, cond])`` -> mean (even channels), logs (odd channels): ``eps = (z2 - mean) * exp(-logs)``.
    :meth:`forward` gives ``y = cat(z1, eps)`` with log|det J| = -sum(logs); the enclosing flow factors out the
    last ``factored_channels`` channels (eps), whose standard-normal density belongs to the objective, so
    ``log N(eps; 0, I) - sum(logs)`` is the split's term log N(z2; mean, exp(logs)^2). :meth:`inverse` rebuilds
    ``z2 = mean + exp(logs) * eps``; sampling at temperature tau draws eps ~ N(0, tau^2).

    Guards (0 = off, the official prior): ``input_bound`` clamps ``z1`` to [-b, b] where it enters the prior conv,
    ``max_logs`` clamps ``logs`` to [-m, m], so :meth:`inverse` multiplies eps by at most exp(m).
    """

    def __init__(
        self,
        num_channels: int,
        cond_channels: int = 0,
        consume_ratio: float = 0.5,
        input_bound: float = 0.0,
        max_logs: float = 0.0,
    ) -> None:
        super().__init__()
        self.input_bound = float(input_bound)
        self.max_logs = float(max_logs)
        self.num_channels = int(num_channels)
        self.num_channels_consume = int(round(num_channels * consume_ratio))
        self.num_channels_pass = self.num_channels - self.num_channels_consume
        self.factored_channels = self.num_channels_consume
        self.cond_channels = int(cond_channels)
        self.conv = Conv2dZeros(self.num_channels_pass + self.cond_channels, 2 * self.num_channels_consume)

    def prior(self, z1: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, logs) of the factored-out channels, in the flow dtype of ``z1``."""
        h = bound_input(z1, self.input_bound)
        h = h if self.cond_channels == 0 else torch.cat([h, cond.to(z1.dtype)], 1)
        h = self.conv(h)
        with no_autocast(z1):
            h = h.to(flow_dtype(z1))
            logs = h[:, 1::2]
            if self.max_logs > 0:
                logs = logs.clamp(-self.max_logs, self.max_logs)
        return h[:, 0::2], logs

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[1] != self.num_channels:
            raise ValueError(f"Split2d({self.num_channels}): got {x.shape[1]} channels")
        z1, z2 = x[:, : self.num_channels_pass], x[:, self.num_channels_pass :]
        mean, logs = self.prior(z1, cond)
        with no_autocast(x):
            eps = (z2.to(mean.dtype) - mean) * torch.exp(-logs)
        return torch.cat([z1.to(eps.dtype), eps], 1), -logs.flatten(1).sum(1)

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if y.shape[1] != self.num_channels:
            raise ValueError(f"Split2d({self.num_channels}).inverse: got {y.shape[1]} channels")
        z1, eps = y[:, : self.num_channels_pass], y[:, self.num_channels_pass :]
        mean, logs = self.prior(z1, cond)
        with no_autocast(z1):
            z2 = mean + torch.exp(logs) * eps.to(mean.device, mean.dtype)
        return torch.cat([z1.to(z2.dtype), z2], 1)


# --------------------------------------------------------------------------------------------------
# Flow step
# --------------------------------------------------------------------------------------------------


class FlowStep(FlowLayer):
    """ActNorm -> invertible 1x1 conv -> [CondAffineSeparatedAndCond]; ``affine=False``: transition step.

    ``input_bound`` and ``min_scale`` are the coupling's reverse-pass guards (0 = off).
    """

    def __init__(
        self,
        num_channels: int,
        cond_channels: int = 320,
        hidden: int = 64,
        affine: bool = True,
        lu_decomposed: bool = False,
        input_bound: float = 0.0,
        min_scale: float = 0.0,
    ) -> None:
        super().__init__()
        self.num_channels = int(num_channels)
        self.actnorm = ActNorm(num_channels)
        self.invconv = InvertibleConv1x1LU(num_channels) if lu_decomposed else InvertibleConv1x1(num_channels)
        self.affine = (
            CondAffineSeparatedAndCond(
                num_channels, cond_channels, hidden, input_bound=input_bound, min_scale=min_scale
            )
            if affine
            else None
        )

    @property
    def has_affine(self) -> bool:
        return self.affine is not None

    def forward(self, x: torch.Tensor, cond: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x, logdet = self.actnorm(x)
        x, ld = self.invconv(x)
        logdet = logdet + ld
        if self.affine is not None:
            x, ld = self.affine(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: torch.Tensor, cond: torch.Tensor | None = None) -> torch.Tensor:
        if self.affine is not None:
            y = self.affine.inverse(y, cond)
        return self.actnorm.inverse(self.invconv.inverse(y))

    def to_lu_(self) -> None:
        """Replace a plain 1x1 conv by its exact LU parametrisation (in place)."""
        if isinstance(self.invconv, InvertibleConv1x1):
            w = self.invconv.weight
            lu = InvertibleConv1x1LU.from_weight(w)
            self.invconv = lu.to(device=w.device, dtype=w.dtype)
