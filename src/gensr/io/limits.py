"""The pixel limit checked before any image is decoded (decompression bombs)."""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image

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


def _let_our_limit_decide(limit: int) -> None:
    """Raise Pillow's own bomb guard to at least our limit, so images under our limit always open.

    Pillow warns above ``MAX_IMAGE_PIXELS`` and refuses above twice that; we check the size ourselves
    right after the header is read, so Pillow's guard only needs to stay out of the way (it is only ever
    raised, never lowered, so concurrent readers cannot trip over each other).
    """
    current = Image.MAX_IMAGE_PIXELS
    if current is not None and current < limit:
        Image.MAX_IMAGE_PIXELS = limit




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
