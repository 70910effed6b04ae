"""What a layout detector reports about an official checkpoint, and the key renaming the detectors share (used by
the loader and every detector)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from gensr.errors import GensrError


@dataclass
class Detected:
    """The gensr architecture and config of a recognised state dict, and how to rename its keys.

    ``assumed``: config fields the weights cannot tell (e.g. which RRDB blocks an SRFlow taps, a U-Net
    discriminator's skip connections) and that were set to the released models' values; an official training
    config (``load_model(..., config=...)``) may override exactly these.
    """

    arch: str
    layout: str
    config: dict[str, Any]
    convert: Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
    assumed: dict[str, str] = field(default_factory=dict)  # field -> why it was assumed


def rename_keys(sd: dict[str, torch.Tensor], rename: Callable[[str], str]) -> dict[str, torch.Tensor]:
    """``sd`` with ``rename`` applied to every key (values and order kept); two keys landing on one name is a
    GensrError (mixed layouts), never a silent overwrite."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        new = rename(key)
        if new in out:
            raise GensrError(f"two checkpoint keys map to {new!r} (mixed layouts?), one of them {key!r}")
        out[new] = value
    return out
