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
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gensr.checkpoints import gensr_format
from gensr.checkpoints.detected import Detected
from gensr.errors import GensrError, listing, one_line

# Detector modules, tried in order. Each defines ``detect(sd, source) -> Detected | None`` (``source``: the
# checkpoint's path, for files saved beside it such as BigGAN-PyTorch's ``state_dict.pth``) and may define
# ``DESCRIPTION`` (one line naming the layouts it knows, shown when nothing matches).
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
ConfigSource = str | os.PathLike | dict[str, Any] | None


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
        raise GensrError(f"{path}: corrupt safetensors file ({one_line(exc)})") from None


_IMAGE_SIGNATURES = {
    b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image", b"GIF8": "a GIF image", b"BM": "a BMP image",
    b"II*\x00": "a TIFF image", b"MM\x00*": "a TIFF image", b"RIFF": "a RIFF file (WebP image?)",
}  # fmt: skip


def _sniff_non_checkpoint(path: Path) -> str | None:
    """What ``path`` is when its first bytes say it cannot be a PyTorch file (zip or pickle), else None."""
    with open(path, "rb") as f:
        head = f.read(8)
    for sig, what in _IMAGE_SIGNATURES.items():
        if head.startswith(sig):
            return what
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return None  # a torch zip archive or a legacy pickle stream
    return "neither a PyTorch file nor safetensors"


def _torch_load(path: Path) -> Any:
    import pickle

    what = _sniff_non_checkpoint(path)
    if what is not None:
        raise GensrError(f"{path}: not a checkpoint ({what})")
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
        raise GensrError(f"{path}: not a checkpoint (unreadable pickle: {one_line(exc)})") from None
    except Exception as exc:  # zip errors, truncated files, random bytes: torch raises many types
        raise GensrError(
            f"{path}: not a checkpoint (neither a PyTorch file nor safetensors; torch.load: "
            f"{type(exc).__name__}: {one_line(exc)})"
        ) from None


def _unwrap(obj: Any, path: Path, info: dict[str, Any]) -> dict[str, torch.Tensor]:
    if not isinstance(obj, Mapping):
        raise GensrError(f"{path}: not a checkpoint (holds a {type(obj).__name__}, expected a dict of tensors)")
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
            f"{listing(bad)}; wrappers understood: {', '.join(WRAPPER_KEYS)})"
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
            unavailable.append(f"{module_name} ({one_line(exc)})")
            continue
        try:
            found = module.detect(sd, source)
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
        f"{source}: unknown checkpoint layout ({len(sd)} tensors; first keys: {listing(list(sd), 6)}); "
        f"supported: {'; '.join(known) or 'none'}"
    )
    if unavailable:
        msg += f"; detectors that failed to import: {', '.join(unavailable)}"
    raise GensrError(msg)


def read_checkpoint_any(path: str | os.PathLike, config: ConfigSource = None) -> LoadedCheckpoint:
    """Read ``path`` (a shipped name or a file) into the gensr layout, detecting official layouts.

    ``config``: what the weights cannot tell, from the official training YAML (a path) or a dict of gensr
    config fields; it may set only the fields a detector had to assume (see :mod:`gensr.checkpoints.overrides`).
    A training checkpoint of gensr's own is refused with a pointer to the run's exported model.
    """
    from gensr.checkpoints.overrides import apply_config_overrides
    from gensr.checkpoints.shipped import resolve_model_path

    p = resolve_model_path(path)
    header = _safetensors_header_or_none(p)
    if header is not None and header.get("format") == "gensr-training-state":
        run = p.parent.parent if p.parent.name == "checkpoints" else p.parent
        raise GensrError(
            f"{p}: is a training checkpoint (for `gensr train --resume`), not a model; use the run's exported "
            f"model {run / 'models' / 'latest.safetensors'} (or {run / 'model.safetensors'} once training ends)"
        )
    if header is not None and header.get("format") == "gensr":
        ck = gensr_format.read_checkpoint(p, dtype=None)
        info = {"container": "safetensors", "wrappers": [], "prefixes": [], "dropped": []}
        loaded = LoadedCheckpoint(p, ck.arch, ck.config, "gensr", ck.state_dict, ck.meta, info)
        if config is not None:
            raise GensrError(f"{p}: a gensr checkpoint holds its whole config; --model-config is for official files")
        return loaded
    sd, info = read_state_dict(p)
    found = detect(sd, p)
    try:
        converted = found.convert(sd)
    except GensrError as exc:
        raise GensrError(f"{p}: {exc}") from None
    cfg = apply_config_overrides(found, config, p)
    info["assumed"] = {k: v for k, v in found.assumed.items() if k not in cfg.get("_overridden", ())}
    cfg.pop("_overridden", None)
    return LoadedCheckpoint(p, found.arch, cfg, found.layout, converted, {}, info)


def _safetensors_header_or_none(path: Path) -> dict[str, str] | None:
    size = path.stat().st_size
    if path.suffix.lower() != ".safetensors" and not _looks_like_safetensors(path, size):
        return None
    return gensr_format.read_header(path)


# ----------------------------------------------------------------------------------------------- strict load


def check_state_dict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """GensrError listing missing/unexpected keys, shape mismatches and non-float tensors where the model has
    float ones (a relabelled dtype) of ``sd`` against ``model`` (which may live on the meta device)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    shapes = [
        f"{k} (file {_shape(sd[k])} vs model {_shape(v)})"
        for k, v in expected.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    dtypes = [
        f"{k} ({str(sd[k].dtype).replace('torch.', '')})"
        for k, v in expected.items()
        if k in sd and v.is_floating_point() and not sd[k].is_floating_point()
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {listing(unexpected)}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es): {listing(shapes)}")
    if dtypes:
        problems.append(f"{len(dtypes)} non-float tensor(s) where the model has float weights: {listing(dtypes)}")
    if problems:
        raise GensrError(f"{source}: does not match the model: {'; '.join(problems)}")


def load_state_dict_strict(model: nn.Module, sd: dict[str, torch.Tensor], source: str = "checkpoint") -> None:
    """Copy ``sd`` into ``model`` after :func:`check_state_dict` (float tensors take the model's dtype)."""
    check_state_dict(model, sd, source)
    model.load_state_dict(sd, strict=True)


def _describe_source(ck: LoadedCheckpoint) -> str:
    return f"{ck.path} ({ck.layout} layout, {ck.arch} {_config_text(ck.config)})"


def build_on_meta(ck: LoadedCheckpoint) -> nn.Module:
    """``ck``'s model built on the meta device (no memory for weights) and checked against its tensors.

    The config is checked by its dataclass first (types and sane bounds), so neither a header that says
    ``nf: 40000`` nor thousands of phantom blocks can make gensr allocate memory for a model the file does not
    hold: the shapes are compared before any real tensor exists.
    """
    from gensr.models.registry import build_model

    try:
        with torch.device("meta"):
            model = build_model(ck.arch, ck.config)
    except GensrError as exc:
        raise GensrError(f"{ck.path}: {exc}") from None
    check_state_dict(model, ck.state_dict, _describe_source(ck))
    return model


def _check_memory(model: nn.Module, source: Path) -> None:
    """GensrError when the model's weights would not fit in half the available memory."""
    from gensr.system import available_memory

    need = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    free = available_memory()
    if free is not None and need > free // 2:
        raise GensrError(
            f"{source}: the model needs {need / 2**30:.1f} GiB for its weights; only {free / 2**30:.1f} GiB is free"
        )


def build_and_load(ck: LoadedCheckpoint) -> nn.Module:
    """A ``ck.arch`` model built from ``ck.config`` with ``ck.state_dict`` loaded strictly (checked first)."""
    from gensr.models.registry import build_model

    gensr_format.check_tensor_values(ck.state_dict, ck.path)
    meta = build_on_meta(ck)
    _check_memory(meta, ck.path)
    held = set(meta.state_dict())
    tensors = [n for n, _ in meta.named_parameters()] + [n for n, _ in meta.named_buffers()]
    if all(n in held for n in tensors):
        # every tensor comes from the file: allocate without the random initialisation that loading would
        # overwrite anyway (~0.3 s of CPU for the 23-block RRDBNet). torch.empty, not
        # Module.to_empty: empty_like of a meta tensor runs Python decompositions that import sympy (~1 s).
        model = meta._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))
    else:  # a non-persistent buffer: only the constructor knows its value
        model = build_model(ck.arch, ck.config)
    model.load_state_dict(ck.state_dict, strict=True)
    return model


def load_model(
    name_or_path: str | os.PathLike, device: str | torch.device = "cpu", config: ConfigSource = None
) -> nn.Module:
    """A model in eval mode from a shipped name, a gensr safetensors file or a supported official layout.

    ``config``: for official files, the settings the weights cannot tell (the official training YAML's path,
    or a dict of gensr config fields), e.g. which RRDB blocks an SRFlow model taps.
    """
    model = build_and_load(read_checkpoint_any(name_or_path, config))
    return model.to(device).eval()


# ----------------------------------------------------------------------------------------------- describe


def describe(path: str | os.PathLike, config: ConfigSource = None) -> dict[str, Any]:
    """What ``gensr info`` shows: layout, arch, config (and derived values), parameter count, dtype, wrappers.

    The keys are checked against the model (built on the meta device, no weights allocated), so a
    checkpoint that would not load raises the same GensrError as :func:`load_model`.
    """
    from gensr.models.registry import model_config_dict

    ck = read_checkpoint_any(path, config)
    model = build_on_meta(ck)

    hyper = model_config_dict(model)  # every field, in the config class's order
    cfg = getattr(model, "config", None)
    for derived in ("unshuffle",):
        if hasattr(cfg, derived) and derived not in hyper:
            hyper[derived] = getattr(cfg, derived)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in ck.state_dict.values() if t.is_floating_point()})
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
    if ck.info.get("assumed"):
        out["assumed"] = dict(ck.info["assumed"])
    if ck.layout == "gensr":
        out["meta"] = ck.meta
    return out


# ----------------------------------------------------------------------------------------------- helpers


def _shape(t: torch.Tensor) -> str:
    return "x".join(str(s) for s in t.shape) or "scalar"


def _config_text(config: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in config.items())
