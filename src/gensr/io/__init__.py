"""Image files in and out: PNG, JPEG, WebP, TIFF and BMP, 8 and 16 bits per channel, gray, RGB and alpha.

Reading (:func:`read_image`, :func:`read_array`):

* the bit depth follows the file (its mode / sample size, never the pixel values): 16-bit files give
  ``uint16`` arrays, everything else ``uint8``;
* gray stays one channel, alpha is kept as a separate plane, EXIF orientation is applied;
* other modes are converted: palette -> RGB (RGBA when it has transparency), CMYK / YCbCr / HSV -> RGB,
  ``1`` -> 8-bit gray, ``I;16*`` -> 16-bit gray, ``I`` (32-bit int) -> 16-bit gray clipped to 0..65535,
  ``F`` (float, taken as 0..1) -> 16-bit gray, premultiplied ``RGBa`` / ``La`` -> straight alpha;
* the pixel count is checked against a limit read from the header *before* any decoding (decompression
  bombs): ``max_pixels`` argument, else ``$GENSR_MAX_PIXELS``, else :data:`DEFAULT_MAX_PIXELS`.

Pillow reduces 16-bit RGB(A) and gray+alpha PNG and TIFF files to 8 bits, so those are decoded by gensr's
own codecs (:mod:`gensr.io.png16`: zlib and the five row filters, interlaced or not; :mod:`gensr.io.tiff16`:
strips, uncompressed / Deflate / LZW, horizontal predictor), which also write 16-bit PNG / TIFF files; the pixel
limit lives in :mod:`gensr.io.limits`. Everything else goes through Pillow.

Writing (:func:`write_image`) picks the format from the extension, encodes in memory, writes through a checked
temporary file that is moved into place (:func:`gensr.fileutil.write_bytes_atomic`: a full disk is an error, never
a truncated image; an existing file is replaced only with ``overwrite=True``) and refuses what a format cannot hold
(alpha or 16 bits in JPEG, 16 bits in WebP / BMP, alpha in BMP) instead of silently dropping it.

Every problem with a user's file is a one-line :class:`~gensr.errors.GensrError` that names the file.
"""

from __future__ import annotations

import os
import struct
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from gensr.errors import GensrError
from gensr.fileutil import _non_folder_ancestor, write_bytes_atomic
from gensr.io.limits import (
    DEFAULT_MAX_PIXELS,
    MAX_PIXELS_ENV,
    _check_pixels,
    max_pixels_limit,
    pillow_open,
)
from gensr.io.png16 import _PNG_SIGNATURE, _encode_png, _FormatError, _png_needs_own_decoder, _read_png_own
from gensr.io.tiff16 import _TIFF_MAGIC, _encode_tiff16, _read_tiff_own, _tiff_probe

if TYPE_CHECKING:
    import torch


def _is_tensor(x: Any) -> bool:
    """True for a torch tensor, without importing torch (so numpy-only commands start fast)."""
    torch_mod = sys.modules.get("torch")
    return torch_mod is not None and isinstance(x, torch_mod.Tensor)


__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "ImageData",
    "list_images",
    "max_pixels_limit",
    "read_array",
    "read_image",
    "pixels_to_tensor",
    "tensor_to_pixels",
    "float_to_pixels",
    "rescale_pixels",
    "write_image",
]

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

# zlib level of written PNG files. Measured on SR outputs and bicubic upscales (8-bit RGB, 0.6-2.5 MP): level 4
# encodes 2.2-2.4x faster than 6 (zlib's and Pillow's default) for files 1.4-3.9 % larger; 1-3 are faster still
# but 4.5-14 % larger. 16-bit files barely change with the level (their low bytes are noise).
PNG_COMPRESS_LEVEL = 4

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}


# --------------------------------------------------------------------------------------------------------
# ImageData
# --------------------------------------------------------------------------------------------------------


@dataclass
class ImageData:
    """A decoded image.

    ``pixels`` is (H, W, 3) RGB or (H, W, 1) gray, ``uint8`` or ``uint16``; ``alpha`` is (H, W) of the
    same dtype, or None. ``path`` is the file it came from (None when made in memory).
    """

    pixels: np.ndarray
    alpha: np.ndarray | None = None
    path: Path | None = None
    frames: int = 1  # frames in the file (animated GIF/WebP/PNG, multi-page TIFF); only the first is decoded

    def __post_init__(self) -> None:
        px = self.pixels
        if not isinstance(px, np.ndarray) or px.ndim != 3 or px.shape[2] not in (1, 3):
            raise ValueError(f"ImageData.pixels must be (H, W, 1|3), got {getattr(px, 'shape', type(px))}")
        if px.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"ImageData.pixels must be uint8 or uint16, got {px.dtype}")
        if self.alpha is not None:
            a = self.alpha
            if not isinstance(a, np.ndarray) or a.shape != px.shape[:2] or a.dtype != px.dtype:
                raise ValueError(
                    f"ImageData.alpha must be {px.shape[:2]} {px.dtype}, "
                    f"got {getattr(a, 'shape', type(a))} {getattr(a, 'dtype', '')}"
                )

    @property
    def bit_depth(self) -> int:
        """8 or 16."""
        return 16 if self.pixels.dtype == np.uint16 else 8

    @property
    def is_gray(self) -> bool:
        return self.pixels.shape[2] == 1

    @property
    def has_alpha(self) -> bool:
        return self.alpha is not None

    @property
    def size(self) -> tuple[int, int]:
        """(H, W)."""
        return int(self.pixels.shape[0]), int(self.pixels.shape[1])

    def rgb_tensor(self) -> torch.Tensor:
        """(1, 3, H, W) float32 in [0, 1]; gray is replicated to three channels."""
        t = pixels_to_tensor(self.pixels)
        return t.expand(1, 3, -1, -1).contiguous() if t.shape[1] == 1 else t

    def alpha_tensor(self) -> torch.Tensor | None:
        """(1, 1, H, W) float32 in [0, 1], or None."""
        import torch

        if self.alpha is None:
            return None
        return torch.from_numpy(_int_to_float(self.alpha)).reshape(1, 1, *self.alpha.shape)


def _int_to_float(a: np.ndarray) -> np.ndarray:
    scale = 65535.0 if a.dtype == np.uint16 else 255.0
    return a.astype(np.float32) / np.float32(scale)


# --------------------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------------------


def _check_input_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise GensrError(f"{path}: no such file") from None
    except NotADirectoryError:
        raise GensrError(f"{path}: no such file (a parent in the path is not a folder)") from None
    except OSError as exc:
        raise GensrError(f"{path}: cannot access file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise GensrError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise GensrError(f"{path}: not a regular file")
    if st.st_size == 0:
        raise GensrError(f"{path}: file is empty (0 bytes)")


def read_image(path: str | os.PathLike, max_pixels: int | None = None) -> ImageData:
    """Decode an image file; see the module docstring for what comes out. GensrError on any bad file."""
    p = Path(path)
    limit = max_pixels_limit(max_pixels)
    _check_input_file(p)
    try:
        with open(p, "rb") as f:
            head = f.read(32)
    except OSError as exc:
        raise GensrError(f"{p}: cannot read file ({exc.strerror or exc})") from None

    tiff_tags = _tiff_probe(p) if head[:4] in _TIFF_MAGIC else None
    frames = 1
    if head.startswith(_PNG_SIGNATURE) and _png_needs_own_decoder(head):
        _check_pixels(p, *struct.unpack(">II", head[16:24]), limit)  # before reading the whole file
        pixels, alpha, orientation = _read_png_own(p, limit)
    elif tiff_tags is not None:
        pixels, alpha, orientation = _read_tiff_own(p, tiff_tags, limit)
    else:
        pixels, alpha, orientation, frames = _read_with_pillow(p, limit)

    if orientation not in (None, 1):
        pixels = _orient(pixels, orientation)
        if alpha is not None:
            alpha = _orient(alpha, orientation)
    pixels = np.ascontiguousarray(pixels)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha)
    return ImageData(pixels=pixels, alpha=alpha, path=p, frames=frames)


def read_array(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """The pixels of an image file, (H, W, C) uint8 / uint16 with C = 1 (gray) or 3 (RGB); alpha dropped."""
    return read_image(path, max_pixels=max_pixels).pixels


def _read_with_pillow(p: Path, limit: int) -> tuple[np.ndarray, np.ndarray | None, int | None, int]:
    try:
        im = pillow_open(p)
    except UnidentifiedImageError:
        kind = _sniff_format(p)
        if kind:  # the signature of a format we read, but Pillow could not parse the header
            raise GensrError(f"{p}: corrupt or truncated {kind} file (its header cannot be parsed)") from None
        raise GensrError(
            f"{p}: not an image file, or a format gensr cannot read ({', '.join(IMAGE_EXTENSIONS)})"
        ) from None
    except MemoryError:
        raise
    except GensrError:
        raise
    except Exception as exc:  # Pillow raises many kinds for broken headers
        raise GensrError(f"{p}: cannot read image header ({_describe(exc)})") from None

    with im:
        w, h = im.size
        _check_pixels(p, w, h, limit)
        frames = int(getattr(im, "n_frames", 1) or 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except MemoryError:
            raise
        except Image.DecompressionBombError:  # Pillow's guard at decode time (TIFF): the application's setting
            raise GensrError(
                f"{p}: Pillow refuses to decode this {w}x{h} image: its process-wide Image.MAX_IMAGE_PIXELS "
                f"({Image.MAX_IMAGE_PIXELS:,}, the application's setting; the gensr command raises it to gensr's "
                f"limit) is below half its size"
            ) from None
        except Exception as exc:
            raise GensrError(f"{p}: corrupt or truncated image ({_describe(exc)})") from None
        orientation = _exif_orientation(im)
        try:
            pixels, alpha = _pil_to_arrays(im, p)
        except GensrError:
            raise
        except MemoryError:
            raise
        except Exception as exc:
            raise GensrError(f"{p}: cannot convert image mode {im.mode!r} ({_describe(exc)})") from None
    return pixels, alpha, orientation, frames


def _sniff_format(p: Path) -> str | None:
    """The format named by a file's signature (for error messages), or None."""
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError:
        return None
    if head.startswith(_PNG_SIGNATURE):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[:4] in _TIFF_MAGIC:
        return "TIFF"
    if head[:2] == b"BM":
        return "BMP"
    return None


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _exif_orientation(im: Image.Image) -> int | None:
    try:
        value = im.getexif().get(0x0112)
    except Exception:  # a broken EXIF block must not make a readable image unreadable
        return None
    try:
        value = int(value)
    except (TypeError, ValueError):
        return None
    return value if 1 <= value <= 8 else None


def _orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (2..8) to an (H, W[, C]) array, as ``ImageOps.exif_transpose`` does."""
    if orientation == 2:
        return a[:, ::-1]
    if orientation == 3:
        return a[::-1, ::-1]
    if orientation == 4:
        return a[::-1]
    if orientation == 5:
        return a.swapaxes(0, 1)
    if orientation == 6:
        return np.rot90(a, -1)
    if orientation == 7:
        return np.rot90(a, 2).swapaxes(0, 1)
    if orientation == 8:
        return np.rot90(a, 1)
    return a


_GRAY16_MODES = ("I;16", "I;16L", "I;16B", "I;16N")


def _pil_to_arrays(im: Image.Image, p: Path) -> tuple[np.ndarray, np.ndarray | None]:
    mode = im.mode
    transparency = im.info.get("transparency")
    if mode in ("RGB", "RGBA", "L", "LA"):
        if transparency is not None and mode in ("RGB", "L"):
            im = im.convert(mode + "A")
    elif mode in ("P", "PA"):
        has_alpha = mode == "PA" or transparency is not None
        im = im.convert("RGBA" if has_alpha else "RGB")
    elif mode == "1":
        im = im.convert("LA" if transparency is not None else "L")
    elif mode == "RGBa":
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode in ("RGBX", "CMYK", "YCbCr", "HSV"):
        im = im.convert("RGB")
    elif mode in _GRAY16_MODES or mode in ("I", "F"):
        arr = np.asarray(im)
        if mode in _GRAY16_MODES:
            gray = arr.astype(np.uint16)
        elif mode == "I":
            gray = np.clip(arr, 0, 65535).astype(np.uint16)
        else:
            gray = float_to_pixels(np.nan_to_num(arr.astype(np.float64)), 16)
        alpha = None
        if isinstance(transparency, (int, np.integer)) and mode != "F":
            alpha = np.where(arr == transparency, 0, 65535).astype(np.uint16)
        return gray[:, :, None], alpha
    else:
        raise GensrError(f"{p}: unsupported image mode {mode!r} (convert it to RGB or gray first)")

    arr = np.array(im)
    if arr.dtype != np.uint8:  # every mode left here is 8 bits per channel
        raise GensrError(f"{p}: unsupported pixel type {arr.dtype} for mode {im.mode!r}")
    if arr.ndim == 2:
        return arr[:, :, None], None
    if arr.shape[2] in (2, 4):
        return arr[:, :, :-1], arr[:, :, -1]
    return arr, None


# --------------------------------------------------------------------------------------------------------
# Tensors and writing
# --------------------------------------------------------------------------------------------------------


def pixels_to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 / uint16 -> (1, C, H, W) float32 in [0, 1] (divided by 255 or 65535); the inverse of
    :func:`tensor_to_pixels`."""
    import torch

    x = _int_to_float(np.asarray(pixels))
    if x.ndim == 2:
        x = x[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).unsqueeze(0)


def tensor_to_pixels(t: torch.Tensor, bit_depth: int = 8) -> np.ndarray:
    """(1, C, H, W) or (C, H, W) float in [0, 1] -> (H, W, C) uint8 (bit_depth 8) or uint16 (16).

    Values are clamped to [0, 1], scaled by 255 or 65535 and rounded half to even.
    """
    import torch

    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"tensor_to_pixels takes one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3:
        raise ValueError(f"expected a (1, C, H, W) or (C, H, W) tensor, got shape {tuple(t.shape)}")
    maxv = 65535.0 if bit_depth == 16 else 255.0
    x = t.detach().to(device="cpu", dtype=torch.float32)
    x = torch.nan_to_num(x, nan=0.0).clamp_(0.0, 1.0).mul_(maxv).round_()
    arr = x.permute(1, 2, 0).contiguous().numpy()
    return arr.astype(np.uint16 if bit_depth == 16 else np.uint8)


def float_to_pixels(x: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Float numpy pixels in [0, 1] (any shape) -> uint8 (``bit_depth`` 8) or uint16 (16), same shape: clipped to
    [0, 1], scaled by 255 or 65535 and rounded half to even in float64 (:func:`tensor_to_pixels` rounds tensors in
    float32). NaN stays NaN: callers with NaN replace it first."""
    maxv = 65535.0 if bit_depth == 16 else 255.0
    return np.round(np.clip(x, 0.0, 1.0) * maxv).astype(np.uint16 if bit_depth == 16 else np.uint8)


_LUMA_601 = (0.299, 0.587, 0.114)


class _NonFinite(ValueError):
    """Float pixels with NaN/inf: a broken result, never written (as black or anything else)."""


def _to_samples(rgb: torch.Tensor | np.ndarray, bit_depth: int | None, gray: bool) -> np.ndarray:
    """The image argument of write_image -> (H, W, 1|3) uint8 / uint16 (integer arrays without importing torch)."""
    if _is_tensor(rgb):
        import torch

        t = rgb.detach().to(device="cpu", dtype=torch.float32)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"write_image takes one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a (1, 3|1, H, W) or (3|1, H, W) tensor, got shape {tuple(rgb.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise _NonFinite(f"the image holds {int((~torch.isfinite(t)).sum())} NaN/inf values; not written")
        if gray and t.shape[0] == 3:
            if torch.equal(t[0], t[1]) and torch.equal(t[0], t[2]):
                t = t[:1]
            else:
                r, g, b = _LUMA_601
                t = (r * t[0] + g * t[1] + b * t[2]).unsqueeze(0)
        return tensor_to_pixels(t, bit_depth or 8)

    a = np.asarray(rgb)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 3):
        raise ValueError(f"expected an (H, W, 3|1) array, got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating) and not np.isfinite(a).all():
        raise _NonFinite(f"the image holds {int((~np.isfinite(a)).sum())} NaN/inf values; not written")
    if a.dtype in (np.uint8, np.uint16):
        depth = 16 if a.dtype == np.uint16 else 8
        target = bit_depth or depth
        if gray and a.shape[2] == 3:
            if (a[:, :, 0] == a[:, :, 1]).all() and (a[:, :, 0] == a[:, :, 2]).all():
                a = a[:, :, :1]
            else:
                r, g, b = _LUMA_601
                f = r * a[:, :, 0:1].astype(np.float64) + g * a[:, :, 1:2] + b * a[:, :, 2:3]
                a = np.round(f).astype(a.dtype)
        return rescale_pixels(a, target)
    if np.issubdtype(a.dtype, np.floating):
        import torch

        return _to_samples(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))), bit_depth, gray)
    raise ValueError(f"unsupported pixel array dtype {a.dtype} (use uint8, uint16 or float in [0, 1])")


def rescale_pixels(a: np.ndarray, bit_depth: int) -> np.ndarray:
    """uint8 / uint16 pixels at ``bit_depth`` (8 or 16): uint8 -> uint16 times 257 (255 -> 65535), uint16 -> uint8
    divided by 257 and rounded half to even; pixels already at that depth are returned as they are."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if a.dtype == np.uint8 and bit_depth == 16:
        return a.astype(np.uint16) * np.uint16(257)
    if a.dtype == np.uint16 and bit_depth == 8:
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    return a


def _to_alpha(alpha, h: int, w: int, bit_depth: int) -> np.ndarray:
    if _is_tensor(alpha):
        import torch

        t = alpha.detach().to(device="cpu", dtype=torch.float32)
        if t.numel() != h * w:
            raise ValueError(f"alpha has shape {tuple(alpha.shape)}, expected {h}x{w}")
        return tensor_to_pixels(t.reshape(1, h, w), bit_depth)[:, :, 0]
    a = np.asarray(alpha)
    if a.size != h * w:
        raise ValueError(f"alpha has shape {a.shape}, expected {h}x{w}")
    a = a.reshape(h, w)
    if a.dtype == np.bool_:
        return np.where(a, 65535 if bit_depth == 16 else 255, 0).astype(np.uint16 if bit_depth == 16 else np.uint8)
    if a.dtype in (np.uint8, np.uint16):
        return rescale_pixels(a, bit_depth)
    if np.issubdtype(a.dtype, np.floating):
        import torch

        return tensor_to_pixels(torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None], bit_depth)[:, :, 0]
    raise ValueError(f"unsupported alpha dtype {a.dtype}")


def write_image(
    path: str | os.PathLike,
    rgb: torch.Tensor | np.ndarray,
    alpha: torch.Tensor | np.ndarray | None = None,
    *,
    bit_depth: int | None = None,
    gray: bool = False,
    quality: int = 95,
    overwrite: bool = False,
) -> Path:
    """Write an image atomically; the format follows the extension. Returns the path written.

    ``rgb``: a float tensor (1, 3|1, H, W) / (3|1, H, W) in [0, 1], or an (H, W, 3|1) uint8 / uint16 array
    (a float array in [0, 1] also works). ``bit_depth``: 8 or 16; by default 8 for float input and the
    array's own depth for integer input (integer arrays of the other depth are rescaled, x257 or /257).
    ``gray=True`` writes one channel: the first when all three are equal, else BT.601 luma; a
    one-channel input is always written as gray. ``alpha``: float (1, 1, H, W) / (H, W) in [0, 1] or an
    integer / bool (H, W) array. ``quality`` applies to JPEG (4:4:4 chroma at 90 and above) and WebP
    (lossless at 100; WebP has no gray mode, so gray is stored as RGB there).
    The parent folder is created. GensrError for an extension or content the format cannot hold, for an
    existing ``path`` unless ``overwrite``, and for an output that cannot be written (a full disk included);
    no partial file is left behind.
    """
    p = Path(path)
    ext = p.suffix.lower()
    fmt = _FORMATS.get(ext)
    if fmt is None:
        raise GensrError(
            f"{p}: unknown image extension {p.suffix or '(none)'!r} (use one of {', '.join(IMAGE_EXTENSIONS)})"
        )
    if bit_depth not in (None, 8, 16):
        raise GensrError(f"{p}: bit depth must be 8 or 16, got {bit_depth}")
    try:
        samples = _to_samples(rgb, bit_depth, gray)
    except _NonFinite as exc:
        raise GensrError(f"{p}: {exc}") from None
    depth = 16 if samples.dtype == np.uint16 else 8
    h, w = samples.shape[:2]
    a = None if alpha is None else _to_alpha(alpha, h, w, depth)

    if fmt in ("JPEG", "WEBP", "BMP") and depth == 16:
        name = {"WEBP": "WebP"}.get(fmt, fmt)
        raise GensrError(f"{p}: {name} cannot store 16-bit images; write a .png or .tif instead")
    if fmt == "JPEG" and a is not None:
        raise GensrError(f"{p}: JPEG cannot store an alpha channel; write a .png instead")
    if fmt == "BMP" and a is not None:
        raise GensrError(f"{p}: BMP alpha is not portable; write a .png instead")

    full = samples if a is None else np.concatenate([samples, a[:, :, None]], axis=2)
    blocker = _non_folder_ancestor(p.parent)
    if blocker is not None:
        raise GensrError(f"{p}: cannot write image ({blocker} is a file, not a folder)")
    if not overwrite and p.exists():
        raise GensrError(f"{p}: output exists (use --overwrite to replace it)")
    try:
        if depth == 16 and fmt == "PNG":
            data = _encode_png(full, PNG_COMPRESS_LEVEL)
        elif depth == 16 and fmt == "TIFF":
            data = _encode_tiff16(full, has_alpha=a is not None)
        else:
            data = _encode_pillow(full, fmt, quality)
    except MemoryError:
        raise
    except (OSError, ValueError, _FormatError) as exc:
        raise GensrError(f"{p}: cannot encode image ({_describe(exc)})") from None
    return write_bytes_atomic(p, data, overwrite=overwrite)


def _encode_pillow(full: np.ndarray, fmt: str, quality: int) -> bytes:
    """The encoded file in memory (Pillow's file writers do not all detect a short write to disk)."""
    import io

    c = full.shape[2]
    im = Image.fromarray(np.ascontiguousarray(full[:, :, 0] if c == 1 else full))
    expected = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    if im.mode != expected:  # pragma: no cover - Pillow infers these modes from the shape
        im = im.convert(expected)
    kwargs: dict = {}
    if fmt == "PNG":
        kwargs = {"compress_level": PNG_COMPRESS_LEVEL}
    elif fmt == "JPEG":
        kwargs = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "WEBP":
        kwargs = {"lossless": True, "exact": True} if quality >= 100 else {"quality": int(quality)}
    elif fmt == "TIFF":
        from PIL import features

        if features.check("libtiff"):
            kwargs = {"compression": "tiff_adobe_deflate"}
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


# --------------------------------------------------------------------------------------------------------
# Listing inputs
# --------------------------------------------------------------------------------------------------------


def _has_glob(s: str) -> bool:
    return any(ch in s for ch in "*?[")


def list_images(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files, folders (one level, image extensions, sorted) and glob patterns into image paths.

    A file named explicitly is kept whatever its extension (reading it then fails clearly if it is not an
    image). Duplicates are dropped, first occurrence kept. GensrError for a missing path, a folder
    without images and a pattern matching no image.
    """
    import glob

    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    exts = set(IMAGE_EXTENSIONS)
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in inputs:
        s = os.fspath(item)
        p = Path(s).expanduser()
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in exts and f.is_file())
            if not files:
                raise GensrError(f"{p}: folder contains no images ({', '.join(IMAGE_EXTENSIONS)})")
            for f in files:
                add(f)
        elif p.exists():
            add(p)
        elif _has_glob(s):
            matches = sorted(
                Path(m)
                for m in glob.glob(os.path.expanduser(s), recursive=True)
                if Path(m).suffix.lower() in exts and Path(m).is_file()
            )
            if not matches:
                raise GensrError(f"{s}: pattern matches no images")
            for f in matches:
                add(f)
        else:
            raise GensrError(f"{p}: no such file or folder")
    return out
