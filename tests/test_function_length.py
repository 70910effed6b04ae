"""No function in ``src/gensr`` is longer than 80 lines (read with ``ast``), except inside the PNG/TIFF codecs,
whose chunk and tag layouts read best as one piece."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "gensr"
MAX_LINES = 80
EXEMPT = {"io/png16.py", "io/tiff16.py"}


def long_functions(path: Path, root: Path = SRC, limit: int = MAX_LINES) -> list[str]:
    """``path:line name (n lines)`` (path relative to ``root``) of every function or method in ``path`` longer than
    ``limit`` lines."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            n = node.end_lineno - node.lineno + 1
            if n > limit:
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.name} ({n} lines)")
    return found


def test_long_functions_detects_a_long_one(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n" + "    x = 1\n" * 80 + "\n\nclass C:\n    def g(self):\n" + "        y = 2\n" * 79 + "")
    assert long_functions(f, tmp_path) == ["m.py:1 f (81 lines)"]


def test_no_function_over_80_lines():
    too_long = [
        entry
        for path in sorted(SRC.rglob("*.py"))
        if str(path.relative_to(SRC)) not in EXEMPT
        for entry in long_functions(path)
    ]
    assert not too_long, "functions over 80 lines:\n" + "\n".join(too_long)
