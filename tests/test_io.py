"""gensr.io: formats, bit depths, gray / alpha, EXIF orientation, mode conversion, errors, listing inputs."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps, features

from gensr import io as gio
from gensr.errors import GensrError
from gensr.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageData,
    list_images,
    pixels_to_tensor,
    png16,
    read_array,
    read_image,
    tensor_to_pixels,
    tiff16,
    write_image,
)

RNG = np.random.default_rng(1234)


def rand(shape, dtype=np.uint8):
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def smooth_rgb(h=48, w=64):
    """A smooth 8-bit RGB image (lossy codecs keep it close)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // (w - 1), y * 255 // (h - 1), (x + y) * 255 // (h + w - 2)], 2).astype(np.uint8)


def no_temp_files(folder: Path) -> bool:
    return not any("tmp" in f.name for f in folder.iterdir())  # gensr temporaries: .NAME.PID.RAND.gensr-tmp


# ---- test-side PNG encoder with explicit filters (to exercise every filter and Adam7 in the decoder) ----


def _filter_rows(img: np.ndarray, ftypes: list[int]) -> bytes:
    h, w, bpp = img.shape
    x = img.reshape(h, w * bpp).astype(np.int32)
    a = np.zeros_like(x)
    a[:, bpp:] = x[:, :-bpp]
    b = np.zeros_like(x)
    b[1:] = x[:-1]
    c = np.zeros_like(x)
    c[1:, bpp:] = x[:-1, :-bpp]
    pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
    paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    preds = [np.zeros_like(x), a, b, (a + b) >> 1, paeth]
    out = bytearray()
    for y in range(h):
        t = ftypes[y % len(ftypes)]
        out.append(t)
        out += ((x[y] - preds[t][y]) & 255).astype(np.uint8).tobytes()
    return bytes(out)


def png_bytes(samples: np.ndarray, ftypes=(0, 1, 2, 3, 4), interlace=False, extra_chunks=()) -> bytes:
    h, w, c = samples.shape
    depth = 16 if samples.dtype == np.uint16 else 8
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = np.ascontiguousarray(samples.astype(">u2" if depth == 16 else np.uint8)).view(np.uint8)
    img = raw.reshape(h, w, c * depth // 8)
    if interlace:
        data = b""
        for x0, y0, dx, dy in png16._ADAM7:
            sub = img[y0::dy, x0::dx]
            if sub.size:
                data += _filter_rows(np.ascontiguousarray(sub), list(ftypes))
    else:
        data = _filter_rows(img, list(ftypes))
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace))
    chunks = [png16._png_chunk(b"IHDR", ihdr), *extra_chunks, png16._png_chunk(b"IDAT", zlib.compress(data))]
    return png16._PNG_SIGNATURE + b"".join(chunks) + png16._png_chunk(b"IEND", b"")


# ---- basics -----------------------------------------------------------------------------------------------


def test_constants():
    assert DEFAULT_MAX_PIXELS == 16384 * 16384
    assert IMAGE_EXTENSIONS == (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_png_8bit_roundtrip(tmp_path, channels, with_alpha):
    px = rand((17, 23, channels))
    alpha = rand((17, 23)) if with_alpha else None
    out = write_image(tmp_path / "a.png", px, alpha)
    assert out == tmp_path / "a.png"
    img = read_image(out)
    assert img.bit_depth == 8 and img.pixels.dtype == np.uint8
    assert img.is_gray == (channels == 1)
    assert img.size == (17, 23)
    np.testing.assert_array_equal(img.pixels, px)
    if with_alpha:
        np.testing.assert_array_equal(img.alpha, alpha)
    else:
        assert img.alpha is None
    assert img.path == out
    assert no_temp_files(tmp_path)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_16bit_roundtrip_exact(tmp_path, ext, channels, with_alpha):
    px = rand((19, 31, channels), np.uint16)
    px[0, 0] = 65535
    px[0, 1] = 256  # values > 255 must survive
    alpha = rand((19, 31), np.uint16) if with_alpha else None
    path = write_image(tmp_path / f"a{ext}", px, alpha)
    img = read_image(path)
    assert img.bit_depth == 16 and img.pixels.dtype == np.uint16
    assert img.is_gray == (channels == 1)
    np.testing.assert_array_equal(img.pixels, px)
    if with_alpha:
        assert img.alpha.dtype == np.uint16
        np.testing.assert_array_equal(img.alpha, alpha)
    else:
        assert img.alpha is None
    # Other readers see a valid file: Pillow opens it (reducing multi-channel 16-bit to the high byte);
    # it has no mode for 16-bit gray+alpha TIFF at all, so that one case is skipped.
    if not (ext == ".tif" and channels == 1 and with_alpha):
        with Image.open(path) as im:
            im.load()
            if channels == 3:
                np.testing.assert_array_equal(np.asarray(im)[:, :, :3], px >> 8)


@pytest.mark.parametrize("ext", [".png", ".tif"])
@pytest.mark.parametrize("channels", [1, 3])
def test_dark_16bit_stays_16bit(tmp_path, ext, channels):
    px = rand((8, 9, channels), np.uint16) % 200  # max < 256: still a 16-bit image
    img = read_image(write_image(tmp_path / f"dark{ext}", px))
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels, px)


def test_16bit_from_float_tensor(tmp_path):
    t = torch.rand(1, 3, 10, 12)
    img = read_image(write_image(tmp_path / "f.png", t, bit_depth=16))
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels, tensor_to_pixels(t, 16))


def test_bit_depth_conversion_of_integer_arrays(tmp_path):
    px8 = rand((5, 6, 3))
    img = read_image(write_image(tmp_path / "up.png", px8, bit_depth=16))
    np.testing.assert_array_equal(img.pixels, px8.astype(np.uint16) * 257)
    img = read_image(write_image(tmp_path / "down.png", img.pixels, bit_depth=8))
    np.testing.assert_array_equal(img.pixels, px8)


# ---- own PNG decoder ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [1, 2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_png_decoder_all_filters(dtype, channels, interlace):
    samples = rand((13, 11, channels), dtype)
    for ftypes in [(0,), (1,), (2,), (3,), (4,), (4, 3, 2, 1, 0)]:
        data = png_bytes(samples, ftypes, interlace=interlace)
        pixels, alpha, orientation = png16._decode_png(data)
        if channels in (2, 4):
            np.testing.assert_array_equal(pixels, samples[:, :, :-1])
            np.testing.assert_array_equal(alpha, samples[:, :, -1])
        else:
            np.testing.assert_array_equal(pixels, samples)
            assert alpha is None
        assert orientation is None


def test_png_decoder_matches_pillow_on_pillow_files():
    """Pillow's encoder picks filters adaptively (Average and Paeth included) - decode its 8-bit output."""
    import io as _io

    img = np.concatenate([smooth_rgb(40, 50), rand((40, 50, 3))], axis=0)
    buf = _io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    pixels, alpha, _ = png16._decode_png(buf.getvalue())
    np.testing.assert_array_equal(pixels, img)


@pytest.mark.parametrize("channels", [2, 3, 4])
@pytest.mark.parametrize("interlace", [False, True])
def test_read_png16_written_elsewhere(tmp_path, monkeypatch, channels, interlace):
    """Files with Average / Paeth rows (as libpng writes them): Pillow's fast path or our decoder."""
    samples = rand((21, 75, channels), np.uint16)
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(samples, (4, 3, 1, 2, 0), interlace=interlace))
    calls = []
    real = png16._png_inflate_unfilter
    monkeypatch.setattr(png16, "_png_inflate_unfilter", lambda *a: calls.append(1) or real(*a))
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, samples[:, :, : 1 if channels == 2 else 3])
    np.testing.assert_array_equal(img.alpha, samples[:, :, -1] if channels in (2, 4) else None)
    fast = channels in (3, 4) and not interlace
    assert len(calls) == (0 if fast else 1)


def test_png16_fast_path_is_verified(tmp_path, monkeypatch):
    """If Pillow's low-byte trick ever stops working, the block check notices and our decoder takes over."""
    samples = rand((20, 30, 3), np.uint16)
    path = tmp_path / "x.png"
    path.write_bytes(png_bytes(samples, (4,)))
    monkeypatch.setitem(png16._PILLOW_LOW_BYTE_RAWMODE, "RGB;16B", "RGB;16B")  # would repeat the high bytes
    calls = []
    real = png16._png_inflate_unfilter
    monkeypatch.setattr(png16, "_png_inflate_unfilter", lambda *a: calls.append(1) or real(*a))
    np.testing.assert_array_equal(read_image(path).pixels, samples)
    assert calls == [1]


def test_png16_gray_transparency(tmp_path):
    px = rand((5, 6, 1), np.uint16)
    px[1, 2] = 4321
    path = tmp_path / "g.png"
    path.write_bytes(png_bytes(px, (4,), extra_chunks=[png16._png_chunk(b"tRNS", struct.pack(">H", 4321))]))
    img = read_image(path)
    assert img.is_gray and img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels, px)
    np.testing.assert_array_equal(img.alpha, np.where(px[:, :, 0] == 4321, 0, 65535))


def test_png16_transparency_chunk_and_exif(tmp_path):
    px = rand((6, 7, 3), np.uint16)
    px[2, 3] = (1000, 2000, 3000)
    trns = png16._png_chunk(b"tRNS", struct.pack(">3H", 1000, 2000, 3000))
    exif = Image.Exif()
    exif[0x0112] = 8
    exif_chunk = png16._png_chunk(b"eXIf", exif.tobytes())
    path = tmp_path / "t.png"
    path.write_bytes(png_bytes(px, (4,), extra_chunks=[trns, exif_chunk]))
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, np.rot90(px, 1))
    expected_alpha = np.full((6, 7), 65535, np.uint16)
    expected_alpha[2, 3] = 0
    np.testing.assert_array_equal(img.alpha, np.rot90(expected_alpha, 1))


# ---- other formats --------------------------------------------------------------------------------------


def test_jpeg_read_write(tmp_path):
    px = smooth_rgb()
    img = read_image(write_image(tmp_path / "a.jpg", px, quality=95))
    assert img.bit_depth == 8 and img.pixels.shape == px.shape and img.alpha is None
    assert np.abs(img.pixels.astype(int) - px).mean() < 2.0
    gray = read_image(write_image(tmp_path / "g.jpeg", px[:, :, :1]))
    assert gray.is_gray


def test_webp_read_write(tmp_path):
    px, alpha = rand((20, 24, 3)), rand((20, 24))
    img = read_image(write_image(tmp_path / "a.webp", px, alpha, quality=100))  # lossless
    np.testing.assert_array_equal(img.pixels, px)
    np.testing.assert_array_equal(img.alpha, alpha)
    lossy = read_image(write_image(tmp_path / "b.webp", smooth_rgb(), quality=90))
    assert np.abs(lossy.pixels.astype(int) - smooth_rgb()).mean() < 3.0


def test_bmp_read_write(tmp_path):
    px = rand((9, 10, 3))
    np.testing.assert_array_equal(read_array(write_image(tmp_path / "a.bmp", px)), px)
    g = rand((9, 10, 1))
    img = read_image(write_image(tmp_path / "g.bmp", g))
    np.testing.assert_array_equal(img.pixels[:, :, 0], g[:, :, 0])


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("with_alpha", [False, True])
def test_tiff_8bit_read_write(tmp_path, channels, with_alpha):
    px = rand((11, 13, channels))
    alpha = rand((11, 13)) if with_alpha else None
    img = read_image(write_image(tmp_path / "a.tiff", px, alpha))
    assert img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels, px)
    if with_alpha:
        np.testing.assert_array_equal(img.alpha, alpha)


@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("compression", ["none", "deflate"])
@pytest.mark.parametrize("predictor", [False, True])
@pytest.mark.parametrize("planar", [False, True])
def test_tiff16_decoder_variants(tmp_path, byteorder, compression, predictor, planar):
    samples = rand((70, 9, 4), np.uint16)
    data = tiff16._encode_tiff16(
        samples,
        has_alpha=True,
        compression=compression,
        predictor=predictor,
        byteorder=byteorder,
        planar=planar,
    )
    path = tmp_path / "v.tif"
    path.write_bytes(data)
    img = read_image(path)
    np.testing.assert_array_equal(img.pixels, samples[:, :, :3])
    np.testing.assert_array_equal(img.alpha, samples[:, :, 3])


def test_tiff16_premultiplied_alpha(tmp_path):
    rgb = np.array([[[1000, 2000, 30000], [5, 6, 7]]], np.uint16)
    alpha = np.array([[32768, 0]], np.uint16)
    data = tiff16._encode_tiff16(np.concatenate([rgb, alpha[:, :, None]], 2), has_alpha=True)
    extra = struct.pack("<HHIH", 338, 3, 1, 2)
    assert data.count(extra) == 1
    data = data.replace(extra, struct.pack("<HHIH", 338, 3, 1, 1))  # ExtraSamples: associated alpha
    path = tmp_path / "pm.tif"
    path.write_bytes(data)
    img = read_image(path)
    np.testing.assert_array_equal(img.alpha, alpha)
    np.testing.assert_array_equal(img.pixels[0, 0], np.round(rgb[0, 0].astype(np.float64) * 65535 / 32768))
    np.testing.assert_array_equal(img.pixels[0, 1], [0, 0, 0])


@pytest.mark.skipif(not features.check("libtiff"), reason="Pillow without libtiff cannot write LZW")
def test_tiff_lzw_decoder_against_libtiff(tmp_path):
    """Decode LZW strips written by libtiff with our decoder (the 16-bit RGB path uses it)."""
    g16 = rand((40, 37), np.uint16)
    g16[:20] = 1234  # some repetition so that codes grow past 9 bits and back after a clear
    path = tmp_path / "g.tif"
    Image.fromarray(g16).save(path, compression="tiff_lzw")
    with open(path, "rb") as f:
        tags = tiff16._tiff_first_ifd(f)
    pixels, alpha = tiff16._decode_tiff16(path.read_bytes(), tags)
    np.testing.assert_array_equal(pixels[:, :, 0], g16)
    big = np.tile(smooth_rgb(64, 64), (4, 4, 1))
    path8 = tmp_path / "rgb8.tif"
    Image.fromarray(big).save(path8, compression="tiff_lzw")
    with open(path8, "rb") as f:
        tags = tiff16._tiff_first_ifd(f)
    data = path8.read_bytes()
    decoded = b"".join(tiff16._lzw_decode(data[o : o + n], 1 << 30) for o, n in zip(tags[273], tags[279], strict=True))
    assert decoded[: big.size] == big.tobytes()


def test_16bit_gray_tiff_written_by_pillow(tmp_path):
    g16 = rand((12, 14), np.uint16)
    Image.fromarray(g16).save(tmp_path / "g.tif")
    img = read_image(tmp_path / "g.tif")
    assert img.bit_depth == 16 and img.is_gray
    np.testing.assert_array_equal(img.pixels[:, :, 0], g16)


# ---- EXIF orientation and mode conversion -----------------------------------------------------------


def test_exif_orientation_jpeg(tmp_path):
    px = smooth_rgb(20, 40)
    px[:, :20] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rot.jpg"
    Image.fromarray(px).save(path, exif=exif, quality=95)
    img = read_image(path)
    assert img.size == (40, 20)  # rotated: H and W swapped
    with Image.open(path) as im:
        expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(img.pixels, expected)
    assert img.pixels[5, 10, 0] > 200 and img.pixels[5, 10, 2] < 60  # the red half is now on top


@pytest.mark.parametrize("orientation", range(1, 9))
def test_orientation_matches_pillow(orientation):
    px = rand((5, 7, 3))
    im = Image.fromarray(px)
    im.getexif()[0x0112] = orientation
    expected = np.asarray(ImageOps.exif_transpose(im))
    np.testing.assert_array_equal(gio._orient(px, orientation), expected)


def test_cmyk_to_rgb(tmp_path):
    Image.new("CMYK", (6, 5), (0, 255, 0, 0)).save(tmp_path / "c.tif")
    img = read_image(tmp_path / "c.tif")
    assert img.pixels.shape == (5, 6, 3) and img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels[0, 0], (255, 0, 255))
    Image.new("CMYK", (6, 5), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    assert read_image(tmp_path / "c.jpg").pixels.shape == (5, 6, 3)


def test_palette_conversion(tmp_path):
    idx = (np.arange(30).reshape(5, 6) % 3).astype(np.uint8)
    palette = [10, 20, 30, 200, 100, 50, 0, 255, 0] + [0] * (256 * 3 - 9)
    im = Image.frombytes("P", (6, 5), idx.tobytes())
    im.putpalette(palette)
    im.save(tmp_path / "p.png")
    img = read_image(tmp_path / "p.png")
    assert img.alpha is None and img.pixels.shape == (5, 6, 3)
    np.testing.assert_array_equal(img.pixels[0, :3], [[10, 20, 30], [200, 100, 50], [0, 255, 0]])
    im.save(tmp_path / "pt.png", transparency=1)
    img = read_image(tmp_path / "pt.png")
    assert img.alpha is not None
    np.testing.assert_array_equal(img.alpha, np.where(idx == 1, 0, 255))
    np.testing.assert_array_equal(img.pixels[0, 0], [10, 20, 30])


def test_gray_alpha_and_bilevel_and_int_modes(tmp_path):
    la = np.stack([rand((4, 5)), rand((4, 5))], 2)
    Image.fromarray(la).save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.is_gray and img.bit_depth == 8
    np.testing.assert_array_equal(img.pixels[:, :, 0], la[:, :, 0])
    np.testing.assert_array_equal(img.alpha, la[:, :, 1])

    Image.new("1", (4, 3), 1).save(tmp_path / "b.png")
    img = read_image(tmp_path / "b.png")
    assert img.is_gray and img.bit_depth == 8 and (img.pixels == 255).all()

    Image.fromarray(np.array([[-5, 300, 70000]], np.int32)).save(tmp_path / "i.tif")
    img = read_image(tmp_path / "i.tif")
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels[0, :, 0], [0, 300, 65535])

    Image.fromarray(np.array([[0.0, 0.5, 2.0]], np.float32)).save(tmp_path / "f.tif")
    img = read_image(tmp_path / "f.tif")
    assert img.bit_depth == 16
    np.testing.assert_array_equal(img.pixels[0, :, 0], [0, 32768, 65535])


def test_unsupported_mode(tmp_path):
    Image.new("LAB", (4, 3), (10, 20, 30)).save(tmp_path / "lab.tif")
    with pytest.raises(GensrError, match=r"lab\.tif.*unsupported image mode 'LAB'"):
        read_image(tmp_path / "lab.tif")


# ---- tensors ------------------------------------------------------------------------------------------


def test_tensors_and_exact_16bit_roundtrip():
    px = np.arange(65536, dtype=np.uint16).reshape(256, 256, 1)
    img = ImageData(px, alpha=px[:, :, 0].copy())
    t = img.rgb_tensor()
    assert t.shape == (1, 3, 256, 256) and t.dtype == torch.float32
    assert torch.equal(t[:, 0], t[:, 2])  # gray replicated
    assert float(t.max()) == 1.0 and float(t.min()) == 0.0
    np.testing.assert_array_equal(tensor_to_pixels(t[:, :1], 16), px)
    a = img.alpha_tensor()
    assert a.shape == (1, 1, 256, 256)
    np.testing.assert_array_equal(tensor_to_pixels(a, 16)[:, :, 0], px[:, :, 0])

    px8 = rand((4, 5, 3))
    t8 = ImageData(px8).rgb_tensor()
    np.testing.assert_array_equal(tensor_to_pixels(t8), px8)
    np.testing.assert_array_equal(tensor_to_pixels(t8[0]), px8)
    assert ImageData(px8).alpha_tensor() is None
    # pixels_to_tensor keeps the channel count and is the exact inverse of tensor_to_pixels
    assert torch.equal(pixels_to_tensor(px8), t8)
    assert pixels_to_tensor(px[:, :, 0]).shape == (1, 1, 256, 256)
    np.testing.assert_array_equal(tensor_to_pixels(pixels_to_tensor(px), 16), px)


def test_tensor_to_pixels_clamps_and_rounds():
    t = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 2.0]).reshape(1, 1, 1, 7)
    np.testing.assert_array_equal(tensor_to_pixels(t)[0, :, 0], [0, 0, 0, 2, 128, 255, 255])
    with pytest.raises(ValueError):
        tensor_to_pixels(torch.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError):
        tensor_to_pixels(torch.zeros(1, 3, 4, 4), bit_depth=12)


def test_image_data_validates():
    with pytest.raises(ValueError):
        ImageData(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError):
        ImageData(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError):
        ImageData(np.zeros((4, 4, 3), np.uint8), alpha=np.zeros((4, 4), np.uint16))


def test_write_gray_from_tensor(tmp_path):
    same = torch.rand(1, 1, 6, 7).expand(1, 3, 6, 7)
    img = read_image(write_image(tmp_path / "same.png", same, gray=True))
    assert img.is_gray
    np.testing.assert_array_equal(img.pixels, tensor_to_pixels(same[:, :1]))
    rgb = torch.rand(3, 6, 7)
    img = read_image(write_image(tmp_path / "luma.png", rgb, gray=True))
    luma = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    np.testing.assert_array_equal(img.pixels, tensor_to_pixels(luma[None]))
    alpha = torch.rand(1, 1, 6, 7)
    img = read_image(write_image(tmp_path / "ga.png", rgb, alpha, gray=True))
    assert img.is_gray
    np.testing.assert_array_equal(img.alpha, tensor_to_pixels(alpha)[:, :, 0])


# ---- errors -------------------------------------------------------------------------------------------


def _one_line_naming(exc: pytest.ExceptionInfo, name: str) -> None:
    msg = str(exc.value)
    assert name in msg, msg
    assert "\n" not in msg


@pytest.mark.filterwarnings("ignore:Truncated File Read")
def test_read_errors(tmp_path):
    cases = {}
    cases["missing.png"] = None
    (tmp_path / "folder.png").mkdir()
    cases["folder.png"] = "folder"
    (tmp_path / "empty.png").write_bytes(b"")
    cases["empty.png"] = "empty"
    (tmp_path / "text.png").write_text("hello, not an image\n")
    cases["text.png"] = "not an image"
    (tmp_path / "notes.txt").write_text("hello\n")
    cases["notes.txt"] = "not an image"

    good = tmp_path / "good.png"
    write_image(good, rand((64, 64, 3)))
    data = good.read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    cases["trunc.png"] = "truncated"
    bad_crc = bytearray(data)
    bad_crc[60] ^= 0xFF  # inside the IDAT data
    (tmp_path / "crc.png").write_bytes(bytes(bad_crc))
    cases["crc.png"] = None
    broken_type = bytearray(data)
    broken_type[40] ^= 0xFF  # the IDAT chunk's type code
    (tmp_path / "header.png").write_bytes(bytes(broken_type))
    cases["header.png"] = "corrupt or truncated PNG"

    write_image(tmp_path / "good.jpg", smooth_rgb(64, 64))
    jdata = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "trunc.jpg").write_bytes(jdata[: len(jdata) // 2])
    cases["trunc.jpg"] = "truncated"

    write_image(tmp_path / "good16.png", rand((64, 64, 3), np.uint16))
    d16 = (tmp_path / "good16.png").read_bytes()
    (tmp_path / "trunc16.png").write_bytes(d16[: len(d16) // 2])
    cases["trunc16.png"] = "truncated"
    write_image(tmp_path / "good16.tif", rand((64, 64, 3), np.uint16))
    t16 = (tmp_path / "good16.tif").read_bytes()
    (tmp_path / "trunc16.tif").write_bytes(t16[: len(t16) - 20])
    cases["trunc16.tif"] = None

    for name, words in cases.items():
        with pytest.raises(GensrError) as exc:
            read_image(tmp_path / name)
        _one_line_naming(exc, name)
        if words:
            assert words in str(exc.value), str(exc.value)


def test_pixel_limit_checked_before_decoding(tmp_path, monkeypatch):
    # A header claiming 100000 x 100000 pixels with almost no data: refused on the header alone.
    ihdr = struct.pack(">IIBBBBB", 100000, 100000, 8, 2, 0, 0, 0)
    bomb = png16._PNG_SIGNATURE + png16._png_chunk(b"IHDR", ihdr) + png16._png_chunk(b"IDAT", zlib.compress(b""))
    (tmp_path / "bomb.png").write_bytes(bomb + png16._png_chunk(b"IEND", b""))
    with pytest.raises(GensrError, match=r"bomb\.png.*over the limit of 268,435,456") as exc:
        read_image(tmp_path / "bomb.png")
    _one_line_naming(exc, "bomb.png")
    ihdr16 = struct.pack(">IIBBBBB", 100000, 100000, 16, 2, 0, 0, 0)
    (tmp_path / "bomb16.png").write_bytes(png16._PNG_SIGNATURE + png16._png_chunk(b"IHDR", ihdr16))
    with pytest.raises(GensrError, match=r"bomb16\.png.*over the limit"):
        read_image(tmp_path / "bomb16.png")

    small = write_image(tmp_path / "small.png", rand((20, 20, 3)))
    with pytest.raises(GensrError, match=r"small\.png.*20x20 = 400 pixels, over the limit of 399 pixels"):
        read_image(small, max_pixels=399)
    assert read_image(small, max_pixels=400).size == (20, 20)
    monkeypatch.setenv("GENSR_MAX_PIXELS", "100")
    with pytest.raises(GensrError, match=r"small\.png.*over the limit of 100"):
        read_image(small)
    monkeypatch.setenv("GENSR_MAX_PIXELS", "lots")
    with pytest.raises(GensrError, match="GENSR_MAX_PIXELS"):
        read_image(small)
    monkeypatch.delenv("GENSR_MAX_PIXELS")

    # Pillow's own guard never decides when an image is opened: a lower Pillow limit does not block images under
    # ours, an image far over ours is still reported by us, in one line, and the library never changes that
    # process-wide setting of the application.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    assert read_image(small).size == (20, 20)
    assert Image.MAX_IMAGE_PIXELS == 10
    with pytest.raises(GensrError, match=r"small\.png.*over the"):
        read_image(small, max_pixels=50)
    assert Image.MAX_IMAGE_PIXELS == 10
    # Pillow checks a TIFF again when decoding it: the application's lower setting is named, in one line; the
    # gensr command (the application) raises it to gensr's limit when it starts.
    tif = write_image(tmp_path / "small.tif", rand((20, 20, 3)))
    with pytest.raises(GensrError, match=r"small\.tif.*Image\.MAX_IMAGE_PIXELS") as exc:
        read_image(tif)
    _one_line_naming(exc, "small.tif")
    from gensr.cli import _let_gensr_limit_decide

    _let_gensr_limit_decide()
    assert Image.MAX_IMAGE_PIXELS == 16384 * 16384
    assert read_image(tif).size == (20, 20)


def test_write_errors(tmp_path):
    px = rand((4, 5, 3))
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a folder")
    with pytest.raises(GensrError, match="blocker is a file") as exc:
        write_image(blocker / "out.png", px)
    _one_line_naming(exc, "out.png")
    with pytest.raises(GensrError, match="blocker is a file") as exc:
        write_image(blocker / "sub" / "out.png", px)
    _one_line_naming(exc, "out.png")

    out = tmp_path / "out"
    out.mkdir()
    (out / "dir.png").mkdir()  # the target itself is a folder: the rename fails
    with pytest.raises(GensrError) as exc:
        write_image(out / "dir.png", px)
    _one_line_naming(exc, "dir.png")

    with pytest.raises(GensrError, match=r"a\.jpg.*alpha.*\.png") as exc:
        write_image(out / "a.jpg", px, rand((4, 5)))
    with pytest.raises(GensrError, match=r"b\.jpg.*16-bit"):
        write_image(out / "b.jpg", px, bit_depth=16)
    with pytest.raises(GensrError, match=r"c\.webp.*16-bit"):
        write_image(out / "c.webp", rand((4, 5, 3), np.uint16))
    with pytest.raises(GensrError, match=r"d\.bmp.*alpha"):
        write_image(out / "d.bmp", px, rand((4, 5)))
    with pytest.raises(GensrError, match=r"e\.gif.*unknown image extension"):
        write_image(out / "e.gif", px)
    with pytest.raises(GensrError, match=r"noext.*unknown image extension"):
        write_image(out / "noext", px)
    assert sorted(f.name for f in out.iterdir()) == ["dir.png"]  # nothing written, no temp files


def test_write_creates_parent_and_replaces(tmp_path):
    target = tmp_path / "deep" / "er" / "x.png"
    first = rand((4, 5, 3))
    write_image(target, first)
    second = rand((6, 7, 3))
    with pytest.raises(GensrError, match="output exists"):  # never replaced without overwrite=True
        write_image(target, second)
    np.testing.assert_array_equal(read_array(target), first)
    write_image(target, second, overwrite=True)
    np.testing.assert_array_equal(read_array(target), second)
    assert no_temp_files(target.parent)


# ---- list_images --------------------------------------------------------------------------------------


def test_list_images(tmp_path, monkeypatch):
    d = tmp_path / "imgs"
    d.mkdir()
    for name in ["b.png", "a.JPG", "c.tiff", "notes.txt", "z.webp"]:
        (d / name).write_bytes(b"x")
    (d / "sub").mkdir()
    (d / "sub" / "deep.png").write_bytes(b"x")
    odd = tmp_path / "photo.raw"
    odd.write_bytes(b"x")

    assert list_images([d]) == [d / "a.JPG", d / "b.png", d / "c.tiff", d / "z.webp"]
    assert list_images([str(d / "b.png"), odd]) == [d / "b.png", odd]  # explicit odd extension kept
    assert list_images([str(d / "*.png"), str(d / "*.t*")]) == [d / "b.png", d / "c.tiff"]
    assert list_images([d / "b.png", d]) == [d / "b.png", d / "a.JPG", d / "c.tiff", d / "z.webp"]  # dedup
    monkeypatch.chdir(tmp_path)
    assert list_images(["imgs/*.webp"]) == [Path("imgs/z.webp")]

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("no images")
    for bad, name in [
        ([tmp_path / "nope.png"], "nope.png"),
        ([empty], "empty"),
        ([str(d / "*.gif")], "*.gif"),
    ]:
        with pytest.raises(GensrError) as exc:
            list_images(bad)
        _one_line_naming(exc, name)
    with pytest.raises(GensrError, match="not an image"):
        read_image(odd)


def test_written_files_get_normal_permissions(tmp_path):
    import os

    from gensr.fileutil import _umask

    out = tmp_path / "perm.png"
    write_image(out, np.zeros((4, 4, 3), np.uint8))
    assert (os.stat(out).st_mode & 0o777) == (0o666 & ~_umask())
