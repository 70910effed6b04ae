"""Normalisation layers for BigGAN-style GANs: spectral norm and (class-)conditional BatchNorm.

Spectral norm (Miyato et al. 2018) with the semantics of ``ajbrock/BigGAN-PyTorch`` (``layers.SN``):

* each layer keeps a persistent left singular vector estimate ``u0`` (buffer, shape (1, out)) and the last
  top singular value ``sv0`` (buffer, shape (1,), for logging only; see :func:`singular_values`);
* every forward runs power iteration from ``u0``: ``v = normalize(u W)``, ``u = normalize(v W^T)``
  (``normalize(x) = x / max(|x|, eps)``), with W the weight reshaped to (out, -1); the weight used is
  ``W / sigma`` with ``sigma = v W^T u^T`` from the *just-updated* u, v (gradient flows through W only);
* in train mode ``n_power_iterations`` steps run and ``u0``/``sv0`` are written; in eval mode one step runs
  from ``u0`` and nothing is written (so eval outputs never change the module).

This differs from ``torch.nn.utils.spectral_norm`` (``weight_orig``/``weight_u``/``weight_v``, no iteration
in eval), which :mod:`gensr.models.biggan_deep` uses for the pytorch-pretrained-BigGAN port.

BatchNorm: the running statistics are the buffers ``stored_mean`` / ``stored_var`` (BigGAN-PyTorch's names,
so its checkpoints load without renaming). ``momentum`` 0.1 gives running averages; ``momentum = None``
gives cumulative averages over the batches seen since :meth:`reset_running_stats` ("standing statistics",
see :func:`begin_standing_stats`). Train mode normalises with the batch statistics (biased variance) and
stores the unbiased variance, as ``torch.nn.functional.batch_norm`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_SN_EPS = 1e-6
DEFAULT_BN_EPS = 1e-5
DEFAULT_MOMENTUM = 0.1


# ----------------------------------------------------------------------------------------------- spectral norm


class SpectralNormMixin:
    """Spectral normalisation of ``self.weight`` (BigGAN-PyTorch semantics, see the module docstring).

    Subclasses call :meth:`_init_spectral_norm` after their ``nn.Module`` constructor and use
    :meth:`sn_weight` in ``forward``.
    """

    weight: torch.Tensor
    u0: torch.Tensor
    sv0: torch.Tensor
    training: bool

    def _init_spectral_norm(self, num_outputs: int, eps: float, n_power_iterations: int) -> None:
        if n_power_iterations < 1:
            raise ValueError(f"n_power_iterations must be >= 1, got {n_power_iterations}")
        if not eps > 0:
            raise ValueError(f"spectral norm eps must be > 0, got {eps}")
        self.sn_eps = float(eps)
        self.n_power_iterations = int(n_power_iterations)
        self.register_buffer("u0", torch.randn(1, num_outputs))  # type: ignore[attr-defined]
        self.register_buffer("sv0", torch.ones(1))  # type: ignore[attr-defined]

    def sn_weight(self) -> torch.Tensor:
        """``weight / sigma`` after the power iteration of this forward (writes ``u0``/``sv0`` in train mode).

        Computed in the weight's own dtype with autocast off, so a bf16/fp16 autocast region does not round
        sigma; the returned weight is then cast by the consuming op as usual.
        """
        device_type = self.weight.device.type
        if device_type in ("cpu", "cuda"):
            with torch.autocast(device_type=device_type, enabled=False):
                return self._sn_weight()
        return self._sn_weight()

    def _sn_weight(self) -> torch.Tensor:
        w = self.weight
        mat = w.reshape(w.shape[0], -1)
        steps = self.n_power_iterations if self.training else 1
        with torch.no_grad():
            u = self.u0.to(mat.dtype)
            for _ in range(steps):
                v = F.normalize(u @ mat, dim=1, eps=self.sn_eps)
                u = F.normalize(v @ mat.t(), dim=1, eps=self.sn_eps)
        sigma = ((v @ mat.t()) * u).sum()  # v W^T u^T with the updated u, v; gradient flows through W
        if self.training:
            with torch.no_grad():
                self.u0.copy_(u)
                self.sv0.copy_(sigma.detach().reshape(1))
        return w / sigma

    def extra_repr(self) -> str:  # appended to the nn.Module repr
        return super().extra_repr() + f", sn_eps={self.sn_eps:g}, sn_iters={self.n_power_iterations}"  # type: ignore[misc]


class SNConv2d(SpectralNormMixin, nn.Conv2d):
    """``nn.Conv2d`` with spectral norm. (N, in, H, W) -> (N, out, H', W')."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        *,
        eps: float = DEFAULT_SN_EPS,
        n_power_iterations: int = 1,
    ) -> None:
        nn.Conv2d.__init__(self, in_channels, out_channels, kernel_size, stride, padding, bias=bias)
        self._init_spectral_norm(out_channels, eps, n_power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, self.sn_weight(), self.bias)


class SNLinear(SpectralNormMixin, nn.Linear):
    """``nn.Linear`` with spectral norm. (N, in) -> (N, out)."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        eps: float = DEFAULT_SN_EPS,
        n_power_iterations: int = 1,
    ) -> None:
        nn.Linear.__init__(self, in_features, out_features, bias=bias)
        self._init_spectral_norm(out_features, eps, n_power_iterations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.sn_weight(), self.bias)


class SNEmbedding(SpectralNormMixin, nn.Embedding):
    """``nn.Embedding`` with spectral norm of the (num_embeddings, dim) table; u0 has num_embeddings entries.

    ``forward(y)``: int64 labels (N,) -> (N, dim); float class weights (N, num_embeddings) -> their mix
    ``y @ W_sn`` (a one-hot row gives the same as the label).
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        *,
        eps: float = DEFAULT_SN_EPS,
        n_power_iterations: int = 1,
    ) -> None:
        nn.Embedding.__init__(self, num_embeddings, embedding_dim)
        self._init_spectral_norm(num_embeddings, eps, n_power_iterations)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return class_lookup(self.sn_weight(), y)


def class_lookup(table: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Rows of ``table`` (n_classes, dim) for int labels (N,), or ``y @ table`` for class weights (N, n_classes)."""
    if y.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8):
        return F.embedding(y.long(), table)
    if y.dim() != 2 or y.shape[1] != table.shape[0]:
        raise ValueError(
            f"class input must be int labels (N,) or float class weights (N, {table.shape[0]}), got "
            f"{y.dtype} {tuple(y.shape)}"
        )
    return y.to(table.dtype) @ table


def spectral_norm_layers(model: nn.Module) -> Iterator[tuple[str, SpectralNormMixin]]:
    """(name, module) of every BigGAN-style spectrally normalised layer in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, SpectralNormMixin):
            yield name, module


def singular_values(model: nn.Module) -> dict[str, float]:
    """``{layer name: sv0}``: the top singular value of each SN layer's weight as of its last train forward."""
    return {name: float(m.sv0[0]) for name, m in spectral_norm_layers(model)}


# ----------------------------------------------------------------------------------------------- batch norm


class _StoredStatsNorm(nn.Module):
    """BatchNorm statistics in ``stored_mean``/``stored_var``; ``momentum=None`` = cumulative average."""

    def __init__(self, num_features: int, eps: float = DEFAULT_BN_EPS, momentum: float | None = DEFAULT_MOMENTUM):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"BatchNorm eps must be > 0, got {eps}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.register_buffer("stored_mean", torch.zeros(num_features))
        self.register_buffer("stored_var", torch.ones(num_features))
        # batches averaged since the last reset (for momentum=None); a plain int, not part of the checkpoint layout
        self.num_batches_tracked = 0

    def reset_running_stats(self) -> None:
        """Mean 0, variance 1, counter 0."""
        with torch.no_grad():
            self.stored_mean.zero_()
            self.stored_var.fill_(1.0)
        self.num_batches_tracked = 0

    def _normalize(self, x: torch.Tensor, weight: torch.Tensor | None = None, bias: torch.Tensor | None = None):
        if not self.training:
            return F.batch_norm(x, self.stored_mean, self.stored_var, weight, bias, False, 0.0, self.eps)
        if self.momentum is None:
            self.num_batches_tracked += 1
            factor = 1.0 / self.num_batches_tracked
        else:
            factor = float(self.momentum)
        return F.batch_norm(x, self.stored_mean, self.stored_var, weight, bias, True, factor, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps:g}, momentum={self.momentum}"


class BatchNorm2d(_StoredStatsNorm):
    """Unconditional BatchNorm with a learned per-channel ``gain`` (init 1) and ``bias`` (init 0).

    (N, C, H, W) -> same shape. BigGAN's output layer (``layers.bn``); buffer names as BigGAN-PyTorch.
    """

    def __init__(self, num_features: int, eps: float = DEFAULT_BN_EPS, momentum: float | None = DEFAULT_MOMENTUM):
        super().__init__(num_features, eps, momentum)
        self.gain = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._normalize(x, self.gain, self.bias)


class ConditionalBatchNorm2d(_StoredStatsNorm):
    """BigGAN's CBN for a conditioning vector: ``BN(x) * (1 + gain(c)) + bias(c)``.

    ``gain`` and ``bias`` are bias-free spectrally normalised linears ``cond_dim -> C`` (BigGAN's shared
    embedding mode, where ``c = [emb(y), z_chunk]``). x (N, C, H, W), c (N, cond_dim) -> (N, C, H, W).
    With all-zero gain/bias weights this is plain BatchNorm without affine.
    """

    def __init__(
        self,
        num_features: int,
        cond_dim: int,
        *,
        eps: float = DEFAULT_BN_EPS,
        momentum: float | None = DEFAULT_MOMENTUM,
        sn_eps: float = DEFAULT_SN_EPS,
        n_power_iterations: int = 1,
    ) -> None:
        super().__init__(num_features, eps, momentum)
        sn = {"eps": sn_eps, "n_power_iterations": n_power_iterations}
        self.gain = SNLinear(cond_dim, num_features, bias=False, **sn)
        self.bias = SNLinear(cond_dim, num_features, bias=False, **sn)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(c)
        bias = self.bias(c)
        return _modulate(self._normalize(x), gain, bias)


class ClassBatchNorm2d(_StoredStatsNorm):
    """BigGAN's CBN without a shared embedding (CIFAR script): per-class ``gain``/``bias`` embeddings.

    ``BN(x) * (1 + gain[y]) + bias[y]`` with ``gain``, ``bias`` plain ``nn.Embedding(n_classes, C)`` (no
    spectral norm, as BigGAN-PyTorch). y: int labels (N,) or float class weights (N, n_classes).
    """

    def __init__(
        self,
        num_features: int,
        n_classes: int,
        *,
        eps: float = DEFAULT_BN_EPS,
        momentum: float | None = DEFAULT_MOMENTUM,
    ) -> None:
        super().__init__(num_features, eps, momentum)
        self.gain = nn.Embedding(n_classes, num_features)
        self.bias = nn.Embedding(n_classes, num_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + class_lookup(self.gain.weight, y)
        bias = class_lookup(self.bias.weight, y)
        return _modulate(self._normalize(x), gain, bias)


def _modulate(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    n, c = gain.shape
    return torch.addcmul(bias.view(n, c, 1, 1), x, gain.view(n, c, 1, 1))


def batch_norm_layers(model: nn.Module) -> Iterator[_StoredStatsNorm]:
    """Every BatchNorm of this module (unconditional and conditional) inside ``model``."""
    for module in model.modules():
        if isinstance(module, _StoredStatsNorm):
            yield module


def begin_standing_stats(model: nn.Module) -> None:
    """Reset every BatchNorm of ``model`` and switch it to cumulative averaging (``momentum=None``).

    Then run N train-mode forwards (no grad) and call :func:`end_standing_stats`; eval mode then uses the
    averages. Only the BatchNorms need train mode: ``for m in batch_norm_layers(model): m.train()`` keeps
    the spectral-norm vectors untouched (BigGAN-PyTorch puts the whole G in train mode, which also
    advances them).
    """
    for bn in batch_norm_layers(model):
        bn.reset_running_stats()
        bn.momentum = None


def end_standing_stats(model: nn.Module, momentum: float = DEFAULT_MOMENTUM) -> None:
    """Back to running averages with ``momentum`` (the accumulated statistics are kept)."""
    for bn in batch_norm_layers(model):
        bn.momentum = momentum
