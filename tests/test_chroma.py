"""Invented colour (gensr.metrics.chroma): MATLAB's chroma rows, hand-built cases, the chroma loss, and the
shipped ESRGAN measured against the PSNR model's output and the ground truth (the previous esrgan painted colour
speckle: barbara 0.51 %, BSD100 8023 0.24 %, woman 0.10 %, zebra 0.06 %; the retrained ones 0 / 0.006 % and, from
the 14,000-iteration default, 0 / 0.007 %)."""

from __future__ import annotations

import numpy as np
import pytest

from gensr.metrics.chroma import chroma_deviation, invented_chroma_fraction, rgb_to_cbcr


def test_chroma_of_gray_is_zero_and_of_red_is_matlabs():
    gray = np.full((2, 3, 3), 77, np.uint8)
    assert np.abs(rgb_to_cbcr(gray)).max() < 1e-12
    red = np.zeros((1, 1, 3), np.uint8)
    red[..., 0] = 255
    cb, cr = rgb_to_cbcr(red)[0, 0]
    assert cb + 128 == pytest.approx(90.203) and cr + 128 == pytest.approx(240.0)  # MATLAB rgb2ycbcr([255 0 0])
    assert chroma_deviation(red, np.zeros_like(red))[0, 0] == pytest.approx(np.hypot(37.797, 112.0))


def test_invented_colour_counts_only_what_neither_reference_nor_gt_has():
    rng = np.random.default_rng(0)
    gt = np.repeat(rng.integers(0, 256, (30, 40, 1), dtype=np.uint8), 3, axis=2)  # achromatic texture
    gt[:5, :5] = (200, 40, 40)  # a red patch the scene really has
    reference = gt.copy()
    reference[:5, :5] = 93  # the PSNR model lost the patch's colour
    output = gt.copy()  # the GAN output gets the patch right ...
    output[10, 3:13] = (255, 0, 255)  # ... and paints ten magenta pixels on gray texture
    assert invented_chroma_fraction(output, reference, gt) == pytest.approx(10 / 1200)
    assert invented_chroma_fraction(output, reference, gt, crop_border=11) == 0.0
    assert invented_chroma_fraction(gt, reference, gt) == 0.0
    with pytest.raises(ValueError, match="size"):
        chroma_deviation(gt, gt[:-1])
    with pytest.raises(ValueError, match="RGB"):
        rgb_to_cbcr(gt[..., 0])


# The crops of docs/MODEL_CARD_esrgan.md's picture plus the worst Set5/Set14 cases of the shipped esrgan.
SPECKLE_CASES = (("Set5", "woman"), ("Set14", "barbara"), ("Set14", "zebra"), ("BSD100", "8023"))
MAX_INVENTED = 5e-4  # at most 0.05 % of the pixels with invented colour (> 30 levels from both)


def test_shipped_esrgan_invents_no_colour(datasets_dir):
    import gensr
    from gensr.imresize import imresize, modcrop
    from gensr.io import read_array

    worst = {}
    for set_name, image in SPECKLE_CASES:
        gt = modcrop(read_array(datasets_dir / set_name / "HR" / f"{image}.png"), 4)
        lr = imresize(gt, 0.25)
        psnr, gan = gensr.upscale(lr, model="default"), gensr.upscale(lr, model="esrgan")
        worst[image] = invented_chroma_fraction(gan, psnr, gt, crop_border=4)
    assert max(worst.values()) <= MAX_INVENTED, worst


def test_chroma_loss_ignores_luma_and_measures_colour():
    import torch

    from gensr.losses.pixel import chroma_l1_loss

    gray = torch.rand(2, 1, 5, 6, generator=torch.Generator().manual_seed(0)).expand(2, 3, 5, 6)
    assert float(chroma_l1_loss(gray, gray * 0.5 + 0.2)) < 1e-7  # a luma change only: no chroma loss
    red = torch.zeros(1, 3, 2, 2)
    red[:, 0] = 1.0
    expected = (37.797 + 112.0) / 2 / 255  # |Cb| and |Cr| of pure red against black, averaged
    assert float(chroma_l1_loss(red, torch.zeros_like(red))) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="RGB"):
        chroma_l1_loss(gray[:, :1], gray[:, :1])
