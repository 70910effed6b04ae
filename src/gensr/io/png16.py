"""Own PNG codec for what Pillow reduces to 8 bits: 16-bit RGB, RGBA and gray+alpha (read and write).

zlib, the five row filters, Adam7 interlacing, tRNS and eXIf orientation. Internal to :mod:`gensr.io`."""

from __future__ import annotations

import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from gensr.errors import GensrError
from gensr.io.limits import _check_pixels, pillow_open

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

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
                with pillow_open(p) as im:
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
