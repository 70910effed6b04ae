"""`gensr degrade` and `gensr eval` end to end, through ``python -m gensr`` in a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gensr.imresize import imresize, modcrop
from gensr.io import read_array, read_image, write_image

SET5 = ("baby", "bird", "butterfly", "head", "woman")


def gensr(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "gensr", *map(str, args)], capture_output=True, text=True, timeout=300)


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def _error(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    assert proc.returncode == 2, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    msg = proc.stderr.strip()
    assert msg.startswith("gensr: error:") and "Traceback" not in proc.stderr, proc.stderr
    for f in fragments:
        assert f in msg, msg
    return msg


def _random_image(h: int, w: int, c: int = 3, seed: int = 0, dtype=np.uint8) -> np.ndarray:
    """A smooth-ish random image (so downscaling is not pure noise)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(h // 4, 2), max(w // 4, 2), c), dtype=np.uint8)
    img = imresize(small, size=(h, w))
    return img.astype(np.uint16) * 257 if dtype == np.uint16 else img


# ------------------------------------------------------------------ degrade on the benchmark files


@pytest.mark.parametrize("folder,padding", [("LR_bicubic", "symmetric"), ("LR_bicubic_selfexsr", "replicate")])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_degrade_reproduces_set5_lr_bitexactly(datasets_dir, tmp_path, scale, folder, padding):
    hr_dir = datasets_dir / "Set5" / "HR"
    ref_dir = datasets_dir / "Set5" / folder / f"X{scale}"
    if not ref_dir.is_dir():
        pytest.skip(f"{ref_dir} missing")
    args = ["degrade", hr_dir, "-o", tmp_path, "-s", scale]
    if padding != "symmetric":
        args += ["--padding", padding]
    _ok(gensr(*args))
    for name in SET5:
        ours = read_array(tmp_path / f"{name}.png")
        ref = read_array(ref_dir / f"{name}x{scale}.png")
        assert ours.shape == ref.shape, name
        np.testing.assert_array_equal(ours, ref, err_msg=f"{name} x{scale} {padding}")


# ------------------------------------------------------------------ eval: the bicubic x4 baseline on Set5


@pytest.mark.slow
def test_eval_bicubic_baseline_set5_x4(datasets_dir, tmp_path):
    """Published bicubic Set5 x4: 28.42 / 0.8104 (Y, 4-px border).

    Reference (esrgan.md section 12): float Y 28.429 / 0.8111, rounded Y 28.416 / 0.8101.
    """
    lr_dir = datasets_dir / "Set5" / "LR_bicubic" / "X4"
    sr_dir = tmp_path / "sr"
    for name in SET5:
        write_image(sr_dir / f"{name}.png", imresize(read_array(lr_dir / f"{name}x4.png"), 4.0))

    float_json, round_json = tmp_path / "float.json", tmp_path / "round.json"
    common = [
        "eval",
        "--sr",
        sr_dir,
        "--gt",
        datasets_dir / "Set5" / "HR",
        "-s",
        4,
        "--y",
        "--crop-border",
        4,
    ]
    out = _ok(gensr(*common, "--json", float_json)).stdout
    assert "mean" in out and "28.42" in out
    _ok(gensr(*common, "--round-y", "--lr", lr_dir, "--json", round_json))

    fl = json.loads(float_json.read_text())
    rd = json.loads(round_json.read_text())
    assert [r["name"] for r in fl["images"]] == sorted(SET5)
    assert fl["settings"]["y_channel"] is True and fl["settings"]["crop_border"] == 4
    assert fl["settings"]["round_y"] is False and rd["settings"]["round_y"] is True
    for doc, (p_ref, s_ref) in ((fl, (28.429, 0.8111)), (rd, (28.416, 0.8101))):
        assert abs(doc["mean"]["psnr"] - 28.42) <= 0.015
        assert abs(doc["mean"]["ssim"] - 0.8104) <= 0.001
        assert abs(doc["mean"]["psnr"] - p_ref) <= 0.0015
        assert abs(doc["mean"]["ssim"] - s_ref) <= 0.0001
    # the MATLAB LR is the GT downscaled with the same bicubic: both LR-PSNR references agree
    assert rd["mean"]["lr_psnr"] == pytest.approx(fl["mean"]["lr_psnr"], abs=1e-9)
    assert 30 < fl["mean"]["lr_psnr"] < 50


# ------------------------------------------------------------------ synthetic files (no dataset needed)


def test_degrade_keeps_depth_gray_and_alpha(tmp_path):
    rgb16 = _random_image(37, 41, 3, seed=1, dtype=np.uint16)
    alpha16 = _random_image(37, 41, 1, seed=2, dtype=np.uint16)[:, :, 0]
    write_image(tmp_path / "hr" / "a.png", rgb16, alpha16)
    gray = _random_image(30, 26, 1, seed=3)
    write_image(tmp_path / "hr" / "g.png", gray)
    jpg = _random_image(24, 24, 3, seed=4)
    write_image(tmp_path / "hr" / "j.jpg", jpg)

    _ok(gensr("degrade", tmp_path / "hr", "-o", tmp_path / "lr", "-s", 4))
    a = read_image(tmp_path / "lr" / "a.png")
    assert a.pixels.dtype == np.uint16 and a.pixels.shape == (9, 10, 3)
    np.testing.assert_array_equal(a.pixels, imresize(modcrop(rgb16, 4), 0.25))
    assert a.alpha is not None
    np.testing.assert_array_equal(a.alpha, imresize(modcrop(alpha16, 4), 0.25))
    g = read_image(tmp_path / "lr" / "g.png")
    assert g.is_gray and g.pixels.dtype == np.uint8 and g.pixels.shape == (7, 6, 1)
    np.testing.assert_array_equal(g.pixels, imresize(modcrop(gray, 4), 0.25))
    assert read_array(tmp_path / "lr" / "j.jpg").shape == (6, 6, 3)


def test_degrade_errors(tmp_path):
    img = _random_image(16, 16)
    write_image(tmp_path / "a" / "x.png", img)
    write_image(tmp_path / "b" / "x.png", img)
    _error(gensr("degrade", tmp_path / "a", "-o", tmp_path / "a", "-s", 2), "would replace the input")
    _error(gensr("degrade", tmp_path / "a", tmp_path / "b", "-o", tmp_path / "o", "-s", 2), "would be written twice")
    _error(gensr("degrade", tmp_path / "missing", "-o", tmp_path / "o", "-s", 2), "missing")
    _error(gensr("degrade", tmp_path / "a", "-o", tmp_path / "o", "-s", 0), "--scale")
    _error(gensr("degrade", tmp_path / "a", "-o", tmp_path / "o", "-s", 32), "smaller than the scale")
    assert not (tmp_path / "o" / "x.png").exists()


@pytest.fixture
def eval_dirs(tmp_path):
    """GT 50x45 (mod-crop x4 -> 48x44), SR named <stem>_x4, LR named <stem>x4, plus a gray GT/SR pair."""
    gt_dir, sr_dir, lr_dir = tmp_path / "gt", tmp_path / "sr", tmp_path / "lr"
    for i, name in enumerate(("one", "two")):
        gt = _random_image(45, 50, seed=10 + i)
        lr = imresize(modcrop(gt, 4), 0.25)
        write_image(gt_dir / f"{name}.png", gt)
        write_image(lr_dir / f"{name}x4.png", lr)
        write_image(sr_dir / f"{name}_x4.png", imresize(lr, 4.0))
    gray = _random_image(48, 44, 1, seed=20)
    write_image(gt_dir / "gray.png", gray)
    write_image(lr_dir / "grayx4.png", imresize(gray, 0.25))
    write_image(sr_dir / "gray_x4.png", gray)  # perfect SR -> PSNR inf
    return gt_dir, sr_dir, lr_dir


def test_eval_pairs_suffixes_and_writes_json(eval_dirs, tmp_path):
    from gensr.metrics import lr_psnr, psnr, ssim

    gt_dir, sr_dir, lr_dir = eval_dirs
    out_json = tmp_path / "res" / "scores.json"
    proc = _ok(
        gensr(
            "eval",
            "--sr",
            sr_dir,
            "--gt",
            gt_dir,
            "-s",
            4,
            "--sr-suffix",
            "_x4",
            "--lr",
            lr_dir,
            "--json",
            out_json,
        )
    )
    assert "one" in proc.stdout and "mean" in proc.stdout and "inf" in proc.stdout
    doc = json.loads(out_json.read_text())
    by_name = {r["name"]: r for r in doc["images"]}
    assert sorted(by_name) == ["gray", "one", "two"]
    assert by_name["gray"]["psnr"] == "inf" and by_name["gray"]["lr_psnr"] == "inf"
    assert by_name["gray"]["ssim"] == pytest.approx(1.0)
    assert doc["mean"]["psnr"] == "inf"
    gt = modcrop(read_array(gt_dir / "one.png"), 4)
    sr = read_array(sr_dir / "one_x4.png")
    assert by_name["one"]["psnr"] == pytest.approx(psnr(sr, gt))
    assert by_name["one"]["ssim"] == pytest.approx(ssim(sr, gt))
    assert by_name["one"]["lr_psnr"] == pytest.approx(lr_psnr(sr, read_array(lr_dir / "onex4.png"), 4))
    assert doc["mean"]["ssim"] == pytest.approx(np.mean([r["ssim"] for r in doc["images"]]))
    assert doc["settings"]["scale"] == 4 and doc["settings"]["y_channel"] is False
    assert doc["settings"]["lr"] == str(lr_dir)

    # without --lr the GT downscaled is the LR reference (identical here); LR folder matched by <stem>x<scale>
    out2 = tmp_path / "s2.json"
    _ok(
        gensr(
            "eval",
            "--sr",
            sr_dir,
            "--gt",
            gt_dir,
            "-s",
            4,
            "--sr-suffix",
            "_x4",
            "--y",
            "--crop-border",
            4,
            "--json",
            out2,
        )
    )
    doc2 = json.loads(out2.read_text())
    assert doc2["images"][1]["lr_psnr"] == pytest.approx(by_name["one"]["lr_psnr"])
    assert doc2["images"][1]["psnr"] == pytest.approx(psnr(sr, gt, crop_border=4, y_channel=True))


def test_eval_errors(eval_dirs, tmp_path):
    gt_dir, sr_dir, lr_dir = eval_dirs
    base = ["--gt", gt_dir, "-s", 4]
    _error(gensr("eval", "--sr", tmp_path / "nope", *base), "nope", "does not exist")
    (tmp_path / "empty").mkdir()
    _error(gensr("eval", "--sr", tmp_path / "empty", *base), "no images")
    # no suffix given: SR files "one_x4" do not match "one", "onex4"
    _error(gensr("eval", "--sr", sr_dir, *base), "gray.png", "no matching SR")
    # wrong scale: SR 48x44 vs GT mod-cropped to x3 (48x45)
    _error(gensr("eval", "--sr", sr_dir, "--gt", gt_dir, "-s", 3, "--sr-suffix", "_x4"), "does not match GT")
    # LR of the wrong size
    bad_lr = tmp_path / "badlr"
    for name in ("one", "two", "gray"):
        write_image(bad_lr / f"{name}.png", np.zeros((5, 5, 3), np.uint8))
    _error(gensr("eval", "--sr", sr_dir, *base, "--sr-suffix", "_x4", "--lr", bad_lr), "LR size")
    _error(gensr("eval", "--sr", sr_dir, *base, "--sr-suffix", "_x4", "--round-y"), "--round-y")
