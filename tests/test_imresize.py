"""MATLAB-exact bicubic: kernel, weights, bit-exactness on Set5, torch/numpy agreement, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gensr.imresize import _weight_matrix, cubic, imresize, modcrop

NAMES = ["baby", "bird", "butterfly", "head", "woman"]


def test_cubic_kernel_values():
    x = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 2.5, -0.5])
    expected = [1.0, 0.5625, 0.0, -0.0625, 0.0, 0.0, 0.5625]
    np.testing.assert_allclose(cubic(x), expected, atol=1e-12)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2.0, 4.0])
def test_weight_rows_sum_to_one_and_shapes(scale):
    m = _weight_matrix(37, int(np.ceil(37 * scale - 1e-9)), scale, True, "symmetric")
    assert m.shape == (int(np.ceil(37 * scale - 1e-9)), 37)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)


def test_constant_image_stays_constant():
    img = np.full((20, 30, 3), 77, dtype=np.uint8)
    for s in (0.25, 0.5, 3.0):
        out = imresize(img, s)
        assert out.dtype == np.uint8 and (out == 77).all()


def test_output_size_is_ceil():
    assert imresize(np.zeros((10, 11), np.uint8), 1 / 3).shape == (4, 4)
    assert imresize(np.zeros((10, 11), np.float64), size=(5, 7)).shape == (5, 7)


def test_uint8_rounds_half_away_from_zero_after_each_pass():
    # a 1-D upscale where values land on .5 exactly is rare; check the cast rule directly
    from gensr.imresize import _round_saturate

    out = _round_saturate(np.array([0.5, 1.5, 2.5, -0.5, 254.6, 300.0]), np.uint8)
    np.testing.assert_array_equal(out, [1, 2, 3, 0, 255, 255])


def test_uint16_path_keeps_dtype_and_range():
    img = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 16).astype(np.uint16)
    out = imresize(img, 0.5)
    assert out.dtype == np.uint16 and out.shape == (32, 32)
    assert out.max() > 255


def test_torch_matches_numpy_float_and_is_differentiable():
    rng = np.random.default_rng(0)
    img = rng.random((2, 3, 24, 20))
    x = torch.tensor(img, dtype=torch.float64, requires_grad=True)
    y = imresize(x, 0.25)
    ref = np.stack([np.stack([imresize(img[n, c], 0.25) for c in range(3)]) for n in range(2)])
    np.testing.assert_allclose(y.detach().numpy(), ref, atol=1e-12)
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_modcrop_numpy_and_torch():
    assert modcrop(np.zeros((10, 13, 3)), 4).shape == (8, 12, 3)
    assert modcrop(torch.zeros(1, 3, 10, 13), 4).shape == (1, 3, 8, 12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_lr_bicubic_bit_exact(datasets_dir, scale):
    for name in NAMES:
        hr = modcrop(np.array(Image.open(datasets_dir / "Set5/HR" / f"{name}.png").convert("RGB")), scale)
        ref = np.array(Image.open(datasets_dir / f"Set5/LR_bicubic/X{scale}/{name}x{scale}.png").convert("RGB"))
        np.testing.assert_array_equal(imresize(hr, 1 / scale), ref, err_msg=f"{name} x{scale}")


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_set5_selfexsr_replicate_bit_exact(datasets_dir, scale):
    for name in NAMES:
        hr = modcrop(np.array(Image.open(datasets_dir / "Set5/HR" / f"{name}.png").convert("RGB")), scale)
        path = datasets_dir / f"Set5/LR_bicubic_selfexsr/X{scale}/{name}x{scale}.png"
        ref = np.array(Image.open(path).convert("RGB"))
        np.testing.assert_array_equal(imresize(hr, 1 / scale, padding="replicate"), ref, err_msg=f"{name} x{scale}")
