"""Reading ``.npz`` archives without unpickling and without allocation bombs.

:func:`read_npz` reads the header of every ``.npy`` member first (shape and dtype, a few hundred bytes each) and
refuses the file before any array is allocated when the declared arrays add up to more than a bound: a 10 MB
zip of zeros can declare gigabytes. Object arrays (which would need pickle) are refused too.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from gensr.errors import GensrError

__all__ = ["declared_npz_arrays", "read_npz"]


def _member_header(zf: zipfile.ZipFile, name: str) -> tuple[tuple[int, ...], np.dtype]:
    """(shape, dtype) that the ``.npy`` header of member ``name`` declares (read without the data)."""
    from numpy.lib import format as npy_format

    with zf.open(name) as f:
        major, _minor = npy_format.read_magic(f)
        if major == 1:
            shape, _fortran, dtype = npy_format.read_array_header_1_0(f)
        elif major in (2, 3):
            shape, _fortran, dtype = npy_format.read_array_header_2_0(f)
        else:
            raise ValueError(f"unsupported .npy format version {major}")
    return tuple(int(v) for v in shape), np.dtype(dtype)


def declared_npz_arrays(path: str | os.PathLike) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{array name: (shape, dtype)}`` as the headers of the ``.npz`` at ``path`` declare them (nothing loaded)."""
    p = Path(path)
    try:
        with zipfile.ZipFile(p) as zf:
            return {
                name[: -len(".npy")] if name.endswith(".npy") else name: _member_header(zf, name)
                for name in zf.namelist()
            }
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GensrError(f"{p}: not a readable .npz file ({' '.join(str(exc).split())[:150]})") from None


def read_npz(path: str | os.PathLike, max_bytes: int, what: str = ".npz file") -> dict[str, np.ndarray]:
    """All arrays of the ``.npz`` at ``path``, after checking that their declared sizes add up to at most
    ``max_bytes`` and that none is an object array. Every problem is a one-line :class:`GensrError` naming
    the file (``what`` says what it should have been)."""
    p = Path(path)
    if not p.exists():
        raise GensrError(f"{p}: no such file")
    if p.is_dir():
        raise GensrError(f"{p}: is a folder, expected a {what}")
    declared = declared_npz_arrays(p)
    total = 0
    for name, (shape, dtype) in declared.items():
        if dtype.hasobject:
            raise GensrError(f"{p}: array {name!r} holds Python objects (refusing to unpickle)")
        total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if total > max_bytes:
        raise GensrError(
            f"{p}: its arrays declare {total / 2**20:,.1f} MiB, over the bound of {max_bytes / 2**20:,.1f} MiB "
            f"for a {what} (a possible zip bomb)"
        )
    try:
        with np.load(p, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise GensrError(f"{p}: not a readable {what} ({' '.join(str(exc).split())[:150]})") from None
