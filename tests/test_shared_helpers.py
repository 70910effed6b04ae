"""The helpers that replaced repeated code (issue 9): each computes exactly what the copies it replaced did, and
the library leaves Pillow's process-wide pixel guard alone."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, UnidentifiedImageError

from gensr.checkpoints.detected import rename_keys
from gensr.config import check_at_least, check_finite, check_positive, check_positive_value
from gensr.errors import GensrError
from gensr.io import float_to_pixels, read_image, rescale_pixels, write_image
from gensr.io.limits import pillow_open
from gensr.metrics.batches import image_batches
from gensr.nn.torchvision_layout import weights_file, weights_source


def test_float_to_pixels_is_the_float64_round_half_even_of_the_copies_it_replaced():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-0.2, 1.2, 5000), np.arange(256) / 255 + 0.5 / 255, [0.0, 1.0]])
    for depth, maxv, dtype in ((8, 255.0, np.uint8), (16, 65535.0, np.uint16)):
        old = np.round(np.clip(x, 0.0, 1.0) * maxv).astype(dtype)
        new = float_to_pixels(x, depth)
        assert new.dtype == dtype and np.array_equal(new, old)
    assert float_to_pixels(np.array([0.5 / 255, 1.5 / 255])).tolist() == [0, 2]  # half to even


def test_rescale_pixels_is_the_div_257_of_the_copies_it_replaced():
    a16 = np.arange(0, 65536, 7, dtype=np.uint16).reshape(-1, 1, 1)
    assert np.array_equal(rescale_pixels(a16, 8), np.round(a16.astype(np.float64) / 257.0).astype(np.uint8))
    a8 = np.arange(256, dtype=np.uint8).reshape(16, 16, 1)
    assert rescale_pixels(a8, 8) is a8
    assert np.array_equal(rescale_pixels(a8, 16), a8.astype(np.uint16) * 257)


def test_config_checks_name_the_field():
    class Cfg:
        nf, nb, flag = 8, 0, True

    check_positive(Cfg(), "nf")
    with pytest.raises(ValueError, match="nb must be a positive integer, got 0"):
        check_positive(Cfg(), "nf", "nb")
    with pytest.raises(ValueError, match="flag must be a positive integer, got True"):
        check_positive_value("flag", True)
    check_at_least("workers", 0, 0)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        check_at_least("batch_size", 0)
    check_finite("gp_weight", 0.0, 0.0)
    with pytest.raises(ValueError, match="gp_weight must be a finite number >= 0, got -1.0"):
        check_finite("gp_weight", -1.0, 0.0)
    with pytest.raises(ValueError, match=r"lr must be a finite number > 0 and <= 1, got inf"):
        check_finite("lr", float("inf"), 0.0, 1.0, open_low=True)


def test_rename_keys_keeps_order_and_refuses_two_keys_on_one_name():
    sd = {"b": torch.zeros(1), "a": torch.ones(1)}
    out = rename_keys(sd, lambda k: k.upper())
    assert list(out) == ["B", "A"] and out["A"] is sd["a"]
    with pytest.raises(GensrError, match="two checkpoint keys map to 'x'"):
        rename_keys(sd, lambda k: "x")


def test_image_batches_cut_every_chunk_after_converting_it():
    seen = []

    def convert(chunk):
        seen.append(type(chunk).__name__)
        return torch.as_tensor(chunk)

    batches = list(image_batches([np.zeros((5, 1)), torch.zeros(2, 1)], 2, convert))
    assert [b.shape[0] for b in batches] == [2, 2, 1, 2] and seen == ["ndarray", "Tensor"]
    assert [b.shape[0] for b in image_batches(np.zeros((3, 1)), 5, convert)] == [3]
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        next(image_batches(np.zeros((3, 1)), 0, convert))


def test_weights_come_from_the_argument_else_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "w.pth"
    f.write_bytes(b"x")
    monkeypatch.delenv("GENSR_TEST_WEIGHTS", raising=False)
    assert weights_source(None, "GENSR_TEST_WEIGHTS", "weights") == (None, "GENSR_TEST_WEIGHTS")
    assert weights_source(f, "GENSR_TEST_WEIGHTS", "weights") == (f, "weights")
    with pytest.raises(GensrError, match="^pass the file$"):
        weights_file("", "GENSR_TEST_WEIGHTS", "weights", "test weights file", "pass the file")
    monkeypatch.setenv("GENSR_TEST_WEIGHTS", str(tmp_path / "missing.pth"))
    with pytest.raises(GensrError, match=r"missing\.pth: test weights file not found \(from GENSR_TEST_WEIGHTS\)"):
        weights_file(None, "GENSR_TEST_WEIGHTS", "weights", "test weights file", "pass the file")
    monkeypatch.setenv("GENSR_TEST_WEIGHTS", str(f))
    assert weights_file(None, "GENSR_TEST_WEIGHTS", "weights", "test weights file", "-") == f


def test_pillow_open_ignores_and_never_changes_pillows_process_wide_guard(tmp_path, monkeypatch):
    px = np.arange(30 * 20 * 3, dtype=np.uint8).reshape(20, 30, 3)
    for ext in ("png", "jpg", "webp", "bmp", "tif"):
        path = write_image(tmp_path / f"a.{ext}", px)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # 600 pixels: over twice Pillow's limit
        with pytest.raises(Image.DecompressionBombError):
            Image.open(path)
        with pillow_open(path) as im:
            assert im.size == (30, 20)
        assert Image.MAX_IMAGE_PIXELS == 10
        if ext != "tif":  # Pillow checks TIFF again when decoding (the gensr command raises the guard)
            assert read_image(path).pixels.shape == (20, 30, 3)
        assert Image.MAX_IMAGE_PIXELS == 10
    (tmp_path / "text.png").write_text("not an image")
    with pytest.raises(UnidentifiedImageError):
        pillow_open(tmp_path / "text.png")
