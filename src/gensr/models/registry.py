"""The single door to every network: build by architecture name, load any supported checkpoint.

Architectures are listed here as data (module path, config class, model class) and imported on demand,
so one broken optional import never breaks the others.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

from torch import nn

from gensr.config import from_dict, to_dict
from gensr.errors import GensrError

# arch name -> (module, config class, model class)
ARCHS: dict[str, tuple[str, str, str]] = {
    "rrdbnet": ("gensr.models.rrdbnet", "RRDBNetConfig", "RRDBNet"),
    "srflow": ("gensr.models.srflow", "SRFlowConfig", "SRFlowNet"),
    "vgg_discriminator": ("gensr.models.discriminators", "VGGDiscriminatorConfig", "VGGStyleDiscriminator"),
    "unet_discriminator": ("gensr.models.discriminators", "UNetDiscriminatorConfig", "UNetDiscriminatorSN"),
}

# shipped model name -> file name inside gensr/assets/models
SHIPPED: dict[str, str] = {
    "default": "rrdb_psnr_x4.safetensors",
    "rrdb_psnr_x4": "rrdb_psnr_x4.safetensors",
    "esrgan": "esrgan_x4.safetensors",
    "srflow": "srflow_x4.safetensors",
}


def _lookup(arch: str) -> tuple[type, type]:
    if arch not in ARCHS:
        raise GensrError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHS))}")
    module_name, config_name, model_name = ARCHS[arch]
    module = importlib.import_module(module_name)
    return getattr(module, config_name), getattr(module, model_name)


def build_model(arch: str, config: dict[str, Any] | None = None) -> nn.Module:
    """A freshly initialised ``arch`` network from a config dict (unknown keys are errors)."""
    config_cls, model_cls = _lookup(arch)
    return model_cls(from_dict(config_cls, config or {}, where=f"{arch} config"))


def model_config_dict(model: nn.Module) -> dict[str, Any]:
    """The config dict that rebuilds ``model`` with :func:`build_model`."""
    return to_dict(model.config)


def arch_of(model: nn.Module) -> str:
    """The registry name of ``model``'s class."""
    for arch, (module_name, _, model_name) in ARCHS.items():
        cls = type(model)
        if cls.__module__ == module_name and cls.__name__ == model_name:
            return arch
    raise GensrError(f"{type(model).__name__} is not a registered architecture")


def shipped_dir() -> Path:
    """Folder of the models shipped inside the package."""
    return Path(__file__).resolve().parent.parent / "assets" / "models"


def resolve_model_path(name_or_path: str | os.PathLike) -> Path:
    """A shipped model name ('default', 'esrgan', 'srflow', ...) or a file path -> an existing file path."""
    s = str(name_or_path)
    if s in SHIPPED:
        path = shipped_dir() / SHIPPED[s]
        if not path.is_file():
            raise GensrError(f"shipped model {s!r} is not installed ({path} missing)")
        return path
    path = Path(s).expanduser()
    if not path.exists():
        known = ", ".join(sorted(SHIPPED))
        raise GensrError(f"{s}: no such checkpoint file (shipped model names: {known})")
    if path.is_dir():
        raise GensrError(f"{s}: is a folder, expected a checkpoint file")
    return path


def load_model(name_or_path: str | os.PathLike, device: str = "cpu") -> nn.Module:
    """A model in eval mode from a shipped name or any supported checkpoint file, loaded strictly.

    Delegates to :func:`gensr.checkpoints.loader.load_model` (a gensr file or a detected official layout).
    """
    from gensr.checkpoints.loader import load_model as _load

    return _load(name_or_path, device=device)
