"""The single door to every network architecture: build by name, name a built network (``arch_of``).

Loading checkpoints is the job of :mod:`gensr.checkpoints` (``gensr.load_model``), one layer up.

Architectures are listed here as data (module path, config class, model class) and imported on demand,
so one broken optional import never breaks the others.
"""

from __future__ import annotations

import importlib
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
    "biggan_generator": ("gensr.models.biggan", "BigGANConfig", "BigGANGenerator"),
    "biggan_discriminator": ("gensr.models.biggan", "BigGANConfig", "BigGANDiscriminator"),
    "biggan_deep_generator": ("gensr.models.biggan_deep", "BigGANDeepConfig", "BigGANDeepGenerator"),
    "cifar_classifier": ("gensr.models.classifier", "ClassifierConfig", "CifarResNet"),
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


def arithmetic_fields(arch: str) -> tuple[str, ...]:
    """The config fields of ``arch`` that do not shape its weights (its config class's ``ARITHMETIC_FIELDS``)."""
    return tuple(getattr(_lookup(arch)[0], "ARITHMETIC_FIELDS", ()))


def weight_config(model: nn.Module) -> dict[str, Any]:
    """``model``'s config dict without the fields that do not shape its weights: two models whose weight configs
    are equal can load each other's state dicts."""
    skip = set(getattr(model.config, "ARITHMETIC_FIELDS", ()))
    return {k: v for k, v in model_config_dict(model).items() if k not in skip}


def arch_of(model: nn.Module) -> str:
    """The registry name of ``model``'s class."""
    for arch, (module_name, _, model_name) in ARCHS.items():
        cls = type(model)
        if cls.__module__ == module_name and cls.__name__ == model_name:
            return arch
    raise GensrError(f"{type(model).__name__} is not a registered architecture")
