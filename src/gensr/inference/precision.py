"""Inference precision ``auto | fp32 | bf16 | fp16`` under autocast; fp32 recompute on non-finite output.

``auto`` is bf16 on CUDA (fp16 on GPUs without bf16) and fp32 elsewhere. fp16 on the CPU is not offered by
every kernel, so it becomes fp32 with a note. Low precision runs under :func:`torch.autocast`; when an output
holds a NaN or an infinity (the known fp16 overflow of RRDBNet at ``conv_up1``, Real-ESRGAN #632/#330) that
tile or image is computed again in fp32 and a note is printed once on stderr. On CUDA and on CPUs with
oneDNN the model and its inputs use the channels_last memory format: cuDNN's fastest bf16/fp16
convolutions want it, and the x4 RRDBNet runs ~1.45x faster on a 2-core AVX2 CPU with it (15.7 s vs 23.0 s
for 64x64 -> 256x256).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from gensr.errors import GensrError, note

__all__ = ["PRECISIONS", "resolve_precision", "PrecisionRunner"]

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


def resolve_precision(precision: str, device: torch.device) -> tuple[torch.dtype, str | None]:
    """The compute dtype for ``precision`` on ``device`` and an optional note explaining a substitution."""
    if precision not in PRECISIONS:
        raise GensrError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            try:
                bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
            except TypeError:  # torch < 2.3 has no including_emulation
                bf16 = torch.cuda.is_bf16_supported()
            return (torch.bfloat16 if bf16 else torch.float16), None
        return torch.float32, None
    dtype = _DTYPES[precision]
    if device.type == "cpu" and dtype == torch.float16:
        return torch.float32, "fp16 is not supported on the CPU; running in fp32"
    return dtype, None


class PrecisionRunner:
    """Calls ``model`` on device batches at the resolved precision; always returns float32 outputs.

    The model is moved to ``device`` (and to channels_last, see the module notes) in place and put in
    eval mode.
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
        self.dtype, message = resolve_precision(precision, self.device)
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
        try:
            with torch.autocast(device_type=self.device.type, dtype=self.dtype):
                out = self.model(x)
        except RuntimeError as exc:
            if "autocast" not in str(exc).lower() and "not implemented" not in str(exc).lower():
                raise
            self.note(f"{self.precision} is not supported on {self.device.type} ({exc}); running in fp32")
            self.dtype = torch.float32
            return self.model(x).float()
        out = out.float()
        if not bool(torch.isfinite(out).all()):
            if self.fallbacks == 0:
                self.note(f"non-finite values in the {self.precision} output; recomputing in fp32")
            self.fallbacks += 1
            out = self.model(x).float()
        return out


def _finite(out: torch.Tensor) -> torch.Tensor:
    if not bool(torch.isfinite(out).all()):
        bad = int((~torch.isfinite(out)).sum())
        raise GensrError(f"the model produced {bad} NaN/inf output values in float32 (a broken checkpoint?)")
    return out
