"""Training checkpoints: everything needed to continue exactly (weights, optimisers, schedulers, EMA, RNGs),
stored so that reading one can never run code.

A training state is a nested structure of dicts, lists, tuples, numbers, strings and tensors. It is written as
one safetensors file: every tensor under a short key (``t0``, ``t1``, ...), and the structure as JSON in the
header (``state``), where a tensor is ``{"__tensor__": "t3"}``, a tuple ``{"__tuple__": [...]}`` and a dict
with non-string keys (optimiser state is keyed by parameter index) ``{"__items__": [[key, value], ...]}``.
Random-generator states are stored as tensors (:func:`rng_state`). Reading parses JSON and tensors only;
there is no pickle anywhere. Files of the older pickle format (``iter_N.pt``) are refused with one line.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gensr.errors import GensrError
from gensr.fileutil import write_bytes_atomic

FORMAT = "gensr-training-state"
FORMAT_VERSION = "1"
SUFFIX = ".safetensors"
_NAME = re.compile(r"^iter_(\d+)\.safetensors$")


# ----------------------------------------------------------------------------------------------- RNG


def rng_state() -> dict[str, Any]:
    """The state of every random generator a training step may use, as tensors and plain numbers."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {
            "version": int(version),
            "internal": torch.tensor(internal, dtype=torch.int64),
            "gauss_next": gauss_next,
        },  # fmt: skip
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached_gaussian"])))
    p = state["python"]
    random.setstate((int(p["version"]), tuple(int(v) for v in p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(list(state["cuda"]))


# ----------------------------------------------------------------------------------------------- encoding


def _encode(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        key = f"t{len(tensors)}"
        tensors[key] = obj.detach().cpu().contiguous().clone()  # clone: safetensors refuses shared storage
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        raise TypeError(f"{where}: numpy array in a training state (convert it to a tensor)")
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: _encode(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        return {
            "__items__": [[_encode(k, tensors, where), _encode(v, tensors, f"{where}.{k}")] for k, v in obj.items()]
        }
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} in a training state")


def _decode(obj: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if set(obj) == {"__tensor__"}:
        return tensors[obj["__tensor__"]]
    if set(obj) == {"__tuple__"}:
        return tuple(_decode(v, tensors) for v in obj["__tuple__"])
    if set(obj) == {"__items__"}:
        return {_hashable(_decode(k, tensors)): _decode(v, tensors) for k, v in obj["__items__"]}
    return {k: _decode(v, tensors) for k, v in obj.items()}


def _hashable(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key


# ----------------------------------------------------------------------------------------------- files


def save_training_state(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically as a safetensors file with a JSON structure (replaces ``path``)."""
    from safetensors.torch import save

    tensors: dict[str, torch.Tensor] = {}
    structure = _encode(state, tensors, "state")
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, "state": json.dumps(structure)}
    return write_bytes_atomic(path, save(tensors, metadata=header), overwrite=True)


def _header(p: Path) -> dict[str, str]:
    """The checked header of a training-state file (GensrError for anything else)."""
    from safetensors import safe_open

    if not p.is_file():
        raise GensrError(f"{p}: resume checkpoint not found")
    if p.suffix.lower() != SUFFIX:
        raise GensrError(
            f"{p}: not a gensr training checkpoint (expected checkpoints/iter_N{SUFFIX}; older pickle-based .pt "
            "training states are not read, because unpickling a file can run code)"
        )
    try:
        with safe_open(str(p), framework="pt") as f:
            header = dict(f.metadata() or {})
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise GensrError(f"{p}: unreadable training checkpoint ({' '.join(str(exc).split())[:160]})") from None
    if header.get("format") != FORMAT:
        raise GensrError(
            f"{p}: not a training checkpoint (a model file? resume from the run's checkpoints/iter_N{SUFFIX}; "
            "to start from a model's weights use task.model.pretrained=FILE)"
        )
    if header.get("format_version") != FORMAT_VERSION:
        raise GensrError(f"{p}: training-state format_version {header.get('format_version')!r} is not supported")
    return header


def read_training_config(path: str | os.PathLike) -> dict[str, Any]:
    """The run config stored in a training checkpoint (header only: no tensor is read)."""
    p = Path(path)
    try:
        return _decode(json.loads(_header(p)["state"]).get("config", {}), {})
    except (KeyError, ValueError, AttributeError) as exc:
        raise GensrError(f"{p}: unreadable training checkpoint ({exc})") from None


def load_training_state(path: str | os.PathLike) -> dict[str, Any]:
    """Read a training state written by :func:`save_training_state`; never unpickles anything."""
    from safetensors import safe_open

    p = Path(path)
    header = _header(p)
    try:
        with safe_open(str(p), framework="pt") as f:
            tensors = {k: f.get_tensor(k) for k in f.keys()}
        return _decode(json.loads(header["state"]), tensors)
    except Exception as exc:  # safetensors/JSON raise their own error types for corrupt files
        raise GensrError(f"{p}: unreadable training checkpoint ({' '.join(str(exc).split())[:160]})") from None


def checkpoint_name(iteration: int) -> str:
    return f"iter_{iteration:07d}{SUFFIX}"


def list_checkpoints(folder: str | os.PathLike) -> list[tuple[int, Path]]:
    """(iteration, path) of the training checkpoints in ``folder``, oldest iteration first."""
    d = Path(folder)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint with the highest iteration in ``folder`` (None if there is none).

    GensrError when the folder holds only checkpoints of the older pickle format.
    """
    found = list_checkpoints(folder)
    if found:
        return found[-1][1]
    legacy = sorted(Path(folder).glob("iter_*.pt")) if Path(folder).is_dir() else []
    if legacy:
        raise GensrError(
            f"{folder}: holds only pickle-based .pt training states of an older gensr ({legacy[-1].name}); "
            "they are not read, because unpickling a file can run code: start the run again"
        )
    return None
