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

Pillow reduces 16-bit RGB(A) and gray+alpha PNG and TIFF files to 8 bits, so those are decoded here
(PNG: zlib and the five row filters, interlaced or not; TIFF: strips, uncompressed / Deflate / LZW,
horizontal predictor) and 16-bit PNG / TIFF files are also written here. Everything else goes through Pillow.

Writing (:func:`write_image`) picks the format from the extension, goes through a temporary file that is
renamed over the target (:func:`gensr.fileutil.atomic_path`) and refuses what a format cannot hold
(alpha or 16 bits in JPEG, 16 bits in WebP / BMP, alpha in BMP) instead of silently dropping it.

Every problem with a user's file is a one-line :class:`~gensr.errors.GensrError` that names the file.
"""

from __future__ import annotations

import os
import re
import struct
import sys
import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from gensr.errors import GensrError
from gensr.fileutil import atomic_path

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
    "tensor_to_pixels",
    "write_image",
]

DEFAULT_MAX_PIXELS: int = 16384 * 16384
"""Default limit on width * height of an image to read (268,435,456 pixels)."""

MAX_PIXELS_ENV = "GENSR_MAX_PIXELS"
"""Environment variable that overrides :data:`DEFAULT_MAX_PIXELS` (a positive integer)."""

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")

_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        import torch

        x = _int_to_float(self.pixels)
        t = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        if t.shape[0] == 1:
            t = t.expand(3, -1, -1).contiguous()
        return t.unsqueeze(0)

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
# Pixel limit
# --------------------------------------------------------------------------------------------------------


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
    if head.startswith(_PNG_SIGNATURE) and _png_needs_own_decoder(head):
        _check_pixels(p, *struct.unpack(">II", head[16:24]), limit)  # before reading the whole file
        pixels, alpha, orientation = _read_png_own(p, limit)
    elif tiff_tags is not None:
        pixels, alpha, orientation = _read_tiff_own(p, tiff_tags, limit)
    else:
        pixels, alpha, orientation = _read_with_pillow(p, limit)

    if orientation not in (None, 1):
        pixels = _orient(pixels, orientation)
        if alpha is not None:
            alpha = _orient(alpha, orientation)
    pixels = np.ascontiguousarray(pixels)
    if alpha is not None:
        alpha = np.ascontiguousarray(alpha)
    return ImageData(pixels=pixels, alpha=alpha, path=p)


def read_array(path: str | os.PathLike, max_pixels: int | None = None) -> np.ndarray:
    """The pixels of an image file, (H, W, C) uint8 / uint16 with C = 1 (gray) or 3 (RGB); alpha dropped."""
    return read_image(path, max_pixels=max_pixels).pixels


def _read_with_pillow(p: Path, limit: int) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    _let_our_limit_decide(limit)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
    except UnidentifiedImageError:
        kind = _sniff_format(p)
        if kind:  # the signature of a format we read, but Pillow could not parse the header
            raise GensrError(f"{p}: corrupt or truncated {kind} file (its header cannot be parsed)") from None
        raise GensrError(
            f"{p}: not an image file, or a format gensr cannot read ({', '.join(IMAGE_EXTENSIONS)})"
        ) from None
    except Image.DecompressionBombError as exc:  # only above twice our limit, see _let_our_limit_decide
        m = re.search(r"\((\d+) pixels\)", str(exc))
        raise _over_limit(p, limit, f"has {int(m.group(1)):,} pixels" if m else "is too large") from None
    except MemoryError:
        raise
    except GensrError:
        raise
    except Exception as exc:  # Pillow raises many kinds for broken headers
        raise GensrError(f"{p}: cannot read image header ({_describe(exc)})") from None

    with im:
        w, h = im.size
        _check_pixels(p, w, h, limit)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                im.load()
        except MemoryError:
            raise
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
    return pixels, alpha, orientation


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
            gray = np.round(np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 65535.0)
            gray = gray.astype(np.uint16)
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


# ---- PNG (own decoder for 16-bit files) -----------------------------------------------------------------

_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # color type -> samples per pixel (palette is Pillow's)
# Adam7 passes: (x start, y start, x step, y step)
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_needs_own_decoder(head: bytes) -> bool:
    """True for 16-bit RGB, RGBA and gray+alpha PNGs, which Pillow reduces to 8 bits (16-bit gray is fine)."""
    if len(head) < 29 or head[12:16] != b"IHDR":
        return False  # let Pillow report the broken header
    depth, color_type = head[24], head[25]
    return depth == 16 and color_type in (2, 4, 6)


def _read_png_own(p: Path, limit: int) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GensrError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    try:
        return _decode_png(data, p, limit)
    except _FormatError as exc:
        raise GensrError(f"{p}: corrupt or truncated PNG ({exc})") from None


class _FormatError(Exception):
    """Internal: a broken file; turned into a GensrError naming the file."""


def _png_chunks(data: bytes):
    if not data.startswith(_PNG_SIGNATURE):
        raise _FormatError("not a PNG signature")
    pos = len(_PNG_SIGNATURE)
    n = len(data)
    while True:
        if pos + 8 > n:
            raise _FormatError("file ends before the IEND chunk")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        end = pos + 8 + length + 4
        if end > n:
            raise _FormatError(f"file ends inside the {ctype.decode('latin-1')!r} chunk")
        body = data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : end])
        critical = not (ctype[0] & 0x20)
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            if critical:
                raise _FormatError(f"CRC error in the {ctype.decode('latin-1')!r} chunk")
            pos = end
            continue  # a damaged ancillary chunk is skipped, as libpng does
        yield ctype, body
        if ctype == b"IEND":
            return
        pos = end


def _decode_png(data: bytes, p: Path | None = None, limit: int | None = None):
    """Decode a non-palette PNG of bit depth 8 or 16 -> (pixels (H,W,C), alpha | None, orientation)."""
    header = None
    idat: list[bytes] = []
    trns = None
    orientation = None
    for ctype, body in _png_chunks(data):
        if header is None:
            if ctype != b"IHDR" or len(body) != 13:
                raise _FormatError("first chunk is not a valid IHDR")
            header = struct.unpack(">IIBBBBB", body)
            w, h, depth, color_type, compression, filter_method, interlace = header
            if color_type not in _PNG_CHANNELS or depth not in (8, 16):
                raise _FormatError(f"unsupported bit depth {depth} / color type {color_type}")
            if compression != 0 or filter_method != 0 or interlace not in (0, 1):
                raise _FormatError("invalid compression, filter or interlace method")
            if p is not None and limit is not None:
                _check_pixels(p, w, h, limit)
        elif ctype == b"IDAT":
            idat.append(body)
        elif ctype == b"tRNS":
            trns = body
        elif ctype == b"eXIf":
            orientation = _orientation_from_exif_bytes(body)
    if header is None:
        raise _FormatError("no IHDR chunk")
    if not idat:
        raise _FormatError("no image data (IDAT)")
    w, h, depth, color_type, _, _, interlace = header
    channels = _PNG_CHANNELS[color_type]
    bpp = channels * depth // 8  # bytes per pixel

    if interlace:
        passes = []
        for x0, y0, dx, dy in _ADAM7:
            pw, ph = (w - x0 + dx - 1) // dx, (h - y0 + dy - 1) // dy
            if pw > 0 and ph > 0:
                passes.append((x0, y0, dx, dy, pw, ph))
        expected = sum(ph * (1 + pw * bpp) for *_, pw, ph in passes)
    else:
        expected = h * (1 + w * bpp)
    stream = b"".join(idat)
    samples = None
    if p is not None and depth == 16 and color_type in (2, 6) and not interlace:
        samples = _png16_rgb_with_pillow(p, stream, h, w, channels)
    if samples is None:
        out = _png_inflate_unfilter(stream, expected, h, w, bpp, passes if interlace else None)
        if depth == 16:
            samples = out.reshape(h, w * bpp).view(">u2").astype(np.uint16).reshape(h, w, channels)
        else:
            samples = out.reshape(h, w, channels)
    maxv = 65535 if depth == 16 else 255
    if color_type in (4, 6):
        pixels, alpha = samples[:, :, :-1], samples[:, :, -1]
    else:
        pixels, alpha = samples, None
        want = channels * 2
        if trns is not None and len(trns) >= want:
            key = np.array(struct.unpack(f">{channels}H", trns[:want]), dtype=np.uint32)
            if (key <= maxv).all():
                match = (pixels == key.astype(pixels.dtype)).all(axis=2)
                alpha = np.where(match, 0, maxv).astype(pixels.dtype)
    return pixels, alpha, orientation


def _png_inflate_unfilter(stream: bytes, expected: int, h: int, w: int, bpp: int, passes) -> np.ndarray:
    d = zlib.decompressobj()
    try:
        raw = d.decompress(stream, expected)  # max_length: a zlib bomb cannot inflate past this
    except zlib.error as exc:
        raise _FormatError(f"zlib: {exc}") from None
    if len(raw) < expected:
        raise _FormatError(f"image data is short: {len(raw):,} of {expected:,} bytes")
    buf = np.frombuffer(raw, dtype=np.uint8)
    if passes is None:
        return _png_unfilter(buf, h, w, bpp)
    out = np.empty((h, w, bpp), dtype=np.uint8)
    pos = 0
    for x0, y0, dx, dy, pw, ph in passes:
        size = ph * (1 + pw * bpp)
        out[y0::dy, x0::dx] = _png_unfilter(buf[pos : pos + size], ph, pw, bpp)
        pos += size
    return out


_PILLOW_LOW_BYTE_RAWMODE = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def _png16_rgb_with_pillow(p: Path, stream: bytes, h: int, w: int, channels: int) -> np.ndarray | None:
    """16-bit RGB(A) samples decoded by Pillow's C code, or None to fall back to our decoder.

    Pillow unfilters 16-bit rows correctly but keeps only the high byte of each sample. Decoding a second
    time with the little-endian unpacker applied to the big-endian data keeps the low bytes instead.
    This leans on Pillow internals (the tile's raw mode), so anything unexpected returns None, and the
    result is checked against our own decoder on the top-left block before it is trusted.
    """
    planes = []
    try:
        for low in (False, True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(p) as im:
                    if im.format != "PNG" or im.size != (w, h) or len(im.tile) != 1:
                        return None
                    tile = im.tile[0]
                    args = tile[3]
                    rawmode = args if isinstance(args, str) else (args[0] if args else None)
                    if rawmode not in _PILLOW_LOW_BYTE_RAWMODE or tile[0] != "zip":
                        return None
                    if low:
                        lo = _PILLOW_LOW_BYTE_RAWMODE[rawmode]
                        new_args = lo if isinstance(args, str) else (lo, *args[1:])
                        if hasattr(tile, "_replace"):
                            im.tile = [tile._replace(args=new_args)]
                        else:  # pragma: no cover - Pillow < 11 used plain tuples
                            im.tile = [(*tile[:3], new_args)]
                    im.load()
                    planes.append(np.asarray(im))
    except MemoryError:
        raise
    except Exception:
        return None  # our decoder will report the problem precisely
    hi, lo = planes
    if hi.shape != (h, w, channels) or lo.shape != hi.shape or hi.dtype != np.uint8 or lo.dtype != np.uint8:
        return None
    samples = (hi.astype(np.uint16) << 8) | lo
    # trust but verify: the top-left block decoded by us must agree
    bpp = 2 * channels
    k, m = min(h, 8), min(w, 64)
    head = zlib.decompressobj().decompress(stream, k * (1 + w * bpp))
    if len(head) < k * (1 + w * bpp):
        return None
    rows = np.frombuffer(head, dtype=np.uint8).reshape(k, 1 + w * bpp)[:, : 1 + m * bpp]
    try:
        block = _png_unfilter(np.ascontiguousarray(rows).reshape(-1), k, m, bpp)
    except _FormatError:
        return None
    mine = block.reshape(k, m * bpp).view(">u2").reshape(k, m, channels)
    if not np.array_equal(mine, samples[:k, :m]):
        return None
    return samples


def _orientation_from_exif_bytes(body: bytes) -> int | None:
    try:
        exif = Image.Exif()
        exif.load(body)
        value = int(exif.get(0x0112))
    except Exception:
        return None
    return value if 1 <= value <= 8 else None


def _png_unfilter(raw: np.ndarray, h: int, w: int, bpp: int) -> np.ndarray:
    """Undo PNG row filtering: ``raw`` holds h rows of (filter byte + w*bpp bytes) -> (h, w, bpp) uint8."""
    rows = raw[: h * (1 + w * bpp)].reshape(h, 1 + w * bpp)
    ftypes = rows[:, 0]
    if h and int(ftypes.max()) > 4:
        raise _FormatError(f"invalid row filter type {int(ftypes.max())}")
    data = rows[:, 1:].reshape(h, w, bpp)
    out = np.empty((h, w, bpp), dtype=np.uint8)
    if not ((ftypes == 3) | (ftypes == 4)).any():
        # None / Sub / Up only: each row is one vectorised operation
        prev = np.zeros((w, bpp), dtype=np.uint8)
        for y in range(h):
            t = ftypes[y]
            if t == 0:
                out[y] = data[y]
            elif t == 1:
                np.cumsum(data[y], axis=0, dtype=np.uint8, out=out[y])  # wraps modulo 256
            else:
                np.add(data[y], prev, out=out[y])
            prev = out[y]
        return out
    return _png_unfilter_wavefront(data, ftypes, h, w, bpp)


def _png_unfilter_wavefront(data: np.ndarray, ftypes: np.ndarray, h: int, w: int, bpp: int) -> np.ndarray:
    """General unfiltering (Average and Paeth depend on the pixel to the left, so rows are sequential).

    A pixel depends only on its left, upper and upper-left neighbours, so all pixels on an anti-diagonal
    (x + y = const) can be reconstructed at once: H + W - 1 vectorised steps instead of H * W scalar ones.
    """
    w1 = w + 1
    rec = np.zeros(((h + 1) * w1, bpp), dtype=np.int16)  # a zero row above and a zero column to the left
    flat = data.reshape(h * w, bpp).astype(np.int16)
    ft = ftypes.astype(np.int16)
    all_y = np.arange(h)
    for d in range(h + w - 1):
        y0, y1 = max(0, d - w + 1), min(h - 1, d)
        ys = all_y[y0 : y1 + 1]
        xs = d - ys
        idx = (ys + 1) * w1 + xs + 1
        a = rec[idx - 1]
        b = rec[idx - w1]
        c = rec[idx - w1 - 1]
        t = ft[ys][:, None]
        pa = np.abs(b - c)
        pb = np.abs(a - c)
        pc = np.abs(a + b - 2 * c)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
        pred = np.select([t == 1, t == 2, t == 3, t == 4], [a, b, (a + b) >> 1, paeth], 0)
        rec[idx] = (flat[ys * w + xs] + pred) & 0xFF
    return rec.reshape(h + 1, w1, bpp)[1:, 1:].astype(np.uint8)


def _png_filter(img: np.ndarray) -> bytes:
    """Filter (h, w, bpp) uint8 rows for PNG, choosing None / Sub / Up per row (minimum sum of |bytes|).

    Average and Paeth are left out on purpose: they would make our own decoder take its slow path.
    """
    h, w, bpp = img.shape
    x = img.reshape(h, w * bpp)
    sub = x.copy()
    sub[:, bpp:] = x[:, bpp:] - x[:, :-bpp]  # uint8 arithmetic wraps modulo 256
    up = x.copy()
    up[1:] = x[1:] - x[:-1]
    cands = np.stack([x, sub, up])  # (3, h, rowbytes)
    cost = np.abs(cands.view(np.int8).astype(np.int32)).sum(axis=2)  # (3, h)
    choice = cost.argmin(axis=0)
    rows = cands[choice, np.arange(h)]
    out = np.empty((h, 1 + w * bpp), dtype=np.uint8)
    out[:, 0] = choice
    out[:, 1:] = rows
    return out.tobytes()


def _png_chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def _encode_png(samples: np.ndarray, level: int = 6) -> bytes:
    """(H, W, C) uint8/uint16 samples, C = 1 gray, 2 gray+alpha, 3 RGB, 4 RGBA -> PNG file bytes."""
    h, w, c = samples.shape
    depth = 16 if samples.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = samples.astype(">u2" if depth == 16 else np.uint8, copy=False)
    rows = np.ascontiguousarray(raw).view(np.uint8).reshape(h, w, c * depth // 8)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    return b"".join(
        [
            _PNG_SIGNATURE,
            _png_chunk(b"IHDR", ihdr),
            _png_chunk(b"IDAT", zlib.compress(_png_filter(rows), level)),
            _png_chunk(b"IEND", b""),
        ]
    )


# ---- TIFF (own decoder for 16-bit multi-channel files) -----------------------------------------------

_TIFF_COMPRESSION = {1: "none", 5: "lzw", 8: "deflate", 32946: "deflate"}


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
# TIFF field type -> (struct code, size); only integer types are kept, others are skipped
_TIFF_TYPES = {1: ("B", 1), 3: ("H", 2), 4: ("I", 4), 6: ("b", 1), 8: ("h", 2), 9: ("i", 4), 13: ("I", 4),
               16: ("Q", 8), 17: ("q", 8), 18: ("Q", 8)}  # fmt: skip


def _tiff_first_ifd(f) -> dict[int, tuple[int, ...]]:
    """Integer tags of the first IFD of a (classic or Big) TIFF open in binary mode."""
    head = f.read(16)
    if len(head) < 8 or head[:4] not in _TIFF_MAGIC:
        raise _FormatError("not a TIFF header")
    e = "<" if head[:2] == b"II" else ">"
    big = head[2:4] in (b"+\x00", b"\x00+")
    if big:
        if len(head) < 16:
            raise _FormatError("truncated BigTIFF header")
        (ifd,) = struct.unpack(e + "Q", head[8:16])
        count_fmt, count_size, entry_size, inline = "Q", 8, 20, 8
    else:
        (ifd,) = struct.unpack(e + "I", head[4:8])
        count_fmt, count_size, entry_size, inline = "H", 2, 12, 4
    f.seek(ifd)
    raw = f.read(count_size)
    if len(raw) < count_size:
        raise _FormatError("IFD offset past the end of the file")
    (n,) = struct.unpack(e + count_fmt, raw)
    if n > 4096:
        raise _FormatError(f"implausible IFD with {n} entries")
    table = f.read(n * entry_size)
    if len(table) < n * entry_size:
        raise _FormatError("truncated IFD")
    tags: dict[int, tuple[int, ...]] = {}
    for i in range(n):
        entry = table[i * entry_size : (i + 1) * entry_size]
        tag, typ = struct.unpack(e + "HH", entry[:4])
        (count,) = struct.unpack(e + ("Q" if big else "I"), entry[4 : 4 + count_size * 2 if big else 8])
        if typ not in _TIFF_TYPES or count > (1 << 24):
            continue
        code, size = _TIFF_TYPES[typ]
        nbytes = count * size
        field = entry[entry_size - inline :]
        if nbytes <= inline:
            payload = field[:nbytes]
        else:
            (off,) = struct.unpack(e + ("Q" if big else "I"), field)
            pos = f.tell()
            f.seek(off)
            payload = f.read(nbytes)
            f.seek(pos)
            if len(payload) < nbytes:
                raise _FormatError(f"tag {tag} values past the end of the file")
        tags[tag] = struct.unpack(e + code * count, payload)
    return tags


def _tag1(tags: dict, tag: int, default: int) -> int:
    v = tags.get(tag)
    return int(v[0]) if v else default


def _tiff_probe(p: Path) -> dict[int, tuple[int, ...]] | None:
    """The first IFD's tags when this TIFF needs our decoder (16-bit with 2+ samples), else None.

    Pillow reduces 16-bit RGB(A) TIFFs to 8 bits and cannot open 16-bit gray+alpha at all; 16-bit
    single-channel TIFFs, other photometric interpretations (CMYK, YCbCr, ... converted to 8-bit RGB)
    and everything else are left to Pillow (which also reports broken files).
    """
    try:
        with open(p, "rb") as f:
            tags = _tiff_first_ifd(f)
    except (OSError, _FormatError, struct.error):
        return None
    bits = tags.get(258, (1,))
    photometric = _tag1(tags, 262, 2 if _tag1(tags, 277, 1) >= 3 else 1)
    return tags if _tag1(tags, 277, 1) >= 2 and 16 in bits and photometric in (0, 1, 2) else None


def _read_tiff_own(p: Path, tags: dict, limit: int) -> tuple[np.ndarray, np.ndarray | None, int | None]:
    w, h = _tag1(tags, 256, 0), _tag1(tags, 257, 0)
    _check_pixels(p, w, h, limit)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise GensrError(f"{p}: cannot read file ({exc.strerror or exc})") from None
    try:
        pixels, alpha = _decode_tiff16(data, tags)
    except _FormatError as exc:
        raise GensrError(f"{p}: cannot decode 16-bit TIFF ({exc})") from None
    orientation = _tag1(tags, 274, 1)
    return pixels, alpha, (orientation if 1 <= orientation <= 8 else None)


def _decode_tiff16(data: bytes, tags: dict[int, tuple[int, ...]]):
    """Decode the first image of a 16-bit TIFF (strips) -> (pixels (H, W, 1|3) uint16, alpha | None)."""
    w, h = _tag1(tags, 256, 0), _tag1(tags, 257, 0)
    if w <= 0 or h <= 0:
        raise _FormatError(f"invalid size {w}x{h}")
    endian = "<" if data[:2] == b"II" else ">"
    if 322 in tags or 324 in tags:
        raise _FormatError("tiled 16-bit TIFF is not supported; save it with strips or as PNG")
    spp = _tag1(tags, 277, 1)
    bits = tags.get(258, (1,))
    if len(bits) == 1:
        bits = bits * spp
    if any(b != 16 for b in bits):
        raise _FormatError(f"mixed bits per sample {bits}")
    if any(s != 1 for s in tags.get(339, (1,))):
        raise _FormatError("only unsigned integer samples are supported")
    photometric = _tag1(tags, 262, 1 if spp < 3 else 2)
    base = {0: 1, 1: 1, 2: 3}.get(photometric)
    if base is None:
        raise _FormatError(f"photometric interpretation {photometric} is not supported for 16 bits")
    if spp < base:
        raise _FormatError(f"{spp} samples per pixel for photometric {photometric}")
    compression = _tag1(tags, 259, 1)
    method = _TIFF_COMPRESSION.get(compression)
    if method is None:
        raise _FormatError(f"compression {compression} is not supported for 16 bits (use none, LZW or Deflate)")
    predictor = _tag1(tags, 317, 1)
    if predictor not in (1, 2):
        raise _FormatError(f"predictor {predictor} is not supported")
    if _tag1(tags, 266, 1) != 1:
        raise _FormatError("fill order 2 is not supported")
    planar = _tag1(tags, 284, 1)
    offsets = tags.get(273)
    counts = tags.get(279)
    if not offsets or not counts or len(offsets) != len(counts):
        raise _FormatError("missing or inconsistent strip offsets / byte counts")
    rps = min(_tag1(tags, 278, h), h) or h
    strips_per_plane = (h + rps - 1) // rps
    planes = spp if planar == 2 else 1
    if len(offsets) < strips_per_plane * planes:
        raise _FormatError(f"{len(offsets)} strips, expected {strips_per_plane * planes}")
    samples_per_row = w * (1 if planar == 2 else spp)

    dt = np.dtype(endian + "u2")
    plane_arrays = []
    for plane in range(planes):
        parts = []
        for s in range(strips_per_plane):
            rows = min(rps, h - s * rps)
            want = rows * samples_per_row * 2
            i = plane * strips_per_plane + s
            off, cnt = offsets[i], counts[i]
            if off + cnt > len(data):
                raise _FormatError("strip runs past the end of the file (truncated?)")
            chunk = data[off : off + cnt]
            if method == "deflate":
                try:
                    chunk = zlib.decompressobj().decompress(chunk, want)
                except zlib.error as exc:
                    raise _FormatError(f"zlib: {exc}") from None
            elif method == "lzw":
                chunk = _lzw_decode(chunk, want)
            if len(chunk) < want:
                raise _FormatError(f"strip {i} is short: {len(chunk)} of {want} bytes")
            parts.append(np.frombuffer(chunk[:want], dtype=dt).reshape(rows, samples_per_row))
        plane_arrays.append(np.concatenate(parts, axis=0).astype(np.uint16))
    if planar == 2:
        arr = np.stack(plane_arrays, axis=2)
    else:
        arr = plane_arrays[0].reshape(h, w, spp)
    if predictor == 2:
        arr = np.cumsum(arr, axis=1, dtype=np.uint16)  # horizontal differencing, modulo 65536
    if photometric == 0:
        arr[:, :, 0] = 65535 - arr[:, :, 0]
    pixels = arr[:, :, :base]
    alpha = None
    extra = tags.get(338, ())
    if spp > base and extra and extra[0] in (1, 2):
        alpha = arr[:, :, base]
        if extra[0] == 1:  # associated (premultiplied) alpha -> straight alpha
            a = alpha.astype(np.float64)[:, :, None]
            with np.errstate(divide="ignore", invalid="ignore"):
                straight = np.where(a > 0, pixels.astype(np.float64) * 65535.0 / a, 0.0)
            pixels = np.round(np.clip(straight, 0, 65535)).astype(np.uint16)
    return np.ascontiguousarray(pixels), (None if alpha is None else np.ascontiguousarray(alpha))


def _lzw_decode(data: bytes, expected: int) -> bytes:
    """TIFF LZW (MSB-first codes of 9..12 bits, 'early change'); stops after ``expected`` bytes."""
    out = bytearray()
    table: list[bytes] = [bytes([i]) for i in range(256)] + [b"", b""]
    nbits = 9
    bitpos = 0
    nbitsavail = len(data) * 8
    prev: bytes | None = None
    padded = data + b"\x00\x00\x00"
    while bitpos + nbits <= nbitsavail and len(out) < expected:
        byte = bitpos >> 3
        chunk = (padded[byte] << 16) | (padded[byte + 1] << 8) | padded[byte + 2]
        code = (chunk >> (24 - (bitpos & 7) - nbits)) & ((1 << nbits) - 1)
        bitpos += nbits
        if code == 256:  # clear
            del table[258:]
            nbits = 9
            prev = None
            continue
        if code == 257:  # end of information
            break
        if prev is None:
            if code >= 256:
                raise _FormatError("LZW: bad first code")
            entry = table[code]
        else:
            if code < len(table):
                entry = table[code]
                new = prev + entry[:1]
            elif code == len(table):
                entry = new = prev + prev[:1]
            else:
                raise _FormatError("LZW: invalid code")
            if len(table) < 4096:
                table.append(new)
        out += entry
        prev = entry
        if len(table) >= (1 << nbits) - 1 and nbits < 12:
            nbits += 1
    return bytes(out)


def _encode_tiff16(
    samples: np.ndarray,
    *,
    has_alpha: bool,
    compression: str = "deflate",
    predictor: bool = True,
    byteorder: str = "<",
    planar: bool = False,
) -> bytes:
    """(H, W, C) uint16 samples -> baseline TIFF bytes (strips, chunky, Deflate + horizontal predictor).

    ``compression`` ("deflate" or "none"), ``predictor``, ``byteorder`` and ``planar`` (one plane per
    sample) exist so that the decoder's variants can be tested.
    """
    h, w, c = samples.shape
    arr = samples.astype(np.uint16, copy=False)
    if predictor:
        diff = arr.copy()
        diff[:, 1:] = arr[:, 1:] - arr[:, :-1]  # wraps modulo 65536
        arr = diff
    raw = np.ascontiguousarray(arr.astype(np.dtype(byteorder + "u2"), copy=False))
    row_bytes = w * (1 if planar else c) * 2
    rps = max(1, min(h, (1 << 20) // row_bytes))
    strips = []
    for plane in range(c) if planar else [None]:
        src = raw if plane is None else np.ascontiguousarray(raw[:, :, plane])
        for y in range(0, h, rps):
            block = src[y : y + rps].tobytes()
            strips.append(zlib.compress(block, 6) if compression == "deflate" else block)

    e = byteorder
    SHORT, LONG, RATIONAL = 3, 4, 5
    entries = [
        (256, LONG, [w]),
        (257, LONG, [h]),
        (258, SHORT, [16] * c),
        (259, SHORT, [8 if compression == "deflate" else 1]),
        (262, SHORT, [1 if c - has_alpha == 1 else 2]),
        (273, LONG, [0] * len(strips)),  # patched below
        (277, SHORT, [c]),
        (278, LONG, [rps]),
        (279, LONG, [len(s) for s in strips]),
        (282, RATIONAL, [72, 1]),
        (283, RATIONAL, [72, 1]),
        (284, SHORT, [2 if planar else 1]),
        (296, SHORT, [2]),
    ]
    if predictor:
        entries.append((317, SHORT, [2]))
    if has_alpha:
        entries.append((338, SHORT, [2]))  # unassociated alpha
    entries.append((339, SHORT, [1] * c))
    entries.sort()

    # layout: header | strips | IFD | out-of-line values
    pos = 8
    strip_offsets = []
    for s in strips:
        strip_offsets.append(pos)
        pos += len(s) + (len(s) & 1)
    ifd_offset = pos
    entries = [(t, ty, strip_offsets if t == 273 else v) for t, ty, v in entries]
    ifd_size = 2 + 12 * len(entries) + 4
    extra_pos = ifd_offset + ifd_size
    if extra_pos > 0xFFFFFFFF - 1024 * 1024:
        raise _FormatError("image too large for a classic TIFF file")
    fmt = {SHORT: "H", LONG: "I", RATIONAL: "I"}
    ifd = bytearray(struct.pack(e + "H", len(entries)))
    extra = bytearray()
    for tag, typ, values in entries:
        count = len(values) // 2 if typ == RATIONAL else len(values)
        payload = struct.pack(e + fmt[typ] * len(values), *values)
        if len(payload) <= 4:
            field = payload.ljust(4, b"\x00")
        else:
            field = struct.pack(e + "I", extra_pos + len(extra))
            extra += payload + (b"\x00" if len(payload) & 1 else b"")
        ifd += struct.pack(e + "HHI", tag, typ, count) + field
    ifd += struct.pack(e + "I", 0)
    head = (b"II" if e == "<" else b"MM") + struct.pack(e + "HI", 42, ifd_offset)
    body = b"".join(s + (b"\x00" if len(s) & 1 else b"") for s in strips)
    return head + body + bytes(ifd) + bytes(extra)


# --------------------------------------------------------------------------------------------------------
# Tensors and writing
# --------------------------------------------------------------------------------------------------------


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


_LUMA_601 = (0.299, 0.587, 0.114)


def _to_samples(rgb: torch.Tensor | np.ndarray, bit_depth: int | None, gray: bool) -> np.ndarray:
    """The image argument of write_image -> (H, W, 1|3) uint8 / uint16."""
    import torch

    if _is_tensor(rgb):
        t = rgb.detach().to(device="cpu", dtype=torch.float32)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"write_image takes one image, got a batch of {t.shape[0]}")
            t = t[0]
        if t.dim() == 2:
            t = t.unsqueeze(0)
        if t.dim() != 3 or t.shape[0] not in (1, 3):
            raise ValueError(f"expected a (1, 3|1, H, W) or (3|1, H, W) tensor, got shape {tuple(rgb.shape)}")
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
        return _rescale_int(a, target)
    if np.issubdtype(a.dtype, np.floating):
        return _to_samples(torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1))), bit_depth, gray)
    raise ValueError(f"unsupported pixel array dtype {a.dtype} (use uint8, uint16 or float in [0, 1])")


def _rescale_int(a: np.ndarray, bit_depth: int) -> np.ndarray:
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    if a.dtype == np.uint8 and bit_depth == 16:
        return a.astype(np.uint16) * np.uint16(257)
    if a.dtype == np.uint16 and bit_depth == 8:
        return np.round(a.astype(np.float64) / 257.0).astype(np.uint8)
    return a


def _to_alpha(alpha, h: int, w: int, bit_depth: int) -> np.ndarray:
    import torch

    if _is_tensor(alpha):
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
        return _rescale_int(a, bit_depth)
    if np.issubdtype(a.dtype, np.floating):
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
) -> Path:
    """Write an image atomically; the format follows the extension. Returns the path written.

    ``rgb``: a float tensor (1, 3|1, H, W) / (3|1, H, W) in [0, 1], or an (H, W, 3|1) uint8 / uint16 array
    (a float array in [0, 1] also works). ``bit_depth``: 8 or 16; by default 8 for float input and the
    array's own depth for integer input (integer arrays of the other depth are rescaled, x257 or /257).
    ``gray=True`` writes one channel: the first when all three are equal, else BT.601 luma; a
    one-channel input is always written as gray. ``alpha``: float (1, 1, H, W) / (H, W) in [0, 1] or an
    integer / bool (H, W) array. ``quality`` applies to JPEG (4:4:4 chroma at 90 and above) and WebP
    (lossless at 100; WebP has no gray mode, so gray is stored as RGB there).
    The parent folder is created. GensrError for an extension or content the format cannot hold and for
    an output that cannot be written; no partial file is left behind.
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
    samples = _to_samples(rgb, bit_depth, gray)
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
    try:
        with atomic_path(p) as tmp:
            if depth == 16 and fmt == "PNG":
                tmp.write_bytes(_encode_png(full))
            elif depth == 16 and fmt == "TIFF":
                tmp.write_bytes(_encode_tiff16(full, has_alpha=a is not None))
            else:
                _save_pillow(tmp, full, fmt, quality)
    except GensrError as exc:
        raise GensrError(f"{p}: cannot write image ({exc})") from None
    except MemoryError:
        raise
    except OSError as exc:
        raise GensrError(f"{p}: cannot write image ({exc.strerror or _describe(exc)})") from None
    except (ValueError, _FormatError) as exc:
        raise GensrError(f"{p}: cannot write image ({_describe(exc)})") from None
    return p


def _non_folder_ancestor(folder: Path) -> Path | None:
    """The nearest existing ancestor of ``folder`` (itself included) when it is not a folder."""
    for d in (folder, *folder.parents):
        if d.exists():
            return None if d.is_dir() else d
    return None


def _save_pillow(tmp: Path, full: np.ndarray, fmt: str, quality: int) -> None:
    c = full.shape[2]
    im = Image.fromarray(np.ascontiguousarray(full[:, :, 0] if c == 1 else full))
    expected = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[c]
    if im.mode != expected:  # pragma: no cover - Pillow infers these modes from the shape
        im = im.convert(expected)
    kwargs: dict = {}
    if fmt == "JPEG":
        kwargs = {"quality": int(quality), "subsampling": 0 if quality >= 90 else 2}
    elif fmt == "WEBP":
        kwargs = {"lossless": True, "exact": True} if quality >= 100 else {"quality": int(quality)}
    elif fmt == "TIFF":
        from PIL import features

        if features.check("libtiff"):
            kwargs = {"compression": "tiff_adobe_deflate"}
    im.save(tmp, format=fmt, **kwargs)


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
