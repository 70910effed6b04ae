"""``gensr upscale`` end to end, through a subprocess like a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gensr.checkpoints.gensr_format import save_checkpoint
from gensr.cli import main
from gensr.imresize import imresize
from gensr.inference.upscale import upscale
from gensr.io import read_image, write_image
from gensr.models.registry import build_model, model_config_dict


def gensr(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gensr", "upscale", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


def _save_rrdbnet(path: Path, seed: int) -> Path:
    """A small random x4 RRDBNet with output around mid-grey (the training init gives ~0 everywhere)."""
    torch.manual_seed(seed)
    net = build_model("rrdbnet", {"scale": 4, "nf": 16, "nb": 1, "gc": 8})
    for mod in net.modules():
        if isinstance(mod, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(mod.weight, a=0.2)
            mod.weight.data *= 0.45
            torch.nn.init.zeros_(mod.bias)
    torch.nn.init.constant_(net.conv_last.bias, 0.5)
    save_checkpoint(path, net.state_dict(), "rrdbnet", model_config_dict(net))
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    return _save_rrdbnet(tmp_path_factory.mktemp("ckpt") / "small_x4.safetensors", 0)


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A folder with an RGB, an RGBA, a gray and a 16-bit RGB PNG (20 x 24)."""
    d = tmp_path_factory.mktemp("in")
    rng = np.random.default_rng(0)
    write_image(d / "rgb.png", rng.integers(0, 256, (20, 24, 3), dtype=np.uint8))
    write_image(
        d / "rgba.png",
        rng.integers(0, 256, (20, 24, 3), dtype=np.uint8),
        alpha=rng.integers(0, 256, (20, 24), dtype=np.uint8),
    )
    write_image(d / "gray.png", rng.integers(0, 256, (20, 24, 1), dtype=np.uint8))
    write_image(d / "deep.png", rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16))
    return d


def _no_outputs(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _one_error_line(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gensr: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_model_output_matches_the_api(ckpt, images, tmp_path):
    proc = gensr(str(images / "rgb.png"), "-o", str(tmp_path / "sr.png"), "--model", str(ckpt), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    out = read_image(tmp_path / "sr.png")
    assert out.size == (80, 96) and out.bit_depth == 8 and not out.is_gray and not out.has_alpha
    ref = upscale(read_image(images / "rgb.png").rgb_tensor(), str(ckpt), device="cpu")
    expected = (ref[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(out.pixels.astype(np.float64) - expected).max() <= 1
    assert out.pixels.std() > 1  # a meaningful comparison: the model's output is not flat


def test_folder_keeps_alpha_gray_and_16_bit(ckpt, images, tmp_path):
    out = tmp_path / "out"
    proc = gensr(str(images), "-o", str(out), "--model", str(ckpt), "--suffix", "_x4", "--tile", "12")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "deep_x4.png",
        "gray_x4.png",
        "rgb_x4.png",
        "rgba_x4.png",
    ]
    assert len(proc.stdout.strip().splitlines()) == 4  # one line per file

    rgba = read_image(out / "rgba_x4.png")
    assert rgba.has_alpha and rgba.size == (80, 96) and rgba.bit_depth == 8
    src_alpha = read_image(images / "rgba.png").alpha_tensor()
    expected_alpha = (imresize(src_alpha, 4).clamp(0, 1)[0, 0].numpy() * 255).round()
    assert np.abs(rgba.alpha.astype(np.float64) - expected_alpha).max() <= 1  # bicubic alpha by default

    gray = read_image(out / "gray_x4.png")
    assert gray.is_gray and not gray.has_alpha and gray.size == (80, 96)

    deep = read_image(out / "deep_x4.png")
    assert deep.bit_depth == 16 and deep.pixels.dtype == np.uint16 and deep.size == (80, 96)
    ref = upscale(read_image(images / "deep.png").rgb_tensor(), str(ckpt), device="cpu", tile=12)
    expected = (ref[0].permute(1, 2, 0).numpy() * 65535).round()
    assert np.abs(deep.pixels.astype(np.float64) - expected).max() <= 2  # 16-bit precision, not 8-bit x 257
    assert len(np.unique(deep.pixels % 257)) > 1


def test_bicubic_model_and_scale(images, tmp_path):
    proc = gensr(str(images / "rgb.png"), "-o", str(tmp_path), "--model", "bicubic", "--scale", "3", "-q")
    assert proc.returncode == 0, proc.stderr
    out = read_image(tmp_path / "rgb.png")
    assert out.size == (60, 72)
    src = read_image(images / "rgb.png").rgb_tensor()
    expected = (imresize(src, 3).clamp(0, 1)[0].permute(1, 2, 0).numpy() * 255).round()
    assert np.abs(out.pixels.astype(np.float64) - expected).max() <= 1


def test_outscale_with_x4_model(ckpt, images, tmp_path):
    proc = gensr(str(images / "rgba.png"), "-o", str(tmp_path), "--model", str(ckpt), "--outscale", "2", "--ext", "tif")
    assert proc.returncode == 0, proc.stderr
    out = read_image(tmp_path / "rgba.tif")
    assert out.size == (40, 48) and out.has_alpha


def test_interpolation_alpha_zero_is_the_first_model(ckpt, images, tmp_path):
    other = _save_rrdbnet(tmp_path / "other.safetensors", 1)
    a = tmp_path / "a.png"
    b = tmp_path / "b.png"
    assert gensr(str(images / "rgb.png"), "-o", str(a), "--model", str(ckpt), "-q").returncode == 0
    proc = gensr(
        str(images / "rgb.png"),
        "-o",
        str(b),
        "--model",
        str(ckpt),
        "--interp-with",
        str(other),
        "--alpha",
        "0",
    )
    assert proc.returncode == 0, proc.stderr
    assert np.array_equal(read_image(a).pixels, read_image(b).pixels)


def test_bad_image_exits_2_with_one_line_and_no_output(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not an image at all")
    out = tmp_path / "out"
    _one_error_line(gensr(str(bad), "-o", str(out), "--model", "bicubic"), "broken.png")
    assert _no_outputs(out)


def test_stops_at_the_first_bad_file(tmp_path, images):
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes((images / "rgb.png").read_bytes())
    (src / "b.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    (src / "c.png").write_bytes((images / "rgb.png").read_bytes())
    out = tmp_path / "out"
    _one_error_line(gensr(str(src), "-o", str(out), "--model", "bicubic", "-q"), "b.png")
    assert sorted(p.name for p in out.iterdir()) == ["a.png"]  # complete outputs only, no temp files


@pytest.mark.parametrize(
    "case",
    ["missing-input", "missing-model", "bad-overlap", "scale-mismatch", "bad-device"],
)
def test_option_errors_exit_2(case, ckpt, images, tmp_path, capsys):
    out = tmp_path / "out"
    src = str(images / "rgb.png")
    args = {
        "missing-input": ([str(tmp_path / "nope.png"), "-o", str(out)], "nope.png"),
        "missing-model": ([src, "-o", str(out), "--model", str(tmp_path / "none.pth")], "none.pth"),
        "bad-overlap": (
            [src, "-o", str(out), "--model", str(ckpt), "-t", "16", "--tile-overlap", "16"],
            "overlap",
        ),
        "scale-mismatch": ([src, "-o", str(out), "--model", str(ckpt), "--scale", "2"], "--outscale"),
        "bad-device": ([src, "-o", str(out), "--model", "bicubic", "--device", "nonsense"], "--device"),
    }[case]
    # in-process (the same main() the console script runs) to keep the suite fast
    code = main(["upscale", *args[0]])
    err = capsys.readouterr().err
    _one_error_line(subprocess.CompletedProcess([], code, "", err), args[1])
    assert _no_outputs(out)


def test_existing_output_needs_overwrite_and_input_is_never_overwritten(images, tmp_path):
    out = tmp_path / "sr.png"
    out.write_bytes(b"keep me")
    _one_error_line(gensr(str(images / "rgb.png"), "-o", str(out), "--model", "bicubic"), "--overwrite")
    assert out.read_bytes() == b"keep me"
    assert gensr(str(images / "rgb.png"), "-o", str(out), "--model", "bicubic", "--overwrite").returncode == 0
    assert read_image(out).size == (80, 96)

    src = tmp_path / "x.png"
    src.write_bytes((images / "rgb.png").read_bytes())
    before = src.read_bytes()
    _one_error_line(gensr(str(src), "-o", str(tmp_path), "--model", "bicubic", "--overwrite"), "input")
    assert src.read_bytes() == before


def test_alpha_into_jpeg_is_refused(images, tmp_path):
    _one_error_line(
        gensr(str(images / "rgba.png"), "-o", str(tmp_path / "o"), "--model", "bicubic", "--ext", "jpg"),
        "alpha",
    )
    assert _no_outputs(tmp_path / "o")
