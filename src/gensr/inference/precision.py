"""Inference precision ``auto | fp32 | bf16 | fp16``; fp32 recompute on non-finite output.

``auto`` is bf16 on CUDA (fp16 on GPUs without bf16). On the CPU it is bf16 when both hold: the CPU computes
bfloat16 natively (x86 AVX512-BF16 or AMX, :func:`cpu_has_native_bf16`) and the model declares
``cpu_bf16 = True`` (RRDBNet: convolutions, interpolation and pointwise ops only); fp32 otherwise. Measured on a
Zen 4 core (AVX512-BF16, one thread, see benchmarks/RESULTS.md): bf16 runs RRDBNet 1.3x (a 24 px input to a
tiny nf 16 net) to 2.1x (the shipped default at 256 px, the 23-block x4 net) faster than fp32, so no model size
is too small to gain, while the shipped default's Set5 Y-PSNR moves by -0.003 dB. CPUs without native bf16
emulate it with slower kernels than fp32, so ``auto`` stays fp32 there; ``--precision fp32`` forces fp32.

fp16 on the CPU is not offered by every kernel, so it becomes fp32 with a note. Low precision runs the
model with bfloat16 weights on the CPU when it declares ``cpu_bf16`` (the same numbers as autocast for such a
model, without casting every weight on every call: up to 1.2x faster on small inputs), else under
:func:`torch.autocast`. When an output holds a NaN or an infinity (the known fp16 overflow of RRDBNet at
``conv_up1``, Real-ESRGAN #632/#330) that tile or image is computed again in fp32 and a note is printed once
on stderr. On CUDA and on CPUs with oneDNN the model and its inputs use the channels_last memory format:
cuDNN's fastest bf16/fp16 convolutions want it, and oneDNN runs the x4 RRDBNet 1.16x (fp32) to 1.2x (bf16)
faster with it on one thread.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from gensr.errors import GensrError, note

__all__ = ["PRECISIONS", "cpu_has_native_bf16", "resolve_precision", "PrecisionRunner"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {v: k for k, v in _DTYPES.items()}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` -> CUDA when available, else CPU; a name is checked against what this machine has."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise GensrError(f"device {device}: {exc}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise GensrError(f"device {device}: CUDA is not available in this PyTorch installation or machine")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise GensrError(f"device {device}: MPS is not available on this machine")
    return dev


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bfloat16 dot products in hardware (x86 AVX512-BF16 or AMX tiles).

    oneDNN then runs bf16 convolutions about twice as fast as float32; other CPUs emulate bf16 (slower than
    float32). Other architectures (Arm BF16) are reported False: not measured.
    """
    cpu = getattr(torch, "cpu", None)
    for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        fn = getattr(cpu, check, None)
        try:
            if fn is not None and fn():
                return True
        except RuntimeError:
            continue
    return False


def model_prefers_cpu_bf16(model: nn.Module | None) -> bool:
    """Whether ``model`` declares ``cpu_bf16 = True``: it gains from bf16 on the CPU, and with bfloat16 weights
    it computes what bf16 autocast computes (no op that autocast would keep in float32)."""
    return bool(getattr(model, "cpu_bf16", False))


def resolve_precision(
    precision: str, device: torch.device, model: nn.Module | None = None
) -> tuple[torch.dtype, str | None]:
    """The compute dtype for ``precision`` on ``device`` (for ``model``, which matters for ``auto`` on the
    CPU: see the module notes) and an optional note explaining a substitution."""
    if precision not in PRECISIONS:
        raise GensrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            try:
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # torch < 2.3 has no including_emulation
                bf16 = torch.cuda.is_bf16_supported()
            return (torch.bfloat16 if bf16 else torch.float16), None
        if device.type == "cpu" and model_prefers_cpu_bf16(model) and cpu_has_native_bf16():
            return torch.bfloat16, None
        return torch.float32, None
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32, "fp16 is not supported on the CPU; running in fp32"
    return dtype, None


class PrecisionRunner:
    """Calls ``model`` on device batches at the resolved precision; always returns float32 outputs.

    The model is moved to ``device`` (and to channels_last, see the module notes) in place and put in
    eval mode. A bfloat16 copy of a ``cpu_bf16`` model is made here, once: to run other weights, make a new
    runner.
    """

    def __init__(
        self,
        model: nn.Module,
        device: torch.device | str,
        precision: str = "auto",
        *,
        channels_last: bool | None = None,
        note: Callable[[str], None] = note,
    ) -> None:
        self.device = torch.device(device)
        self.dtype, message = resolve_precision(precision, self.device, model)
        self.note = note
        if message:
            note(message)
        if channels_last is None:
            channels_last = self.device.type == "cuda" or (
                self.device.type == "cpu" and torch.backends.mkldnn.is_available()
            )
        self.channels_last = channels_last
        self.model = model.eval().to(self.device)
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.low_model: nn.Module | None = None  # a bfloat16-weight copy (CPU, cpu_bf16 models); fp32 stays
        if self.device.type == "cpu" and self.dtype == torch.bfloat16 and model_prefers_cpu_bf16(self.model):
            self.low_model = copy.deepcopy(self.model).to(torch.bfloat16)
        self.fallbacks = 0  # how many calls were recomputed in fp32

    @property
    def precision(self) -> str:
        """The precision actually used: 'fp32', 'bf16' or 'fp16'."""
        return _NAMES[self.dtype]

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The model's float32 output for ``x``; GensrError when even float32 gives NaN/inf (never returned)."""
        return _finite(self._run(self._prepare(x)))

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.dtype == torch.float32:
            return self.model(x).float()
        if self.low_model is not None:
            return self._check_low(self.low_model(x.to(self.dtype)).float(), x)
        try:
            with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                out = self.model(x)
        except RuntimeError as exc:
            if "autocast" not in str(exc).lower() and "not implemented" not in str(exc).lower():
                raise
            self.note(f"{self.precision} is not supported on {self.device.type} ({exc}); running in fp32")
            self.dtype = torch.float32
            return self.model(x).float()
        return self._check_low(out.float(), x)

    def _check_low(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``out`` (a low-precision result), or the fp32 recomputation when it holds NaN/inf (with a note, once,
        when fp32 is finite; a non-finite fp32 result is the caller's error to report)."""
        if bool(torch.isfinite(out).all()):
            return out
        out = self.model(x).float()
        if bool(torch.isfinite(out).all()):
            if self.fallbacks == 0:
                self.note(f"non-finite values in the {self.precision} output; recomputed in fp32")
            self.fallbacks += 1
        return out


def _finite(out: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise GensrError(f"the model produced {bad} NaN/inf output values in float32 (a broken checkpoint?)")
    return out
