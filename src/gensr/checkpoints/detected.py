"""What a layout detector reports about an official checkpoint (shared by the loader and every detector)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


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
