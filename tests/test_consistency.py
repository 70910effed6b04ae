"""Back-projection for LR consistency: the LR residual shrinks pass by pass, detail the LR does not determine
is kept, and the option works through `gensr upscale`."""

from __future__ import annotations

import pytest
import torch

from gensr.cli import main
from gensr.errors import GensrError
from gensr.imresize import imresize
from gensr.inference.consistency import enforce_lr_consistency
from gensr.io import read_array, write_image
from gensr.metrics.fidelity import lr_psnr


def lr_err(sr: torch.Tensor, lr: torch.Tensor) -> float:
    """Mean squared LR residual of every SR in the batch."""
    return float((imresize(sr, 0.25) - lr).pow(2).mean())


@pytest.fixture
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    hr = torch.nn.functional.interpolate(torch.rand(1, 3, 24, 20, generator=g), scale_factor=4, mode="bilinear")
    hr = (hr + 0.05 * torch.randn(hr.shape, generator=g)).clamp(0, 1)
    return hr, imresize(hr, 0.25).clamp(0, 1)


def test_residual_falls_with_every_pass(pair):
    _, lr = pair
    sr = imresize(lr, 4.0).clamp(0, 1)
    errs = [lr_err(enforce_lr_consistency(sr, lr, 4, k), lr) for k in (0, 1, 2, 5)]
    assert errs == sorted(errs, reverse=True) and errs[-1] < errs[0] / 100, errs


def test_zero_passes_is_the_identity_and_a_shared_lr_serves_a_batch(pair):
    hr, lr = pair
    noisy = (hr + 0.1 * torch.randn(2, *hr.shape[1:], generator=torch.Generator().manual_seed(1))).clamp(0, 1)
    assert torch.equal(enforce_lr_consistency(noisy, lr, 4, 0), noisy)
    out = enforce_lr_consistency(noisy, lr, 4, 5)
    assert out.shape == noisy.shape and out.min() >= 0 and out.max() <= 1
    for i in range(2):
        assert lr_err(out[i : i + 1], lr) < lr_err(noisy[i : i + 1], lr) / 20


def test_high_frequency_detail_is_kept(pair):
    """What back-projection changes is (nearly) invisible to the downscale's complement: the correction is
    a bicubic upscale, so a consistent image with added detail keeps most of that detail."""
    hr, lr = pair
    detail = 0.08 * torch.sign(torch.randn(hr.shape, generator=torch.Generator().manual_seed(2)))
    sr = (hr + detail).clamp(0, 1)
    out = enforce_lr_consistency(sr, lr, 4, 5)
    kept = float(((out - hr) * (sr - hr)).sum() / (sr - hr).pow(2).sum())
    assert kept > 0.8, kept


def test_bad_arguments(pair):
    hr, lr = pair
    with pytest.raises(GensrError, match="not 4 x the LR size"):
        enforce_lr_consistency(hr[..., :-4], lr, 4)
    with pytest.raises(GensrError, match=">= 0"):
        enforce_lr_consistency(hr, lr, 4, -1)


def test_upscale_cli_option(tmp_path, pair, capsys):
    _, lr = pair
    src = tmp_path / "lr.png"
    write_image(src, lr)
    lr8 = read_array(src)
    plain, fixed = tmp_path / "plain.png", tmp_path / "fixed.png"
    assert main(["upscale", str(src), "-o", str(plain), "--model", "bicubic", "-q"]) == 0
    assert main(["upscale", str(src), "-o", str(fixed), "--model", "bicubic", "--lr-consistency", "5", "-q"]) == 0
    a, b = lr_psnr(read_array(plain), lr8, 4), lr_psnr(read_array(fixed), lr8, 4)
    assert b > a + 10, (a, b)
    capsys.readouterr()
    assert main(["upscale", str(src), "-o", str(tmp_path / "x.png"), "--lr-consistency", "-1"]) == 2
    assert "--lr-consistency must be >= 0" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()
