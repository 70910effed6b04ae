"""gensr: generative image super-resolution and synthesis (ESRGAN, relativistic GANs, BigGAN, SRFlow).

The public API is imported lazily, so ``import gensr`` stays cheap (no torch import):

* :func:`gensr.upscale` -- super-resolve an image tensor or file (:mod:`gensr.inference.upscale`)
* :func:`gensr.sample_sr` -- diverse SR samples from an SRFlow model (:mod:`gensr.inference.flow_sampling`)
* :func:`gensr.generate` -- class-conditional images from a BigGAN generator (:mod:`gensr.inference.generation`)
* :func:`gensr.load_model` -- a model from a shipped name or any supported checkpoint file
* :func:`gensr.imresize` -- MATLAB-exact bicubic resize (numpy and torch)
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

# public name -> (module, attribute); imported on first access
_LAZY: dict[str, tuple[str, str]] = {
    "upscale": ("gensr.inference.upscale", "upscale"),
    "Upscaler": ("gensr.inference.upscale", "Upscaler"),
    "sample_sr": ("gensr.inference.flow_sampling", "sample_sr"),
    "generate": ("gensr.inference.generation", "generate"),
    "load_model": ("gensr.checkpoints.loader", "load_model"),
    "imresize": ("gensr.imresize", "imresize"),
    "GensrError": ("gensr.errors", "GensrError"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'gensr' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module_name), attr)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    """Only the public API (plus the submodules a user may import)."""
    return sorted(__all__)


class _Package(types.ModuleType):
    """Keeps ``gensr.imresize`` the function: importing the submodule ``gensr.imresize`` would otherwise
    rebind the package attribute to the module. (So write ``from gensr.imresize import ...`` to reach the
    module's other names, not ``import gensr.imresize as m``.)"""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
