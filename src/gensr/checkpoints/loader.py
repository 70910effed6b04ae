"""Load any supported checkpoint strictly: gensr safetensors files and official layouts found by detectors.

Reading (:func:`read_state_dict`) turns a ``.pth``/``.pt``/``.ckpt`` file (``torch.load(weights_only=True)``,
never an unrestricted unpickle) or a ``.safetensors`` file into a flat ``{name: tensor}`` dict, unwrapping
training wrappers (``params_ema`` > ``params`` > ``params-ema``, ``state_dict``, ``model_state_dict``,
``model``, ``net``, ``netG``, a single nested dict) and stripping ``module.``/``netG.`` prefixes.

Detection is data: :data:`DETECTORS` names modules, each with ``detect(sd) -> Detected | None``. The first
detector that recognises the keys gives the architecture, its config (inferred from tensor shapes) and a
function that renames the official keys to the gensr layout. A detector raises GensrError for a layout it
recognises but cannot load.

Loading is strict (DESIGN.md: never ``strict=False``): a missing key, an unexpected key or a shape mismatch is
a GensrError that lists the keys.
"""

from __future__ import annotations

import importlib
import os
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gensr.checkpoints import gensr_format
from gensr.errors import GensrError

# Detector modules, tried in order. Each defines ``detect(sd) -> Detected | None`` and may define
# ``DESCRIPTION`` (one line naming the layouts it knows, shown when nothing matches). A module that sets
# ``DETECT_WITH_SOURCE = True`` is called as ``detect(sd, source)`` with the checkpoint's path, to read files
# saved beside it (BigGAN-PyTorch's ``state_dict.pth``, pytorch-pretrained-BigGAN's ``config.json``).
DETECTORS: list[str] = [
    "gensr.checkpoints.rrdb_official",
    "gensr.checkpoints.discriminator_official",
    "gensr.checkpoints.srflow_official",
    "gensr.checkpoints.biggan_official",
]

# Wrapper keys around the real state dict, most preferred first (BasicSR keeps EMA weights in params_ema).
WRAPPER_KEYS: tuple[str, ...] = (
    "params_ema",
    "params",
    "params-ema",
    "state_dict",
    "model_state_dict",
    "model",
    "net",
    "netG",
)
# Prefixes removed when every key carries them (DataParallel/DDP, some GAN trainers).
STRIP_PREFIXES: tuple[str, ...] = ("module.", "netG.")

MAX_LISTED = 10


@dataclass
class Detected:
    """What a detector found: the gensr architecture and config, and how to rename the official keys."""

    arch: str
    layout: str
    config: dict[str, Any]
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass
class LoadedCheckpoint:
    """A checkpoint file read into the gensr layout (not yet checked against a model)."""

    path: Path
    arch: str
    config: dict[str, Any]
    layout: str
    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- reading


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The flat tensor dict stored in ``path`` and a dict describing how it was found.

    The info dict has ``container`` ("pytorch" or "safetensors"), ``wrappers`` (keys descended through),
    ``prefixes`` (prefixes stripped), ``dropped`` (non-tensor entries ignored inside wrappers) and, for
    safetensors files, ``header`` (the metadata). GensrError (one line naming the file) if it cannot be read.
    """
    p = Path(path)
    if not p.exists():
        raise GensrError(f"{p}: no such checkpoint file")
    if p.is_dir():
        raise GensrError(f"{p}: is a folder, expected a checkpoint file")
    size = p.stat().st_size
    if size == 0:
        raise GensrError(f"{p}: empty file (0 bytes), not a checkpoint")
    info: dict[str, Any] = {"container": None, "wrappers": [], "prefixes": [], "dropped": []}
    if p.suffix.lower() == ".safetensors" or _looks_like_safetensors(p, size):
        info["container"] = "safetensors"
        obj, info["header"] = _read_safetensors(p)
    else:
        info["container"] = "pytorch"
        obj = _torch_load(p)
    sd = _unwrap(obj, p, info)
    return sd, info


def _looks_like_safetensors(path: Path, size: int) -> bool:
    """A safetensors file starts with a little-endian u64 header length and a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    if len(head) < 9:
        return False
    n = int.from_bytes(head[:8], "little")
    return 0 < n <= size - 8 and head[8:9] == b"{"


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors.torch import load_file

    header = gensr_format.read_header(path)
    try:
        return load_file(str(path)), header
    except Exception as exc:
        raise GensrError(f"{path}: corrupt safetensors file ({_one_line(exc)})") from None


def _torch_load(path: Path) -> Any:
    import pickle

    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "Weights only load failed" in msg:
            m = re.search(r"WeightsUnpickler error:\s*(.+)", msg)
            detail = m.group(1).split(" was not an allowed")[0].strip() if m else "unsupported content"
            raise GensrError(
                f"{path}: holds pickled Python objects beyond tensors ({detail}); gensr reads it only with "
                "torch.load(weights_only=True) and never runs pickle code. If you trust the file, re-save "
                "its weights as a plain state dict (torch.save(model.state_dict(), ...)) or as .safetensors"
            ) from None
        raise GensrError(f"{path}: not a checkpoint (unreadable pickle: {_one_line(exc)})") from None
    except Exception as exc:  # zip errors, truncated files, random bytes: torch raises many types
        raise GensrError(
            f"{path}: not a checkpoint (neither a PyTorch file nor safetensors; torch.load: "
            f"{type(exc).__name__}: {_one_line(exc)})"
        ) from None


def _unwrap(obj: Any, path: Path, info: dict[str, Any]) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise GensrError(
            f"{path}: not a checkpoint (holds a {type(obj).__name__}, expected a dict of tensors)"
        )
    for _ in range(8):  # wrappers nest a few levels at most
        if _all_tensors(obj):
            break
        key = next((k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if key is None:
            nested = [k for k, v in obj.items() if isinstance(v, Mapping)]
            if len(obj) == 1 and len(nested) == 1:
                key = nested[0]
            else:
                break
        info["wrappers"].append(str(key))
        obj = obj[key]
    if not info["wrappers"] and obj and not _all_tensors(obj):
        bad = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
        raise GensrError(
            f"{path}: not a checkpoint (entries that are not tensors and no known wrapper: "
            f"{_listing(bad)}; wrappers understood: {', '.join(WRAPPER_KEYS)})"
        )
    sd = {}
    for k, v in obj.items():
        if isinstance(v, torch.Tensor):
            sd[str(k)] = v
        else:
            info["dropped"].append(str(k))
    if not sd:
        raise GensrError(f"{path}: not a checkpoint (no tensors found)")
    stripped = True
    while stripped:  # any order and repetition: "module.netG.", "netG.module.", "module.module."
        stripped = False
        for prefix in STRIP_PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix) :]: v for k, v in sd.items()}
                info["prefixes"].append(prefix)
                stripped = True
    return sd


def _all_tensors(d: Mapping) -> bool:
    return len(d) > 0 and all(isinstance(v, torch.Tensor) for v in d.values())


# ----------------------------------------------------------------------------------------------- detection


def detect(sd: dict[str, torch.Tensor], source: str | os.PathLike = "checkpoint") -> Detected:
    """The first detector's answer for ``sd``; GensrError "unknown checkpoint layout" if none matches."""
    unavailable = []
    for module_name in DETECTORS:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            unavailable.append(f"{module_name} ({_one_line(exc)})")
            continue
        try:
            found = module.detect(sd, source) if getattr(module, "DETECT_WITH_SOURCE", False) else module.detect(sd)
        except GensrError as exc:
            raise GensrError(f"{source}: {exc}") from None
        if found is not None:
            return found
    known = []
    for module_name in DETECTORS:
        try:
            known.append(getattr(importlib.import_module(module_name), "DESCRIPTION", module_name))
        except ImportError:
            pass
    msg = (
        f"{source}: unknown checkpoint layout ({len(sd)} tensors; first keys: {_listing(list(sd), 6)}); "
        f"supported: {'; '.join(known) or 'none'}"
    )
    if unavailable:
        msg += f"; detectors that failed to import: {', '.join(unavailable)}"
    raise GensrError(msg)


def read_checkpoint_any(path: str | os.PathLike) -> LoadedCheckpoint:
    """Read ``path`` (a shipped name or a file) into the gensr layout, detecting official layouts."""
    from gensr.checkpoints.shipped import resolve_model_path

    p = resolve_model_path(path)
    if gensr_format.is_gensr_checkpoint(p):
        ck = gensr_format.read_checkpoint(p, dtype=None)
        info = {"container": "safetensors", "wrappers": [], "prefixes": [], "dropped": []}
        return LoadedCheckpoint(p, ck.arch, ck.config, "gensr", ck.state_dict, ck.meta, info)
    sd, info = read_state_dict(p)
    found = detect(sd, p)
    try:
        converted = found.convert(sd)
    except GensrError as exc:
        raise GensrError(f"{p}: {exc}") from None
    return LoadedCheckpoint(p, found.arch, found.config, found.layout, converted, {}, info)


# ----------------------------------------------------------------------------------------------- strict load


def check_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """GensrError listing missing/unexpected keys and shape mismatches of ``sd`` against ``model``."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k} (file {_shape(sd[k])} vs model {_shape(v)})"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {_listing(shapes)}")
    if problems:
        raise GensrError(f"{source}: does not match the model: {'; '.join(problems)}")


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``sd`` into ``model`` after :func:`check_state_dict` (float tensors take the model's dtype)."""
    check_state_dict(model, sd, source)
    model.load_state_dict(sd, strict=True)


def _describe_source(ck: LoadedCheckpoint) -> str:
    return f"{ck.path} ({ck.layout} layout, {ck.arch} {_config_text(ck.config)})"


def build_and_load(ck: LoadedCheckpoint) -> nn.Module:
    """A ``ck.arch`` model built from ``ck.config`` with ``ck.state_dict`` loaded strictly."""
    from gensr.models.registry import build_model

    try:
        model = build_model(ck.arch, ck.config)
    except GensrError as exc:
        raise GensrError(f"{ck.path}: {exc}") from None
    load_state_dict_strict(model, ck.state_dict, _describe_source(ck))
    return model


def load_model(name_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """A model in eval mode from a shipped name, a gensr safetensors file or a supported official layout."""
    model = build_and_load(read_checkpoint_any(name_or_path))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------- describe


def describe(path: str | os.PathLike) -> dict[str, Any]:
    """What ``gensr info`` shows: layout, arch, config (and derived values), parameter count, dtype, wrappers.

    The keys are checked against the model (built on the meta device, no weights allocated), so a
    checkpoint that would not load raises the same GensrError as :func:`load_model`.
    """
    from gensr.models.registry import build_model

    ck = read_checkpoint_any(path)
    with torch.device("meta"):
        try:
            model = build_model(ck.arch, ck.config)
        except GensrError as exc:
            raise GensrError(f"{ck.path}: {exc}") from None
    check_state_dict(model, ck.state_dict, _describe_source(ck))
    from gensr.models.registry import model_config_dict

    hyper = model_config_dict(model)  # every field, in the config class's order
    cfg = getattr(model, "config", None)
    for derived in ("unshuffle",):
        if hasattr(cfg, derived) and derived not in hyper:
            hyper[derived] = getattr(cfg, derived)
    dtypes = sorted(
        {str(t.dtype).replace("torch.", "") for t in ck.state_dict.values() if t.is_floating_point()}
    )
    out: dict[str, Any] = {
        "file": str(ck.path),
        "layout": ck.layout,
        "arch": ck.arch,
        "config": hyper,
        "parameters": sum(p.numel() for p in model.parameters()),
        "tensors": len(ck.state_dict),
        "dtype": dtypes[0] if len(dtypes) == 1 else ("mixed: " + ", ".join(dtypes) if dtypes else "none"),
        "container": ck.info.get("container"),
        "wrappers": list(ck.info.get("wrappers", [])),
        "prefixes_stripped": list(ck.info.get("prefixes", [])),
    }
    if ck.info.get("dropped"):
        out["ignored_entries"] = list(ck.info["dropped"])
    if ck.layout == "gensr":
        out["meta"] = ck.meta
    return out


# ----------------------------------------------------------------------------------------------- helpers


def _listing(items: list[str], limit: int = MAX_LISTED) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def _config_text(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:200]
