"""The import graph of ``src/gensr`` follows the layers of docs/architecture.md (read with ``ast``, so imports
inside functions count too): a module imports only from its own layer or lower ones, and ``engine/`` knows no
task, model, dataset, metric or checkpoint."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gensr"

# lowest first; a top-level module or subpackage of gensr -> its layer
LAYERS: list[tuple[str, ...]] = [
    ("errors", "imresize", "config", "fileutil", "system"),
    ("io", "nn", "metrics"),
    ("losses", "models", "data"),
    ("checkpoints",),
    ("engine",),
    ("tasks", "inference"),
    ("reports",),
    ("cli", "demo"),
]
RANK = {name: i for i, names in enumerate(LAYERS) for name in names}
PUBLIC_FACE = {"__init__", "__main__"}  # gensr/__init__.py and __main__.py may reach any layer
ENGINE_MAY_IMPORT = {"errors", "imresize", "config", "fileutil", "system", "engine"}
# same-layer imports that are still wrong: a network does not know its training objective
FORBIDDEN = {("models", "losses")}


def _unit(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _gensr_imports(path: Path) -> set[str]:
    """The gensr units (first component after ``gensr.``) that ``path`` imports, at any depth."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: resolve against this module's package
                base = path.relative_to(SRC).parts[: -node.level]
                names = [".".join(["gensr", *base, *([node.module] if node.module else [])])]
            else:
                names = [node.module or ""]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "gensr" and len(parts) > 1:
                found.add(parts[1])
    return found


MODULES = sorted(p for p in SRC.rglob("*.py"))


def test_every_unit_has_a_layer():
    units = {_unit(p) for p in MODULES} - PUBLIC_FACE
    assert units <= set(RANK), f"add {sorted(units - set(RANK))} to LAYERS (and to docs/architecture.md)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_upward_imports(path):
    unit = _unit(path)
    if unit in PUBLIC_FACE:
        return
    imports = _gensr_imports(path) - {unit}
    upward = sorted(u for u in imports if RANK.get(u, -1) > RANK[unit])
    assert not upward, f"{path.relative_to(SRC)} (layer {RANK[unit]}) imports higher layer(s) {upward}"
    wrong = sorted(u for u in imports if (unit, u) in FORBIDDEN)
    assert not wrong, f"{path.relative_to(SRC)} must not import {wrong}"
    if unit == "engine":
        assert imports <= ENGINE_MAY_IMPORT, f"engine/ imports {sorted(imports - ENGINE_MAY_IMPORT)}"
