"""The gensr checkpoint: a safetensors file whose header holds the architecture name and its config.

A file alone rebuilds its model: ``read_checkpoint(path)`` gives arch, config and tensors, and
:func:`gensr.models.registry.load_model` turns them into a module. Header metadata keys (all strings):
``format`` = "gensr", ``format_version``, ``arch``, ``config`` (JSON) and ``meta`` (JSON, free-form).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from gensr.errors import GensrError
from gensr.fileutil import atomic_path

FORMAT_VERSION = "1"


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
) -> Path:
    """Write ``state_dict`` atomically as a gensr safetensors file; float tensors cast to ``dtype`` if given."""
    from safetensors.torch import save_file

    tensors = {}
    for k, v in state_dict.items():
        t = v.detach().cpu()
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        tensors[k] = t.contiguous()
    header = {
        "format": "gensr",
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "config": json.dumps(config, sort_keys=True),
        "meta": json.dumps(meta or {}, sort_keys=True),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=header)
    return Path(path)


def read_header(path: str | os.PathLike) -> dict[str, str]:
    """The safetensors metadata of ``path`` ({} if it has none); GensrError if it is not safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types
        raise GensrError(f"{path}: not a readable safetensors file ({_one_line(exc)})") from None


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
    try:
        tensors = load_file(str(path))
        config = json.loads(header.get("config", "{}"))
        meta = json.loads(header.get("meta", "{}"))
    except Exception as exc:
        raise GensrError(f"{path}: corrupt gensr checkpoint ({_one_line(exc)})") from None
    if dtype is not None:
        tensors = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in tensors.items()}
    return GensrCheckpoint(arch=header["arch"], config=config, state_dict=tensors, meta=meta)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
