"""Writing files safely: one output policy for every command, checked writes, atomic renames.

The policy (DESIGN.md): an existing output is refused unless the command was given ``--overwrite``, and no
output may ever replace an input of the same invocation. :class:`OutputPolicy` holds a command's inputs and
claims each output before anything is written; :func:`write_bytes_atomic` writes the encoded bytes to a hidden
temporary file in the target folder with checked writes (a full disk is an error, never a truncated file),
checks the written size, then moves it into place: without ``overwrite`` by a hard link that fails if the target
appeared meanwhile (so two concurrent runs cannot replace each other's output), with ``overwrite`` by
``os.replace``. Temporary files carry the writing process's PID (``.NAME.PID.RANDOM.gensr-tmp``); ones left by a
process that no longer runs (killed with SIGKILL) are removed the next time gensr writes into that folder.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from gensr.errors import GensrError

TMP_SUFFIX = ".gensr-tmp"
_cleaned_dirs: set[str] = set()


def _resolved(path: Path) -> Path:
    """``path`` with symlinks resolved; GensrError for a symlink loop."""
    try:
        return path.expanduser().resolve()
    except (RuntimeError, OSError) as exc:  # Python raises RuntimeError ("Symlink loop") or ELOOP
        raise GensrError(f"{path}: cannot be used as an output (symlink loop: {exc})") from None


def ensure_writable_dir(directory: str | os.PathLike) -> Path:
    """Create ``directory`` if needed and check that files can be written in it; GensrError otherwise."""
    d = Path(directory)
    blocker = _non_folder_ancestor(d)
    if blocker is not None:
        raise GensrError(f"{d}: cannot create output folder ({blocker} is a file, not a folder)")
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GensrError(f"{d}: cannot create output folder ({exc.strerror or exc})") from None
    if not d.is_dir():
        raise GensrError(f"{d}: output path exists and is not a folder")
    if not os.access(d, os.W_OK | os.X_OK):
        raise GensrError(f"{d}: output folder is not writable")
    return d


def _non_folder_ancestor(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is not a folder."""
    for d in (folder, *folder.parents):
        if d.exists():
            return None if d.is_dir() else d
    return None


class OutputPolicy:
    """The outputs of one command invocation, checked against its inputs before anything is written.

    ``inputs``: every file the command reads (images, checkpoints, GT files, ...). :meth:`claim` refuses an
    output that is a folder, that would replace an input, that another output of the same run already claimed,
    or that exists while ``overwrite`` is False. Claim every output first, then write.
    """

    def __init__(self, inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self._inputs: dict[Path, Path] = {}
        self._claimed: dict[Path, str] = {}
        self.add_inputs(inputs)

    def add_inputs(self, inputs: Iterable[str | os.PathLike]) -> None:
        for p in inputs:
            path = Path(p)
            self._inputs[_resolved(path)] = path

    def claim(self, target: str | os.PathLike, source: str | os.PathLike | None = None) -> Path:
        """Check ``target`` as an output (of ``source``, named in errors); returns it as a Path."""
        out = Path(target).expanduser()
        key = _resolved(out)
        if out.is_dir():
            raise GensrError(f"{out}: is a folder, expected an output file name")
        blocker = _non_folder_ancestor(out.parent)
        if blocker is not None:
            raise GensrError(f"{out}: cannot write here ({blocker} is a file, not a folder)")
        if key in self._inputs:
            what = f"{source}: its output {out}" if source is not None else f"{out}: the output"
            raise GensrError(f"{what} would replace the input {self._inputs[key]} (choose another output name)")
        if key in self._claimed:
            raise GensrError(f"{out}: would be written twice (for {self._claimed[key]} and for {source or out})")
        if out.exists() and not self.overwrite:
            raise GensrError(f"{out}: output exists (use --overwrite to replace it)")
        self._claimed[key] = str(source or out)
        return out

    def write_bytes(self, target: str | os.PathLike, data: bytes) -> Path:
        """Write ``data`` to a claimed ``target`` (claims it now if it was not)."""
        out = Path(target).expanduser()
        if _resolved(out) not in self._claimed:
            self.claim(out)
        return write_bytes_atomic(out, data, overwrite=self.overwrite)


def output_file(path: str | os.PathLike, overwrite: bool, extensions: tuple[str, ...], what: str) -> Path:
    """``path`` as the single output file of a command: its extension must be one of ``extensions`` (lower
    case, with the dot; ``what`` names them in the error) and it must not exist unless ``overwrite``."""
    out = Path(path).expanduser()
    if out.suffix.lower() not in extensions:
        raise GensrError(f"{out}: the output needs {what}")
    return OutputPolicy(overwrite=overwrite).claim(out)


# ----------------------------------------------------------------------------------------------- writing


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, owned by someone else
        return True
    return True


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete gensr temporary files in ``folder`` whose writing process no longer runs; returns them."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        name = e.name
        if not (name.startswith(".") and name.endswith(TMP_SUFFIX)):
            continue
        parts = name[: -len(TMP_SUFFIX)].rsplit(".", 2)
        if len(parts) != 3 or not parts[1].isdigit() or _pid_alive(int(parts[1])):
            continue
        with contextlib.suppress(OSError):
            os.unlink(e.path)
            removed.append(Path(e.path))
    return removed


def temp_path_for(target: Path) -> Path:
    """A fresh hidden temporary name beside ``target`` tagged with this process's PID."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:  # pragma: no cover - os.write raises on errors; a 0-byte write would loop forever
            raise OSError(errno.EIO, "short write")
        view = view[n:]


def _move_into_place(tmp: Path, target: Path, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # fails with EEXIST if the target appeared meanwhile: never replaces
    except FileExistsError:
        raise GensrError(f"{target}: output exists (written meanwhile by another process?)") from None
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK):
            raise
        if target.exists():  # a filesystem without hard links: check, then rename (a small race remains)
            raise GensrError(f"{target}: output exists (written meanwhile by another process?)") from None
        os.replace(tmp, target)
        return
    tmp.unlink()


@contextlib.contextmanager
def _temp_beside(target: Path) -> Iterator[Path]:
    """A fresh temporary path beside ``target`` (:func:`temp_path_for`) for a block that fills it and moves it into
    place; an OSError in the block becomes one GensrError naming ``target``, and the temporary file is removed
    whatever happens (after a successful move there is nothing left to remove)."""
    tmp = temp_path_for(target)
    try:
        yield tmp
    except OSError as exc:
        raise GensrError(f"{target}: cannot write ({exc.strerror or exc})") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_bytes_atomic(path: str | os.PathLike, data: bytes, *, overwrite: bool) -> Path:
    """Write ``data`` to ``path`` through a checked temporary file; never leaves a partial file.

    A full disk or any short write is a GensrError naming ``path``; without ``overwrite`` an existing
    ``path`` is never replaced, even one created by another process during the write.
    """
    target = Path(path).expanduser()
    folder = ensure_writable_dir(target.parent if str(target.parent) else ".")
    key = str(folder.resolve())
    if key not in _cleaned_dirs:
        _cleaned_dirs.add(key)
        remove_stale_temp_files(folder)
    if target.is_dir():
        raise GensrError(f"{target}: is a folder, expected an output file name")
    if not overwrite and target.exists():
        raise GensrError(f"{target}: output exists (use --overwrite to replace it)")
    with _temp_beside(target) as tmp:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        written = os.stat(tmp).st_size
        if written != len(data):
            raise OSError(errno.EIO, f"wrote {written} of {len(data)} bytes")
        _move_into_place(tmp, target, overwrite)
    return target


def write_json_atomic(path: str | os.PathLike, doc: Any, *, overwrite: bool) -> Path:
    """``doc`` as indented UTF-8 JSON (NaN/inf are not allowed: pass None) via :func:`write_bytes_atomic`."""
    try:
        text = json.dumps(doc, indent=2, allow_nan=False) + "\n"
    except ValueError as exc:
        raise GensrError(f"{path}: cannot write JSON ({exc})") from None
    return write_bytes_atomic(path, text.encode("utf-8"), overwrite=overwrite)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` for writers that need a file name; on success move it to
    ``path`` (see :func:`write_bytes_atomic` for ``overwrite``), on error delete it.

    Prefer :func:`write_bytes_atomic`: a writer given a path may not detect a short write itself. The
    temporary file here must be complete and non-empty when the block ends.
    """
    target = Path(path).expanduser()
    ensure_writable_dir(target.parent if str(target.parent) else ".")
    with _temp_beside(target) as tmp:
        yield tmp
        if not tmp.is_file() or tmp.stat().st_size == 0:
            raise GensrError(f"{target}: cannot write (the writer produced no data)")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        _move_into_place(tmp, target, overwrite)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
