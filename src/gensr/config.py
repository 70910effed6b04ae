"""Dataclass configs built from plain dicts: unknown keys are errors, nested dataclasses are built too."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, TypeVar

from gensr.errors import GensrError

T = TypeVar("T")


def from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; raise GensrError naming ``where`` on unknown keys or bad types."""
    data = dict(data or {})
    if not isinstance(data, dict):
        raise GensrError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise GensrError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        hint = hints.get(name)
        if dataclasses.is_dataclass(hint) and isinstance(value, dict):
            value = from_dict(hint, value, f"{where}.{name}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise GensrError(f"{where}: {exc}") from None


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain (JSON/YAML-ready) dict."""
    return dataclasses.asdict(obj)
