"""The models shipped inside the package, by name, and the resolution of a name or path to a file.

Torch-free, so that ``gensr upscale --help`` can list the names without importing torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from gensr.errors import GensrError

# shipped model name -> file name inside gensr/assets/models
SHIPPED: dict[str, str] = {
    "default": "rrdb_psnr_x4.safetensors",
    "rrdb_psnr_x4": "rrdb_psnr_x4.safetensors",
    "esrgan": "esrgan_x4.safetensors",
    "srflow": "srflow_x4.safetensors",
    "cifar_classifier": "cifar_classifier.safetensors",
    "biggan_cifar": "biggan_cifar.safetensors",
}

# shipped model name -> what it is (the ``kind`` its file declares): commands list only the names they accept
SHIPPED_KINDS: dict[str, str] = {
    "default": "sr",
    "rrdb_psnr_x4": "sr",
    "esrgan": "sr",
    "srflow": "flow-sr",
    "cifar_classifier": "classifier",
    "biggan_cifar": "generator",
}


def shipped_names(*kinds: str) -> list[str]:
    """Names of the shipped models of the given kinds ('sr', 'flow-sr', 'generator', 'classifier'), in order."""
    return [name for name in SHIPPED if SHIPPED_KINDS[name] in kinds]


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
