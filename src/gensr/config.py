"""Dataclass configs built from plain dicts: unknown keys and values of the wrong type are errors.

:func:`from_dict` checks every value against the field's type hint before the dataclass is built: ``int``
(a whole number; ``1e5`` from YAML is accepted as 100000, ``2.5`` and ``True`` are not), ``float`` (any real
number), ``bool``, ``str``, ``list[...]`` / ``tuple[...]`` (element types checked), ``dict[str, ...]``,
``X | None`` and nested dataclasses (a mapping, checked recursively). Ranges are checked by each dataclass's
``__post_init__`` with the helpers at the end of this module (:func:`check_bounds`, :func:`check_positive`,
:func:`check_at_least`, :func:`check_finite`); a ``ValueError`` there becomes a GensrError naming ``where``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from gensr.errors import GensrError, one_line

T = TypeVar("T")
_NONE = type(None)


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; GensrError naming the key path (``where`` is the path of ``data``
    itself, e.g. ``task.data``; empty at the top) on unknown keys, bad types or bad values."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise GensrError(_at(where, f"expected a mapping of settings, got {_describe(data)}"))
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(str(k) for k in set(data) - set(fields))
    if unknown:
        raise GensrError(_at(where, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(fields))}"))
    hints = typing.get_type_hints(cls)
    kwargs = {name: check_value(value, hints.get(name, Any), _join(where, name)) for name, value in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise GensrError(_at(where, str(exc))) from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _at(where: str, message: str) -> str:
    return f"{where}: {message}" if where else message


def check_value(value: Any, hint: Any, where: str) -> Any:
    """``value`` checked against the type ``hint`` (and converted: int -> float, integral float -> int)."""
    if hint is Any or hint is object:
        return value
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        options = [a for a in args if a is not _NONE]
        errors = []
        for option in options:
            try:
                return check_value(value, option, where)
            except GensrError as exc:
                errors.append(str(exc))
        if len(options) == 1:
            raise GensrError(errors[0])
        raise GensrError(f"{where}: expected {' or '.join(_name(o) for o in options)}, got {_describe(value)}")
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (list, tuple) or hint in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise GensrError(f"{where}: expected a list, got {_describe(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise GensrError(f"{where}: expected a list of {len(args)} values, got {len(value)}")
            return tuple(check_value(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True)))
        item = args[0] if args else Any
        items = [check_value(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or hint is tuple) else items
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise GensrError(f"{where}: expected a mapping, got {_describe(value)}")
        item = args[1] if len(args) == 2 else Any
        return {k: check_value(v, item, _join(where, str(k))) for k, v in value.items()}
    return _check_scalar(value, hint, where)


def _check_scalar(value: Any, hint: Any, where: str) -> Any:
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise GensrError(f"{where}: expected true or false, got {_describe(value)}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise GensrError(f"{where}: expected a whole number, got {_describe(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise GensrError(f"{where}: expected a number, got {_describe(value)}")
    if hint is str:
        if isinstance(value, str):
            return value
        raise GensrError(f"{where}: expected a string, got {_describe(value)}")
    return value  # other annotations (classes, Literal, ...) are left to the dataclass


def _name(hint: Any) -> str:
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    names = {int: "a whole number", float: "a number", bool: "true/false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _describe(value: Any) -> str:
    text = repr(value)
    if len(text) > 40:
        text = text[:37] + "..."
    return f"{text} ({type(value).__name__})"


def to_dict(obj: Any) -> dict[str, Any]:
    """A dataclass as a plain (JSON/YAML-ready) dict."""
    return dataclasses.asdict(obj)


def check_bounds(cfg: Any, bounds: dict[str, tuple[int, int]]) -> None:
    """ValueError when an integer field of ``cfg`` lies outside its ``(low, high)`` bound.

    Model configs call this in ``__post_init__``: a checkpoint header (or a config file) can then never ask
    gensr to build a network of absurd size (``nf: 40000``, a million blocks) before its tensors are checked.
    """
    for name, (low, high) in bounds.items():
        value = getattr(cfg, name)
        if value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")


def check_positive(cfg: Any, *names: str) -> None:
    """ValueError unless each field ``names`` of ``cfg`` is an integer >= 1 (``True`` is not an integer here)."""
    for name in names:
        check_positive_value(name, getattr(cfg, name))


def check_positive_value(name: str, value: Any) -> None:
    """ValueError unless ``value`` is an integer >= 1; the message names ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_at_least(name: str, value: Any, minimum: int = 1) -> None:
    """ValueError when ``value`` (already type-checked by :func:`from_dict`) is below ``minimum``."""
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")


def check_finite(
    name: str, value: float, low: float | None = None, high: float | None = None, open_low: bool = False
) -> None:
    """ValueError unless ``value`` is finite and within ``[low, high]`` (``(low, high]`` with ``open_low``)."""
    if (
        not math.isfinite(value)
        or (low is not None and (value <= low if open_low else value < low))
        or (high is not None and value > high)
    ):
        lo = "" if low is None else (f"> {low:g}" if open_low else f">= {low:g}")
        hi = "" if high is None else f"<= {high:g}"
        raise ValueError(f"{name} must be a finite number {' and '.join(x for x in (lo, hi) if x)}, got {value}")


def read_yaml_mapping(path: Path, what: str, not_mapping: str) -> dict[str, Any]:
    """The top-level mapping of the YAML file ``path`` (an empty file is ``{}``); a GensrError naming the file
    when it does not exist (``{what} file not found``), is not valid YAML, or holds no mapping (``not_mapping``)."""
    import yaml

    if not path.is_file():
        raise GensrError(f"{path}: {what} file not found")
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise GensrError(f"{path}: invalid YAML ({one_line(exc, 160)})") from None
    if not isinstance(tree, dict):
        raise GensrError(f"{path}: {not_mapping}")
    return tree
