"""Training recipes. A task builds its networks, losses, optimisers and data and defines one training step.

Tasks are listed as data and imported on demand. ``task.kind`` in a run config names one of :data:`TASKS`, or a
task class of your own as ``package.module:ClassName`` (imported from the Python path; the class subclasses
:class:`gensr.tasks.base.Task`).
"""

from __future__ import annotations

import importlib

TASKS: dict[str, tuple[str, str]] = {
    "psnr": ("gensr.tasks.psnr", "PSNRTask"),
    "esrgan": ("gensr.tasks.esrgan", "ESRGANTask"),
    "srflow": ("gensr.tasks.srflow", "SRFlowTask"),
    "biggan": ("gensr.tasks.biggan", "BigGANTask"),
    "classifier": ("gensr.tasks.classifier", "ClassifierTask"),
}


def get_task_class(kind: str) -> type:
    """The task class for ``kind``; GensrError naming the known kinds otherwise."""
    from gensr.errors import GensrError
    from gensr.tasks.base import Task

    if kind in TASKS:
        module_name, cls_name = TASKS[kind]
    elif ":" in kind:
        module_name, _, cls_name = kind.partition(":")
    else:
        raise GensrError(f"task.kind: unknown task {kind!r}; known: {', '.join(TASKS)} (or module:Class)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise GensrError(f"task.kind {kind!r}: cannot import {module_name} ({exc})") from None
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Task)):
        raise GensrError(f"task.kind {kind!r}: {module_name} has no Task subclass named {cls_name}")
    return cls
