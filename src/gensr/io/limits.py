"""The pixel limit checked before any image is decoded (decompression bombs)."""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from gensr.errors import GensrError

DEFAULT_MAX_PIXELS: int = 16384 * 16384
"""Default limit on width * height of an image to read (268,435,456 pixels)."""

MAX_PIXELS_ENV = "GENSR_MAX_PIXELS"
"""Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (a positive integer)."""


def max_pixels_limit(max_pixels: int | None = None) -> int:
    """The pixel limit in force: ``max_pixels`` if given, else ``$GENSR_MAX_PIXELS``, else the default."""
    if max_pixels is not None:
        if int(max_pixels) <= 0:
            raise ValueError(f"max_pixels must be positive, got {max_pixels}")
        return int(max_pixels)
    env = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not env:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(env.replace("_", "").replace(",", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise GensrError(f"{MAX_PIXELS_ENV}={env!r}: expected a positive integer (a pixel count)")
    return value


def _over_limit(path: Path, limit: int, what: str) -> GensrError:
    return GensrError(
        f"{path}: image {what}, over the limit of {limit:,} pixels "
        f"(a possible decompression bomb; set {MAX_PIXELS_ENV} to allow larger images)"
    )


def _check_pixels(path: Path, width: int, height: int, limit: int) -> None:
    if width <= 0 or height <= 0:
        raise GensrError(f"{path}: invalid image size {width}x{height}")
    if width * height > limit:
        raise _over_limit(path, limit, f"is {width}x{height} = {width * height:,} pixels")


def pillow_open(path: Path) -> Image.Image:
    """``Image.open(path)`` with Pillow's own decompression-bomb guard out of the way, changing nothing global.

    That guard compares the size with the process-wide ``Image.MAX_IMAGE_PIXELS`` (a warning above it, an error
    above twice it), a setting that belongs to the application, not to gensr: gensr's callers check the size read
    from the header against :func:`max_pixels_limit` themselves before anything is decoded. When Pillow refuses
    a file, it is identified again by the format plugins Pillow has just tried (its ``Image.ID`` / ``Image.OPEN``
    registry), whose constructors read the header only and leave the size check to the caller.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(path)
    except Image.DecompressionBombError:
        pass
    name = os.fspath(path)
    with open(name, "rb") as f:
        prefix = f.read(16)
    for fmt in list(Image.ID):
        factory, accept = Image.OPEN[fmt]
        verdict = accept(prefix) if accept else True
        if not verdict or isinstance(verdict, str):
            continue
        try:
            return factory(name, name)  # given a path, the image owns (and closes) the file it opens
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue
    raise UnidentifiedImageError(f"cannot identify image file {name!r}")


def check_output_size(height: float, width: float, what: str = "output") -> tuple[int, int]:
    """``(height, width)`` as ints when the image they describe is within the pixel limit; GensrError otherwise.

    Called before an output (or a large intermediate) is allocated, so that a huge scale, ``--outscale``
    or sample count is a clear error instead of a MemoryError.
    """
    limit = max_pixels_limit()
    if not (height >= 1 and width >= 1) or height != height or width != width:
        raise GensrError(f"{what}: invalid size {width}x{height}")
    if height * width > limit:
        raise GensrError(
            f"{what}: {width:.0f}x{height:.0f} = {height * width:,.0f} pixels is over the limit of {limit:,} "
            f"(set {MAX_PIXELS_ENV} to allow larger images)"
        )
    return int(height), int(width)
