"""Class-conditional data: the three layouts load, bad inputs are one line, batches are pure in (seed, batch, rank)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gensr.data.class_datasets import (
    CIFAR10_CLASSES,
    ClassImages,
    class_batches,
    eval_batches,
    load_class_images,
)
from gensr.errors import GensrError


def _images(n: int, h: int = 8, w: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, h, w, 3), dtype=np.uint8)


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


def _jpeg_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def write_jpeg_npz(path: Path, images: np.ndarray, y: np.ndarray) -> Path:
    blobs = [np.frombuffer(_jpeg_bytes(im), dtype=np.uint8) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(path, jpeg=np.concatenate(blobs), offsets=offsets, y=y.astype(np.int64))
    return path


# ------------------------------------------------------------------------------------------------ layouts


def test_folder_layout(tmp_path):
    imgs = _images(5)
    for i, cls in enumerate(["zebra", "ant", "ant", "moth", "zebra"]):
        (tmp_path / cls).mkdir(exist_ok=True)
        Image.fromarray(imgs[i]).save(tmp_path / cls / f"{i}.png")
    d = load_class_images(tmp_path)
    assert d.class_names == ["ant", "moth", "zebra"] and d.num_classes == 3
    assert d.x.dtype == np.uint8 and d.x.shape == (5, 8, 6, 3) and d.y.dtype == np.int64
    assert d.y.tolist() == [0, 0, 1, 2, 2]
    np.testing.assert_array_equal(d.x[0], imgs[1])  # ant/1.png
    np.testing.assert_array_equal(d.x[4], imgs[4])  # zebra/4.png


def test_xy_npz_layout(tmp_path):
    x, y = _images(7), np.array([0, 1, 2, 0, 1, 2, 2], dtype=np.int64)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    d = load_class_images(tmp_path / "d.npz")
    np.testing.assert_array_equal(d.x, x)
    np.testing.assert_array_equal(d.y, y)
    assert d.class_names == ["0", "1", "2"] and len(d) == 7


def test_xy_npz_class_names_and_cifar_names(tmp_path):
    y = np.arange(10, dtype=np.int64)
    np.savez(tmp_path / "named.npz", x=_images(10), y=y, class_names=np.array([f"c{i}" for i in range(10)]))
    assert load_class_images(tmp_path / "named.npz").class_names[3] == "c3"
    np.savez(tmp_path / "cifar.npz", x=_images(10, 32, 32), y=y)
    assert load_class_images(tmp_path / "cifar.npz").class_names == list(CIFAR10_CLASSES)


def test_jpeg_npz_layout(tmp_path):
    x = np.repeat(np.repeat(_images(4, 4, 4), 4, axis=1), 4, axis=2)  # blocky 16x16: JPEG keeps it close
    path = write_jpeg_npz(tmp_path / "j.npz", x, np.array([1, 0, 1, 0]))
    d = load_class_images(path)
    assert d.x.shape == (4, 16, 16, 3) and d.y.tolist() == [1, 0, 1, 0] and d.class_names == ["0", "1"]
    for i in range(4):  # decoded with Pillow exactly as the MANIFEST says
        with Image.open(io.BytesIO(_jpeg_bytes(x[i]))) as im:
            np.testing.assert_array_equal(d.x[i], np.asarray(im.convert("RGB")))
    assert np.abs(d.x.astype(int) - x).mean() < 20


# ------------------------------------------------------------------------------------------------ bad inputs


@pytest.mark.parametrize(
    "arrays, words",
    [
        ({"y": np.zeros(3, np.int64)}, "needs arrays x and y"),
        ({"x": _images(3)}, "no array y"),
        ({"x": _images(3), "y": np.zeros(2, np.int64)}, "2 labels but there are 3 images"),
        ({"x": _images(3), "y": np.zeros(3, np.int32)}, "y must be int64"),
        ({"x": _images(3).astype(np.float32), "y": np.zeros(3, np.int64)}, "x must be uint8"),
        ({"x": _images(3)[..., :2], "y": np.zeros(3, np.int64)}, "x must be uint8 (N, H, W, 3)"),
        ({"x": _images(3), "y": np.array([0, -1, 1])}, "labels must be 0..K-1"),
        ({"jpeg": np.zeros(10, np.uint8), "y": np.zeros(1, np.int64)}, "no array offsets"),
        ({"jpeg": np.zeros(10, np.uint8), "offsets": np.array([0, 5, 4]), "y": np.zeros(2, np.int64)}, "increase"),
        ({"jpeg": np.zeros(10, np.uint8), "offsets": np.array([0, 5, 11]), "y": np.zeros(2, np.int64)}, "<= 10"),
        ({"jpeg": np.zeros(10, np.uint8), "offsets": np.array([0, 5, 10]), "y": np.zeros(2, np.int64)}, "image 0"),
    ],
)
def test_bad_npz_is_one_line(tmp_path, arrays, words):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path / "bad.npz", where="task.data.train")
    msg = _one_line(exc)
    assert words in msg and "bad.npz" in msg and "task.data.train" in msg


def test_jpeg_decoding_failure_names_index(tmp_path):
    good = [np.frombuffer(_jpeg_bytes(im), dtype=np.uint8) for im in _images(2, 8, 8)]
    blobs = [good[0], np.frombuffer(b"not a jpeg at all", dtype=np.uint8), good[1]]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    np.savez(tmp_path / "j.npz", jpeg=np.concatenate(blobs), offsets=offsets, y=np.zeros(3, np.int64))
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path / "j.npz")
    assert "image 1 cannot be decoded" in _one_line(exc)


def test_pickled_npz_is_refused(tmp_path):
    np.savez(tmp_path / "p.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1, np.int64))
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path / "p.npz")
    assert "not a readable .npz" in _one_line(exc)


def test_mixed_sizes_in_a_class_folder(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(_images(1, 8, 8)[0]).save(tmp_path / "a" / "0.png")
    Image.fromarray(_images(1, 8, 10)[0]).save(tmp_path / "a" / "1.png")
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path)
    msg = _one_line(exc)
    assert "1.png" in msg and "10x8" in msg


def test_mixed_sizes_across_classes(tmp_path):
    for cls, w in (("a", 8), ("b", 6)):
        (tmp_path / cls).mkdir()
        Image.fromarray(_images(1, 8, w)[0]).save(tmp_path / cls / "0.png")
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path)
    assert "b/0.png" in _one_line(exc).replace(os.sep, "/")


def test_empty_and_missing(tmp_path):
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path)
    assert "no class subfolders" in _one_line(exc)
    (tmp_path / "cat").mkdir()
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path)
    assert "cat" in _one_line(exc) and "no images" in str(exc.value)
    with pytest.raises(GensrError) as exc:
        load_class_images(tmp_path / "nope.npz")
    assert "not found" in _one_line(exc)


# ------------------------------------------------------------------------------------------------ batches


@pytest.fixture
def numbered() -> ClassImages:
    """37 4x4 images: green is the image index everywhere, red is 100 + 10 * column (to see flips)."""
    x = np.zeros((37, 4, 4, 3), dtype=np.uint8)
    x[..., 0] = (np.arange(4, dtype=np.uint8) * 10 + 100)[None, None, :]
    x[..., 1] = np.arange(37, dtype=np.uint8)[:, None, None]
    return ClassImages(x, np.arange(37, dtype=np.int64) % 3, ["a", "b", "c"], "test")


def _take(it, n):
    return [next(it) for _ in range(n)]


def test_batches_shapes_and_ranges(numbered):
    b = next(class_batches(numbered, 5, seed=3))
    assert b["x"].shape == (5, 3, 4, 4) and b["x"].dtype == torch.float32 and b["x"].is_contiguous()
    assert b["y"].dtype == torch.int64 and b["y"].shape == (5,)
    assert 0.0 <= float(b["x"].min()) and float(b["x"].max()) <= 1.0


def test_batches_pure_in_seed_and_batch(numbered):
    fresh = _take(class_batches(numbered, 5, seed=3, crop_padding=1), 12)
    again = _take(class_batches(numbered, 5, seed=3, start_batch=7, crop_padding=1), 5)
    for a, b in zip(fresh[7:], again, strict=True):
        assert torch.equal(a["x"], b["x"]) and torch.equal(a["y"], b["y"])
    other = _take(class_batches(numbered, 5, seed=4, crop_padding=1), 3)
    assert not all(torch.equal(a["x"], b["x"]) for a, b in zip(fresh[:3], other, strict=True))


def _ids(batch) -> list[int]:
    """Image indices of a batch of :func:`numbered` images (green at the centre)."""
    return (batch["x"][:, 1, 2, 2] * 255).round().long().tolist()


def test_epochs_cover_every_image_once(numbered):
    it = class_batches(numbered, 37, seed=1, hflip=False)
    first, second = _ids(next(it)), _ids(next(it))
    assert sorted(first) == list(range(37)) and sorted(second) == list(range(37)) and first != second


def test_ranks_are_disjoint_shares_of_the_global_batch(numbered):
    whole = _take(class_batches(numbered, 6, seed=2, hflip=False), 4)
    parts = [_take(class_batches(numbered, 3, seed=2, rank=r, world_size=2, hflip=False), 4) for r in (0, 1)]
    for b in range(4):
        ids0, ids1 = _ids(parts[0][b]), _ids(parts[1][b])
        assert not set(ids0) & set(ids1)
        assert ids0 + ids1 == _ids(whole[b])
        assert torch.equal(torch.cat([parts[0][b]["y"], parts[1][b]["y"]]), whole[b]["y"])


def test_hflip_happens(numbered):
    plain = torch.cat([b["x"] for b in _take(class_batches(numbered, 8, seed=5, hflip=False), 4)])
    flipped = torch.cat([b["x"] for b in _take(class_batches(numbered, 8, seed=5, hflip=True), 4)])
    same = [torch.equal(a, b) for a, b in zip(plain, flipped, strict=True)]
    mirrored = [torch.equal(a.flip(-1), b) for a, b in zip(plain, flipped, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 8 <= sum(mirrored) <= 24  # about half of 32


def test_crop_padding_shifts_with_zero_border(numbered):
    x = torch.cat([b["x"] for b in _take(class_batches(numbered, 8, seed=5, hflip=False, crop_padding=2), 4)])
    zero_rows = (x.amax(dim=(1, 3)) == 0).sum(dim=1)  # rows of padding that came into view
    assert (zero_rows > 0).any() and (zero_rows <= 2).all()


def test_eval_batches_in_order(numbered):
    batches = list(eval_batches(numbered, 16))
    assert [len(b["y"]) for b in batches] == [16, 16, 5]
    assert torch.equal(torch.cat([b["y"] for b in batches]), torch.from_numpy(numbered.y))


def test_bad_batch_arguments(numbered):
    with pytest.raises(ValueError):
        next(class_batches(numbered, 4, seed=0, rank=2, world_size=2))


# ------------------------------------------------------------------------------------------------ the real file


def test_cifar10_test_jpeg_loads(datasets_dir):
    path = datasets_dir / "cifar10_subset" / "test_10k_jpeg.npz"
    if not path.is_file():
        pytest.skip(f"cifar10_subset not found (set GENSR_DATASETS); looked for {path}")
    d = load_class_images(path)
    assert d.x.shape == (10000, 32, 32, 3) and d.class_names == list(CIFAR10_CLASSES)
    assert np.bincount(d.y).tolist() == [1000] * 10
