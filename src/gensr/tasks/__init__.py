"""Training recipes. A task builds its networks, losses and optimisers and defines one training step.

Tasks are listed as data and imported on demand.
"""

from __future__ import annotations

import importlib

TASKS: dict[str, tuple[str, str]] = {
    "psnr": ("gensr.tasks.psnr", "PSNRTask"),
    "esrgan": ("gensr.tasks.esrgan", "ESRGANTask"),
    "srflow": ("gensr.tasks.srflow", "SRFlowTask"),
}


def get_task_class(name: str) -> type:
    from gensr.errors import GensrError

    if name not in TASKS:
        raise GensrError(f"unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    module, cls = TASKS[name]
    return getattr(importlib.import_module(module), cls)
