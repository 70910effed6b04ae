"""Fidelity and diversity metrics: formulas checked by hand and against plain loop implementations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gensr.imresize import imresize
from gensr.metrics import (
    lr_consistency_target,
    lr_psnr,
    ntire_diversity_score,
    pixel_distance_maps,
    pixel_std,
    psnr,
    rgb_to_y,
    ssim,
)

# ---------------------------------------------------------------- PSNR


def test_psnr_formula_by_hand():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[1, 2, 0] = 10  # one value off by 10 out of 48
    expected = 10 * math.log10(255.0**2 / (100.0 / 48.0))
    assert psnr(a, b) == pytest.approx(expected, abs=1e-12)
    assert psnr(b, a) == pytest.approx(expected, abs=1e-12)
    assert psnr(a, b, peak=1.0) == pytest.approx(10 * math.log10(1.0 / (100.0 / 48.0)), abs=1e-12)


def test_psnr_identical_is_inf():
    a = np.random.default_rng(0).integers(0, 256, (8, 9, 3), dtype=np.uint8)
    assert psnr(a, a) == math.inf
    assert psnr(a, a, y_channel=True) == math.inf


def test_crop_border_shaves_every_side():
    a = np.full((10, 12, 3), 100, np.uint8)
    b = a.copy()
    b[0, :] = 0
    b[:, -1] = 0
    assert math.isfinite(psnr(a, b))
    assert psnr(a, b, crop_border=1) == math.inf
    b[1, 5] = 90  # inside the 1-px border: now counted, one value in 8*10*3
    assert psnr(a, b, crop_border=1) == pytest.approx(10 * math.log10(255**2 / (300 / 240)))
    with pytest.raises(ValueError):
        psnr(a, b, crop_border=5)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="sizes differ"):
        psnr(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))


def test_uint16_is_scored_on_the_8bit_scale():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    a16, b16 = a.astype(np.uint16) * 257, b.astype(np.uint16) * 257
    assert psnr(a16, b16) == pytest.approx(psnr(a, b), abs=1e-12)
    assert ssim(a16, b16) == pytest.approx(ssim(a, b), abs=1e-12)
    assert psnr(a16, b, y_channel=True) == pytest.approx(psnr(a, b, y_channel=True), abs=1e-12)


def test_gray_against_rgb_uses_equal_channels():
    rng = np.random.default_rng(2)
    g = rng.integers(0, 256, (16, 16, 1), dtype=np.uint8)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    g3 = np.repeat(g, 3, axis=2)
    assert psnr(g, rgb) == pytest.approx(psnr(g3, rgb))
    assert psnr(g[:, :, 0], rgb, y_channel=True) == pytest.approx(psnr(g3, rgb, y_channel=True))


# ---------------------------------------------------------------- Y conversion


def test_y_coefficients():
    px = np.array([[[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255]]], np.uint8)
    y = rgb_to_y(px)[0, :, 0]
    np.testing.assert_allclose(y, [16.0, 235.0, 16 + 65.481, 16 + 128.553, 16 + 24.966], atol=1e-12)
    yr = rgb_to_y(px, round_y=True)[0, :, 0]
    np.testing.assert_array_equal(yr, [16, 235, 81, 145, 41])
    # float input in [0, 255] gives the same as uint8
    np.testing.assert_allclose(rgb_to_y(px.astype(np.float64)), rgb_to_y(px))
    # the general formula on one arbitrary pixel
    r, g, b = 12, 200, 77
    assert rgb_to_y(np.array([[[r, g, b]]], np.uint8))[0, 0, 0] == pytest.approx(
        16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255
    )


def test_y_of_gray_is_unchanged():
    g = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.testing.assert_array_equal(rgb_to_y(g)[:, :, 0], g.astype(np.float64))


def test_y_channel_psnr_by_hand():
    a = np.zeros((2, 2, 3), np.uint8)
    b = a.copy()
    b[0, 0] = (255, 0, 0)  # Y differs by 65.481 on one of 4 pixels
    expected = 10 * math.log10(255**2 / (65.481**2 / 4))
    assert psnr(a, b, y_channel=True) == pytest.approx(expected)
    expected_rounded = 10 * math.log10(255**2 / (65.0**2 / 4))  # Y 16 vs 81
    assert psnr(a, b, y_channel=True, round_y=True) == pytest.approx(expected_rounded)


# ---------------------------------------------------------------- SSIM


def _ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook MATLAB ssim_index with explicit loops: 11x11 Gaussian (sigma 1.5), valid positions only."""
    win = np.zeros((11, 11))
    for i in range(11):
        for j in range(11):
            win[i, j] = math.exp(-((i - 5) ** 2 + (j - 5) ** 2) / (2 * 1.5**2))
    win /= win.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    h, w = x.shape
    vals = []
    for r in range(h - 10):
        for c in range(w - 10):
            px = x[r : r + 11, c : c + 11]
            py = y[r : r + 11, c : c + 11]
            mx, my = (win * px).sum(), (win * py).sum()
            vx = (win * (px - mx) ** 2).sum()
            vy = (win * (py - my) ** 2).sum()
            cxy = (win * (px - mx) * (py - my)).sum()
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_identical_is_one():
    a = np.random.default_rng(3).integers(0, 256, (20, 23, 3), dtype=np.uint8)
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    assert ssim(a, a, y_channel=True, crop_border=2) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matches_loop_reference_rgb_and_y():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    noise = rng.normal(0, 25, a.shape)
    b = np.clip(a.astype(np.float64) * 0.8 + 20 + noise, 0, 255).astype(np.uint8)
    af, bf = a.astype(np.float64), b.astype(np.float64)
    ref_rgb = np.mean([_ssim_reference(af[:, :, c], bf[:, :, c]) for c in range(3)])
    assert ssim(a, b) == pytest.approx(ref_rgb, abs=1e-10)
    ya, yb = rgb_to_y(a)[:, :, 0], rgb_to_y(b)[:, :, 0]
    assert ssim(a, b, y_channel=True) == pytest.approx(_ssim_reference(ya, yb), abs=1e-10)
    # crop_border then valid filtering: 16 - 2*2 = 12 -> 2x2 SSIM positions
    assert ssim(a, b, crop_border=2, y_channel=True) == pytest.approx(
        _ssim_reference(ya[2:-2, 2:-2], yb[2:-2, 2:-2]), abs=1e-10
    )
    assert ssim(a, b) == pytest.approx(ssim(b, a), abs=1e-12)
    assert ssim(a, b) < 0.95


def test_ssim_too_small_raises():
    a = np.zeros((10, 12, 3), np.uint8)
    with pytest.raises(ValueError, match="11x11"):
        ssim(a, a)


# ---------------------------------------------------------------- LR-PSNR


def test_lr_psnr_is_psnr_of_the_downscaled_sr():
    rng = np.random.default_rng(5)
    lr = rng.integers(0, 256, (8, 10, 3), dtype=np.uint8)
    sr = imresize(lr, 4.0)
    assert sr.dtype == np.uint8 and sr.shape == (32, 40, 3)
    expected = psnr(imresize(sr, 0.25), lr)
    assert lr_psnr(sr, lr, 4) == pytest.approx(expected)
    assert lr_psnr(sr, lr, 4, y_channel=True) == pytest.approx(psnr(imresize(sr, 0.25), lr, y_channel=True))
    with pytest.raises(ValueError):
        lr_psnr(sr, lr[:-1], 4)


def test_lr_consistency_target_modcrops_then_downscales():
    rng = np.random.default_rng(6)
    gt = rng.integers(0, 256, (35, 42, 3), dtype=np.uint8)
    target = lr_consistency_target(gt, 4)
    assert target.shape == (8, 10, 3) and target.dtype == np.uint8
    np.testing.assert_array_equal(target, imresize(gt[:32, :40], 0.25))
    assert lr_psnr(gt[:32, :40], target, 4) == math.inf


# ---------------------------------------------------------------- diversity


def test_pixel_std_by_hand():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 10, np.uint8)
    assert pixel_std([a, b]) == pytest.approx(5.0)
    assert pixel_std(np.stack([a, a, a])) == 0.0
    c = a.copy()
    c[0, 0, 0] = 30  # one value: samples (0, 0, 30) -> std sqrt(200); mean over 48 values
    assert pixel_std([a, a, c]) == pytest.approx(math.sqrt(200) / 48)
    with pytest.raises(ValueError):
        pixel_std([a])
    with pytest.raises(ValueError):
        pixel_std([a, np.zeros((4, 5, 3), np.uint8)])


def test_ntire_diversity_score_by_hand():
    # two samples, each perfect on one half: global best 1, local best 0 -> 100
    maps = np.array([[[0.0, 2.0]], [[2.0, 0.0]]])
    assert ntire_diversity_score(maps) == pytest.approx(100.0)
    # one sample is best everywhere -> 0
    assert ntire_diversity_score(np.array([[[1.0, 1.0]], [[2.0, 3.0]]])) == pytest.approx(0.0)
    # mixed: means 1.5 and 2.0 -> global 1.5; per-pixel minima (1, 1) -> local 1 -> 33.33
    assert ntire_diversity_score(np.array([[[1.0, 2.0]], [[3.0, 1.0]]])) == pytest.approx(100 / 3)


def test_pixel_distance_maps():
    gt = np.zeros((2, 2, 3), np.uint8)
    s1 = gt.copy()
    s1[0, 0] = (3, 6, 9)
    maps = pixel_distance_maps([s1, gt], gt)
    assert maps.shape == (2, 2, 2)
    assert maps[0, 0, 0] == pytest.approx((9 + 36 + 81) / 3)
    assert maps[1].sum() == 0
    assert ntire_diversity_score(maps) == 0.0  # sample 2 equals the GT
