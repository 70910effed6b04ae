"""Atomic file writes: write to a temporary file in the target folder, then rename over the target."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from gensr.errors import GensrError


def ensure_writable_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that files can be written in it; GensrError otherwise."""
    d = Path(directory)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GensrError(f"{d}: cannot create output folder ({exc.strerror or exc})") from None
    if not d.is_dir():
        raise GensrError(f"{d}: output path exists and is not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise GensrError(f"{d}: output folder is not writable")
    return d


def output_file(path: str | os.PathLike, overwrite: bool, extensions: tuple[str, ...], what: str) -> Path:
    """``path`` as the single output file of a command: its extension must be one of ``extensions`` (lower
    case, with the dot; ``what`` names them in the error) and it must not exist unless ``overwrite``."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in extensions:
        raise GensrError(f"{out}: the output needs {what}")
    if out.exists() and not overwrite:
        raise GensrError(f"{out}: output exists (use --overwrite to replace it)")
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``, on error delete it.

    The temporary name keeps ``path``'s suffix, so writers that pick a format by extension still work.
    """
    target = Path(path)
    ensure_writable_dir(target.parent if str(target.parent) else ".")
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=f".tmp{target.suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise
