"""The issue's literature check through the commands: `gensr upscale --model bicubic` of the MATLAB LR, scored by
`gensr eval --y --crop-border 4`, gives the published Set5 x4 bicubic 28.42 dB / 0.8104."""

from __future__ import annotations

import json

import pytest

from gensr.cli import main


@pytest.mark.parametrize("round_y", [False, True])
def test_bicubic_set5_x4_through_the_cli(datasets_dir, tmp_path, round_y):
    out = tmp_path / "sr"
    lr = datasets_dir / "Set5" / "LR_bicubic" / "X4"
    assert main(["upscale", str(lr), "-o", str(out), "--model", "bicubic", "--quiet"]) == 0
    report = tmp_path / "scores.json"
    args = ["eval", "--sr", str(out), "--gt", str(datasets_dir / "Set5" / "HR"), "-s", "4", "--y"]
    args += ["--crop-border", "4", "--sr-suffix", "x4", "--json", str(report)] + (["--round-y"] if round_y else [])
    assert main(args) == 0
    mean = json.loads(report.read_text())["mean"]
    assert abs(mean["psnr"] - 28.42) <= 0.015 and abs(mean["ssim"] - 0.8104) <= 0.001, mean


def test_shipped_default_beats_bicubic_on_set5_by_1_5_db(datasets_dir, tmp_path):
    """`gensr upscale` (no --model: the shipped default) of the MATLAB LR, scored like the papers."""
    out = tmp_path / "sr"
    lr = datasets_dir / "Set5" / "LR_bicubic" / "X4"
    assert main(["upscale", str(lr), "-o", str(out), "--quiet"]) == 0
    report = tmp_path / "scores.json"
    gt = str(datasets_dir / "Set5" / "HR")
    args = ["eval", "--sr", str(out), "--gt", gt, "-s", "4", "--y", "--crop-border", "4", "--sr-suffix", "x4"]
    assert main(args + ["--json", str(report)]) == 0
    psnr = json.loads(report.read_text())["mean"]["psnr"]
    assert psnr >= 28.42 + 1.5, psnr
