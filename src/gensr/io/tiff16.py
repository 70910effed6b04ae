"""Own TIFF codec for 16-bit multi-channel files (strips; uncompressed, Deflate or LZW; horizontal predictor).

Internal to :mod:`gensr.io`."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from gensr.errors import GensrError
from gensr.io.limits import _check_pixels
from gensr.io.png16 import _FormatError

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
