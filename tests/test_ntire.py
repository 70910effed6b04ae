"""NTIRE 2021 "Learning the SR space" scores (gensr.metrics.diversity): diversity, LR-PSNR, LPIPS plumbing.

Expected numbers come from arithmetic written here, and the LR-PSNR reference from an independent,
loop-based MATLAB bicubic downscale (not gensr.imresize's weight matrices).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from gensr.imresize import imresize
from gensr.metrics.diversity import (
    lpips_distance_maps,
    ntire_diversity_score,
    ntire_scores,
    pixel_distance_maps,
)
from gensr.metrics.lpips import LPIPS

# ------------------------------------------------------------------------------------------ diversity


def test_identical_samples_have_zero_diversity():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    sample = np.clip(gt.astype(int) + rng.integers(-9, 10, gt.shape), 0, 255).astype(np.uint8)
    maps = pixel_distance_maps([sample] * 10, gt)
    assert maps.shape == (10, 16, 24) and maps.min() >= 0 and maps.max() > 0
    assert ntire_diversity_score(maps) == 0.0
    assert ntire_scores([sample] * 10, gt, None, 4)["diversity_pixel"] == 0.0


def test_hand_built_maps():
    # per-sample means 4, 4, 3 -> global best 3; per-pixel minima 0, 0, 3 -> local best 1; (3 - 1) / 3 * 100
    maps = np.array([[[0.0, 6.0, 6.0]], [[6.0, 0.0, 6.0]], [[3.0, 3.0, 3.0]]])
    assert ntire_diversity_score(maps) == pytest.approx(200.0 / 3.0, rel=1e-12)
    # one sample best everywhere: local best == global best
    assert ntire_diversity_score(np.array([[[1.0, 2.0]], [[3.0, 4.0]]])) == 0.0


def test_hand_built_images_pixel_diversity():
    # GT 0; sample A is 1 on the left half and 3 on the right (squared errors 1 and 9, mean 5);
    # sample B is 2 everywhere (errors 4, mean 4). global best = 4, local best = (min(1, 4) + min(9, 4)) / 2 = 2.5,
    # score = (4 - 2.5) / 4 * 100 = 37.5.
    gt = np.zeros((16, 16, 3), dtype=np.uint8)
    a = np.full_like(gt, 3)
    a[:, :8] = 1
    b = np.full_like(gt, 2)
    assert ntire_diversity_score(pixel_distance_maps([a, b], gt)) == 37.5
    scores = ntire_scores([a, b], gt, None, 4)
    assert scores["diversity_pixel"] == 37.5
    assert "diversity_lpips" not in scores and "lpips_mean" not in scores and scores["num_samples"] == 2


# ------------------------------------------------------------------------------------------ LR-PSNR


def _cubic(x: float) -> float:
    ax = abs(x)
    if ax <= 1:
        return 1.5 * ax**3 - 2.5 * ax**2 + 1
    if ax <= 2:
        return -0.5 * ax**3 + 2.5 * ax**2 - 4 * ax + 2
    return 0.0


def _matlab_down_1d(line: np.ndarray, s: int) -> np.ndarray:
    """MATLAB imresize(., 1/s, 'bicubic') along axis 0 of float ``line``: antialiased kernel, mirrored borders."""
    n = line.shape[0]
    out = []
    for x in range(1, n // s + 1):  # 1-based output index
        u = x * s + 0.5 * (1 - s)  # x / scale + 0.5 * (1 - 1 / scale) with scale = 1 / s
        acc, total = 0.0, 0.0
        for j in range(math.floor(u - 2 * s), math.ceil(u + 2 * s) + 1):  # 1-based input index
            w = _cubic((u - j) / s) / s
            k = (j - 1) % (2 * n)  # symmetric padding: 1..n, n..1, ...
            k = k if k < n else 2 * n - 1 - k
            acc = acc + w * line[k]
            total += w
        out.append(acc / total)
    return np.array(out)


def _round_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.floor(x + 0.5), 0, 255)  # values are >= -0.5 here: half away from zero


def independent_downscale(img: np.ndarray, s: int) -> np.ndarray:
    """Rows first, then columns (equal scales), rounded to uint8 after each pass, as MATLAB's integer path."""
    x = img.astype(np.float64)
    x = _round_uint8(np.stack([_matlab_down_1d(x[:, c], s) for c in range(x.shape[1])], axis=1))
    x = _round_uint8(np.stack([_matlab_down_1d(x[r], s) for r in range(x.shape[0])], axis=0))
    return x.astype(np.uint8)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    err = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return math.inf if err == 0 else 10 * math.log10(255.0**2 / err)


def test_independent_downscale_agrees_with_imresize():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    np.testing.assert_array_equal(independent_downscale(img, 4), imresize(img, 0.25))


def test_lr_psnr_of_bicubic_upscaled_samples():
    rng = np.random.default_rng(2)
    yy, xx = np.mgrid[0:8, 0:10]
    smooth = np.stack([128 + 60 * np.sin(xx / 3.0 + c) * np.cos(yy / 4.0) for c in range(3)], axis=2)
    lr = np.clip(np.round(smooth + rng.normal(0, 3, (8, 10, 3))), 0, 255).astype(np.uint8)
    up = imresize(lr, 4)  # 32 x 40, MATLAB bicubic
    noisy = np.clip(up.astype(int) + rng.integers(-20, 21, up.shape), 0, 255).astype(np.uint8)
    gt = np.clip(up.astype(int) + rng.integers(-5, 6, up.shape), 0, 255).astype(np.uint8)
    scores = ntire_scores([up, noisy], gt, lr, 4)
    expected = [_psnr(independent_downscale(s, 4), lr) for s in (up, noisy)]
    assert scores["lr_psnr"] == pytest.approx(expected, rel=1e-12)
    assert 35 < expected[0] < math.inf and expected[1] < expected[0]  # up then down: close to the identity
    assert scores["lr_psnr_min"] == pytest.approx(min(expected)) and scores["lr_psnr_mean"] == pytest.approx(
        sum(expected) / 2
    )
    # measure.py's reference: the downscaled (cropped) GT instead of a given LR
    ref = ntire_scores([up, noisy], gt, None, 4)
    gt_lr = independent_downscale(gt, 4)
    assert ref["lr_psnr"] == pytest.approx([_psnr(independent_downscale(s, 4), gt_lr) for s in (up, noisy)])
    assert ntire_scores([gt], gt, None, 4)["lr_psnr"] == [math.inf]


def test_gt_and_samples_are_cropped_like_measure_py():
    rng = np.random.default_rng(3)
    gt = rng.integers(0, 256, (37, 45, 3), dtype=np.uint8)  # -> 32 x 40 (multiples of 8)
    samples = [rng.integers(0, 256, (44, 48, 3), dtype=np.uint8) for _ in range(3)]
    scores = ntire_scores(samples, gt, None, 4)
    crop_gt, crops = gt[:32, :40], [s[:32, :40] for s in samples]
    expected = [_psnr(independent_downscale(s, 4), independent_downscale(crop_gt, 4)) for s in crops]
    assert scores["lr_psnr"] == pytest.approx(expected, rel=1e-12)
    assert scores["diversity_pixel"] == ntire_diversity_score(pixel_distance_maps(crops, crop_gt))
    # scale 3: lcm(8, 3) = 24 -> 24 x 24 crop; the given LR is cropped to 8 x 8
    lr = rng.integers(0, 256, (12, 15, 3), dtype=np.uint8)
    s3 = ntire_scores(samples, gt, lr, 3)
    assert s3["lr_psnr"] == pytest.approx([_psnr(imresize(s[:24, :24], 1 / 3), lr[:8, :8]) for s in samples])
    with pytest.raises(ValueError, match="sample 1"):
        ntire_scores([samples[0], samples[1][:30]], gt, None, 4)
    with pytest.raises(ValueError, match="LR is"):
        ntire_scores(samples, gt, lr[:7], 4)


# ------------------------------------------------------------------------------------------ LPIPS variant


class TinyBackbone(nn.Module):
    """Taps: the input (3 channels) and a 2x average-pooled ReLU(1x1 conv) (4 channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return [x, F.avg_pool2d(torch.relu(self.conv(x)), 2)]


@pytest.fixture
def tiny_lpips() -> LPIPS:
    model = LPIPS(TinyBackbone(), channels=(3, 4)).eval()
    with torch.no_grad():
        for head in model.heads:
            head.weight.uniform_(0.1, 1.0)
    return model.requires_grad_(False)


def test_lpips_maps_and_keys(tiny_lpips):
    rng = np.random.default_rng(4)
    gt = rng.integers(0, 256, (16, 24, 3), dtype=np.uint8)
    samples = [np.clip(gt.astype(int) + rng.integers(-30, 31, gt.shape), 0, 255).astype(np.uint8) for _ in range(4)]
    maps = lpips_distance_maps(samples, gt, tiny_lpips)
    assert maps.shape == (4, 16, 24) and maps.dtype == np.float64 and maps.min() >= 0
    g = torch.from_numpy(gt).permute(2, 0, 1)[None].float() / 255
    for i, s in enumerate(samples):
        x = torch.from_numpy(s).permute(2, 0, 1)[None].float() / 255
        np.testing.assert_allclose(maps[i], tiny_lpips(x, g, spatial=True)[0, 0].double().numpy(), rtol=1e-6)
    scores = ntire_scores(samples, gt, None, 4, lpips_model=tiny_lpips)
    assert "diversity_pixel" not in scores
    assert scores["diversity_lpips"] == pytest.approx(ntire_diversity_score(maps), rel=1e-12)
    assert scores["diversity_lpips"] > 0
    assert scores["lpips"] == pytest.approx(list(maps.reshape(4, -1).mean(axis=1)), rel=1e-12)
    assert scores["lpips_mean"] == pytest.approx(float(maps.mean()), rel=1e-12)
    same = ntire_scores([samples[0]] * 3, gt, None, 4, lpips_model=tiny_lpips)
    assert same["diversity_lpips"] == 0.0
    assert np.all(lpips_distance_maps([gt], gt, tiny_lpips) == 0)
