"""Finding, reading and checking weight files in torchvision's ``features.N.weight/bias`` layout (VGG, AlexNet).

Shared by :mod:`gensr.nn.vgg` and :mod:`gensr.nn.alexnet` (finding and reading files also by the Inception network
and LPIPS): a weights file is named by an argument or else an environment variable; it is a ``.pth`` (read with
``torch.load(weights_only=True)``, never unpickled code) or a ``.safetensors`` holding a flat state dict of
tensors; ``classifier.*`` keys of a whole torchvision model are known and ignored by the checks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch

from gensr.errors import GensrError

IGNORED_PREFIXES: tuple[str, ...] = ("classifier.",)


def natural_key(key: str) -> tuple:
    """Sort key that orders ``features.10`` after ``features.9``."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in key.split("."))


def short_list(items: list[str], n: int = 6) -> str:
    """The first ``n`` items joined by commas, with a count of the rest."""
    return ", ".join(items[:n]) + (f", ... ({len(items) - n} more)" if len(items) > n else "")


def weights_source(value: str | os.PathLike | None, env: str, arg: str) -> tuple[Path | None, str]:
    """(the weights path, where it came from): ``value`` (labelled ``arg``), or when it is None or empty the
    environment variable ``env`` (labelled ``env``); the path is None when neither is set, ``~`` expanded."""
    if value is None or str(value) == "":
        value = os.environ.get(env) or None
        return (None if value is None else Path(value).expanduser()), env
    return Path(value).expanduser(), arg


def weights_file(value: str | os.PathLike | None, env: str, arg: str, what: str, how: str) -> Path:
    """The existing weights file named by ``value`` or ``$env`` (see :func:`weights_source`); GensrError ``how``
    (how to provide the file) when neither is set, or naming the path and ``what`` when it is not a file."""
    path, source = weights_source(value, env, arg)
    if path is None:
        raise GensrError(how)
    if not path.is_file():
        raise GensrError(f"{path}: {what} not found (from {source})")
    return path


def read_state_dict(path: Path, what: str, layout: str) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` from a ``.pth`` or ``.safetensors`` file; GensrError naming ``what`` otherwise."""
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file
        msg = " ".join(str(exc).split())[:200]
        raise GensrError(f"{path}: not a readable {what} file ({type(exc).__name__}: {msg})") from None
    if not isinstance(sd, Mapping) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise GensrError(f"{path}: expected a state dict of tensors ({layout})")
    return dict(sd)


def conv_param_shapes(convs: Mapping[int, tuple[int, int, int]], prefix: str = "features.") -> dict[str, tuple]:
    """``{prefix}{i}.weight/bias`` shapes for conv index ``i`` -> (in_ch, out_ch, kernel)."""
    shapes: dict[str, tuple[int, ...]] = {}
    for i, (cin, cout, k) in convs.items():
        shapes[f"{prefix}{i}.weight"] = (cout, cin, k, k)
        shapes[f"{prefix}{i}.bias"] = (cout,)
    return shapes


def key_problems(
    keys: set[str], expected: Mapping[str, tuple], ignored: tuple[str, ...] = IGNORED_PREFIXES
) -> list[str]:
    """``["missing N key(s): ...", "unexpected M key(s): ..."]`` (empty when the key sets agree)."""
    unexpected = sorted((k for k in keys - set(expected) if not k.startswith(ignored)), key=natural_key)
    missing = sorted(set(expected) - keys, key=natural_key)
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} key(s): {short_list(missing)}")
    if unexpected:
        parts.append(f"unexpected {len(unexpected)} key(s): {short_list(unexpected)}")
    return parts


def shape_problems(sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple]) -> list[str]:
    """``"key (got) != (expected)"`` for every expected key present in ``sd`` with another shape."""
    return [
        f"{k} {tuple(sd[k].shape)} != {shape}"
        for k, shape in expected.items()
        if k in sd and tuple(sd[k].shape) != shape
    ]


def check_features_state_dict(
    sd: Mapping[str, torch.Tensor], expected: Mapping[str, tuple], where: str, arch: str, hint: str = ""
) -> dict[str, torch.Tensor]:
    """The ``expected`` tensors of ``sd`` in natural order; GensrError listing missing/unexpected/misshapen keys.

    ``arch`` names the network in the message ("VGG19"); ``hint`` is appended to a key-set error.
    """
    parts = key_problems(set(sd), expected)
    if parts:
        raise GensrError(f"{where}: not a torchvision {arch} state dict: {'; '.join(parts)}{hint}")
    bad = shape_problems(sd, expected)
    if bad:
        raise GensrError(f"{where}: wrong {arch} tensor shape(s): {short_list(bad)}")
    return {k: sd[k] for k in sorted(expected, key=natural_key)}
