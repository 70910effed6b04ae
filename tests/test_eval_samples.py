"""`gensr eval` on sample sets (gensr sample's `<stem>_t<tau>_s<k>` files), NIQE with and without GT, LPIPS.

Most cases call :func:`gensr.cli.main` in-process; one goes through ``python -m gensr`` in a subprocess.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gensr.cli import main
from gensr.imresize import imresize, modcrop
from gensr.io import read_array, write_image
from gensr.metrics.diversity import ntire_scores, pixel_std
from gensr.metrics.fidelity import lr_consistency_target, lr_psnr, psnr, ssim
from gensr.metrics.niqe import niqe, shipped_params_path

SCALE = 4


def _image(h: int, w: int, seed: int, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return imresize(rng.integers(0, 256, (h // 6, w // 6, c), dtype=np.uint8), size=(h, w))


def _noisy(img: np.ndarray, seed: int, amount: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.int16) + rng.integers(-amount, amount + 1, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """gt/{baby,bird,head}.png (>= 96 px for NIQE); sr/ with 3 samples of 'babyx4' at tau 0.90, 2 of 'bird'
    at 0.90 and 1 at 0.50 (sample names as gensr sample writes them), and a plain SR image for 'head'."""
    d = tmp_path_factory.mktemp("eval_samples")
    sizes = {"baby": (100, 102), "bird": (97, 104), "head": (96, 96)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        gt = _image(h, w, seed=i)
        write_image(d / "gt" / f"{name}.png", gt)
        write_image(d / "lr" / f"{name}x4.png", imresize(modcrop(gt, SCALE), 1 / SCALE))
    gts = {n: modcrop(read_array(d / "gt" / f"{n}.png"), SCALE) for n in sizes}
    for k in range(3):
        write_image(d / "sr" / f"babyx4_t0.90_s{k:03d}.png", _noisy(gts["baby"], 10 + k, amount=6 + 6 * k))
    for k in range(2):
        write_image(d / "sr" / f"bird_t0.90_s{k:03d}.png", _noisy(gts["bird"], 20 + k))
    write_image(d / "sr" / "bird_t0.50_s000.png", _noisy(gts["bird"], 30, amount=4))
    write_image(d / "sr" / "head.png", _noisy(gts["head"], 40))
    return d


def _run(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def _ok(capsys, *args) -> str:
    code, out, err = _run(capsys, *args)
    assert code == 0, err
    return out


def _error(capsys, *args) -> str:
    code, _, err = _run(capsys, *args)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("gensr: error: "), (code, err)
    return lines[0]


def test_sample_sets_mean_best_and_diversity(data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GENSR_LPIPS_WEIGHTS", raising=False)
    out_json = tmp_path / "s.json"
    out = _ok(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--y", "--crop-border", 4,
              "--json", out_json)  # fmt: skip
    assert "baby t0.90 x3" in out and "bird t0.50 x1" in out and "best PSNR" in out
    doc = json.loads(out_json.read_text())
    rows = {(r["name"], r.get("tau")): r for r in doc["images"]}
    assert sorted(rows, key=str) == sorted([("baby", 0.9), ("bird", 0.5), ("bird", 0.9), ("head", None)], key=str)

    gt = modcrop(read_array(data / "gt" / "baby.png"), SCALE)
    samples = [read_array(data / "sr" / f"babyx4_t0.90_s{k:03d}.png") for k in range(3)]
    opts = dict(crop_border=4, y_channel=True)
    ps = [psnr(s, gt, **opts) for s in samples]
    baby = rows[("baby", 0.9)]
    assert baby["samples"] == 3
    assert baby["psnr"] == pytest.approx(np.mean(ps), abs=1e-9)
    assert baby["ssim"] == pytest.approx(np.mean([ssim(s, gt, **opts) for s in samples]), abs=1e-9)
    lr = lr_consistency_target(gt, SCALE)
    assert baby["lr_psnr"] == pytest.approx(np.mean([lr_psnr(s, lr, SCALE) for s in samples]), abs=1e-9)
    # sample 0 has the least noise: it is the best, and the best is the max PSNR, not the mean
    assert baby["best"]["index"] == 0 and baby["best"]["file"] == "babyx4_t0.90_s000.png"
    assert baby["best"]["psnr"] == pytest.approx(max(ps)) and max(ps) > baby["psnr"] + 0.5
    assert baby["pixel_std"] == pytest.approx(pixel_std(samples))
    assert baby["diversity_pixel"] == pytest.approx(ntire_scores(samples, gt, None, SCALE)["diversity_pixel"])
    assert "diversity_lpips" not in baby and "per_sample" not in baby
    # a one-sample set has no diversity; a plain image has no sample fields
    assert rows[("bird", 0.5)]["pixel_std"] is None and rows[("bird", 0.5)]["diversity_pixel"] is None
    assert "best" not in rows[("head", None)]
    head = read_array(data / "sr" / "head.png")
    assert rows[("head", None)]["psnr"] == pytest.approx(psnr(head, modcrop(read_array(data / "gt" / "head.png"), 4),
                                                              **opts))  # fmt: skip
    # means: over all rows for the scores, over the sample rows for best / diversity; one mean per tau
    assert doc["mean"]["psnr"] == pytest.approx(np.mean([r["psnr"] for r in doc["images"]]))
    sets = [r for r in doc["images"] if "tau" in r]
    assert doc["mean"]["best_psnr"] == pytest.approx(np.mean([r["best"]["psnr"] for r in sets]))
    assert set(doc["mean_by_tau"]) == {"0.50", "0.90"}


def test_per_sample_rows(data, tmp_path, capsys):
    out_json = tmp_path / "p.json"
    out = _ok(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--lr", data / "lr",
              "--per-sample", "--json", out_json)  # fmt: skip
    assert "  s000" in out and "  s002" in out
    baby = next(r for r in json.loads(out_json.read_text())["images"] if r["name"] == "baby")
    assert [s["index"] for s in baby["per_sample"]] == [0, 1, 2]
    assert [s["file"] for s in baby["per_sample"]] == [f"babyx4_t0.90_s{k:03d}.png" for k in range(3)]
    gt = modcrop(read_array(data / "gt" / "baby.png"), SCALE)
    s1 = read_array(data / "sr" / "babyx4_t0.90_s001.png")
    assert baby["per_sample"][1]["psnr"] == pytest.approx(psnr(s1, gt))
    lr = read_array(data / "lr" / "babyx4.png")
    assert baby["per_sample"][1]["lr_psnr"] == pytest.approx(lr_psnr(s1, lr, SCALE))
    assert baby["psnr"] == pytest.approx(np.mean([s["psnr"] for s in baby["per_sample"]]))


def test_niqe_without_gt_and_with_it(data, tmp_path, capsys):
    out_json = tmp_path / "n.json"
    out = _ok(capsys, "eval", "--sr", data / "gt", "--niqe", "--json", out_json)
    assert "NIQE" in out
    doc = json.loads(out_json.read_text())
    names = [r["name"] for r in doc["images"]]
    assert names == ["baby", "bird", "head"]
    values = [niqe(read_array(data / "gt" / f"{n}.png")) for n in names]
    assert [r["niqe"] for r in doc["images"]] == pytest.approx(values)
    assert doc["mean"]["niqe"] == pytest.approx(np.mean(values))
    assert doc["settings"]["gt"] is None

    # with GT: a NIQE column (sample sets: the mean over samples); --niqe-params with the shipped model agrees
    j2, j3 = tmp_path / "g.json", tmp_path / "h.json"
    _ok(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--niqe", "--json", j2)
    _ok(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--niqe", "--niqe-params",
        shipped_params_path(), "--json", j3)  # fmt: skip
    r2 = {(r["name"], r.get("tau")): r for r in json.loads(j2.read_text())["images"]}
    samples = [read_array(data / "sr" / f"babyx4_t0.90_s{k:03d}.png") for k in range(3)]
    assert r2[("baby", 0.9)]["niqe"] == pytest.approx(np.mean([niqe(s) for s in samples]))
    assert json.loads(j3.read_text())["mean"]["niqe"] == pytest.approx(json.loads(j2.read_text())["mean"]["niqe"])


def test_lpips_note_without_weights(data, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("GENSR_LPIPS_WEIGHTS", raising=False)
    out_json = tmp_path / "l.json"
    code, out, err = _run(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--lpips",
                          "--json", out_json)  # fmt: skip
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if ln.startswith("gensr: note:")]
    assert len(notes) == 1 and "LPIPS skipped" in notes[0] and "GENSR_LPIPS_WEIGHTS" in notes[0]
    doc = json.loads(out_json.read_text())
    assert all("lpips" not in r for r in doc["images"]) and "PSNR" in out
    assert doc["settings"]["lpips"] == {"net": "alex", "computed": False}


def test_lpips_with_weights_gives_the_ntire_diversity(data, tmp_path, capsys):
    from gensr.metrics.lpips import load_lpips, lpips_distance
    from test_lpips import BACKBONE_FILE, make_backbone_sd, make_head_sd

    folder = tmp_path / "lpips"
    folder.mkdir()
    torch.save(make_head_sd("alex"), folder / "alex.pth")
    torch.save(make_backbone_sd("alex"), folder / BACKBONE_FILE["alex"])
    out_json = tmp_path / "w.json"
    _ok(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--lpips", "--lpips-weights", folder,
        "--json", out_json)  # fmt: skip
    rows = {(r["name"], r.get("tau")): r for r in json.loads(out_json.read_text())["images"]}
    baby = rows[("baby", 0.9)]
    assert "diversity_lpips" in baby and "diversity_pixel" not in baby
    model = load_lpips("alex", folder)
    gt = modcrop(read_array(data / "gt" / "baby.png"), SCALE)
    samples = [read_array(data / "sr" / f"babyx4_t0.90_s{k:03d}.png") for k in range(3)]
    assert baby["lpips"] == pytest.approx(np.mean([lpips_distance(s, gt, model) for s in samples]), rel=1e-5)
    assert baby["diversity_lpips"] == pytest.approx(ntire_scores(samples, gt, None, 4, model)["diversity_lpips"],
                                                    rel=1e-5)  # fmt: skip
    # weights of the wrong layout: one line, exit 2
    bad = tmp_path / "bad.pth"
    torch.save({"foo": torch.zeros(1)}, bad)
    msg = _error(capsys, "eval", "--sr", data / "sr", "--gt", data / "gt", "-s", 4, "--lpips", "--lpips-weights", bad)
    assert "not LPIPS" in msg


def test_errors_are_one_line(data, tmp_path, capsys):
    base = ["eval", "--sr", data / "sr"]
    assert "--gt is required" in _error(capsys, *base)
    assert "--lpips needs --gt" in _error(capsys, *base, "--niqe", "--lpips")
    assert "--scale is required" in _error(capsys, *base, "--gt", data / "gt")
    assert "--niqe-params only applies" in _error(capsys, *base, "--gt", data / "gt", "-s", 4, "--niqe-params", "x")
    corrupt = tmp_path / "corrupt.npz"
    corrupt.write_bytes(b"not a zip file")
    assert "corrupt.npz" in _error(capsys, *base, "--niqe", "--niqe-params", corrupt)
    # a GT with both a plain SR image and samples is ambiguous
    mixed = tmp_path / "mixed"
    for f in (data / "sr").iterdir():
        (mixed / f.name).parent.mkdir(exist_ok=True)
        (mixed / f.name).write_bytes(f.read_bytes())
    (mixed / "baby.png").write_bytes((data / "sr" / "head.png").read_bytes())
    assert "ambiguous" in _error(capsys, "eval", "--sr", mixed, "--gt", data / "gt", "-s", 4)
    # nothing matches: the --sr-suffix hint is kept
    other = tmp_path / "other"
    write_image(other / "baby_x4.png", _image(100, 100, 1))
    msg = _error(capsys, "eval", "--sr", other, "--gt", data / "gt", "-s", 4)
    assert "no matching SR" in msg and "--sr-suffix _x4" in msg


def test_eval_samples_through_the_command_line(data, tmp_path):
    out_json = tmp_path / "cli.json"
    proc = subprocess.run(
        [sys.executable, "-m", "gensr", "eval", "--sr", str(data / "sr"), "--gt", str(data / "gt"), "-s", "4",
         "--niqe", "--per-sample", "--json", str(out_json)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "baby t0.90 x3" in proc.stdout and "NIQE" in proc.stdout
    doc = json.loads(out_json.read_text())
    assert len(doc["images"]) == 4 and all(r["niqe"] is not None for r in doc["images"])
