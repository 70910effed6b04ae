"""The issue's bad-input matrix through the command line: one line naming the file, exit 2, no partial output."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from gensr.cli import main
from gensr.models.registry import build_model


def good_png(path: Path, mode: str = "RGB") -> Path:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).convert(mode).save(path)
    return path


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    code = main(args)
    err = capsys.readouterr().err.strip()
    return code, err


def assert_one_line_error(code: int, err: str, name: str) -> None:
    assert code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("gensr: error:"), err
    assert name in err, err


def bad_inputs(tmp: Path) -> dict[str, Path]:
    tmp.mkdir(parents=True, exist_ok=True)
    empty_dir = tmp / "no_images"
    empty_dir.mkdir()
    (empty_dir / "notes.txt").write_text("hello")
    text = tmp / "text.png"
    text.write_text("this is not an image")
    zero = tmp / "zero.png"
    zero.write_bytes(b"")
    full = good_png(tmp / "full.png")
    truncated = tmp / "truncated.png"
    truncated.write_bytes(full.read_bytes()[:60])
    return {
        "missing file": tmp / "missing.png",
        "directory without images": empty_dir,
        "non-image file": text,
        "0-byte file": zero,
        "truncated PNG": truncated,
    }


@pytest.mark.parametrize(
    "case", ["missing file", "directory without images", "non-image file", "0-byte file", "truncated PNG"]
)
def test_bad_images(case, tmp_path, ckpt, capsys):
    path = bad_inputs(tmp_path / "in")[case]
    out = tmp_path / "out"
    code, err = run_cli(["upscale", str(path), "-o", str(out), "--model", str(ckpt), "--quiet"], capsys)
    assert_one_line_error(code, err, path.name)
    assert not out.exists() or not any(out.iterdir())


def test_image_over_the_pixel_limit(tmp_path, ckpt, capsys, monkeypatch):
    path = good_png(tmp_path / "big.png")
    monkeypatch.setenv("GENSR_MAX_PIXELS", "100")
    code, err = run_cli(["upscale", str(path), "-o", str(tmp_path / "o.png"), "--model", str(ckpt)], capsys)
    assert_one_line_error(code, err, "big.png")
    assert not (tmp_path / "o.png").exists()


@pytest.mark.parametrize("mode", ["CMYK", "P"])
def test_cmyk_and_palette_are_converted(mode, tmp_path, ckpt, capsys):
    src = tmp_path / f"in_{mode}.{'jpg' if mode == 'CMYK' else 'png'}"
    good_png(src, mode)
    out = tmp_path / "out.png"
    code, err = run_cli(["upscale", str(src), "-o", str(out), "--model", str(ckpt), "--quiet"], capsys)
    assert code == 0, err
    with Image.open(out) as im:
        assert im.mode == "RGB" and im.size == (40, 48)


def test_checkpoint_of_unknown_layout(tmp_path, capsys):
    bogus = tmp_path / "bogus.pth"
    torch.save({"encoder.weight": torch.zeros(3, 3)}, bogus)
    img = good_png(tmp_path / "a.png")
    code, err = run_cli(["upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", str(bogus)], capsys)
    assert_one_line_error(code, err, "bogus.pth")
    assert "unknown checkpoint layout" in err
    assert not (tmp_path / "o.png").exists()


def test_checkpoint_with_missing_keys(tmp_path, capsys):
    net = build_model("rrdbnet", {"nf": 8, "nb": 1, "gc": 4})
    sd = {k: v for k, v in net.state_dict().items() if not k.startswith("conv_hr")}
    path = tmp_path / "partial.pth"
    torch.save({"params": sd}, path)
    img = good_png(tmp_path / "a.png")
    code, err = run_cli(["upscale", str(img), "-o", str(tmp_path / "o.png"), "--model", str(path)], capsys)
    assert_one_line_error(code, err, "partial.pth")
    assert "conv_hr" in err


def test_yaml_with_an_unknown_key(tmp_path, capsys):
    cfg = tmp_path / "run.yaml"
    cfg.write_text(yaml.safe_dump({"name": "x", "task": {"kind": "psnr"}, "optim": {"lrr": 1e-4}}))
    code, err = run_cli(["train", str(cfg)], capsys)
    assert_one_line_error(code, err, "run.yaml")
    assert "lrr" in err


def test_unwritable_output_folder(tmp_path, ckpt, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder should be")
    img = good_png(tmp_path / "a.png")
    out = blocker / "sub"
    code, err = run_cli(["upscale", str(img), "-o", str(out) + "/", "--model", str(ckpt)], capsys)
    assert_one_line_error(code, err, "blocker")


def test_one_case_through_a_real_subprocess(tmp_path):
    good_png(tmp_path / "gt.png")
    r = subprocess.run(
        [sys.executable, "-m", "gensr", "eval", "--sr", str(tmp_path / "nope"), "--gt", str(tmp_path), "-s", "4"],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "nope" in r.stderr
    assert "Traceback" not in r.stderr
