"""A training run's folder: refused for reuse without ``--resume`` or ``--overwrite``, locked while a run lives.

Layout: ``config.yaml`` (the resolved config), ``config.original.yaml``, ``log.jsonl``, ``tb/`` (TensorBoard),
``checkpoints/iter_N.safetensors`` (training states), ``models/latest.safetensors`` and ``model.safetensors``
(exported inference models), ``models/best/`` (best-k exports), ``val/`` (evaluation images), ``.lock``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from gensr.errors import GensrError

# What a run writes; --overwrite removes exactly these (never anything else a user keeps in the folder).
RUN_FILES = ("config.yaml", "config.original.yaml", "log.jsonl", "model.safetensors")
RUN_FOLDERS = ("checkpoints", "models", "tb", "val")


def has_run(run_dir: Path) -> bool:
    """True when ``run_dir`` holds what a training run writes."""
    return any((run_dir / f).exists() for f in (*RUN_FILES, *RUN_FOLDERS))


def clear_run(run_dir: Path) -> None:
    """Remove a previous run's files from ``run_dir`` (``--overwrite``)."""
    for name in RUN_FOLDERS:
        shutil.rmtree(run_dir / name, ignore_errors=True)
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (run_dir / name).unlink()


class RunLock:
    """An exclusive ``flock`` on ``run_dir/.lock`` held while the run lives (released when the process ends,
    however it ends). A second training in the same folder is refused with one line."""

    def __init__(self, run_dir: Path) -> None:
        self.path = run_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise GensrError(
                f"{self.path.parent}: another training is running in this run folder (pid {holder}); "
                "wait for it, or use another output_dir"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __del__(self) -> None:  # a trainer dropped without fit() (tests, notebooks) frees its folder
        self.release()


def check_run_folder(run_dir: Path, resume: str | None, overwrite: bool) -> None:
    """The reuse policy, checked before anything is built or written."""
    if resume and overwrite:
        raise GensrError("resume and overwrite cannot be combined (resume continues a run, overwrite discards it)")
    if run_dir.exists() and not run_dir.is_dir():
        raise GensrError(f"{run_dir}: the run folder path exists and is not a folder")
    if not resume and has_run(run_dir) and not overwrite:
        raise GensrError(
            f"{run_dir}: holds a previous run; continue it with --resume, or start again with --overwrite "
            "(which deletes its checkpoints, models and logs)"
        )


def take_run_folder(run_dir: Path) -> RunLock:
    """Create and lock ``run_dir`` (GensrError when another training holds it). Returns the held lock."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise GensrError(f"{run_dir}: cannot create the run folder ({exc.strerror or exc})") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise GensrError(f"{run_dir}: the run folder is not writable")
    lock = RunLock(run_dir)
    lock.acquire()
    return lock


def remove_empty_run_folder(run_dir: Path) -> None:
    """Remove ``run_dir`` when it holds nothing but the lock file (a run that failed before writing anything)."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {".lock"}:
        shutil.rmtree(run_dir, ignore_errors=True)
