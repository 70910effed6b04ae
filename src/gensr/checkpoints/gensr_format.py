"""The gensr checkpoint: a safetensors file whose header holds the architecture name and its config.

A file alone rebuilds its model: ``read_checkpoint(path)`` gives arch, config and tensors, and
:func:`gensr.checkpoints.loader.load_model` turns them into a module. Header metadata keys (all strings):
``format`` = "gensr", ``format_version``, ``arch``, ``config`` (JSON) and ``meta`` (JSON, free-form).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gensr.errors import GensrError, one_line
from gensr.fileutil import write_bytes_atomic

FORMAT_VERSION = "1"
SUPPORTED_VERSIONS = ("1",)

# storage dtype names accepted by `gensr convert/interpolate --dtype`
DTYPE_NAMES: dict[str, str] = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


@dataclass
class GensrCheckpoint:
    """Contents of a gensr checkpoint file."""

    arch: str
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | os.PathLike,
    state_dict: dict[str, torch.Tensor],
    arch: str,
    config: dict[str, Any],
    meta: dict[str, Any] | None = None,
    dtype: torch.dtype | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write ``state_dict`` atomically as a gensr safetensors file; float tensors cast to ``dtype`` if given.

    An existing ``path`` is replaced only with ``overwrite=True``; non-finite weights are refused.
    """
    from safetensors.torch import save

    tensors = {}
    for k, v in state_dict.items():
        t = v.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise GensrError(f"{path}: not written: tensor {k} holds NaN or inf values")
        tensors[k] = t.contiguous()
    header = {
        "format": "gensr",
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": json.dumps(config, sort_keys=True),
        "meta": json.dumps(meta or {}, sort_keys=True),
    }
    return write_bytes_atomic(path, save(tensors, metadata=header), overwrite=overwrite)


def cast_state_dict(sd: dict[str, torch.Tensor], dtype_name: str | None, source: str) -> dict[str, torch.Tensor]:
    """Float tensors cast to ``dtype_name`` (fp32/fp16/bf16 or None = unchanged); GensrError on overflow."""
    if dtype_name is None:
        return sd
    if dtype_name not in DTYPE_NAMES:
        raise GensrError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got {dtype_name!r}")
    dtype = getattr(torch, DTYPE_NAMES[dtype_name])
    out = {}
    for key, t in sd.items():
        if t.is_floating_point():
            c = t.to(dtype)
            if not torch.isfinite(c).all() and torch.isfinite(t).all():
                raise GensrError(f"{source}: {key} overflows {dtype_name}; keep fp32 or use bf16")
            t = c
        out[key] = t
    return out


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of ``path`` ({} if it has none); GensrError if it is not safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise GensrError(f"{path}: not a readable safetensors file ({one_line(exc)})") from None


def is_gensr_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` is a safetensors file with a gensr header."""
    try:
        return read_header(path).get("format") == "gensr"
    except GensrError:
        return False


def read_checkpoint(path: str | os.PathLike, dtype: torch.dtype | None = torch.float32) -> GensrCheckpoint:
    """Read a gensr checkpoint; float tensors are cast to ``dtype`` (None keeps the stored dtype)."""
    from safetensors.torch import load_file

    header = read_header(path)
    if header.get("format") != "gensr":
        raise GensrError(f"{path}: safetensors file without a gensr header (convert it with `gensr convert`)")
    arch, config, meta = _parse_header(path, header)
    try:
        tensors = load_file(str(path))
    except Exception as exc:
        raise GensrError(f"{path}: corrupt gensr checkpoint ({one_line(exc)})") from None
    check_tensor_values(tensors, path)
    if dtype is not None:
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    return GensrCheckpoint(arch=arch, config=config, state_dict=tensors, meta=meta)


def _parse_header(path: str | os.PathLike, header: dict[str, str]) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(arch, config, meta) from a gensr header; GensrError for an unknown version or a malformed field."""
    version = header.get("format_version")
    if version not in SUPPORTED_VERSIONS:
        raise GensrError(
            f"{path}: gensr checkpoint format_version {version!r} is not supported by this gensr "
            f"(supported: {', '.join(SUPPORTED_VERSIONS)}); upgrade gensr"
        )
    arch = header.get("arch")
    if not isinstance(arch, str) or not arch:
        raise GensrError(f"{path}: gensr header has no 'arch' (the architecture name)")
    parsed = []
    for key in ("config", "meta"):
        try:
            value = json.loads(header.get(key, "{}"))
        except ValueError as exc:
            raise GensrError(f"{path}: gensr header field '{key}' is not valid JSON ({one_line(exc)})") from None
        if not isinstance(value, dict):
            raise GensrError(f"{path}: gensr header field '{key}' must be a JSON object, got {type(value).__name__}")
        parsed.append(value)
    return arch, parsed[0], parsed[1]


def check_tensor_values(tensors: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """GensrError when a weight is not a float tensor or holds NaN/inf: such a file would give broken images.

    Integer tensors are allowed only where models keep counters (``num_batches_tracked``-style buffers).
    """
    for k, t in tensors.items():
        if not t.is_floating_point():
            if t.dtype in (torch.int64, torch.int32) and t.numel() <= 1:
                continue  # counters such as BatchNorm's num_batches_tracked
            raise GensrError(f"{path}: tensor {k} has dtype {str(t.dtype).replace('torch.', '')}, expected float")
        if not bool(torch.isfinite(t).all()):
            raise GensrError(f"{path}: tensor {k} holds NaN or inf values (a broken checkpoint)")
